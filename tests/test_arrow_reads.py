"""Every Parquet read the library hands a Python file object runs on the calling thread.

Arrow wraps the file object in a C++ object whose destructor takes the GIL. Read on Arrow's worker
threads (`pq.read_table`, `use_threads=True`), a worker can drop the last reference while the interpreter
exits; it cannot take the GIL and the process aborts with "terminate called without an active exception".
CI saw it as a refused `restem run` exiting -6 instead of 2 (store.tables.read_open_file).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "restem_assets").rglob("*.py")) + sorted((ROOT / "dagster_project").rglob("*.py"))


def _is_parquet_file(node: ast.AST, names: set[str]) -> bool:
    """`pq.ParquetFile(...)` itself, or a name bound to one."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "ParquetFile":
        return True
    return isinstance(node, ast.Name) and node.id in names


def threaded_reads(source: str) -> list[str]:
    """The calls in `source` that let Arrow read a file on its worker threads."""
    tree = ast.parse(source)
    bound = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and _is_parquet_file(node.value, set())
             for t in node.targets if isinstance(t, ast.Name)}
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        attr, receiver = node.func.attr, node.func.value
        if attr == "read_table" and isinstance(receiver, ast.Name) and receiver.id in ("pq", "parquet"):
            out.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif attr in ("read", "iter_batches", "read_row_group", "read_row_groups") and _is_parquet_file(receiver, bound):
            single = any(k.arg == "use_threads" and isinstance(k.value, ast.Constant) and k.value.value is False
                         for k in node.keywords)
            if not single:
                out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


def test_the_check_finds_threaded_reads():
    assert threaded_reads("import pyarrow.parquet as pq\nt = pq.read_table(fh)\n")
    assert threaded_reads("pf = pq.ParquetFile(fh)\nfor b in pf.iter_batches(batch_size=8): pass\n")
    assert threaded_reads("t = pq.ParquetFile(fh).read(columns=['a'])\n")
    assert not threaded_reads("t = pq.ParquetFile(fh).read(columns=['a'], use_threads=False)\n")


def test_library_reads_parquet_on_the_calling_thread():
    offenders = {str(p.relative_to(ROOT)): found for p in LIBRARY if (found := threaded_reads(p.read_text()))}
    assert offenders == {}

"""The layers point one way: the pure library imports no Dagster, and nothing imports `dagster_project`
except `dagster_project` itself (and tests/bench, which drive it)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE = [p for p in (ROOT / "restem_assets").rglob("*.py") if "assets" not in p.relative_to(ROOT / "restem_assets").parts[:1]]


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_pure_library_imports_no_dagster():
    assert len(PURE) > 20
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "dagster")
                 for p in PURE}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pure_library_does_not_import_the_dagster_layer():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p)
                                                  if m.startswith(("restem_assets.assets", "dagster_project")))
                 for p in PURE}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_restem_assets_never_imports_dagster_project():
    files = list((ROOT / "restem_assets").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in files
                 if any(m.split(".")[0] == "dagster_project" for m in imported_modules(p))]
    assert offenders == []


def test_no_engine_imports_another_engine():
    engines = {"transformers_engine", "vllm_engine", "vllm_worker"}
    for name in engines:
        path = ROOT / "restem_assets" / "generation" / f"{name}.py"
        others = {m for m in imported_modules(path) if m.rsplit(".", 1)[-1] in engines - {name}}
        assert not others, f"{name} imports {others}"


def test_no_two_library_modules_share_a_name():
    """`evaluation` or `policy` must name one thing: every module (a .py file other than __init__.py)
    and every package (a folder of them) in restem_assets/ and dagster_project/ has its own name."""
    places: dict[str, list[str]] = {}
    for top in ("restem_assets", "dagster_project"):
        for path in (ROOT / top).rglob("*.py"):
            where = path.relative_to(ROOT)
            if path.name != "__init__.py":
                places.setdefault(path.stem, []).append(str(where))
            for folder in where.parents[:-1]:  # the packages it sits in, up to `top` itself
                places.setdefault(folder.name, []).append(f"{folder}/")
    shared = {name: sorted(set(where)) for name, where in places.items() if len(set(where)) > 1}
    assert shared == {}
    assert len(places) > 60, "the walk found the library"

import pyarrow as pa
import pytest

from restem_assets.store.schemas import SAMPLES, SFT_SET
from restem_assets.store.tables import ParquetStore, TableNotFoundError


def sft_row(pid: str, idx: int) -> dict:
    return {"problem_id": pid, "sample_idx": idx, "prompt": "p", "completion": f"c{idx}", "n_tokens": 3, "source": "self"}


def test_hive_layout_and_roundtrip(store):
    store.write_table("sft_set", [sft_row("a", 0), sft_row("b", 1)], SFT_SET, iteration=2)
    assert store.table_path("sft_set", 2).endswith("sft_set/iteration=2/part-0.parquet")
    assert store.read_table("sft_set", 2).num_rows == 2
    assert store.iterations("sft_set") == [2]
    assert store.glob_url("sft_set").endswith("sft_set/*/*.parquet")


def test_chunks_become_row_groups(store):
    with store.writer("sft_set", SFT_SET, iteration=1) as w:
        for chunk in range(5):
            w.write([sft_row("p", chunk * 10 + i) for i in range(10)])
    assert store.num_rows("sft_set", 1) == 50
    batches = list(store.iter_batches("sft_set", 1, batch_size=7))
    assert sum(b.num_rows for b in batches) == 50
    import pyarrow.parquet as pq

    assert pq.ParquetFile(store.table_path("sft_set", 1)).num_row_groups == 5


def test_failed_write_leaves_nothing_and_keeps_previous(store):
    store.write_table("sft_set", [sft_row("old", 0)], SFT_SET, iteration=1)
    with pytest.raises(RuntimeError):
        with store.writer("sft_set", SFT_SET, iteration=1) as w:
            w.write([sft_row("new", 0)])
            raise RuntimeError("boom mid-write")
    assert store.read_table("sft_set", 1).column("problem_id").to_pylist() == ["old"]
    leftovers = [p.rsplit("/", 1)[-1] for p in store.fs.ls(store.table_dir("sft_set", 1))]
    assert leftovers == ["part-0.parquet"]


def test_missing_columns_named(store):
    with pytest.raises(ValueError, match=r"lack columns \['completion', 'n_tokens', 'source'\]"):
        store.write_table("sft_set", [{"problem_id": "a", "sample_idx": 0, "prompt": "p"}], SFT_SET, iteration=1)


def test_missing_table_error_names_table_and_iteration(store):
    with pytest.raises(TableNotFoundError, match="iteration 3 of table 'samples'"):
        store.read_table("samples", 3)


def test_memory_fsspec_root():
    store = ParquetStore("memory://restem-test-store")
    store.write_table("sft_set", [sft_row("a", 0)], SFT_SET, iteration=1)
    assert store.read_table("sft_set", 1).num_rows == 1
    assert store.url(store.table_path("sft_set", 1)).startswith("memory://")


def test_arrow_input_is_cast_to_schema(store):
    t = pa.table({c: [None] for c in SAMPLES.names})
    store.write_table("samples", t, SAMPLES, iteration=1)
    assert store.read_table("samples", 1).schema == SAMPLES

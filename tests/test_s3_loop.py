"""The data root on S3: the whole tiny loop against a real S3-compatible server (moto) on 127.0.0.1.

Tables, models and reports are written to `s3://…` through s3fs, DuckDB reads the same
tables through the fsspec filesystem registered on its connection (no httpfs extension),
the fine-tuned model is loaded back from S3, and publishing stays atomic: a reader
never finds a table missing or half-written while it is being replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("s3fs", reason="the ray extra is not installed (pip install '.[ray]')")
pytest.importorskip("moto", reason="the ray extra is not installed (pip install '.[ray]')")

from tests.cluster_helpers import local_s3_server  # noqa: E402

RESTEM = str(Path(sys.executable).with_name("restem"))
ROOT = "s3://restem/data"
TRAIN, TEST, K, EVAL_K = 6, 4, 2, 2  # the tiny profile


@pytest.fixture
def s3_env(tmp_path, monkeypatch):
    """A fresh moto S3 server; this process and its children talk to it through the standard AWS variables."""
    import fsspec

    with local_s3_server(tmp_path) as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        fsspec.filesystem("s3").clear_instance_cache()
        yield env
        fsspec.filesystem("s3").clear_instance_cache()


def _s3():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


@pytest.mark.slow
def test_tiny_loop_with_the_data_root_on_s3(tmp_path, model_path, s3_env):
    env = dict(os.environ, RESTEM_BASE_MODEL=model_path, RESTEM_ENGINE="transformers", HF_HUB_OFFLINE="1",
               RESTEM_CACHE_DIR=str(tmp_path / "cache"))
    t0 = time.perf_counter()
    proc = subprocess.run([RESTEM, "run", "--profile", "tiny", "--iterations", "1", "--no-stop", "--data-root", ROOT,
                           "--dagster-home", str(tmp_path / "home")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"tiny loop on S3: {seconds:.0f} s")

    fs = _s3()
    keys = fs.find("restem/data")
    assert not [k for k in keys if ".tmp-" in k or "/.staging/" in k], "no temporary or staged file left"
    assert not (tmp_path / "data").exists() and not (tmp_path / "home" / "data").exists(), "nothing written locally"
    for table, iterations in {"samples": [1], "rewards": [1], "sft_set": [1], "finetune_log": [1],
                              "evaluations": [0, 1], "eval_samples": [0, 1]}.items():
        for i in iterations:
            assert f"restem/data/{table}/iteration={i}/part-0.parquet" in keys, (table, i)
    assert "restem/data/problems/part-0.parquet" in keys
    assert {"restem/data/reports/progress.md", "restem/data/reports/progress.png"} <= set(keys)
    (model_dir,) = {k.rsplit("/", 1)[0] for k in keys if k.startswith("restem/data/models/iteration=1/")}
    assert f"{model_dir}/config.json" in keys and f"{model_dir}/model.safetensors" in keys

    # DuckDB over the S3 tables (fsspec registered on the connection), and through `restem sql`
    from restem_assets.reporting.analytics import connect

    con = connect(ROOT)
    assert con.execute("select count(*) from samples where iteration = 1").fetchone()[0] == TRAIN * K
    assert con.execute("select count(*) from eval_samples").fetchone()[0] == 2 * TEST * (1 + EVAL_K)
    pairs = con.execute("select count(distinct (problem_id, sample_idx)) from rewards").fetchone()[0]
    assert pairs == TRAIN * K
    sql = subprocess.run([RESTEM, "sql", "pass_rate_per_iteration", "--data-root", ROOT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert sql.returncode == 0 and "pass_rate" in sql.stdout, sql.stderr[-2000:]

    # evaluation[1] sampled from the fine-tuned model on S3, downloaded to the local cache
    from restem_assets.store.tables import ParquetStore

    store = ParquetStore(ROOT)
    assert {r["policy_path"] for r in store.read_table("eval_samples", 1).to_pylist()} == {f"s3://{model_dir}"}
    assert list((tmp_path / "cache" / "remote").glob("*iteration=1*"))


def test_publish_over_an_s3_object_never_hides_it(s3_env):
    """Replacing a table on S3 while another thread reads it: every read finds a whole, valid file."""
    from restem_assets.store.tables import ParquetStore

    store = ParquetStore(ROOT)
    schema = pa.schema([("i", pa.int64()), ("text", pa.string())])
    store.write_table("t", [{"i": 0, "text": "x" * 100}], schema, iteration=1)
    path = store.table_path("t", 1)
    stop, seen, errors = threading.Event(), [], []

    def reader():
        # one GET per read, as a whole-file reader does (a ranged reader racing a replace gets s3fs's
        # FileExpired, the ETag check: an error, never a mix of two versions)
        fs = _s3()
        while not stop.is_set():
            try:
                seen.append(pq.read_table(pa.BufferReader(fs.cat_file(path))).num_rows)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the bug
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 13):
            store.write_table("t", [{"i": j, "text": "y" * 100} for j in range(n * 500)], schema, iteration=1)
    finally:
        stop.set()
        thread.join()
    assert errors == [] and len(seen) > 5
    assert store.num_rows("t", 1) == 12 * 500
    assert not [k for k in _s3().find("restem/data") if ".tmp-" in k]


def test_model_upload_publishes_config_last(tmp_path, s3_env):
    """A model directory on S3 becomes loadable (config.json present) only once every other file is there."""
    from restem_assets.store import atomic
    from restem_assets.models.model_cache import missing_model_files

    local = tmp_path / "model"
    local.mkdir()
    for name, payload in {"config.json": b"{}", "model.safetensors": b"w" * 1000, "tokenizer.json": b"{}"}.items():
        (local / name).write_bytes(payload)
    fs = _s3()
    final = "restem/data/models/iteration=1/version=abc"
    copied = []
    real_copy = fs.copy

    def recording_copy(src, dst, **kw):
        copied.append(dst.rsplit("/", 1)[-1])
        return real_copy(src, dst, **kw)

    fs.copy = recording_copy
    atomic.upload_dir(fs, local, final)
    assert copied[-1] == "config.json" and sorted(copied) == sorted(p.name for p in local.iterdir())
    assert sorted(k.rsplit("/", 1)[-1] for k in fs.find(final)) == sorted(p.name for p in local.iterdir())
    assert not [k for k in fs.find("restem/data") if ".tmp-" in k]
    download = tmp_path / "back"
    fs.get(final + "/", str(download), recursive=True)
    assert missing_model_files(download) == []

"""Bad input fails early and clearly, and leaves nothing half-written.

Each section is one kind of bad input: fine-tune settings that give zero optimizer
steps, a model directory without weights or tokenizer, a task whose train or test
split comes out empty, and a corrupt Parquet file in the store. Every error is one
line that names what is wrong and where; none of these tests needs the real model.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import dagster as dg
import pytest

from restem_assets.reporting import analytics
from restem_assets.assets import mstep
from restem_assets.assets.policy_lineage import POLICY_KEY, base_model, policy
from restem_assets.assets.problems import problems
from restem_assets.assets.resources import ModelResource, ReSTResource, StorageResource, TaskResource
from restem_assets.training.finetune import FinetuneSettings, finetune
from restem_assets.models.model_cache import ModelDirError, missing_model_files, resolve_model
from restem_assets.store.tables import CorruptTableError, ParquetStore

sys.path.insert(0, str(Path(__file__).parent))
from test_sql import write_history  # noqa: E402  (the hand-checked history the SQL tests use)

# The files of the embedded model's directory (restem_assets/models/model_cache.py writes them).
EMBEDDED_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "chat_template.jinja")
WEIGHTS_MISSING = "weights (*.safetensors or pytorch_model*.bin)"
TOKENIZER_MISSING = "tokenizer (tokenizer.json, tokenizer.model or vocab.json+merges.txt)"


def model_dir(path: Path, files) -> Path:
    """A directory holding `files` as tiny dummies (enough for the set-up check, not to load)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text("{}")
    return path


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The top-level error message of the run's (only) failed step, as the webserver shows it."""
    failures = result.get_step_failure_events()
    assert len(failures) == 1, [f.step_key for f in failures]
    return failures[0].step_failure_data.error.message.strip()


# -- 1. fine-tune settings that give zero optimizer steps -------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "rest.epochs = 0 gives zero optimizer steps: nothing would be trained; "
                        "set epochs > 0 or finetune_max_steps > 0"),
        ({"epochs": -1.5}, "rest.epochs = -1.5 gives zero optimizer steps"),
        ({"epochs": 0, "finetune_max_steps": -1}, "rest.epochs = 0 gives zero optimizer steps"),
        ({"finetune_max_steps": 0}, "rest.finetune_max_steps = 0 gives zero optimizer steps"),
        ({"epochs": 0, "finetune_max_steps": 0}, "rest.finetune_max_steps = 0 gives zero optimizer steps"),
        ({"epochs": float("nan")}, "rest.epochs must be a finite number"),
        ({"learning_rate": -1e-5}, "rest.learning_rate must be a finite number >= 0, got -1e-05"),
        ({"batch_size": 0}, "rest.batch_size must be an int >= 1, got 0"),
        ({"batch_size": -4}, "rest.batch_size must be an int >= 1, got -4"),
        ({"finetune_method": "lora", "lora_rank": 0}, "rest.lora_rank must be an int >= 1"),
    ],
)
def test_finetune_settings_refused(kwargs, message):
    with pytest.raises(ValueError) as exc:
        FinetuneSettings(**kwargs)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("kwargs", [{"epochs": 0, "finetune_max_steps": 2}, {"epochs": 0.5}, {"finetune_max_steps": 1}, {}])
def test_finetune_settings_with_steps_accepted(kwargs):
    """Accepted as given: every field is the value passed or the default, none clamped or reset."""
    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneSettings)}
    assert dataclasses.asdict(FinetuneSettings(**kwargs)) == {**defaults, **kwargs}


class _State:
    global_step = 0
    log_history: list = []


class _NoStepTrainer:
    """Stands in for TRL's SFTTrainer: train() takes no optimizer step, saving would be the bug."""

    def __init__(self, model, **kwargs):
        self.model = model
        self.state = _State()

    def train(self):
        pass


class _FakeTokenizer:
    pad_token = None
    eos_token = "<eos>"

    @staticmethod
    def from_pretrained(path, **kwargs):
        return _FakeTokenizer()

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}

    def save_pretrained(self, path):
        raise AssertionError("the tokenizer was saved although nothing was trained")


class _FakeModel:
    @staticmethod
    def from_pretrained(path, **kwargs):
        return _FakeModel()

    def save_pretrained(self, path, **kwargs):
        raise AssertionError("the model was saved although nothing was trained")


def test_finetune_zero_steps_after_training_writes_nothing(tmp_path, monkeypatch):
    """If the trainer ends at global_step 0 (whatever the reason), no model directory appears."""
    import transformers
    import trl

    # Patch the loaders on the real classes: transformers' lazy module may re-resolve its names.
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", _FakeTokenizer.from_pretrained)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _FakeModel.from_pretrained)
    monkeypatch.setattr(trl, "SFTTrainer", _NoStepTrainer)
    out = tmp_path / "models" / "iteration=1"
    records = [{"prompt": [{"role": "user", "content": "1 + 1"}],
                "completion": [{"role": "assistant", "content": "2"}]}]
    with pytest.raises(ValueError, match=r"zero optimizer steps on 1 records .*nothing written to .*iteration=1"):
        finetune("unused", records, out, FinetuneSettings(finetune_dtype="float32", finetune_max_steps=1))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no model, no staged leftovers


def test_finetune_asset_zero_epochs_reports_no_policy(tmp_path):
    """rest.epochs = 0: the finetune step fails naming the setting; no policy[1], no model directory."""
    root = tmp_path / "data"
    store = ParquetStore(str(root))
    write_history(store)  # problems and sft_set[1]
    res = {
        "storage": StorageResource(root=str(root)),
        "model": ModelResource(base_model=str(model_dir(tmp_path / "base", EMBEDDED_MODEL_FILES))),
        "rest": ReSTResource(epochs=0),
    }
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([base_model, policy], resources=res, instance=instance)  # reports policy[0]
    result = dg.materialize([policy, mstep.finetune], resources=res, instance=instance, partition_key="1",
                            raise_on_error=False)
    assert not result.success
    error = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "rest.epochs = 0 gives zero optimizer steps" in error
    reported = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=POLICY_KEY, asset_partitions=["1"]), limit=1).records
    assert reported == []
    assert not (root / "models").exists()


# -- 2. a model directory without weights or tokenizer ---------------------------------------------
def test_model_dir_with_only_config(tmp_path):
    path = model_dir(tmp_path / "m", ["config.json"])
    with pytest.raises(ModelDirError) as exc:
        resolve_model(str(path))
    assert str(exc.value) == f"model directory {path} is not usable: missing {WEIGHTS_MISSING}, {TOKENIZER_MISSING}"


def test_model_dir_without_tokenizer(tmp_path):
    path = model_dir(tmp_path / "m", ["config.json", "model.safetensors", "tokenizer_config.json"])
    with pytest.raises(ModelDirError) as exc:
        resolve_model(f"file://{path}")
    assert str(exc.value) == f"model directory {path} is not usable: missing {TOKENIZER_MISSING}"


def test_model_dir_without_config(tmp_path):
    path = model_dir(tmp_path / "m", ["model.safetensors", "tokenizer.json"])
    with pytest.raises(ModelDirError, match=r"is not usable: missing config \(config.json\)$"):
        resolve_model(str(path))


def test_good_model_dir(tmp_path):
    path = model_dir(tmp_path / "m", EMBEDDED_MODEL_FILES)
    assert resolve_model(str(path)) == str(path)
    assert missing_model_files(path) == []


@pytest.mark.parametrize(
    "files",
    [
        ["config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json"],
        ["config.json", "model.safetensors.index.json", "tokenizer.model"],
        ["config.json", "pytorch_model.bin", "vocab.json", "merges.txt"],
        ["config.json", "pytorch_model.bin.index.json", "tokenizer_config.json", "tokenizer.json"],
    ],
)
def test_other_weight_and_tokenizer_layouts(tmp_path, files):
    assert missing_model_files(model_dir(tmp_path / "m", files)) == []


@pytest.mark.parametrize(
    "files, missing",
    [
        (["config.json", "model.safetensors", "vocab.json"], [TOKENIZER_MISSING]),  # merges.txt missing
        (["config.json", "model.safetensors", "tokenizer_config.json"], [TOKENIZER_MISSING]),
        (["config.json", "model.bin", "tokenizer.json"], [WEIGHTS_MISSING]),
        ([], ["config (config.json)", WEIGHTS_MISSING, TOKENIZER_MISSING]),
    ],
)
def test_incomplete_layouts(tmp_path, files, missing):
    assert missing_model_files(model_dir(tmp_path / "m", files)) == missing


def test_remote_model_without_tokenizer_is_not_cached(tmp_path, monkeypatch):
    import fsspec

    monkeypatch.setenv("RESTEM_CACHE_DIR", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    url = f"memory://bad-input-{tmp_path.name}/model"
    for name in ("config.json", "model.safetensors"):
        fs.pipe(f"{url}/{name}", b"{}")
    try:
        with pytest.raises(ModelDirError) as exc:
            resolve_model(url)
        assert str(exc.value) == f"model URL {url} is not usable: missing {TOKENIZER_MISSING}"
        remote = tmp_path / "cache" / "remote"
        assert not remote.exists() or list(remote.iterdir()) == []
    finally:
        fs.rm(url, recursive=True)


def test_base_model_asset_fails_at_set_up_naming_what_is_missing(tmp_path):
    path = model_dir(tmp_path / "m", ["config.json"])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([base_model, policy], resources={"model": ModelResource(base_model=str(path)),
                                                            "storage": StorageResource(root=str(tmp_path / "data"))},
                            instance=instance, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert f"model directory {path} is not usable: missing {WEIGHTS_MISSING}, {TOKENIZER_MISSING}" in message
    assert "\n" not in message
    assert instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=POLICY_KEY), limit=1).records == []


# -- 3. an empty train or test split --------------------------------------------------------------
def gsm8k_file(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"})
                            + "\n" for i in range(n)))
    return path


def _problems_run(root: Path, task: TaskResource, instance: dg.DagsterInstance, raise_on_error=True):
    return dg.materialize([problems], resources={"storage": StorageResource(root=str(root)), "task": task},
                          instance=instance, raise_on_error=raise_on_error)


@pytest.fixture
def good_problems(tmp_path):
    """A store whose problems table was written from a good GSM8K file; returns (root, the table's bytes)."""
    root = tmp_path / "data"
    good = gsm8k_file(tmp_path / "good.jsonl", 20)
    _problems_run(root, TaskResource(kind="gsm8k", train_path=str(good), test_fraction=0.3, test_size=None,
                                     train_size=None), dg.DagsterInstance.ephemeral())
    table = Path(ParquetStore(str(root)).table_path("problems"))
    return root, table, table.read_bytes()


def test_empty_problem_file_fails_and_keeps_old_table(tmp_path, good_problems):
    root, table, before = good_problems
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = _problems_run(root, TaskResource(kind="gsm8k", train_path=str(empty)), dg.DagsterInstance.ephemeral(),
                           raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert str(empty) in message and "no usable rows" in message
    assert table.read_bytes() == before
    assert sorted(p.name for p in table.parent.iterdir()) == ["part-0.parquet"]  # no staged leftovers


@pytest.mark.parametrize(
    "task_kwargs, empty_split",
    [
        ({"test_size": 0}, "test"),  # a file with test_size=0: the loader itself does not object
        ({"train_size": 0}, "train"),
        ({"test_fraction": 0.0, "test_size": None}, "test"),
    ],
)
def test_empty_split_fails_naming_the_file_and_keeps_old_table(tmp_path, good_problems, task_kwargs, empty_split):
    root, table, before = good_problems
    source = gsm8k_file(tmp_path / "other.jsonl", 5)
    task = TaskResource(kind="gsm8k", train_path=str(source), **task_kwargs)
    result = _problems_run(root, task, dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert f"train_path={source}" in message
    assert f"the {empty_split} split is empty" in message and "problems table not written" in message
    assert "\n" not in message
    assert table.read_bytes() == before


def test_empty_test_file_named(tmp_path, good_problems):
    root, table, before = good_problems
    train = gsm8k_file(tmp_path / "train.jsonl", 5)
    test = tmp_path / "test.jsonl"
    test.write_text("\n")
    result = _problems_run(root, TaskResource(kind="gsm8k", train_path=str(train), test_path=str(test)),
                           dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert str(test) in failure_message(result)
    assert table.read_bytes() == before


# -- 4. a corrupt Parquet file -------------------------------------------------------------------------
@pytest.fixture
def corrupt_store(tmp_path):
    """The SQL tests' history with rewards[1] overwritten by garbage; returns (root, store, the bad file)."""
    root = str(tmp_path / "data")
    store = ParquetStore(root)
    write_history(store)
    bad = Path(store.table_path("rewards", 1))
    bad.write_bytes(b"this is not a parquet file" * 10)
    return root, store, bad


def test_queries_over_other_tables_still_work(corrupt_store):
    root, _, _ = corrupt_store
    con = analytics.connect(root)  # creating the views opens no file
    try:
        assert analytics.query_df(con, "sft_set_per_iteration").height == 2
        assert analytics.query_df(con, "completion_length").height == 6
        assert con.execute("SELECT count(*) FROM samples").fetchone() == (18,)
        assert con.execute("SELECT count(*) FROM problems").fetchone() == (7,)
    finally:
        con.close()
    assert analytics.run_query(root, "sft_set_per_iteration").height == 2


@pytest.mark.parametrize("query", ["reward_reasons", "pass_rate_per_iteration", "samples_per_problem"])
def test_query_over_the_corrupt_table_names_the_file(corrupt_store, query):
    root, _, bad = corrupt_store
    with pytest.raises(CorruptTableError) as exc:
        analytics.run_query(root, query)
    message = str(exc.value)
    assert str(bad) in message and "table 'rewards' (iteration 1)" in message and f"query {query!r}" in message
    assert "\n" not in message


def test_truncated_file_named(corrupt_store):
    root, store, bad = corrupt_store
    good = Path(store.table_path("rewards", 2)).read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptTableError, match="rewards/iteration=1/part-0.parquet"):
        analytics.run_query(root, "reward_reasons")


def test_corrupt_pages_with_a_good_footer_named(corrupt_store):
    """Garbage in the data pages (the footer intact): DuckDB's error names no file, the scan finds it."""
    root, store, bad = corrupt_store
    data = bytearray(Path(store.table_path("rewards", 2)).read_bytes())
    data[8: len(data) // 2] = b"\x5a" * (len(data) // 2 - 8)
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptTableError) as exc:
        analytics.run_query(root, "reward_reasons")
    assert str(bad) in str(exc.value)
    with pytest.raises(CorruptTableError, match="rewards/iteration=1/part-0.parquet"):
        store.read_table("rewards", 1)


def test_cli_prints_one_line_naming_the_file(corrupt_store, capsys):
    root, _, bad = corrupt_store
    assert analytics.print_query(root, "reward_reasons") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and err.startswith("restem sql: ")


def test_sql_errors_are_not_blamed_on_files(corrupt_store):
    root, _, _ = corrupt_store
    con = analytics.connect(root)
    try:
        import duckdb

        with pytest.raises(duckdb.BinderException):
            con.sql("SELECT no_such_column FROM samples").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("read", [
    lambda s: s.read_table("rewards", 1),
    lambda s: s.read_table("rewards", 1, columns=["reward"]),
    lambda s: s.head("rewards", 1),
    lambda s: list(s.iter_batches("rewards", 1)),
    lambda s: s.num_rows("rewards", 1),
], ids=["read_table", "read_table_columns", "head", "iter_batches", "num_rows"])
def test_store_reads_name_the_corrupt_file(corrupt_store, read):
    _, store, bad = corrupt_store
    with pytest.raises(CorruptTableError) as exc:
        read(store)
    message = str(exc.value)
    assert str(bad) in message and "iteration 1 of table 'rewards'" in message and "\n" not in message
    assert store.read_table("rewards", 2).num_rows == 9  # the other iteration reads as before


def test_store_missing_column_is_not_corruption(corrupt_store):
    _, store, _ = corrupt_store
    with pytest.raises(ValueError, match=r"table 'rewards' has no columns \['nope'\]") as exc:
        store.read_table("rewards", 2, columns=["reward", "nope"])
    assert not isinstance(exc.value, CorruptTableError)


def test_materialize_error_names_the_corrupt_file(tmp_path):
    """A step that reads a corrupt table (finetune[1] reads problems) fails naming the file, writes no model."""
    root = tmp_path / "data"
    store = ParquetStore(str(root))
    write_history(store)
    bad = Path(store.table_path("problems"))
    bad.write_bytes(b"\x00" * 64)
    res = {
        "storage": StorageResource(root=str(root)),
        "model": ModelResource(base_model=str(model_dir(tmp_path / "base", EMBEDDED_MODEL_FILES))),
        "rest": ReSTResource(finetune_max_steps=1),
    }
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([base_model, policy], resources=res, instance=instance)
    result = dg.materialize([policy, mstep.finetune], resources=res, instance=instance, partition_key="1",
                            raise_on_error=False)
    assert not result.success
    assert str(bad) in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert not (root / "models").exists()

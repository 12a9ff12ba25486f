"""APPS and HumanEval loaders: PROBLEMS rows, stable ids, deterministic splits, clear errors."""

import json
import logging
import re
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from restem_assets.store.schemas import PROBLEMS
from restem_assets.tasks.code_datasets import load_apps, load_humaneval, read_apps
from restem_assets.tasks.spec import TaskSpec

FIXTURE = Path(__file__).parent / "fixtures" / "apps_sample.jsonl"
RAW = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
N_TESTABLE = sum(1 for r in RAW if r["input_output"])


def apps_spec(**kw) -> TaskSpec:
    base = dict(kind="apps", name="apps", train_path=str(FIXTURE), train_size=None, test_size=None, test_fraction=0.3)
    return TaskSpec(**{**base, **kw})


def write_jsonl(path: Path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_apps_rows_follow_the_problems_schema(caplog):
    with caplog.at_level(logging.WARNING):
        rows = load_apps(apps_spec())
    assert len(rows) == N_TESTABLE  # the row without tests is skipped ...
    assert "without test cases" in caplog.text  # ... and said so
    pa.Table.from_pylist(rows, schema=PROBLEMS)  # every column present with the right type
    for row in rows:
        assert re.fullmatch(r"apps-[0-9a-f]{12}", row["problem_id"])
        assert (row["task"], row["domain"], row["verifier"], row["answer"]) == ("apps", "code", "code", "")
        assert row["split"] in ("train", "test")
        meta = json.loads(row["metadata"])
        assert meta["format"] == "apps"
        assert len(meta["input_output"]["inputs"]) == len(meta["input_output"]["outputs"]) > 0
        assert "I/O mode:" in row["question"]


def test_apps_question_solution_and_metadata_content():
    rows = {json.loads(r["metadata"])["source_problem_id"]: r for r in load_apps(apps_spec())}
    raw = {r["problem_id"]: r for r in RAW}
    two_sum = rows[2502]
    meta = json.loads(two_sum["metadata"])
    assert meta["input_output"]["fn_name"] == "twoSum"
    assert meta["starter_code"].startswith("class Solution:")
    assert meta["difficulty"] == "interview"
    assert "class Solution:" in two_sum["question"] and "call-based" in two_sum["question"]
    assert two_sum["solution"] == json.loads(raw[2502]["solutions"])[0]
    a_plus_b = rows[4001]
    assert "standard input/output" in a_plus_b["question"]
    assert "fn_name" not in json.loads(a_plus_b["metadata"])["input_output"]


def test_apps_ids_and_splits_do_not_depend_on_file_order(tmp_path):
    forward = {r["problem_id"]: r["split"] for r in load_apps(apps_spec())}
    reversed_path = write_jsonl(tmp_path / "reversed.jsonl", list(reversed(RAW)))
    backward = {r["problem_id"]: r["split"] for r in load_apps(apps_spec(train_path=reversed_path))}
    assert forward == backward
    assert [r["problem_id"] for r in load_apps(apps_spec())] == [r["problem_id"] for r in load_apps(apps_spec())]


def test_test_fraction_and_seed_drive_the_split():
    assert {r["split"] for r in load_apps(apps_spec(test_fraction=0.0))} == {"train"}
    assert {r["split"] for r in load_apps(apps_spec(test_fraction=1.0))} == {"test"}
    splits = {seed: tuple(r["split"] for r in sorted(load_apps(apps_spec(seed=seed)), key=lambda r: r["problem_id"]))
              for seed in range(12)}  # fmt: skip
    assert len(set(splits.values())) > 1  # the seed changes which problems are held out


def test_sizes_limit_each_split():
    rows = load_apps(apps_spec(test_fraction=0.5, train_size=1, test_size=1))
    assert sorted(r["split"] for r in rows) == ["test", "train"]
    assert len(load_apps(apps_spec(test_fraction=0.0, train_size=2))) == 2


def test_separate_test_file(tmp_path):
    test_path = write_jsonl(tmp_path / "test.jsonl", RAW[:2])
    rows = load_apps(apps_spec(test_path=test_path))
    by_split = {s: {r["problem_id"] for r in rows if r["split"] == s} for s in ("train", "test")}
    assert len(by_split["test"]) == 2
    assert len(by_split["train"]) == N_TESTABLE - 2  # problems of the test file are not trained on
    assert not by_split["train"] & by_split["test"]


def test_memory_url_jsonl_and_parquet():
    fs = fsspec.filesystem("memory")
    base = f"memory://restem-tests-{uuid.uuid4().hex}"
    with fs.open(f"{base}/apps.jsonl", "wb") as f:
        f.write(FIXTURE.read_bytes())
    with fs.open(f"{base}/apps.parquet", "wb") as f:
        pq.write_table(pa.Table.from_pylist(RAW), f)
    local = {r["problem_id"] for r in load_apps(apps_spec())}
    assert {r["problem_id"] for r in load_apps(apps_spec(train_path=f"{base}/apps.jsonl"))} == local
    assert {r["problem_id"] for r in load_apps(apps_spec(train_path=f"{base}/apps.parquet"))} == local
    fs.rm(base, recursive=True)


def test_local_parquet(tmp_path):
    path = tmp_path / "apps.parquet"
    pq.write_table(pa.Table.from_pylist(RAW), path)
    assert len(load_apps(apps_spec(train_path=str(path)))) == N_TESTABLE


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input_output": "{not json"}, "input_output"),
        ({"input_output": json.dumps({"inputs": ["1\n"], "outputs": []})}, "input_output"),
        ({"input_output": json.dumps({"inputs": "1", "outputs": "2"})}, "input_output"),
        ({"input_output": json.dumps({"inputs": [[1]], "outputs": [[1]], "fn_name": "not an id"})}, "fn_name"),
        ({"question": None}, "question"),
        ({"question": ""}, "question"),
        ({"solutions": "[1, 2]"}, "solutions"),
        ({"solutions": "nope"}, "solutions"),
        ({"starter_code": 3}, "starter_code"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, change, field):
    records = [dict(r) for r in RAW[:3]]
    records[2].update(change)
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(ValueError) as err:
        read_apps(path)
    message = str(err.value)
    # rows count from 1, as an editor counts lines (one rule for every loader: records.Record)
    assert f"{path}: row 3: field '" in message and field in message


def test_a_line_that_is_not_json(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(RAW[0]) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"broken\.jsonl: row 2: not valid JSON"):  # line 2, counted from 1
        read_apps(str(path))


def test_apps_requires_a_train_path():
    with pytest.raises(ValueError, match="train_path is required"):
        load_apps(TaskSpec(kind="apps", train_path=None))


def test_humaneval_bundled_problems():
    spec = TaskSpec(kind="humaneval", name="humaneval", train_size=None, test_size=None, test_fraction=0.3)
    rows = load_humaneval(spec)
    assert len(rows) == 164
    pa.Table.from_pylist(rows, schema=PROBLEMS)
    ids = {r["problem_id"] for r in rows}
    assert "humaneval-HumanEval-0" in ids and "humaneval-HumanEval-163" in ids
    n_test = sum(r["split"] == "test" for r in rows)
    assert 30 < n_test < 70  # about 30% of 164
    row = next(r for r in rows if r["problem_id"] == "humaneval-HumanEval-0")
    meta = json.loads(row["metadata"])
    assert meta["format"] == "humaneval" and meta["entry_point"] == "has_close_elements"
    assert row["question"] == meta["prompt"] and "def check(candidate)" in meta["test"]
    assert row["solution"].strip().startswith("for idx")  # the canonical solution (a body)
    assert load_humaneval(spec) == rows  # deterministic


def test_humaneval_limits_and_kind_check():
    rows = load_humaneval(TaskSpec(kind="humaneval", train_size=10, test_size=5))
    assert sum(r["split"] == "train" for r in rows) == 10 and sum(r["split"] == "test" for r in rows) == 5
    with pytest.raises(ValueError, match="kind='humaneval'"):
        load_humaneval(TaskSpec(kind="apps"))


def test_humaneval_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "he.jsonl", [{"task_id": "X/0", "prompt": "def f():\n", "entry_point": "f"}])
    with pytest.raises(ValueError, match=r"he\.jsonl: row 1: field 'test' is missing"):  # rows count from 1
        load_humaneval(TaskSpec(kind="humaneval", train_path=path))


def test_apps_id_is_the_shared_problem_id():
    from restem_assets.tasks.code_datasets import apps_problem_id
    from restem_assets.tasks.problem_ids import problem_id

    io = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
    blob = json.dumps(["Add.", "", io], sort_keys=True, ensure_ascii=False)
    assert apps_problem_id("Add.", "", io) == problem_id("apps", blob)
    assert re.fullmatch(r"apps-[0-9a-f]{12}", apps_problem_id("Add.", "", io))


def test_a_file_without_testable_problems_or_an_empty_split_names_the_file(tmp_path):
    untested = write_jsonl(tmp_path / "untested.jsonl", [r for r in RAW if not r["input_output"]])
    with pytest.raises(ValueError, match=r"untested\.jsonl: no usable rows \(1 APPS problems without test cases"):
        load_apps(apps_spec(train_path=untested))
    with pytest.raises(ValueError, match=r"apps_sample\.jsonl with test_fraction=0\.0 .*test split is empty, but test_size=2"):
        load_apps(apps_spec(test_fraction=0.0, test_size=2))


def test_limits_keep_file_order_and_do_not_depend_on_it(tmp_path):
    # one limit rule for every loader: the N smallest seeded id hashes, listed in file order
    picked = [r["problem_id"] for r in load_apps(apps_spec(test_fraction=0.0, train_size=3))]
    every = [r["problem_id"] for r in load_apps(apps_spec(test_fraction=0.0))]
    assert picked == [pid for pid in every if pid in picked]
    reversed_path = write_jsonl(tmp_path / "reversed.jsonl", list(reversed(RAW)))
    backwards = [r["problem_id"] for r in load_apps(apps_spec(train_path=reversed_path, test_fraction=0.0, train_size=3))]
    assert backwards == list(reversed(picked))

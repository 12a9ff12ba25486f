"""Problem loaders: reasoning-gym tasks, GSM8K/MATH files, and the PROBLEMS table they produce."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import sys
import types
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from restem_assets.store.schemas import PROBLEMS
from restem_assets.tasks import reasoning_gym_tasks
from restem_assets.tasks.records import file_format
from restem_assets.tasks.loading import load_problems, problems_table, score_reasoning_gym
from restem_assets.tasks.problem_ids import problem_id
from restem_assets.tasks.spec import DEFAULT_CHAIN_SUM_CONFIG, TaskSpec

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K_TRAIN = str(FIXTURES / "gsm8k_train.jsonl")
GSM8K_TEST = str(FIXTURES / "gsm8k_test.jsonl")
MATH_TRAIN = str(FIXTURES / "math_train.jsonl")
MATH_TEST = str(FIXTURES / "math_test.parquet")


def split_rows(table: pa.Table, split: str) -> list[dict]:
    return [r for r in table.to_pylist() if r["split"] == split]


def questions(table: pa.Table, split: str) -> list[str]:
    return [r["question"] for r in split_rows(table, split)]


def assert_disjoint_and_unique(table: pa.Table) -> None:
    train, test = questions(table, "train"), questions(table, "test")
    assert len(set(train)) == len(train), "repeated question inside train"
    assert len(set(test)) == len(test), "repeated question inside test"
    assert not set(train) & set(test), "a test question also appears in train"
    ids = table.column("problem_id").to_pylist()
    assert len(set(ids)) == len(ids)


def file_task(kind: str, train_path: str, test_path: str):
    """`spec(**kwargs)`: a TaskSpec of `kind` over the two fixture files, every row kept, `kwargs` on top."""

    def spec(**kwargs) -> TaskSpec:
        return TaskSpec(**{"kind": kind, "train_path": train_path, "test_path": test_path, "train_size": None,
                           "test_size": None, **kwargs})

    return spec


def load_fixture_splits(spec: TaskSpec) -> tuple[list[dict], list[dict]]:
    """(train rows, test rows) of a fixture pair (6 train and 5 test problems), after the table checks."""
    table = load_problems(spec)
    assert table.schema.equals(PROBLEMS)
    train, test = split_rows(table, "train"), split_rows(table, "test")
    assert len(train) == 6 and len(test) == 5
    assert_disjoint_and_unique(table)
    return train, test


def assert_memory_urls_match_local(spec) -> None:
    """The fixture files copied to memory:// load to the same table as the local files."""
    local = load_problems(spec())
    train_url, test_url = copy_to_memory(spec().train_path, spec().test_path)
    assert load_problems(spec(train_path=train_url, test_path=test_url)).equals(local)


@pytest.fixture(scope="module")
def default_table() -> pa.Table:
    return load_problems(TaskSpec())


# -- reasoning-gym: the default chain_sum task ----------------------------------------------------


def test_default_task_sizes_schema_and_columns(default_table):
    assert default_table.schema.equals(PROBLEMS)
    assert len(split_rows(default_table, "train")) == 256
    assert len(split_rows(default_table, "test")) == 128
    assert set(default_table.column("task").to_pylist()) == {"chain_sum"}
    assert set(default_table.column("domain").to_pylist()) == {"math"}
    assert set(default_table.column("verifier").to_pylist()) == {"math"}
    # train rows come first
    assert default_table.column("split").to_pylist() == ["train"] * 256 + ["test"] * 128


def test_default_task_is_disjoint_by_content(default_table):
    assert_disjoint_and_unique(default_table)


def test_default_task_uses_easy_config_and_correct_gold(default_table):
    for row in default_table.to_pylist():
        meta = json.loads(row["metadata"])
        assert meta["dataset"] == "chain_sum" and meta["config"] == DEFAULT_CHAIN_SUM_CONFIG
        expression = meta["entry"]["metadata"]["expression"]
        assert row["question"].endswith(f"{expression} =")
        numbers = [int(n) for n in re.findall(r"\d+", expression)]
        assert 2 <= len(numbers) <= 3 and all(0 <= n <= 99 for n in numbers)
        assert row["answer"] == str(eval(expression))  # noqa: S307 - digits and +/- only


def test_default_task_is_deterministic(default_table):
    reasoning_gym_tasks._dataset.cache_clear()  # rebuild the generator, not just reuse it
    again = load_problems(TaskSpec())
    assert again.equals(default_table)


def test_problem_ids_are_content_derived(default_table):
    for row in default_table.to_pylist()[:20]:
        assert row["problem_id"] == f"chain_sum-{hashlib.sha1(row['question'].encode()).hexdigest()[:12]}"
    # a literal, so a change in the id scheme (and thus every stored table) is noticed
    question = "State the final answer to the following arithmetic problem: 0 + 1 + 9 ="
    assert problem_id("chain_sum", question) == "chain_sum-43cbe857556c"


def test_reasoning_gym_seeds_only_shift_items():
    """Why splits never come from two seeds: seed s+1 item i is seed s item i+1."""
    import reasoning_gym

    a = reasoning_gym.create_dataset("chain_sum", seed=1, size=10, **DEFAULT_CHAIN_SUM_CONFIG)
    b = reasoning_gym.create_dataset("chain_sum", seed=2, size=10, **DEFAULT_CHAIN_SUM_CONFIG)
    assert [b[i]["question"] for i in range(5)] == [a[i + 1]["question"] for i in range(5)]


def test_small_config_needs_dedup_and_stays_disjoint():
    # 2 one-digit terms: only 200 distinct questions, so the raw pool repeats itself.
    config = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
    spec = TaskSpec(name="chain_sum", config=config, train_size=100, test_size=50, seed=7)
    raw = reasoning_gym_tasks._dataset("chain_sum", json.dumps({**DEFAULT_CHAIN_SUM_CONFIG, **config}, sort_keys=True), 7, 150)
    raw_questions = [raw[i]["question"] for i in range(150)]
    assert len(set(raw_questions)) < 150, "premise: without dedup the first 150 items repeat"
    table = load_problems(spec)
    assert len(questions(table, "train")) == 100 and len(questions(table, "test")) == 50
    assert_disjoint_and_unique(table)


def test_too_few_unique_questions_is_a_clear_error():
    config = {"min_terms": 1, "max_terms": 1, "min_digits": 1, "max_digits": 1}  # only 10 questions exist
    with pytest.raises(ValueError, match=r"only 10 unique questions.*train_size \+ test_size = 13"):
        load_problems(TaskSpec(name="chain_sum", config=config, train_size=8, test_size=5))


@pytest.mark.parametrize(
    "spec, message",
    [
        (TaskSpec(name="no_such_dataset"), "unknown reasoning-gym dataset 'no_such_dataset'"),
        (TaskSpec(name="chain_sum", config={"max_term": 3}), "bad config for reasoning-gym dataset 'chain_sum'"),
        (TaskSpec(name="chain_sum", config={"min_terms": 3, "max_terms": 2}), "invalid config"),
        (TaskSpec(name="chain_sum", config={"seed": 3}), "must not set \\['seed'\\]"),
        (TaskSpec(name="chain_sum", train_size=None), "train_size must be set"),
    ],
)
def test_bad_reasoning_gym_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        load_problems(spec)


# -- reasoning-gym: other datasets, graded by their own score_answer -----------------------------


def test_basic_arithmetic_rows_and_own_scoring():
    spec = TaskSpec(name="basic_arithmetic", config={"max_terms": 4, "max_digits": 2}, train_size=40, test_size=20, seed=3)
    table = load_problems(spec)
    assert table.schema.equals(PROBLEMS)
    assert len(questions(table, "train")) == 40 and len(questions(table, "test")) == 20
    assert_disjoint_and_unique(table)
    assert set(table.column("verifier").to_pylist()) == {"reasoning_gym"}
    assert set(table.column("domain").to_pylist()) == {"math"}
    for row in table.to_pylist()[:10]:
        assert score_reasoning_gym(row["answer"], row["metadata"]) == 1.0
        assert score_reasoning_gym(row["answer"] + "1", row["metadata"]) < 1.0
        assert score_reasoning_gym(None, row["metadata"]) == 0.0


def test_gsm_symbolic_partial_score_for_wrong_answer():
    table = load_problems(TaskSpec(name="gsm_symbolic", train_size=4, test_size=2))
    assert_disjoint_and_unique(table)
    row = table.to_pylist()[0]
    assert row["verifier"] == "reasoning_gym" and row["solution"].endswith(f"#### {row['answer']}")
    assert score_reasoning_gym(row["answer"], row["metadata"]) == 1.0
    wrong = str(int(row["answer"]) + 1)
    assert 0.0 < score_reasoning_gym(wrong, row["metadata"]) < 1.0  # 0.01: the caller must test == 1.0


def test_metadata_roundtrip_keeps_tuples_sets_and_int_keys():
    entry = {"answer": "x", "metadata": {"output": ((1, 2), (3, 4)), "seen": {"b", "a"}, "by_idx": {0: "z"}, "l": [1]}}
    encoded = json.dumps(reasoning_gym_tasks._encode(entry))
    assert json.loads(encoded, object_hook=reasoning_gym_tasks._decode_hook) == entry


def test_grader_comparing_tuples_scores_its_own_answer():
    # rearc compares the parsed answer grid (tuple of tuples) with metadata["output"];
    # plain JSON would hand it lists and score every correct answer 0.05.
    table = load_problems(TaskSpec(name="rearc", train_size=2, test_size=1))
    for row in table.to_pylist():
        assert score_reasoning_gym(row["answer"], row["metadata"]) == 1.0


def test_score_reasoning_gym_rejects_foreign_metadata():
    with pytest.raises(ValueError, match="not a reasoning-gym record"):
        score_reasoning_gym("1", json.dumps({"level": "Level 2"}))
    with pytest.raises(ValueError, match="not a reasoning-gym record"):
        score_reasoning_gym("1", "not json")


# -- GSM8K ----------------------------------------------------------------------------------------


gsm8k_spec = file_task("gsm8k", GSM8K_TRAIN, GSM8K_TEST)


def copy_to_memory(*paths: str) -> list[str]:
    """Put fixture files under a fresh memory:// directory; returns their URLs."""
    fs = fsspec.filesystem("memory")
    root = f"/restem-test-{uuid.uuid4().hex}"
    urls = []
    for path in paths:
        target = f"{root}/{Path(path).name}"
        fs.pipe(target, Path(path).read_bytes())
        urls.append(f"memory://{target}")
    return urls


def test_gsm8k_local_files():
    train, test = load_fixture_splits(gsm8k_spec())
    first = train[0]
    assert first["question"].startswith("Natalia sold clips")
    assert first["answer"] == "72"
    assert first["solution"].endswith("#### 72") and "<<48/2=24>>" in first["solution"]
    assert first["task"] == "gsm8k" and first["verifier"] == "math" and first["domain"] == "math"
    assert first["problem_id"] == problem_id("gsm8k", first["question"])
    golds = {r["answer"] for r in train + test}
    assert {"4700", "3456", "1820"} <= golds  # thousands separators stripped
    assert not any("," in g for g in golds)


def test_gsm8k_memory_url_and_gzip_match_local(tmp_path):
    assert_memory_urls_match_local(gsm8k_spec)
    local = load_problems(gsm8k_spec())
    gz_train, gz_test = tmp_path / "train.jsonl.gz", tmp_path / "test.jsonl.gz"
    for src, dst in ((GSM8K_TRAIN, gz_train), (GSM8K_TEST, gz_test)):
        with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    assert load_problems(gsm8k_spec(train_path=str(gz_train), test_path=str(gz_test))).equals(local)


def test_gsm8k_json_array_file(tmp_path):
    rows = [json.loads(line) for line in Path(GSM8K_TRAIN).read_text().splitlines()]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows, indent=1))
    table = load_problems(gsm8k_spec(train_path=str(path)))
    assert questions(table, "train") == [r["question"] for r in rows]


def test_carved_test_split_is_deterministic_and_disjoint(tmp_path):
    combined = tmp_path / "all.jsonl"
    combined.write_text(Path(GSM8K_TRAIN).read_text() + Path(GSM8K_TEST).read_text())
    spec = gsm8k_spec(train_path=str(combined), test_path=None, test_fraction=0.4, seed=11)
    table = load_problems(spec)
    assert load_problems(spec).equals(table)
    assert_disjoint_and_unique(table)
    train, test = questions(table, "train"), questions(table, "test")
    assert len(train) + len(test) == 11 and train and test
    # a literal, so the carve is the same on every machine and Python process (it hashes the
    # problem id, like every file-backed task, since all loaders share records.carve)
    assert sorted(r["answer"] for r in split_rows(table, "test")) == ["100", "3", "4700", "54", "72"]
    # the same carve whatever the file order: membership depends on content only
    shuffled = tmp_path / "all_reversed.jsonl"
    shuffled.write_text("\n".join(reversed(combined.read_text().splitlines())) + "\n")
    other = load_problems(gsm8k_spec(train_path=str(shuffled), test_path=None, test_fraction=0.4, seed=11))
    assert set(questions(other, "test")) == set(test)
    # test_fraction may be 0 or 1 (as it always could for the code sets: one rule for all), not outside [0, 1] ...
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\]"):
        load_problems(gsm8k_spec(train_path=str(combined), test_path=None, test_fraction=1.5))
    all_test = load_problems(gsm8k_spec(train_path=str(combined), test_path=None, test_fraction=1.0))
    assert set(questions(all_test, "test")) == set(train + test) and not questions(all_test, "train")
    # ... and a carve that leaves a split empty while a size was asked for it is an error naming the file
    with pytest.raises(ValueError, match=r"all\.jsonl with test_fraction=1\.0.*the train split is empty, but train_size=3"):
        load_problems(gsm8k_spec(train_path=str(combined), test_path=None, test_fraction=1.0, train_size=3))


def test_size_limits_are_deterministic_subsets_in_file_order():
    full = load_problems(gsm8k_spec())
    limited = load_problems(gsm8k_spec(train_size=3, test_size=2))
    assert load_problems(gsm8k_spec(train_size=3, test_size=2)).equals(limited)
    for split, n in (("train", 3), ("test", 2)):
        picked, all_q = questions(limited, split), questions(full, split)
        assert len(picked) == n
        assert picked == [q for q in all_q if q in picked]  # file order kept
    assert questions(load_problems(gsm8k_spec(train_size=3, seed=99)), "train") != questions(limited, "train")


def test_repeated_questions_are_dropped_and_test_wins(tmp_path):
    lines = Path(GSM8K_TRAIN).read_text().splitlines()
    test_lines = Path(GSM8K_TEST).read_text().splitlines()
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines + [lines[0], test_lines[0]]) + "\n")
    table = load_problems(gsm8k_spec(train_path=str(train)))
    assert len(questions(table, "train")) == 6 and len(questions(table, "test")) == 5
    assert_disjoint_and_unique(table)


# -- MATH -----------------------------------------------------------------------------------------


math_spec = file_task("math", MATH_TRAIN, MATH_TEST)


def test_math_jsonl_train_and_parquet_test():
    train, test = load_fixture_splits(math_spec())
    by_question = {r["question"]: r for r in train + test}
    coin = by_question["What is the probability that a fair coin flipped once lands heads?"]
    assert coin["answer"] == "\\frac{1}{2}"
    assert json.loads(coin["metadata"]) == {"level": "Level 1", "type": "Counting & Probability"}
    roots = by_question["Solve for $x$: $x^2 - 5x + 6 = 0$. Enter all solutions, separated by commas."]
    assert roots["answer"] == "2, 3"  # the last \boxed, not the first
    assert by_question["Evaluate $\\left(\\frac{1}{2}\\right)^{3} + \\frac{1}{8}$."]["answer"] == "\\frac{1}{4}"
    assert {r["task"] for r in train + test} == {"math"}
    assert all(r["solution"] and r["problem_id"].startswith("math-") for r in train + test)


def test_math_memory_urls_match_local():
    assert_memory_urls_match_local(math_spec)


# -- bad files ------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


GOOD_GSM = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}
GOOD_MATH = {"problem": "What is $1+1$?", "solution": "$1+1=\\boxed{2}$", "level": "Level 1", "type": "Algebra"}


# One message shape for every file-backed task (records.Record.error), rows counted from 1 as an
# editor counts lines: `<file>: row <N>: field '<name>' ...`. A required text field must not be blank.
@pytest.mark.parametrize(
    "kind, rows, message",
    [
        ("gsm8k", [GOOD_GSM, {"question": "Q?"}], r"bad\.jsonl: row 2: field 'answer' is missing"),
        ("gsm8k", [GOOD_GSM, GOOD_GSM | {"answer": "it is 5"}], r"bad\.jsonl: row 2: field 'answer' has no '#### <final answer>'"),
        ("gsm8k", [GOOD_GSM, "", {"answer": "#### 5"}], r"bad\.jsonl: row 3: field 'question' is missing"),
        ("gsm8k", [GOOD_GSM, "{not json"], r"bad\.jsonl: row 2: not valid JSON"),
        ("gsm8k", [GOOD_GSM, "[1, 2]"], r"bad\.jsonl: row 2: expected a JSON object"),
        ("gsm8k", [GOOD_GSM | {"question": 7}], r"bad\.jsonl: row 1: field 'question' must be str, got int"),
        ("gsm8k", [GOOD_GSM | {"question": "  "}], r"bad\.jsonl: row 1: field 'question' is empty"),
        ("math", [GOOD_MATH, {"solution": "\\boxed{1}"}], r"bad\.jsonl: row 2: field 'problem' is missing"),
        ("math", [GOOD_MATH, GOOD_MATH | {"problem": "P", "solution": "so x = 3."}], r"bad\.jsonl: row 2: field 'solution' has no non-empty \\boxed"),
    ],
)
def test_bad_jsonl_rows_name_file_line_and_field(tmp_path, kind, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        load_problems(TaskSpec(kind=kind, train_path=path, test_path=path))


def test_bad_parquet_row_names_row_and_field(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD_MATH, {"problem": "P", "solution": None, "level": None, "type": None}]), path)
    with pytest.raises(ValueError, match=r"bad\.parquet: row 2: field 'solution' is missing"):
        load_problems(math_spec(test_path=str(path)))


def test_unreadable_or_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"data\.csv: unknown file type"):
        load_problems(gsm8k_spec(train_path=str(tmp_path / "data.csv")))
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        load_problems(gsm8k_spec(train_path=str(tmp_path / "nothere.jsonl")))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"broken\.parquet: not a readable Parquet file"):
        load_problems(math_spec(test_path=str(broken)))
    with pytest.raises(ValueError, match="train_path is required for kind 'gsm8k'"):
        load_problems(TaskSpec(kind="gsm8k"))


def test_file_format_by_extension():
    assert file_format("s3://b/gsm8k/train.jsonl") == "jsonl"
    assert file_format("/d/train.JSONL.gz") == "jsonl"
    assert file_format("memory://x/test.json") == "json"
    assert file_format("gs://b/test-00000-of-00001.parquet") == "parquet"


# -- dispatch to the code loaders and the table check --------------------------------------------


def code_row(pid: str, split: str = "train") -> dict:
    return {
        "problem_id": pid, "split": split, "task": "apps", "domain": "code", "verifier": "code",
        "question": f"Write {pid}", "answer": "", "solution": "", "metadata": "{}",
    }  # fmt: skip


def test_code_kinds_dispatch_to_code_datasets(monkeypatch):
    calls = []
    fake = types.ModuleType("restem_assets.tasks.code_datasets")
    fake.load_apps = lambda spec: calls.append(("apps", spec)) or [code_row("apps-1"), code_row("apps-2", "test")]
    fake.load_humaneval = lambda spec: calls.append(("humaneval", spec)) or [code_row("he-1", "test")]
    monkeypatch.setitem(sys.modules, "restem_assets.tasks.code_datasets", fake)
    apps_spec, he_spec = TaskSpec(kind="apps", train_path="x.jsonl"), TaskSpec(kind="humaneval")
    apps = load_problems(apps_spec)
    assert apps.schema.equals(PROBLEMS) and apps.column("problem_id").to_pylist() == ["apps-1", "apps-2"]
    assert load_problems(he_spec).num_rows == 1
    assert calls == [("apps", apps_spec), ("humaneval", he_spec)]


def test_problems_table_rejects_bad_rows():
    with pytest.raises(ValueError, match=r"row 1 lacks columns \['metadata'\]"):
        problems_table([code_row("a"), {k: v for k, v in code_row("b").items() if k != "metadata"}], "apps task")
    with pytest.raises(ValueError, match="has split 'dev'"):
        problems_table([code_row("a", "dev")], "apps task")
    with pytest.raises(ValueError, match="problem ids are not unique"):
        problems_table([code_row("a"), code_row("a", "test")], "apps task")

"""records: the one reader, field accessor, dedupe, split and limit behind every file-backed task."""

from __future__ import annotations

import gzip
import json
import logging
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from restem_assets.tasks import records
from restem_assets.tasks.problem_ids import problem_id
from restem_assets.tasks.records import Record, carve, dedupe, limit, read_records, read_rows, split_rows
from restem_assets.tasks.spec import TaskSpec

DATA = [{"q": f"question {i}", "n": i} for i in range(40)]


def row_of(record: Record) -> dict:
    return {"problem_id": problem_id("t", record.field("q")), "question": record.field("q")}


ROWS = [{"problem_id": problem_id("t", d["q"]), "question": d["q"]} for d in DATA]


def jsonl(path: Path, data: list) -> str:
    path.write_text("".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in data))
    return str(path)


def spec(**kw) -> TaskSpec:
    return TaskSpec(**{"kind": "gsm8k", "train_size": None, "test_size": None, "test_fraction": 0.3, "seed": 5, **kw})


# -- reading ----------------------------------------------------------------------------------------


def test_jsonl_rows_are_line_numbers_and_blank_lines_skipped(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [DATA[0], "", DATA[1]])
    got = list(read_records(path))
    assert [(r.url, r.row, r.data) for r in got] == [(path, 1, DATA[0]), (path, 3, DATA[1])]


def test_json_array_and_json_lines_in_a_json_file(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps(DATA[:3], indent=2))
    assert [(r.row, r.data) for r in read_records(str(array))] == [(1, DATA[0]), (2, DATA[1]), (3, DATA[2])]
    lines = jsonl(tmp_path / "b.json", DATA[:3])
    assert [r.data for r in read_records(lines)] == DATA[:3]


def test_parquet_local_and_memory_url(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(DATA[:4]), path)
    assert [(r.row, r.data) for r in read_records(str(path))] == list(enumerate(DATA[:4], start=1))
    url = f"memory://restem-records-{uuid.uuid4().hex}/a.pq"
    fsspec.filesystem("memory").pipe(url, path.read_bytes())
    assert [r.data for r in read_records(url)] == DATA[:4]


def test_gzip_is_inferred_from_the_name(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("".join(json.dumps(d) + "\n" for d in DATA[:5]))
    assert [r.data for r in read_records(str(path))] == DATA[:5]
    array = tmp_path / "b.json.gz"
    with gzip.open(array, "wt") as fh:
        json.dump(DATA[:2], fh)
    assert [r.data for r in read_records(str(array))] == DATA[:2]


@pytest.mark.parametrize(
    "lines, message",
    [
        ([DATA[0], "{broken"], r"bad\.jsonl: row 2: not valid JSON"),
        ([DATA[0], "", "[1]"], r"bad\.jsonl: row 3: expected a JSON object, got list"),
        ([DATA[0], {"n": 1}], r"bad\.jsonl: row 2: field 'q' is missing"),
        ([DATA[0], {"q": None}], r"bad\.jsonl: row 2: field 'q' is missing"),
        ([{"q": 3}], r"bad\.jsonl: row 1: field 'q' must be str, got int"),
        ([DATA[0], {"q": " \n"}], r"bad\.jsonl: row 2: field 'q' is empty"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, lines, message):
    path = jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ValueError, match=message):
        read_rows(path, row_of)


def test_bad_parquet_row_and_bad_files(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"q": "a"}, {"q": None}]), path)
    with pytest.raises(ValueError, match=r"bad\.parquet: row 2: field 'q' is missing"):
        read_rows(str(path), row_of)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"broken\.parquet: not a readable Parquet file"):
        list(read_records(str(broken)))
    with pytest.raises(ValueError, match=r"x\.csv: unknown file type"):
        list(read_records(str(tmp_path / "x.csv")))
    with pytest.raises(FileNotFoundError, match=r"problem file not found: .*gone\.jsonl"):
        list(read_records(str(tmp_path / "gone.jsonl")))
    array = tmp_path / "broken.json"
    array.write_text('[{"q": "a"},\n  {"q": }]')
    with pytest.raises(ValueError, match=r"broken\.json: line 2: not valid JSON"):
        list(read_records(str(array)))


def test_field_accessor_types_and_defaults():
    rec = Record("f.jsonl", 4, {"s": "x", "n": 3, "blank": "", "none": None})
    assert rec.field("s") == "x"
    assert rec.field("n", (int, float)) == 3
    assert rec.field("none", required=False, default="d") == "d"
    assert rec.field("blank", required=False) == ""  # only required text must be non-blank
    with pytest.raises(ValueError, match=r"f\.jsonl: row 4: field 'n' must be str or bytes, got int"):
        rec.field("n", (str, bytes))
    assert str(rec.error("is odd", "s")) == "f.jsonl: row 4: field 's' is odd"


def test_a_file_with_no_usable_rows_is_an_error_naming_it(tmp_path):
    empty = jsonl(tmp_path / "empty.jsonl", [""])
    with pytest.raises(ValueError, match=r"empty\.jsonl: no usable rows"):
        read_rows(empty, row_of)
    all_skipped = jsonl(tmp_path / "skipped.jsonl", DATA[:3])
    with pytest.raises(ValueError, match=r"skipped\.jsonl: no usable rows \(3 unverifiable rows\)"):
        read_rows(all_skipped, lambda rec: None, skipped_what="unverifiable rows")


# -- dedupe, split, limit ---------------------------------------------------------------------------


def test_dedupe_keeps_the_first_of_each_id(tmp_path, caplog):
    path = jsonl(tmp_path / "dup.jsonl", [DATA[0], DATA[1], DATA[0] | {"n": 99}, DATA[2], DATA[1]])
    with caplog.at_level(logging.WARNING):
        rows = read_rows(path, lambda rec: row_of(rec) | {"n": rec.data["n"]})
    assert [r["n"] for r in rows] == [0, 1, 2]
    assert "repeated problem" in caplog.text and "dup.jsonl" in caplog.text
    assert dedupe(ROWS[:3] + ROWS[:3], "x") == ROWS[:3]


def test_carve_is_disjoint_complete_and_order_free():
    train, test = carve(ROWS, 0.3, seed=5)
    ids = lambda rows: {r["problem_id"] for r in rows}  # noqa: E731
    assert train and test and not ids(train) & ids(test)
    assert ids(train) | ids(test) == ids(ROWS)
    rtrain, rtest = carve(list(reversed(ROWS)), 0.3, seed=5)
    assert ids(rtest) == ids(test)
    assert carve(ROWS, 0.0, 5) == (ROWS, []) and carve(ROWS, 1.0, 5) == ([], ROWS)
    assert ids(carve(ROWS, 0.3, seed=6)[1]) != ids(test)
    for bad in (-0.1, 1.01, "0.3", None):
        with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\]"):
            carve(ROWS, bad, 5)


def test_limit_is_stable_under_file_reordering():
    picked = limit(ROWS, 7, seed=5)
    assert len(picked) == 7
    assert picked == [r for r in ROWS if r in picked]  # listed in the original order
    backwards = limit(list(reversed(ROWS)), 7, seed=5)
    assert backwards == list(reversed(picked))  # the same rows, in that file's order
    grown = limit(ROWS + [{"problem_id": problem_id("t", "new"), "question": "new"}], 7, seed=5)
    assert len({r["problem_id"] for r in grown} & {r["problem_id"] for r in picked}) >= 6  # growth moves at most one
    assert limit(ROWS, None, 5) == ROWS and limit(ROWS, 0, 5) == [] and limit(ROWS, 100, 5) == ROWS
    assert limit(ROWS, 7, seed=6) != picked


def test_split_rows_carves_sets_split_and_limits():
    out = split_rows(spec(train_size=10, test_size=4), ROWS, "all.jsonl")
    assert [r["split"] for r in out] == ["train"] * 10 + ["test"] * 4
    train = {r["problem_id"] for r in out if r["split"] == "train"}
    test = {r["problem_id"] for r in out if r["split"] == "test"}
    assert not train & test
    for bad in ({"train_size": -1}, {"test_size": 2.5}, {"train_size": True}):
        with pytest.raises(ValueError, match="must be a non-negative int or None"):
            split_rows(spec(**bad), ROWS, "all.jsonl")


def test_test_file_wins_over_train(caplog):
    with caplog.at_level(logging.WARNING):
        out = split_rows(spec(), ROWS, "train.jsonl", ROWS[:5], "test.jsonl")
    assert [r["problem_id"] for r in out if r["split"] == "test"] == [r["problem_id"] for r in ROWS[:5]]
    assert [r["problem_id"] for r in out if r["split"] == "train"] == [r["problem_id"] for r in ROWS[5:]]
    assert "5 problems also in test.jsonl dropped" in caplog.text


@pytest.mark.parametrize(
    "kw, test, message",
    [
        ({"test_fraction": 0.0, "test_size": 3}, None, r"all\.jsonl with test_fraction=0\.0 .*the test split is empty, but test_size=3"),
        ({"test_fraction": 1.0, "train_size": 3}, None, r"all\.jsonl with test_fraction=1\.0 .*the train split is empty, but train_size=3"),
        ({"train_size": 1}, ROWS, r"all\.jsonl minus the problems of test\.jsonl: the train split is empty, but train_size=1"),
    ],
)
def test_an_empty_split_with_a_size_asked_is_an_error_naming_the_file(kw, test, message):
    with pytest.raises(ValueError, match=message):
        split_rows(spec(**kw), ROWS, "all.jsonl", test, "test.jsonl" if test else None)


def test_an_empty_split_is_fine_when_no_size_was_asked():
    assert {r["split"] for r in split_rows(spec(test_fraction=0.0), ROWS, "all.jsonl")} == {"train"}
    assert {r["split"] for r in split_rows(spec(test_fraction=0.0, test_size=0), ROWS, "all.jsonl")} == {"train"}


def test_load_split_rows_reads_both_files(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", DATA[:30])
    test = jsonl(tmp_path / "test.jsonl", DATA[25:])
    out = records.load_split_rows(spec(test_path=test), row_of, train)
    assert sum(r["split"] == "train" for r in out) == 25 and sum(r["split"] == "test" for r in out) == 15
    carved = records.load_split_rows(spec(), row_of, train)
    assert len(carved) == 30 and {r["split"] for r in carved} == {"train", "test"}

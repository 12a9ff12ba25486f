"""Procedural problems from reasoning-gym, split into train and test by content.

reasoning-gym builds item `idx` from `Random(seed + idx)`, so datasets made with
seeds 1 and 2 hold the same items shifted by one: splitting by seed would leak
test problems into train. Instead one pool is generated from `spec.seed`
(items 0, 1, 2, ...), deduplicated by question text, and the first `train_size`
unique questions become train and the next `test_size` become test. The two
splits therefore never share a question, and the same spec always yields the
same problems.

Each row's metadata keeps the dataset name, its effective config, the seed and
the entry itself, so `score_reasoning_gym` can rebuild the dataset and call the
dataset's own `score_answer` later, in another process. Tuples, sets and
dicts with non-string keys in the entry are stored tagged
(`{"__tuple__": [...]}`) so graders that compare types exactly still match.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from restem_assets.tasks.problem_ids import problem_id
from restem_assets.tasks.spec import DEFAULT_CHAIN_SUM_CONFIG, TaskSpec

# Datasets whose gold answer is a plain number: our own math equivalence checker
# grades them. Every other dataset is graded by its own `score_answer`.
NUMERIC_ANSWER_DATASETS = frozenset({"chain_sum"})

# How many candidates to generate per requested problem before giving up on
# finding enough unique questions (small configs repeat questions often).
POOL_FACTOR = 4
POOL_EXTRA = 100

# Keys that belong to the TaskSpec, not to the dataset config.
_RESERVED_CONFIG_KEYS = ("seed", "size")


def effective_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The dataset config actually used: for chain_sum, DEFAULT_CHAIN_SUM_CONFIG under the given keys.

    chain_sum's own defaults (up to 6 terms of 4 digits) are far harder than the
    easy default task, so our defaults fill in whatever the spec leaves out.
    """
    reserved = [key for key in _RESERVED_CONFIG_KEYS if key in config]
    if reserved:
        raise ValueError(
            f"reasoning-gym config for {name!r} must not set {reserved}; "
            "the seed comes from TaskSpec.seed and the sizes from TaskSpec.train_size/test_size"
        )
    if name == "chain_sum":
        return {**DEFAULT_CHAIN_SUM_CONFIG, **config}
    return dict(config)


def _config_key(config: dict[str, Any]) -> str:
    """A canonical JSON text of a config: hashable cache key and what metadata stores."""
    try:
        return json.dumps(config, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"reasoning-gym config must be JSON-serializable: {exc}") from exc


@lru_cache(maxsize=64)
def _dataset(name: str, config_json: str, seed: int, size: int):
    """One dataset instance per (name, config, seed, size): some datasets do real work in __init__."""
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        raise ValueError(f"unknown reasoning-gym dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    config = json.loads(config_json)
    try:
        return reasoning_gym.create_dataset(name, seed=seed, size=size, **config)
    except TypeError as exc:  # unknown config key
        raise ValueError(f"bad config for reasoning-gym dataset {name!r} {config}: {exc}") from exc
    except AssertionError as exc:  # the config's validate()
        raise ValueError(f"invalid config for reasoning-gym dataset {name!r} {config}: {exc}") from exc


def _size(value: int | None, field: str, name: str) -> int:
    if value is None:
        raise ValueError(f"TaskSpec.{field} must be set for procedural dataset {name!r} (it has no natural size)")
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"TaskSpec.{field} must be a non-negative int, got {value!r}")
    return value


def generate_unique_entries(name: str, config: dict[str, Any], seed: int, count: int) -> list[dict[str, Any]]:
    """The first `count` entries of the pool for `seed` with distinct question text, in pool order."""
    config_json = _config_key(config)
    limit = POOL_FACTOR * count + POOL_EXTRA
    dataset = _dataset(name, config_json, seed, limit)
    seen: set[str] = set()
    entries: list[dict[str, Any]] = []
    for idx in range(limit):
        if len(entries) == count:
            break
        entry = dataset[idx]
        if entry["question"] in seen:
            continue
        seen.add(entry["question"])
        entries.append(entry)
    if len(entries) < count:
        raise ValueError(
            f"reasoning-gym dataset {name!r} with config {config} gave only {len(entries)} unique questions "
            f"in {limit} items, but train_size + test_size = {count}; ask for fewer problems or widen the config"
        )
    return entries


# Plain JSON turns tuples into lists and int dict keys into strings, and some
# graders compare against exactly those types (arc_agi compares its parsed
# answer, a tuple of tuples, with metadata["output"]). Such values are tagged
# so `score_reasoning_gym` gets back the entry the dataset produced.
_TUPLE, _SET, _ITEMS = "__tuple__", "__set__", "__dict_items__"


def _encode(value: Any) -> Any:
    """A JSON-ready copy of an entry, tagging tuples, sets and dicts with non-string keys."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {_ITEMS: [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {_SET: [_encode(v) for v in sorted(value, key=repr)]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _encode(value.tolist())
    return str(value)  # e.g. Fraction in gsm_symbolic: informational only, graders read entry["answer"]


def _decode_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == _TUPLE:
            return tuple(value)
        if key == _SET:
            return set(value)
        if key == _ITEMS:
            return {k: v for k, v in value}
    return obj


def _worked_solution(entry: dict[str, Any]) -> str:
    cot = (entry.get("metadata") or {}).get("answer_cot")
    return cot if isinstance(cot, str) else ""


def _row(name: str, config: dict[str, Any], seed: int, split: str, entry: dict[str, Any]) -> dict[str, Any]:
    metadata = {"source": "reasoning_gym", "dataset": name, "config": config, "seed": seed, "entry": _encode(entry)}
    metadata_json = json.dumps(metadata, sort_keys=True)
    answer = entry["answer"]
    return {
        "problem_id": problem_id(name, entry["question"]),
        "split": split,
        "task": name,
        "domain": "math",
        "verifier": "math" if name in NUMERIC_ANSWER_DATASETS else "reasoning_gym",
        "question": entry["question"],
        # A few datasets (e.g. graph_color) accept many answers and have no single gold one.
        "answer": "" if answer is None else str(answer),
        # Some generators (gsm_symbolic) write out a worked solution; most have none.
        "solution": _worked_solution(entry),
        "metadata": metadata_json,
    }


def reasoning_gym_problems(spec: TaskSpec) -> list[dict[str, Any]]:
    """Rows in the PROBLEMS layout: train first, then test, disjoint by question text."""
    name = spec.name
    config = effective_config(name, spec.config)
    n_train = _size(spec.train_size, "train_size", name)
    n_test = _size(spec.test_size, "test_size", name)
    entries = generate_unique_entries(name, config, spec.seed, n_train + n_test)
    return [_row(name, config, spec.seed, "train", e) for e in entries[:n_train]] + [
        _row(name, config, spec.seed, "test", e) for e in entries[n_train:]
    ]


def score_reasoning_gym(answer: str | None, metadata_json: str) -> float:
    """The dataset's own `score_answer` for the entry stored in a problem's metadata, as a raw score.

    Scores can be partial (gsm_symbolic gives 0.01 to any wrong number), so the
    caller decides what counts as correct (== 1.0). Bad metadata raises; an
    exception inside `score_answer` (a malformed model answer) scores 0.0.
    """
    try:
        meta = json.loads(metadata_json, object_hook=_decode_hook)
        name, config, seed, entry = meta["dataset"], meta["config"], meta["seed"], meta["entry"]
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"problem metadata is not a reasoning-gym record (need dataset, config, seed, entry): {exc!r}") from exc
    dataset = _dataset(name, _config_key(config), seed, 1)
    try:
        return float(dataset.score_answer(answer, entry))
    except Exception:  # noqa: BLE001 - graders choke on some malformed answers; that is a wrong answer
        return 0.0

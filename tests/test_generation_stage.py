"""The staged, metered generation step every generating stage runs in (generation/sampling.StagedGeneration,
assets/common.generation_stage): crash-safe chunks kept across an interruption, an engine only for what is
missing, the published table's tokens metered, and a stage_costs row from every generating stage
(transfer_evaluation included). A scripted engine stands in for the model."""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg
import pytest

from restem_assets.generation import Completion, SamplingParams
from restem_assets.generation.sampling import StagedGeneration, sample_rows
from restem_assets.models.policies import Policy
from restem_assets.reporting.costs import StageMeter, stage_table
from restem_assets.store.schemas import SAMPLES

POLICY = Policy("iteration=0", "/nonexistent/model", "v0")  # no tokenizer here: prompt tokens stay null
PROBLEMS = [{"problem_id": f"p{i}", "question": f"{i} + 1 =", "answer": str(i + 1), "domain": "math"} for i in range(3)]
PARAMS = SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=0)


class ScriptedEngine:
    """Answers every prompt with a fixed 5-token completion; fails after `fail_after` prompts if set."""

    name = "scripted"

    def __init__(self, fail_after: int | None = None):
        self.fail_after, self.prompts = fail_after, 0

    def render_prompt(self, messages) -> str:
        return messages[-1]["content"]

    def generate(self, prompts, params, progress=None, seeds=None):
        for i in range(len(prompts)):
            if self.fail_after is not None and self.prompts >= self.fail_after:
                raise RuntimeError("killed mid-stage")
            self.prompts += 1
            yield [Completion(i, k, "Answer: 1", 5, "stop") for k in range(params.n)]

    def close(self) -> None:
        pass


class Opener:
    """An `opener(model, expected_tokens)` like EngineResource.open, recording each call."""

    def __init__(self, engine=None):
        self.engine, self.calls = engine or ScriptedEngine(), []

    @contextmanager
    def __call__(self, model: str, expected_tokens: int | None = None):
        self.calls.append((model, expected_tokens))
        yield self.engine


def staged(store, opener, meter=None) -> StagedGeneration:
    return StagedGeneration(store, "samples", 1, SAMPLES, request={"policy": POLICY.path}, policy=POLICY,
                            needed=len(PROBLEMS) * PARAMS.n, max_new_tokens=PARAMS.max_new_tokens, opener=opener,
                            done_columns=["problem_id", "sample_idx"], meter=meter, flush_rows=2)


def run(gen: StagedGeneration):
    with gen, gen.open_engine() as engine:
        return sample_rows(engine, PROBLEMS, PARAMS, POLICY, gen.sink,
                           done={(r["problem_id"], r["sample_idx"]) for r in gen.done})


def test_publishes_and_meters_what_it_generated(store):
    opener, meter = Opener(), StageMeter()
    gen = staged(store, opener, meter)
    assert gen.done == [] and gen.missing == 6
    stats = run(gen)
    assert opener.calls and opener.calls[0][0] == POLICY.path and opener.calls[0][1] > 0
    assert (gen.rows, stats.samples, gen.engine_name) == (6, 6, "scripted")
    assert store.num_rows("samples", 1) == 6
    assert not (store.fs.exists(f"{store.root}/.staging")), "the staging is removed once published"
    assert (meter.generated_tokens, meter.prompt_tokens) == (6 * 5, None)


def test_an_interrupted_step_keeps_its_chunks_and_a_finished_one_needs_no_engine(store):
    with pytest.raises(RuntimeError, match="killed"):
        run(staged(store, Opener(ScriptedEngine(fail_after=2))))
    assert not store.exists("samples", 1), "nothing is published after an error"

    again = Opener()
    gen = staged(store, again, StageMeter())
    kept = len(gen.done)
    assert kept == 4  # two prompts x n=2, flushed every 2 rows
    stats = run(gen)
    assert (stats.resumed, stats.samples, gen.rows) == (kept, 6 - kept, 6)
    assert len(again.calls) == 1



def test_a_step_interrupted_after_its_last_chunk_publishes_without_an_engine(store):
    gen = staged(store, Opener())
    with pytest.raises(RuntimeError, match="before publishing"), gen, gen.open_engine() as engine:
        sample_rows(engine, PROBLEMS, PARAMS, POLICY, gen.sink)  # every row lands in a chunk (flush_rows=2)
        raise RuntimeError("killed before publishing")
    unused, meter = Opener(), StageMeter()
    gen = staged(store, unused, meter)
    assert gen.missing == 0
    stats = run(gen)
    assert (unused.calls, gen.engine_name, stats.samples, gen.rows) == ([], "none", 0, 6)
    assert meter.generated_tokens == 6 * 5, "the published table's tokens are metered however they were made"


class ScriptedEngines(dg.ConfigurableResource):
    """Stands in for EngineResource: `open(model, expected_tokens)` yields a ScriptedEngine."""

    @contextmanager
    def open(self, model: str, expected_tokens: int | None = None, planned_tokens: int = 0):
        yield ScriptedEngine()


def test_transfer_evaluation_writes_its_cost_row(tmp_path):
    from restem_assets.assets import evaluate, policy_lineage
    from restem_assets.assets.resources import ReSTResource, StorageResource
    from restem_assets.store.tables import ParquetStore

    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "policy", partition="1", metadata={"path": dg.MetadataValue.path(POLICY.path), "version": "v1"}))
    root = tmp_path / "data"
    resources = {"storage": StorageResource(root=str(root)), "engine": ScriptedEngines(),
                 "rest": ReSTResource(transfer_benchmarks=["humaneval"], transfer_limit=2, transfer_max_new_tokens=8)}
    result = dg.materialize([policy_lineage.policy, evaluate.transfer_evaluation], resources=resources,
                            instance=instance, partition_key="1")
    assert result.success
    store = ParquetStore(str(root))
    assert store.num_rows("transfer_evaluations", 1) == 2
    (row,) = store.read_table(stage_table("transfer_evaluation"), 1).to_pylist()
    assert row["generated_tokens"] == 2 * 5 and row["wall_seconds"] > 0
    assert row["run_id"] == result.run_id


def test_the_human_baseline_meters_its_fine_tune_and_its_evaluation(tmp_path, monkeypatch):
    """Both helpers in one asset: finetune_stage (a stand-in trainer) and the staged evaluation, each stage
    with its stage_costs row."""
    from restem_assets.assets import human_baseline, mstep, policy_lineage
    from restem_assets.assets.resources import ReSTResource, StorageResource
    from restem_assets.store.schemas import PROBLEMS, SFT_SET
    from restem_assets.store.tables import ParquetStore
    from restem_assets.training.finetune import FinetuneResult

    base = tmp_path / "base"
    base.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (base / name).write_text("{}")
    trained = []

    def trainer(init, records, out_dir, settings):
        trained.append((init, len(records)))
        return FinetuneResult(examples=len(records), completion_tokens=11, steps=1, seconds=0.1, final_loss=0.5,
                              log=[{"step": 1, "epoch": 1.0, "loss": 0.5, "learning_rate": 1e-5}])

    monkeypatch.setattr(mstep, "run_finetune", trainer)
    root = tmp_path / "data"
    store = ParquetStore(str(root))
    store.write_table("problems", [
        {"problem_id": f"g{i}", "split": "train" if i < 4 else "test", "task": "gsm8k", "domain": "math",
         "verifier": "math", "question": f"{i} + 1?", "answer": str(i + 1),
         "solution": f"{i} + 1 = {i + 1}\n#### {i + 1}", "metadata": "{}"} for i in range(6)], PROBLEMS)
    store.write_table("sft_set", [{"problem_id": "g0", "sample_idx": 0, "prompt": "q", "completion": "Answer: 1",
                                   "n_tokens": 3, "source": "self"}] * 2, SFT_SET, 1)
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "policy", partition="0", metadata={"path": dg.MetadataValue.path(str(base)), "version": "v0"}))
    resources = {"storage": StorageResource(root=str(root)), "engine": ScriptedEngines(),
                 "rest": ReSTResource(eval_samples=2, eval_max_new_tokens=8)}
    result = dg.materialize([policy_lineage.policy, human_baseline.human_baseline], resources=resources,
                            instance=instance)
    assert result.success
    assert trained == [(str(base), 2)]
    assert store.num_rows("human_finetune_log", 1) == 1 and store.num_rows("human_evaluations", 1) == 2
    (finetune,) = store.read_table(stage_table("human_finetune"), 1).to_pylist()
    (evaluation,) = store.read_table(stage_table("human_evaluation"), 1).to_pylist()
    assert finetune["trained_tokens"] == 11 and finetune["generated_tokens"] is None
    assert evaluation["generated_tokens"] == 2 * (1 + 2) * 5 and evaluation["trained_tokens"] is None

"""The M-step under `accelerate launch`: 2 CPU processes (DDP on gloo) through Dagster Pipes, real model."""

import dagster as dg
import pytest

from restem_assets.training.distributed import ACCELERATE_CONFIG_DIR, accelerate_command, resolve_accelerate_config
from restem_assets.training.finetune import FinetuneSettings, per_device_batch
from restem_assets.store.tables import ParquetStore
from tests.e2e_helpers import ITERATION_ASSETS, SETUP_ASSETS, materialize, resources

SHIPPED = ("ddp_cpu", "ddp_gpu", "fsdp", "deepspeed_zero2", "deepspeed_zero3")


@pytest.mark.slow
def test_two_process_finetune_through_pipes(tmp_path, model_path):
    root = tmp_path / "data"
    res = resources(root, model_path, finetune_launcher="accelerate", finetune_processes=2, finetune_max_steps=2,
                    batch_size=4)
    instance = dg.DagsterInstance.ephemeral()
    materialize(SETUP_ASSETS, res, instance)
    result = materialize(ITERATION_ASSETS, res, instance, partition="1")
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    ft = meta["finetune"]
    assert ft["launcher"].value == "accelerate" and ft["processes"].value == 2
    assert ft["optimizer_steps"].value == 2
    assert ft["pipes/processes"].value == 2  # reported by the main worker through Pipes
    assert "| 2 |" in ft["pipes/loss_curve"].value and ft["samples_per_second"].value > 0

    # the loss curve is a table, and the workers' per-step losses reached the run's log as they happened
    store = ParquetStore(str(root))
    log = store.read_table("finetune_log", 1).to_pylist()
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] > 0 for r in log)
    messages = [e.message for e in instance.all_logs(result.run_id)]
    assert any("step 2/2: loss" in m for m in messages), messages[-20:]

    # the model the main process saved loads and generates
    from restem_assets.assets.policy_lineage import lookup_policy
    from restem_assets.generation import SamplingParams
    from restem_assets.generation.transformers_engine import TransformersEngine

    policy = lookup_policy(instance, 1)
    engine = TransformersEngine(policy.path.removeprefix("file://"), batch_size=2)
    prompt = engine.render_prompt([{"role": "user", "content": "What is 2 + 3?"}])
    (chunk,) = list(engine.generate([prompt], SamplingParams(n=1, temperature=0.0, max_new_tokens=8)))
    assert chunk[0].n_tokens > 0 and chunk[0].text


def test_shipped_accelerate_configs_load():
    """Every config in deploy/accelerate is one accelerate itself accepts."""
    from accelerate.commands.config.config_args import load_config_from_file

    assert sorted(p.stem for p in ACCELERATE_CONFIG_DIR.glob("*.yaml")) == sorted(SHIPPED)
    for name in SHIPPED:
        config = load_config_from_file(str(resolve_accelerate_config(name)))
        assert config.num_processes >= 1, name


def test_bad_launch_settings_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'zero9'.*shipped: \['ddp_cpu'"):
        resolve_accelerate_config("zero9")
    with pytest.raises(ValueError, match="finetune_processes must be an int >= 1"):
        accelerate_command(tmp_path / "request.json", 0, "ddp_cpu")
    assert per_device_batch(FinetuneSettings(batch_size=8), 2) == 4  # batch_size stays the global batch
    assert per_device_batch(FinetuneSettings(batch_size=3), 2) == 2


def test_unknown_launcher_is_refused(tmp_path, model_path):
    res = resources(tmp_path / "data", model_path, finetune_launcher="slurm")
    instance = dg.DagsterInstance.ephemeral()
    materialize(SETUP_ASSETS, res, instance)
    from restem_assets.assets import mstep

    failed = materialize([mstep.finetune], res, instance, partition="1", raise_on_error=False)
    assert not failed.success
    errors = [e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure]
    assert any("rest.finetune_launcher must be one of ('inprocess', 'accelerate'), got 'slurm'" in m for m in errors)

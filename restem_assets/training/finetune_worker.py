"""One process of a distributed fine-tune: `accelerate launch -m restem_assets.training.finetune_worker request.json`.

Every process runs the same `finetune()`; Trainer shards the batches over them. The main
process (rank 0) writes the model and `result.json` and, when Dagster launched it through
Pipes, streams each logged loss to the run's log and reports the loss curve and timings as
the materialization's metadata. Other ranks stay silent (one voice per run).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from restem_assets.store.atomic import staged_file
from restem_assets.training.finetune import FinetuneSettings, finetune, world_size


def _pipes_context():
    """Dagster Pipes on the main process when Dagster launched us (dagster-pipes, not Dagster itself)."""
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if int(os.environ.get("RANK", "0")) != 0 or DAGSTER_PIPES_CONTEXT_ENV_VAR not in os.environ:
        return contextlib.nullcontext(None)
    return open_dagster_pipes()


def _loss_callback(pipes):
    from transformers import TrainerCallback

    class PipesLoss(TrainerCallback):
        """Each logged loss goes to the Dagster run log as it happens."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                pipes.log.info(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}")

    return PipesLoss()


def _loss_curve_md(log: list[dict]) -> str:
    rows = "".join(f"| {r['step']} | {r['epoch']:.3f} | {r['loss']:.4f} |\n" for r in log[:200])
    return "| step | epoch | loss |\n|---|---|---|\n" + rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(Path(argv[0]).read_text())
    with open(request["records"]) as fh:
        records = [json.loads(line) for line in fh]
    settings = FinetuneSettings(**request["settings"])
    processes = world_size()
    with _pipes_context() as pipes:
        if pipes is not None:
            pipes.log.info(f"fine-tuning {request['init_model']} on {len(records)} records in {processes} processes")
        callbacks = [_loss_callback(pipes)] if pipes is not None else []
        result = finetune(request["init_model"], records, Path(request["out_dir"]), settings, callbacks=callbacks)
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
        payload = {**asdict(result)}
        fs_path = Path(request["result"])
        import fsspec

        fs = fsspec.filesystem("file")
        with staged_file(fs, str(fs_path)) as tmp, open(tmp, "w") as fh:
            json.dump(payload, fh)
        if pipes is not None:
            pipes.report_asset_materialization(metadata={
                "processes": processes,
                "samples_per_second": result.samples_per_second or 0.0,
                "optimizer_steps": result.steps,
                "final_loss": result.final_loss if result.final_loss is not None else float("nan"),
                "train_seconds": round(result.seconds, 2),
                "loss_curve": {"raw_value": _loss_curve_md(result.log), "type": "md"},
            })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

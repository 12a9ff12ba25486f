"""The M-step as a distributed job: TRL training under `accelerate launch` in N processes.

The fine-tune keeps one code path (`restem_assets.training.finetune.finetune`); this module only
writes its inputs to files (`request.json`, `records.jsonl`), builds the `accelerate launch`
command that runs `restem_assets.training.finetune_worker` in every process, and reads back the
main process's `result.json`. Launch configs live in `deploy/accelerate/` (data parallel on
CPU over gloo or on GPUs, FSDP, DeepSpeed ZeRO-2/3); any other accelerate config file can be
given by path. The Dagster asset runs the same command through Dagster Pipes
(`restem_assets/assets/mstep.py`), which streams the workers' log and loss curve back.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from restem_assets.training.finetune import FinetuneResult, FinetuneSettings

ACCELERATE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "deploy" / "accelerate"
REQUEST_FILE, RECORDS_FILE, RESULT_FILE = "request.json", "records.jsonl", "result.json"
LAUNCHERS = ("inprocess", "accelerate")


def default_config_name() -> str:
    import torch

    return "ddp_gpu" if torch.cuda.is_available() else "ddp_cpu"


def resolve_accelerate_config(config: str) -> Path:
    """A config name from deploy/accelerate (``ddp_cpu``, ``fsdp``, ...), or a path to an accelerate YAML."""
    name = config or default_config_name()
    path = Path(name).expanduser()
    if path.suffix not in (".yaml", ".yml", ".json"):
        path = ACCELERATE_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in ACCELERATE_CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"rest.finetune_accelerate_config {config!r}: no accelerate config at {path}; "
                                f"shipped: {shipped}, or give a path to a YAML file")
    return path


def write_request(work_dir: Path, init_model: str, records: Sequence[dict], out_dir: Path,
                  settings: FinetuneSettings) -> Path:
    """Everything a worker process needs, as files in `work_dir` (shared by the processes of one node)."""
    if not records:
        raise ValueError("no SFT records: nothing to fine-tune on")
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / RECORDS_FILE, "w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    request = {"init_model": init_model, "records": str(work_dir / RECORDS_FILE), "out_dir": str(out_dir),
               "result": str(work_dir / RESULT_FILE), "settings": asdict(settings)}
    path = work_dir / REQUEST_FILE
    path.write_text(json.dumps(request, indent=1))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(request: Path, processes: int, config: str = "") -> list[str]:
    """`accelerate launch` running the fine-tune worker in `processes` processes with the given config."""
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"rest.finetune_processes must be an int >= 1, got {processes!r}")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(resolve_accelerate_config(config)),
            "--num_processes", str(processes), "--main_process_port", str(free_port()),
            "-m", "restem_assets.training.finetune_worker", str(request)]


def worker_env(threads_per_process: int | None = None) -> dict[str, str]:
    """Environment for the launched processes: no hub, and CPU threads split between the processes."""
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    if threads_per_process:
        env["OMP_NUM_THREADS"] = str(threads_per_process)
    return env


def read_result(request: Path) -> FinetuneResult:
    """The main process's FinetuneResult; a missing file means the workers died before finishing."""
    result_path = Path(json.loads(Path(request).read_text())["result"])
    if not result_path.is_file():
        raise RuntimeError(f"the distributed fine-tune wrote no result ({result_path}); see its log above")
    return FinetuneResult(**json.loads(result_path.read_text()))


def launch_finetune(init_model: str, records: Sequence[dict], out_dir: Path, settings: FinetuneSettings,
                    work_dir: Path, processes: int = 2, config: str = "") -> FinetuneResult:
    """Run the distributed fine-tune as a plain subprocess (what the asset does through Pipes), wait, return its result."""
    request = write_request(work_dir, init_model, records, out_dir, settings)
    threads = max(1, (os.cpu_count() or 1) // processes)
    proc = subprocess.run(accelerate_command(request, processes, config), env={**os.environ, **worker_env(threads)},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"accelerate launch exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return read_result(request)

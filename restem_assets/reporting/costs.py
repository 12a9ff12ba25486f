"""Cost accounting: what one stage of one iteration used (wall time, CPU and GPU seconds, peak memory, tokens).

`StageMeter` wraps a stage: CPU seconds are the user + system time the whole process tree spent during
the stage: this process and the children it reaped (`getrusage`), plus what each live descendant (the
vLLM worker an engine pool keeps between stages) spent between the stage's start and end, so a
long-lived worker's CPU lands in the stages it served, not at its exit; peak memory the largest resident
set of this process plus its live children sampled every `interval` seconds, GPU seconds the wall time
times the GPUs torch sees (null without CUDA). The row goes to the `stage_costs` table
(`<root>/stage_costs/stage=<stage>/iteration=<i>/part-0.parquet`, one per stage and iteration, the
latest run's), priced by `sql/cost_per_iteration.sql`. Pure: no Dagster here.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import socket
import threading
import time
from typing import Any

import pyarrow as pa

STAGE_COSTS = pa.schema([
    ("wall_seconds", pa.float64()),
    ("cpu_seconds", pa.float64()),
    ("gpu_seconds", pa.float64()),  # null: no GPU in use
    ("gpus", pa.int32()),
    ("peak_rss_bytes", pa.int64()),
    ("prompt_tokens", pa.int64()),  # null: the stage feeds no prompts to a model
    ("generated_tokens", pa.int64()),
    ("trained_tokens", pa.int64()),  # completion tokens the fine-tune trained on (per epoch)
    ("cpu_hour_price", pa.float64()),
    ("gpu_hour_price", pa.float64()),
    ("host", pa.string()),
    ("run_id", pa.string()),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
])


def stage_table(stage: str) -> str:
    """The store table name of one stage's costs (a hive folder `stage=<stage>` under `stage_costs`)."""
    return f"stage_costs/stage={stage}"


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _descendants_cpu() -> dict[tuple[int, float], float]:
    """CPU seconds so far of every live descendant, by (pid, start time), each including the descendants
    it has reaped (so a grandchild's time moves to its parent's entry when it exits, and is not lost)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil ships with the project's dependencies
        return {}
    out: dict[tuple[int, float], float] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            t = p.cpu_times()
            out[(p.pid, p.create_time())] = t.user + t.system + t.children_user + t.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def tree_cpu_between(own_before: float, own_after: float, live_before: dict, live_after: dict) -> float:
    """CPU seconds the process tree spent between two snapshots (`_cpu_seconds`, `_descendants_cpu`).

    Live at the end: what each spent since the start (all of it if it started later). Live at the start
    but gone at the end: its whole lifetime arrived in its reaper's count (`own_after` or a live
    parent's entry), so its time before the start is taken back out."""
    live = sum(cpu - live_before.get(key, 0.0) for key, cpu in live_after.items())
    gone = sum(cpu for key, cpu in live_before.items() if key not in live_after)
    return max(0.0, own_after - own_before + live - gone)


def _rss_tree() -> int:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil ships with the project's dependencies
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    proc = psutil.Process()
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA set-up: no GPU accounted
        return 0


class StageMeter:
    """`with StageMeter() as m: ...; m.add_tokens(...)`, then `m.row(...)` for the stage_costs table."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.prompt_tokens: int | None = None
        self.generated_tokens: int | None = None
        self.trained_tokens: int | None = None
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wall_seconds = self.cpu_seconds = 0.0

    def _sample(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, _rss_tree())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "StageMeter":
        self._t0, self._cpu0, self._live0 = time.perf_counter(), _cpu_seconds(), _descendants_cpu()
        self.peak_rss = _rss_tree()
        self._thread = threading.Thread(target=self._sample, name="restem-stage-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, _rss_tree())
        self.wall_seconds = time.perf_counter() - self._t0
        self.cpu_seconds = tree_cpu_between(self._cpu0, _cpu_seconds(), self._live0, _descendants_cpu())

    def add_tokens(self, prompt: int | None = None, generated: int | None = None, trained: int | None = None) -> None:
        for name, value in (("prompt_tokens", prompt), ("generated_tokens", generated), ("trained_tokens", trained)):
            if value is not None:
                setattr(self, name, (getattr(self, name) or 0) + int(value))

    def add_generation(self, rows: pa.Table, model: str) -> None:
        """The tokens of a stage's generated rows (columns `prompt`, `n_tokens`) from `model`: every completion's,
        and each distinct prompt's once (with the model's tokenizer; left null where it cannot be loaded)."""
        self.add_tokens(generated=sum(n or 0 for n in rows.column("n_tokens").to_pylist()),
                        prompt=count_prompt_tokens(sorted(set(rows.column("prompt").to_pylist())),
                                                   local_model_dir(model)))

    def row(self, run_id: str = "", cpu_hour_price: float | None = None, gpu_hour_price: float | None = None,
            gpus: int | None = None) -> dict[str, Any]:
        """The stage_costs row; a price left None is the one another stage of the iteration recorded."""
        gpus = _gpus() if gpus is None else gpus
        return {
            "wall_seconds": self.wall_seconds, "cpu_seconds": self.cpu_seconds,
            "gpu_seconds": self.wall_seconds * gpus if gpus else None, "gpus": gpus,
            "peak_rss_bytes": int(self.peak_rss), "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens, "trained_tokens": self.trained_tokens,
            "cpu_hour_price": cpu_hour_price, "gpu_hour_price": gpu_hour_price,
            "host": socket.gethostname(), "run_id": run_id, "recorded_at": dt.datetime.now(dt.timezone.utc),
        }


def local_model_dir(path: str) -> str | None:
    """The local directory of a policy's model (for its tokenizer), None if it is not on this machine."""
    from restem_assets.models.model_cache import resolve_model

    try:
        return resolve_model(path)
    except Exception:  # noqa: BLE001 - prompt tokens are then left null
        return None


def count_prompt_tokens(prompts: list[str], model_path: str | None) -> int | None:
    """Prompt tokens of `prompts` with the model's tokenizer (None when it cannot be loaded)."""
    if not prompts or not model_path or "://" in str(model_path) or not os.path.isdir(model_path):
        return None
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_path)
    except Exception:  # noqa: BLE001 - no tokenizer: leave the column null rather than fail the stage
        return None
    return sum(len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"])

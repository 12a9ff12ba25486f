"""The vLLM side of `VLLMEngine`: a separate process that owns the model.

Run as `python -m restem_assets.generation.vllm_worker`. It talks JSON lines: commands on
stdin, events on the stdout it was started with (everything vLLM itself prints is
moved to stderr). Living in its own process is what lets the engine hand every
byte of model and KV-cache memory back before the fine-tune step: the process
exits. It also keeps vLLM's spawned engine core away from whatever `__main__`
the caller runs under (a Dagster run worker, pytest, a notebook).

Protocol (one JSON object per line):
  -> {"cmd": "init", "model": path, "llm": {LLM kwargs}}
  <- {"event": "ready", "platform": "cpu"|"cuda"|..., "load_seconds": s}
  -> {"cmd": "generate", "prompts": [[token ids], ...], "params": {...}}
  <- {"event": "completions", "items": [[prompt_index, sample_idx, text, n_tokens, finish_reason], ...]} ...
  <- {"event": "done", "seconds": s}
  -> {"cmd": "load", "model": path}      (another policy's weights, same architecture, in place)
  <- {"event": "loaded", "seconds": s}
  -> {"cmd": "shutdown"}
Any failure answers {"event": "error", "message": traceback} and the process exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections import deque

FLUSH_EVERY_S = 2.0  # stream finished prompts back at least this often


class Worker:
    def __init__(self, out):
        self.out = out
        self.llm = None
        self.per_request_seed = False

    def send(self, event: str, **fields) -> None:
        self.out.write(json.dumps({"event": event, **fields}) + "\n")
        self.out.flush()

    def init(self, model: str, llm: dict) -> None:
        from vllm import LLM
        from vllm.platforms import current_platform

        t0 = time.perf_counter()
        self.llm = LLM(model=model, tokenizer=model, **llm)
        # A per-request seed kills the CPU worker ("CPU Generator does not use offset"),
        # so on CPU sampling is seeded once per engine (LLM(seed=...)).
        self.per_request_seed = not current_platform.is_cpu()
        self.send("ready", platform=str(current_platform.device_type), load_seconds=time.perf_counter() - t0)

    def load(self, model: str) -> None:
        """Swap in the weights of `model` (same architecture) and drop every prefix-cache block
        computed with the old ones."""
        t0 = time.perf_counter()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": model, "is_checkpoint_format": True})
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache after loading new weights")
        self.send("loaded", seconds=time.perf_counter() - t0)

    def generate(self, prompts: list[list[int]], params: dict) -> None:
        """Run every prompt through the engine's step loop, streaming prompts back as they finish."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        t0 = time.perf_counter()
        if not self.per_request_seed:
            # The CPU sampler draws from torch's global generator: seed it per request batch, so what a
            # call samples depends on its own seed, not on what the (reused) engine ran before.
            import torch

            torch.manual_seed(int(params["seed"]))
        n = int(params["n"])
        stop_ids = set(params.get("stop_token_ids") or ())
        common = dict(max_tokens=int(params["max_tokens"]), stop_token_ids=sorted(stop_ids) or None,
                      stop=list(params.get("stop") or ()) or None, include_stop_str_in_output=True,
                      output_kind=RequestOutputKind.FINAL_ONLY, skip_special_tokens=True)

        def sampling(i: int) -> SamplingParams:
            if params["temperature"] == 0:
                return SamplingParams(n=1, temperature=0.0, **common)
            seed = params["seed"] * 1_000_003 + i if self.per_request_seed else None
            return SamplingParams(n=n, temperature=params["temperature"], top_k=params["top_k"] or 0,
                                  top_p=params["top_p"], seed=seed, **common)

        # Requests are added a batch's worth at a time (not all at once) so the first
        # prompts finish, and stream back, early. Outputs carry the request id we gave.
        waiting = deque(range(len(prompts)))
        requests: dict[str, int] = {}  # our request id -> prompt index
        max_active = max(1, engine.vllm_config.scheduler_config.max_num_seqs // n + 1)
        pending: list[list] = []
        last_flush = time.perf_counter()

        def admit() -> None:
            while waiting and len(requests) < max_active:
                i = waiting.popleft()
                engine.add_request(f"prompt-{i}", TokensPrompt(prompt_token_ids=prompts[i]), sampling(i))
                requests[f"prompt-{i}"] = i

        admit()
        while requests:
            outputs = engine.step()
            if not outputs and not engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM has no requests left but {len(requests)} never finished")
            for out in outputs:
                if not out.finished or out.request_id not in requests:
                    continue
                i = requests.pop(out.request_id)
                for j, o in enumerate(sorted(out.outputs, key=lambda o: o.index)):
                    ids = list(o.token_ids)
                    # a stop *string* (stop_reason is that string) is kept, an end-of-turn token is not
                    if (o.finish_reason == "stop" and ids and not isinstance(o.stop_reason, str)
                            and (ids[-1] in stop_ids or o.stop_reason is None)):
                        ids = ids[:-1]  # the end-of-turn token is not part of the completion
                    pending.append([i, j, o.text, len(ids), "length" if o.finish_reason == "length" else "stop"])
            admit()
            if pending and (not requests or time.perf_counter() - last_flush >= FLUSH_EVERY_S):
                self.send("completions", items=pending)
                pending, last_flush = [], time.perf_counter()
        self.send("done", seconds=time.perf_counter() - t0)


def main() -> int:
    # Keep the protocol channel private: vLLM and its children log to stdout.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker(out)
    try:
        for line in sys.stdin:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            if cmd == "init":
                worker.init(msg["model"], msg.get("llm", {}))
            elif cmd == "load":
                worker.load(msg["model"])
            elif cmd == "generate":
                worker.generate(msg["prompts"], msg["params"])
            elif cmd == "shutdown":
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
    except BaseException:  # report, then exit: the parent raises with this text
        worker.send("error", message=traceback.format_exc())
        return 1
    finally:
        if worker.llm is not None:
            del worker.llm
    return 0


if __name__ == "__main__":
    sys.exit(main())

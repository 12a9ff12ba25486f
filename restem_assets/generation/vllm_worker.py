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
  -> {"cmd": "generate", "prompts": [[token ids], ...], "params": {..., "seeds": [[seed of each sample], ...]}}
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

    def send(self, event: str, **fields) -> None:
        self.out.write(json.dumps({"event": event, **fields}) + "\n")
        self.out.flush()

    def init(self, model: str, llm: dict) -> None:
        from vllm import LLM
        from vllm.platforms import current_platform

        t0 = time.perf_counter()
        self.llm = LLM(model=model, tokenizer=model, **llm)
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
        """Run every sample through the engine's step loop, streaming samples back as they finish.

        Each sample is a request of its own (n=1) seeded with its own seed (`params["seeds"][i][j]`
        for sample j of prompt i), so what it draws does not depend on the other requests: the
        same rows come out whichever subset of samples a call asks for (a resumed E-step). vLLM
        runs n > 1 as n such requests anyway, and the prompt's KV blocks are shared through the
        prefix cache."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        t0 = time.perf_counter()
        n = int(params["n"])
        greedy = params["temperature"] == 0
        seeds = params.get("seeds")
        if not greedy and seeds is None:
            from restem_assets.generation import SamplingParams as Params, row_seeds

            seeds = row_seeds(Params(n=n, seed=int(params["seed"])), len(prompts))
        stop_ids = set(params.get("stop_token_ids") or ())
        common = dict(n=1, max_tokens=int(params["max_tokens"]), stop_token_ids=sorted(stop_ids) or None,
                      stop=list(params.get("stop") or ()) or None, include_stop_str_in_output=True,
                      output_kind=RequestOutputKind.FINAL_ONLY, skip_special_tokens=True)

        def sampling(i: int, j: int) -> SamplingParams:
            if greedy:
                return SamplingParams(temperature=0.0, **common)
            return SamplingParams(temperature=params["temperature"], top_k=params["top_k"] or 0,
                                  top_p=params["top_p"], seed=int(seeds[i][j]), **common)

        # Requests are added a batch's worth at a time (not all at once) so the first
        # prompts finish, and stream back, early. Outputs carry the request id we gave.
        waiting = deque((i, j) for i in range(len(prompts)) for j in range(n))
        requests: dict[str, tuple[int, int]] = {}  # our request id -> (prompt index, sample index)
        max_active = engine.vllm_config.scheduler_config.max_num_seqs + n
        pending: list[list] = []
        last_flush = time.perf_counter()

        def admit() -> None:
            while waiting and len(requests) < max_active:
                i, j = waiting.popleft()
                engine.add_request(f"prompt-{i}-{j}", TokensPrompt(prompt_token_ids=prompts[i]), sampling(i, j))
                requests[f"prompt-{i}-{j}"] = (i, j)

        admit()
        while requests:
            outputs = engine.step()
            if not outputs and not engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM has no requests left but {len(requests)} never finished")
            for out in outputs:
                if not out.finished or out.request_id not in requests:
                    continue
                i, j = requests.pop(out.request_id)
                (o,) = out.outputs
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

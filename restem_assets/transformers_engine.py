"""Batched sampling with plain transformers, in a decoding loop of our own.

`model.generate` keeps finished sequences in the batch until the longest one ends.
This loop prefills each prompt once, repeats its KV cache K times, and drops rows
from the batch (and the cache) as soon as they emit end-of-turn, which ran about
2x faster than `generate` at batch 64 on 2 CPU cores.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence

import torch

from restem_assets.generation import Completion, Messages, ProgressFn, SamplingParams

log = logging.getLogger(__name__)


def pick_dtype(requested: str = "auto") -> torch.dtype:
    """bf16 where the CPU has native bf16 (AVX512-BF16/AMX) or on CUDA, else float32."""
    if requested != "auto":
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32,
                "float16": torch.float16}[requested]
    if torch.cuda.is_available():
        return torch.bfloat16
    cap = torch.backends.cpu.get_cpu_capability()
    return torch.bfloat16 if ("BF16" in cap or "AMX" in cap) else torch.float32


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row: greedy, or temperature + top-k + top-p sampling."""
    if params.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k and params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop = probs.cumsum(dim=-1) - probs >= params.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, sorted_idx, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class TransformersEngine:
    """Sample K completions per chat prompt on CPU (or CUDA) with a shrinking batch."""

    name = "transformers"

    def __init__(self, model_path: str, batch_size: int = 64, dtype: str = "auto", device: str | None = None,
                 threads: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = model_path
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.dtype = pick_dtype(dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
        self.stop_ids = self._stop_token_ids()
        log.info("transformers engine: %s on %s in %s, batch %d", model_path, self.device, self.dtype, self.batch_size)

    def _stop_token_ids(self) -> list[int]:
        ids = set()
        for tok_id in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(tok_id, int):
                ids.add(tok_id)
            elif isinstance(tok_id, list):
                ids.update(tok_id)
        for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            tid = self.tokenizer.convert_tokens_to_ids(special)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return sorted(ids)

    def render_prompt(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(
        self, prompts: Sequence[Messages], params: SamplingParams, progress: ProgressFn | None = None
    ) -> Iterator[list[Completion]]:
        texts = [self.render_prompt(m) for m in prompts]
        per_chunk = max(1, self.batch_size // params.n)
        total = len(texts)
        for chunk_no, start in enumerate(range(0, total, per_chunk)):
            chunk = texts[start : start + per_chunk]
            generator = None
            if not params.greedy:
                generator = torch.Generator(device=self.device).manual_seed(params.seed * 1_000_003 + chunk_no)
            yield self._generate_chunk(chunk, start, params, generator)
            if progress:
                progress(min(start + per_chunk, total), total)

    @torch.inference_mode()
    def _generate_chunk(self, texts: list[str], offset: int, params: SamplingParams,
                        generator: torch.Generator | None) -> list[Completion]:
        from transformers import DynamicCache

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        mask = enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1, :]
        k = params.n
        if k > 1:  # one prefill per prompt, then K copies of its cache
            cache.batch_repeat_interleave(k)
            logits = logits.repeat_interleave(k, dim=0)
            mask = mask.repeat_interleave(k, dim=0)
            positions = positions.repeat_interleave(k, dim=0)
        rows = logits.shape[0]
        # row r belongs to prompt offset + r // k, sample r % k
        alive = torch.arange(rows, device=self.device)
        next_pos = positions[:, -1] + 1
        generated: list[list[int]] = [[] for _ in range(rows)]
        finish = ["length"] * rows
        stop = torch.tensor(self.stop_ids, device=self.device)
        for step in range(params.max_new_tokens):
            tokens = sample_next(logits, params, generator)
            done = torch.isin(tokens, stop)
            tok_list = tokens.tolist()
            for j, r in enumerate(alive.tolist()):
                if done[j]:
                    finish[r] = "stop"
                else:
                    generated[r].append(tok_list[j])
            keep = (~done).nonzero().squeeze(-1)
            if keep.numel() == 0 or step == params.max_new_tokens - 1:
                break
            if keep.numel() < alive.numel():
                cache.batch_select_indices(keep)
                alive, tokens, mask, next_pos = alive[keep], tokens[keep], mask[keep], next_pos[keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        return [
            Completion(
                prompt_index=offset + r // k,
                sample_idx=r % k,
                text=self.tokenizer.decode(generated[r], skip_special_tokens=True),
                n_tokens=len(generated[r]),
                finish_reason=finish[r],
            )
            for r in range(rows)
        ]


def chunk_count(n_prompts: int, n: int, batch_size: int) -> int:
    return math.ceil(n_prompts / max(1, batch_size // n))

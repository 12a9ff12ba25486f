"""Batched sampling with plain transformers, in a decoding loop of our own.

`model.generate` keeps finished sequences in the batch until the longest one ends.
This loop prefills each prompt once, repeats its KV cache K times, drops rows from
the batch (and the cache) as soon as they end, and refills the freed slots with
new prompts, so the batch stays full until the last prompts.

Prompts of one task share most of their tokens (system message, worked exemplar:
108 of ~121 tokens for chain sums), so the common token prefix of a request is
prefilled once and its KV cache copied into every admitted row; each prompt then
prefills only its own suffix.

Every row samples with a torch.Generator of its own, seeded with that sample's seed
(`generate(seeds=...)`), which draws the row's noise and nothing else: a completion depends
on its prompt and its seed, not on which rows share its batch or when it was admitted, so
a resumed E-step regenerates exactly the samples an interrupted one would have.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import torch

from restem_assets.generation import (
    Completion, Messages, ProgressFn, SamplingParams, cut_at_stop, row_seeds, stop_token_ids,
)
from restem_assets.generation.dtype import pick_dtype
from restem_assets.generation.grouped_attention import use_grouped_decode
from restem_assets.generation.shared_prefix import MIN_SHARED_PREFIX, broadcast_cache, shared_prefix_length

log = logging.getLogger(__name__)


NUCLEUS_CANDIDATES = 1024  # top-p is resolved among this many top tokens, exactly (see sample_next)


Generators = torch.Generator | Sequence[torch.Generator] | None  # one for the batch, or one per row


def _rows(generator: Generators, rows: torch.Tensor) -> Generators:
    """The generators of the rows at positions `rows` (a shared generator stays shared)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return [generator[j] for j in rows.tolist()]


def _draw(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One index per row with probability proportional to `probs` (rows need not sum to 1).

    Exponential race (argmax p_i / E_i, E_i ~ Exp(1)) instead of torch.multinomial,
    which was the slowest op of the decoding loop on CPU. With one generator per row,
    each row's noise comes from its own generator.
    """
    if generator is None or isinstance(generator, torch.Generator):
        race = torch.empty_like(probs).exponential_(generator=generator)
    else:
        race = torch.empty_like(probs)
        for row, g in zip(race, generator, strict=True):
            row.exponential_(generator=g)
    return (probs / race).argmax(dim=-1)


def _nucleus(values: torch.Tensor, index: torch.Tensor, probs: torch.Tensor, top_p: float,
             generator: Generators) -> torch.Tensor:
    """Draw from the smallest prefix of the sorted candidates whose mass reaches `top_p`."""
    drop = probs.cumsum(dim=-1) - probs >= top_p  # the top token always stays
    return index.gather(-1, _draw(probs.masked_fill(drop, 0.0), generator)[:, None]).squeeze(-1)


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: Generators) -> torch.Tensor:
    """Pick one token per row: greedy, or temperature + top-k + top-p sampling.

    Top-k keeps the k most likely tokens; top-p then keeps the smallest prefix of those
    (renormalized) whose mass reaches p, as transformers' warpers do. Both work on a
    sorted candidate list: the top-k tokens, or with top-p alone the top
    NUCLEUS_CANDIDATES, falling back to the whole vocabulary for rows whose nucleus
    is wider than that, so the result is exact either way.

    `generator` is one generator for the whole batch or one per row. With one per row, what
    a row draws depends on its own logits and generator only: the width of its candidate
    list (the noise it consumes) is decided row by row, never by the other rows.
    """
    if params.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    vocab = logits.shape[-1]
    top_k = params.top_k if params.top_k and 0 < params.top_k < vocab else 0
    if not top_k and params.top_p >= 1.0:
        return _draw(torch.softmax(logits, dim=-1), generator)
    width = top_k or min(vocab, NUCLEUS_CANDIDATES)
    values, index = torch.topk(logits, width, dim=-1)  # sorted, descending
    if top_k:
        probs = torch.softmax(values, dim=-1)  # renormalized over the top-k
    else:  # true probabilities of the candidates under the full distribution
        probs = torch.exp(values - torch.logsumexp(logits, dim=-1, keepdim=True))
    if params.top_p >= 1.0:
        return index.gather(-1, _draw(probs, generator)[:, None]).squeeze(-1)
    covered = probs.sum(dim=-1) >= params.top_p
    if bool(covered.all()):
        return _nucleus(values, index, probs, params.top_p, generator)
    # rows whose nucleus is wider than the candidates sort the full vocabulary; the others keep their candidates
    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    narrow, wide = covered.nonzero().flatten(), (~covered).nonzero().flatten()
    if narrow.numel():
        tokens[narrow] = _nucleus(values[narrow], index[narrow], probs[narrow], params.top_p, _rows(generator, narrow))
    all_values, all_index = torch.sort(logits[wide], dim=-1, descending=True)
    tokens[wide] = _nucleus(all_values, all_index, torch.softmax(all_values, dim=-1), params.top_p,
                            _rows(generator, wide))
    return tokens


class TransformersEngine:
    """Sample K completions per chat prompt on CPU (or CUDA) with a shrinking batch."""

    name = "transformers"

    def __init__(self, model_path: str, batch_size: int = 256, dtype: str = "auto", device: str | None = None,
                 threads: int | None = None, prefix_sharing: bool = True, kv_cache_gib: float = 2.0,
                 grouped_decode: bool = True):
        from transformers import AutoTokenizer

        self.model_path = model_path
        self.batch_size = max(1, int(batch_size))
        self.kv_cache_bytes = max(0.0, float(kv_cache_gib)) * 2**30
        self.grouped_decode = grouped_decode
        self.prefix_sharing = prefix_sharing
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.dtype = pick_dtype(dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = self._load(model_path)
        self.stop_ids = stop_token_ids(self.tokenizer, getattr(self.model.generation_config, "eos_token_id", None))
        self._enders: dict[tuple[str, ...], frozenset[int]] = {}
        log.info("transformers engine: %s on %s in %s, batch %d, prefix sharing %s", model_path, self.device,
                 self.dtype, self.batch_size, prefix_sharing)

    def render_prompt(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def load_weights(self, model_path: str) -> None:
        """Hold another model of the same architecture (a later policy): the engine pool's swap."""
        self.model = None
        self.model = self._load(model_path)
        self.model_path = model_path

    def _load(self, model_path: str):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
        if self.grouped_decode:
            use_grouped_decode(model)
        return model

    def kv_bytes_per_token(self) -> int:
        """Key/value cache bytes one row holds per token (every layer, keys and values)."""
        cfg = self.model.config
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return 2 * cfg.num_hidden_layers * kv_heads * head_dim * torch.finfo(self.dtype).bits // 8

    def rows_that_fit(self, tokens_per_row: int) -> int:
        """At most `batch_size` rows, fewer where their caches would pass `kv_cache_gib` (0: no cap)."""
        if not self.kv_cache_bytes:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.kv_cache_bytes // (self.kv_bytes_per_token() * tokens_per_row))))

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def tokens_ending(self, stop: tuple[str, ...]) -> frozenset[int]:
        """Ids of tokens whose text contains the last character of some stop string (cached per engine)."""
        if stop not in self._enders:
            last = {s[-1] for s in stop}
            tok = self.tokenizer
            self._enders[stop] = frozenset(
                i for i, piece in enumerate(tok.convert_ids_to_tokens(list(range(len(tok)))))
                if piece and any(ch in tok.convert_tokens_to_string([piece]) for ch in last))
        return self._enders[stop]

    def generate(
        self, prompts: Sequence[str], params: SamplingParams, progress: ProgressFn | None = None,
        seeds: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[list[Completion]]:
        """Completions of `prompts`; sample j of prompt i draws from a generator seeded with `seeds[i][j]`
        (default: `sample_seed(params.seed, i, j)`, see `row_seeds`)."""
        seeds = row_seeds(params, len(prompts), seeds)
        yield from _ContinuousBatch(self, prompts, params, None if params.greedy else seeds, progress).run()


class _ContinuousBatch:
    """One decoding loop over all prompts that keeps the batch full.

    Each prompt is prefilled once and its KV cache repeated K times. Rows leave the
    batch (and the cache) when they emit end-of-turn or hit max_new_tokens, and new
    prompts are prefilled into the freed slots, left-padded to the batch's cache
    length. Leading cache columns no row attends to are trimmed as rows leave. A
    prompt's K completions are yielded together once the last of them ends. Each
    row samples with its own generator, seeded with `seeds[prompt][sample]` (none
    when decoding greedily).
    """

    def __init__(self, engine: TransformersEngine, texts: list[str], params: SamplingParams,
                 seeds: list[list[int]] | None, progress: ProgressFn | None):
        self.e, self.texts, self.params, self.seeds, self.progress = engine, texts, params, seeds, progress
        self.k = params.n
        self.ids = engine.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        rows = engine.rows_that_fit(max((len(t) for t in self.ids), default=0) + params.max_new_tokens)
        self.capacity = max(self.k, rows - rows % self.k)
        self.next_prompt = 0
        self.cache = None
        self.mask = None  # [rows, cache_len] which cache columns each row attends to
        self.next_pos = None  # [rows] position id of each row's next token
        self.logits = None  # [rows, vocab] logits for each row's next token
        self.rows: list[tuple[int, int]] = []  # (prompt_index, sample_idx) of each batch row
        self.generators: list[torch.Generator] | None = None if seeds is None else []  # each row's, in row order
        self.tokens: dict[tuple[int, int], list[int]] = {}
        self.pending: dict[int, list[Completion]] = {}
        self.done_prompts = 0
        self.stop = torch.tensor(engine.stop_ids, device=engine.device)
        # stop strings are looked for only after tokens that can end one (cheap: most tokens cannot)
        self.stop_strings = params.stop
        self.string_enders = engine.tokens_ending(params.stop) if params.stop else frozenset()
        self.tail = max((len(s) for s in params.stop), default=0) + 2  # tokens of text to decode per check
        shared = shared_prefix_length(self.ids) if engine.prefix_sharing else 0
        self.prefix_len = shared if shared >= MIN_SHARED_PREFIX else 0
        self.prefix_cache = self._prefill_prefix() if self.prefix_len else None

    def run(self) -> Iterator[list[Completion]]:
        self._admit()
        while self.rows:
            self._step()
            ready = self._retire()
            self._admit()
            if ready:
                yield ready
                if self.progress:
                    self.progress(self.done_prompts, len(self.texts))

    @torch.inference_mode()
    def _prefill_prefix(self):
        """The KV cache of the prompts' common prefix, computed once for the whole request."""
        from transformers import DynamicCache

        cache = DynamicCache()
        ids = torch.tensor([self.ids[0][: self.prefix_len]], device=self.e.device)
        self.e.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return cache

    @torch.inference_mode()
    def _admit(self) -> None:
        """Prefill as many new prompts as there are free slots for K rows each."""
        free = (self.capacity - len(self.rows)) // self.k
        batch = list(range(self.next_prompt, min(len(self.texts), self.next_prompt + free)))
        if not batch:
            return
        from transformers import DynamicCache

        self.next_prompt = batch[-1] + 1
        e = self.e
        # left-pad each prompt's own tokens (after the shared prefix) to the batch's longest
        own = [self.ids[i][self.prefix_len:] for i in batch]
        width = max(len(t) for t in own)
        pad = e.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(t)) + t for t in own], device=e.device)
        mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in own], device=e.device)
        if self.prefix_len:
            cache = broadcast_cache(self.prefix_cache, len(batch), copy=True)  # later steps append in place
            mask = torch.cat([mask.new_ones(len(batch), self.prefix_len), mask], dim=1)
        else:
            cache = DynamicCache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = e.model(input_ids=input_ids, attention_mask=mask, position_ids=positions[:, self.prefix_len:],
                      past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1, :]
        if self.k > 1:
            cache.batch_repeat_interleave(self.k)
            logits, mask, positions = (t.repeat_interleave(self.k, dim=0) for t in (logits, mask, positions))
        new_rows = [(i, j) for i in batch for j in range(self.k)]
        for r in new_rows:
            self.tokens[r] = []
        if self.seeds is not None:
            self.generators += [torch.Generator(device=e.device).manual_seed(self.seeds[i][j]) for i, j in new_rows]
        next_pos = positions[:, -1] + 1
        if self.cache is None:
            self.cache, self.mask, self.next_pos, self.logits, self.rows = cache, mask, next_pos, logits, new_rows
            return
        self._merge(cache, mask)
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.logits = torch.cat([self.logits, logits])
        self.rows += new_rows

    def _merge(self, cache, mask: torch.Tensor) -> None:
        """Append new rows' cache to the batch's, left-padding the shorter one along the sequence."""
        old_len, new_len = self.mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)

        def pad(t: torch.Tensor, to: int) -> torch.Tensor:  # [B, H, T, D] or [B, T], padded on the left of T
            missing = to - t.shape[-2 if t.dim() == 4 else -1]
            if missing == 0:
                return t
            if t.dim() == 4:
                return torch.cat([t.new_zeros(t.shape[0], t.shape[1], missing, t.shape[3]), t], dim=2)
            return torch.cat([t.new_zeros(t.shape[0], missing), t], dim=1)

        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([pad(old.keys, width), pad(new.keys, width)])
            old.values = torch.cat([pad(old.values, width), pad(new.values, width)])
        self.mask = torch.cat([pad(self.mask, width), pad(mask, width)])

    @torch.inference_mode()
    def _step(self) -> None:
        """Sample one token for every row; finished rows move to `pending` and leave the batch."""
        tokens = sample_next(self.logits, self.params, self.generators)
        stopped = torch.isin(tokens, self.stop).tolist()
        done: set[int] = set()
        for j, (tok, is_stop) in enumerate(zip(tokens.tolist(), stopped)):
            row = self.tokens[self.rows[j]]
            if not is_stop:
                row.append(tok)
                is_stop = tok in self.string_enders and self._ends_in_stop_string(row)
            if is_stop or len(row) >= self.params.max_new_tokens:
                done.add(j)
                self.pending.setdefault(self.rows[j][0], []).append(self._completion(j, "stop" if is_stop else "length"))
        keep = [j for j in range(len(self.rows)) if j not in done]
        if self.generators is not None and done:
            self.generators = [self.generators[j] for j in keep]
        if not keep:  # the batch is empty: the next admission starts a fresh cache
            self.rows, self.cache, self.mask, self.next_pos, self.logits = [], None, None, None, None
            return
        if done:
            idx = torch.tensor(keep, device=self.e.device)
            self.cache.batch_select_indices(idx)
            self.mask, self.next_pos, tokens = self.mask[idx], self.next_pos[idx], tokens[idx]
            self.rows = [self.rows[j] for j in keep]
            self._trim()
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        out = self.e.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.next_pos[:, None],
                           past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.logits = out.logits[:, -1, :]
        self.next_pos = self.next_pos + 1

    def _trim(self) -> None:
        """Drop leading cache columns that no remaining row attends to."""
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else 0
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, first:, :]
                layer.values = layer.values[:, :, first:, :]

    def _ends_in_stop_string(self, row: list[int]) -> bool:
        text = self.e.tokenizer.decode(row[-self.tail:], skip_special_tokens=True)
        return any(s in text for s in self.stop_strings)

    def _completion(self, j: int, finish: str) -> Completion:
        prompt_index, sample_idx = self.rows[j]
        ids = self.tokens.pop((prompt_index, sample_idx))
        text = self.e.tokenizer.decode(ids, skip_special_tokens=True)
        if self.stop_strings:
            text, _ = cut_at_stop(text, self.stop_strings)  # a token may run past the stop string's end
        return Completion(prompt_index=prompt_index, sample_idx=sample_idx, text=text,
                          n_tokens=len(ids), finish_reason=finish)

    def _retire(self) -> list[Completion]:
        """Completions of prompts whose K rows have all ended, in sample order."""
        ready = []
        for prompt_index in sorted({p for p, comps in self.pending.items() if len(comps) == self.k}):
            ready.extend(sorted(self.pending.pop(prompt_index), key=lambda c: c.sample_idx))
            self.done_prompts += 1
        return ready



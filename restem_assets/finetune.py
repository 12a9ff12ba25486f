"""The M-step: supervised fine-tuning on the kept samples, loss on completion tokens only.

TRL's SFTTrainer on conversational prompt/completion records: the prompt is the
same chat messages the sampler saw, the completion the assistant's answer. The
model is written as a plain Hugging Face directory (LoRA adapters merged), into a
temporary directory renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restem_assets.prompts import build_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    method: str = "full"  # "full" | "lora"
    learning_rate: float = 2e-5
    epochs: float = 2.0
    batch_size: int = 8
    max_steps: int = -1
    lora_rank: int = 16
    dtype: str = "auto"
    seed: int = 0
    max_length: int = 1024

    def __post_init__(self):
        if self.method not in ("full", "lora"):
            raise ValueError(f"finetune method must be 'full' or 'lora', got {self.method!r}")


@dataclass
class FinetuneResult:
    examples: int
    completion_tokens: int
    steps: int
    seconds: float
    final_loss: float | None
    log: list[dict[str, Any]] = field(default_factory=list)


def conversational_records(sft_rows: Sequence[Mapping[str, Any]], problems: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """SFT rows -> TRL prompt/completion records in chat form."""
    records = []
    for row in sft_rows:
        problem = problems.get(row["problem_id"])
        if problem is None:
            raise KeyError(f"sft_set row for {row['problem_id']} has no problem in 'problems'")
        records.append(
            {
                "prompt": build_messages(problem),
                "completion": [{"role": "assistant", "content": row["completion"]}],
            }
        )
    return records


def _use_bf16() -> bool:
    import torch

    from restem_assets.transformers_engine import pick_dtype

    return pick_dtype("auto") == torch.bfloat16


def finetune(init_model: str, records: list[dict], out_dir: Path, settings: FinetuneSettings) -> FinetuneResult:
    """Fine-tune `init_model` on `records` and write the result to `out_dir` atomically."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    if not records:
        raise ValueError("no SFT records: nothing to fine-tune on")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    bf16 = settings.dtype in ("bf16", "bfloat16") or (settings.dtype == "auto" and _use_bf16())
    try:
        tokenizer = AutoTokenizer.from_pretrained(init_model)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(init_model, dtype=torch.bfloat16 if bf16 else torch.float32)
        peft_config = None
        if settings.method == "lora":
            from peft import LoraConfig

            peft_config = LoraConfig(r=settings.lora_rank, lora_alpha=2 * settings.lora_rank, lora_dropout=0.0,
                                     target_modules="all-linear", task_type="CAUSAL_LM")
        config = SFTConfig(
            output_dir=str(work / "trainer"),
            per_device_train_batch_size=settings.batch_size,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=0,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            seed=settings.seed,
            bf16=bf16,
            use_cpu=not torch.cuda.is_available(),
            completion_only_loss=True,
            max_length=settings.max_length,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                             processing_class=tokenizer, peft_config=peft_config)
        # completion tokens the loss is computed on (+1: the end-of-turn token each completion ends with)
        completion_tokens = sum(len(tokenizer(r["completion"][0]["content"], add_special_tokens=False)["input_ids"]) + 1
                                for r in records)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        trained = trainer.model
        if settings.method == "lora":
            trained = trained.merge_and_unload()
        staged = work / "model"
        trained.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
        history = [
            {"step": h["step"], "epoch": float(h.get("epoch", 0.0)), "loss": float(h["loss"]),
             "learning_rate": float(h.get("learning_rate", 0.0))}
            for h in trainer.state.log_history if "loss" in h
        ]
        _replace_dir(staged, out_dir)
        return FinetuneResult(
            examples=len(records), completion_tokens=completion_tokens, steps=trainer.state.global_step,
            seconds=seconds, final_loss=history[-1]["loss"] if history else None, log=history,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replace_dir(staged: Path, final: Path) -> None:
    """Move `staged` to `final`; an existing `final` is swapped out first, then deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

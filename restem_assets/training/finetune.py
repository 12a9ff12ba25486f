"""The M-step: supervised fine-tuning on the kept samples, loss on completion tokens only.

TRL's SFTTrainer on conversational prompt/completion records: the prompt is the
same chat messages the sampler saw, the completion the assistant's answer. The
model is written as a plain Hugging Face directory (LoRA adapters merged), into a
temporary directory renamed into place.

Precision. In bf16 the fine-tune is mixed precision as it is meant to be: the weights the
optimizer updates stay float32 ("master weights") and only the compute runs in bf16 (autocast,
TRL/Trainer `bf16=True`). Updating bf16 weights directly loses every AdamW step smaller than
bf16's rounding step, which at lr 2e-5 is most of them (issue 23: 3.7% of the weights moved
after 3 steps; final loss 0.4624 against fp32's 0.0146). What it costs, per parameter:
- full fine-tune: fp32 weights 4 B + fp32 gradients 4 B + AdamW's two fp32 moments 8 B = 16 B
  (2.2 GB for the 135M model, 112 GB for a 7B one), against 8 B for bf16-only weights, gradients
  and moments (which lose the updates); activations are bf16 either way.
- LoRA: the frozen base is held in bf16 (2 B; it gets no updates, so none are lost), the
  adapters and their optimizer state in fp32 (PEFT's default), a small share of the whole.
The saved model is always float32 (4 B/param on disk; the engines load it in their own dtype):
the master weights as trained, or for LoRA the base as it is on disk (re-read in float32 after
training, on the CPU) with the adapters merged in float32, so neither the base nor the small
merged updates are rounded to bf16, and a later iteration that fine-tunes from it starts from
exactly what was trained.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restem_assets.setting_field import setting
from restem_assets.store.atomic import staged_dir
from restem_assets.tasks.prompts import build_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    """How the M-step trains. Field names are the `rest` resource's (restem_assets/rest_settings.py
    inherits this class), so a field added here is a launchpad setting with no other edit."""

    finetune_method: str = setting("full", "'full' or 'lora' (adapters merged on save)")
    learning_rate: float = setting(2e-5, "AdamW learning rate")
    epochs: float = setting(2.0, "passes over the SFT set")
    batch_size: int = setting(8, "examples per optimizer step (the global batch, over all processes)")
    finetune_max_steps: int = setting(-1, "cap on optimizer steps (-1: no cap); tests use 1-2")
    lora_rank: int = setting(16, "LoRA rank (finetune_method='lora')")
    finetune_dtype: str = setting("auto", "compute dtype: 'auto' (bf16 where the CPU or GPU has it), 'fp32' or "
                                           "'bf16'; the weights the optimizer updates are float32 either way")
    seed: int = setting(0, "the experiment's seed: sample k of problem p in iteration i is seeded by "
                           "(seed, i, p, k); iteration i fine-tunes with seed + i")
    finetune_max_length: int = setting(1024, "longest prompt + completion trained on, in tokens")
    # run the prompt prefix all examples of a batch share once per batch (restem_assets/generation/shared_prefix.py);
    # same loss and gradients, a fraction of the compute when prompts share a long system + exemplar prefix
    finetune_prefix_sharing: bool = setting(True, "run each batch's shared prompt prefix once (same loss and "
                                                   "gradients, ~3x faster on few-shot prompts)")
    # TRL turns activation recomputation on by default: a third more compute for memory a 135M model
    # does not need; on, it also drops the key/value cache prefix sharing relies on (so sharing is off)
    finetune_gradient_checkpointing: bool = setting(False, "recompute activations (less memory, a third more "
                                                            "compute; turns prefix sharing off)")

    def __post_init__(self):
        # Checked here, before any model is loaded or directory written: a run that cannot
        # take an optimizer step would otherwise save the initial weights as a new "policy".
        # The names are the ReSTResource settings these fields come from.
        if self.finetune_method not in ("full", "lora"):
            raise ValueError(f"rest.finetune_method must be 'full' or 'lora', got {self.finetune_method!r}")
        if not _is_number(self.epochs) or not math.isfinite(self.epochs):
            raise ValueError(f"rest.epochs must be a finite number, got {self.epochs!r}")
        if not _is_int(self.finetune_max_steps):
            raise ValueError(f"rest.finetune_max_steps must be an int (-1: no cap), got {self.finetune_max_steps!r}")
        if self.finetune_max_steps == 0:
            raise ValueError("rest.finetune_max_steps = 0 gives zero optimizer steps: nothing would be trained; "
                             "set finetune_max_steps > 0, or -1 for no cap")
        if self.finetune_max_steps < 0 and self.epochs <= 0:
            raise ValueError(f"rest.epochs = {self.epochs:g} gives zero optimizer steps: nothing would be trained; "
                             "set epochs > 0 or finetune_max_steps > 0")
        if not _is_number(self.learning_rate) or not math.isfinite(self.learning_rate) or self.learning_rate < 0:
            raise ValueError(f"rest.learning_rate must be a finite number >= 0, got {self.learning_rate!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"rest.batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.finetune_method == "lora" and (not _is_int(self.lora_rank) or self.lora_rank < 1):
            raise ValueError(f"rest.lora_rank must be an int >= 1 for finetune_method='lora', got {self.lora_rank!r}")
        if not _is_int(self.finetune_max_length) or self.finetune_max_length < 1:
            raise ValueError(f"rest.finetune_max_length must be an int >= 1, got {self.finetune_max_length!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class FinetuneResult:
    examples: int
    completion_tokens: int
    steps: int
    seconds: float
    final_loss: float | None
    log: list[dict[str, Any]] = field(default_factory=list)
    samples_per_second: float | None = None  # Trainer's train_samples_per_second, over all processes
    processes: int = 1
    tokens: int = 0  # prompt + completion tokens of the records (one epoch)
    shared_prefix_tokens: int = 0  # tokens the shared-prefix forward pass skipped, over the whole run
    epochs_run: float = 0.0

    @property
    def examples_per_second(self) -> float:
        """Examples trained on per wall second, epochs included."""
        return self.examples * self.epochs_run / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens * self.epochs_run / self.seconds if self.seconds else 0.0


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

    from restem_assets.generation.dtype import pick_dtype

    return pick_dtype("auto") == torch.bfloat16


def world_size() -> int:
    """Processes training together (set by `accelerate launch`/torchrun; 1 in process)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def per_device_batch(settings: FinetuneSettings, processes: int) -> int:
    """`batch_size` is the global batch (what the paper's settings mean); each process takes its share."""
    return max(1, math.ceil(settings.batch_size / processes))


def _sft_config(settings: FinetuneSettings, output_dir: Path, bf16: bool):
    """TRL's SFTConfig for our settings: loss on completion tokens only, no checkpoints, log every step."""
    import torch
    from trl import SFTConfig

    distributed = world_size() > 1
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=per_device_batch(settings, world_size()),
        # CPU processes talk over gloo; on GPUs Trainer picks nccl
        ddp_backend="gloo" if distributed and not torch.cuda.is_available() else None,
        num_train_epochs=settings.epochs,
        max_steps=settings.finetune_max_steps,
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
        max_length=settings.finetune_max_length,
        dataloader_num_workers=0,
        disable_tqdm=True,
        gradient_checkpointing=settings.finetune_gradient_checkpointing,
    )


def _lora_config(settings: FinetuneSettings):
    if settings.finetune_method != "lora":
        return None
    from peft import LoraConfig

    return LoraConfig(r=settings.lora_rank, lora_alpha=2 * settings.lora_rank, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _trainer_class():
    """TRL's SFTTrainer whose loss runs each batch's shared prompt prefix once (one process only:
    under DDP the forward must go through the wrapper so gradients are synchronized)."""
    from trl import SFTTrainer

    from restem_assets.generation.shared_prefix import prefix_shared_loss

    class PrefixSharingSFTTrainer(SFTTrainer):
        shared_prefix_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if (not return_outputs and world_size() == 1 and not self.args.gradient_checkpointing
                    and "labels" in inputs and "attention_mask" in inputs and "position_ids" not in inputs):
                # the backbone and head are called directly, past the forward accelerate wrapped in
                # autocast: enter it here (a no-op unless bf16 mixed precision is on)
                with self.accelerator.autocast():
                    loss, n = prefix_shared_loss(model, inputs["input_ids"], inputs["attention_mask"],
                                                 inputs["labels"], num_items_in_batch)
                if loss is not None:
                    self.shared_prefix_tokens += n * (inputs["input_ids"].shape[0] - 1)
                    return loss
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return PrefixSharingSFTTrainer


def _dataset_tokens(dataset) -> int:
    """Prompt + completion tokens of the tokenized training set (0 if the trainer has none to show)."""
    if dataset is None or "input_ids" not in getattr(dataset, "column_names", ()):
        return 0
    return sum(len(ids) for ids in dataset["input_ids"])


def _loss_history(trainer) -> list[dict[str, Any]]:
    return [
        {"step": h["step"], "epoch": float(h.get("epoch", 0.0)), "loss": float(h["loss"]),
         "learning_rate": float(h.get("learning_rate", 0.0))}
        for h in trainer.state.log_history if "loss" in h
    ]


TRAINER_DIR_PREFIX = "restem-trainer-"  # + the owning process id + a random part, in the temp directory


def remove_dead_trainer_dirs(tmp: str | None = None) -> list[Path]:
    """Delete the trainer's scratch directories whose process is gone (a fine-tune killed by SIGKILL or an
    OOM cannot remove its own); each fine-tune calls this before it makes its own."""
    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{TRAINER_DIR_PREFIX}*"):
        pid = path.name[len(TRAINER_DIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_dtype(settings: FinetuneSettings, bf16: bool):
    """The dtype the model is loaded in: float32 master weights, whatever the compute dtype, except
    LoRA's frozen base, which holds bf16 when computing in bf16 (it is never updated)."""
    import torch

    return torch.bfloat16 if bf16 and settings.finetune_method == "lora" else torch.float32


def trained_model(model, init_model: str, settings: FinetuneSettings):
    """The model to save, in float32: the master weights, or the LoRA adapters merged into the
    float32 base (re-read from `init_model` when training held it in bf16, so that neither the
    base nor the merged updates are rounded to bf16)."""
    import torch

    if settings.finetune_method != "lora":
        return model.to(torch.float32)  # a no-op: the master weights are float32
    if model.get_base_model().dtype == torch.float32:
        return model.merge_and_unload()
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    adapters = {k: v.detach().to("cpu", torch.float32) for k, v in get_peft_model_state_dict(model).items()}
    base = AutoModelForCausalLM.from_pretrained(init_model, dtype=torch.float32)
    merged = get_peft_model(base, model.peft_config[model.active_adapter])
    set_peft_model_state_dict(merged, adapters)
    return merged.merge_and_unload()


def finetune(init_model: str, records: list[dict], out_dir: Path, settings: FinetuneSettings,
             callbacks: Sequence[Any] = ()) -> FinetuneResult:
    """Fine-tune `init_model` on `records` and write the result to `out_dir` atomically.

    Also the body of each process of a distributed run (restem_assets.training.finetune_worker under
    `accelerate launch`): Trainer shards the batches, and only the main process writes the model.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    if not records:
        raise ValueError("no SFT records: nothing to fine-tune on")
    bf16 = settings.finetune_dtype in ("bf16", "bfloat16") or (settings.finetune_dtype == "auto" and _use_bf16())
    remove_dead_trainer_dirs()
    work = Path(tempfile.mkdtemp(prefix=f"{TRAINER_DIR_PREFIX}{os.getpid()}-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(init_model)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # bf16 is compute only (Trainer's autocast); the weights AdamW updates stay float32
        model = AutoModelForCausalLM.from_pretrained(init_model, dtype=load_dtype(settings, bf16))
        trainer_class = _trainer_class() if settings.finetune_prefix_sharing else SFTTrainer
        trainer = trainer_class(model=model, args=_sft_config(settings, work, bf16),
                                train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                                peft_config=_lora_config(settings), callbacks=list(callbacks))
        # completion tokens the loss is computed on (+1: the end-of-turn token each completion ends with)
        completion_tokens = sum(len(tokenizer(r["completion"][0]["content"], add_special_tokens=False)["input_ids"]) + 1
                                for r in records)
        tokens = _dataset_tokens(getattr(trainer, "train_dataset", None))
        t0 = time.perf_counter()
        metrics = getattr(trainer.train(), "metrics", None) or {}
        seconds = time.perf_counter() - t0
        if trainer.state.global_step == 0:  # never save the untouched initial weights as a trained policy
            raise ValueError(
                f"fine-tuning took zero optimizer steps on {len(records)} records (epochs={settings.epochs:g}, "
                f"max_steps={settings.finetune_max_steps}, batch_size={settings.batch_size}): nothing written to {out_dir}"
            )
        if trainer.is_world_process_zero():
            trained = trained_model(trainer.accelerator.unwrap_model(trainer.model), init_model, settings)
            with staged_dir(Path(out_dir)) as staged:
                trained.save_pretrained(staged, safe_serialization=True)
                tokenizer.save_pretrained(staged)
        trainer.accelerator.wait_for_everyone()  # no process exits before the model is on disk
        history = _loss_history(trainer)
        return FinetuneResult(
            examples=len(records), completion_tokens=completion_tokens, steps=trainer.state.global_step,
            seconds=seconds, final_loss=history[-1]["loss"] if history else None, log=history,
            samples_per_second=metrics.get("train_samples_per_second"), processes=world_size(),
            tokens=tokens, shared_prefix_tokens=getattr(trainer, "shared_prefix_tokens", 0),
            epochs_run=float(trainer.state.epoch or 0.0),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

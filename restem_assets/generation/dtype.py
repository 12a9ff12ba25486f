"""Which torch dtype generation and fine-tuning run in."""

from __future__ import annotations

import torch


def pick_dtype(requested: str = "auto") -> torch.dtype:
    """bf16 where the CPU has native bf16 (AVX512-BF16/AMX) or on CUDA, else float32."""
    if requested != "auto":
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32,
                "float16": torch.float16}[requested]
    if torch.cuda.is_available():
        return torch.bfloat16
    cap = torch.backends.cpu.get_cpu_capability()
    return torch.bfloat16 if ("BF16" in cap or "AMX" in cap) else torch.float32

"""Which torch dtype generation and fine-tuning run in.

bf16 only pays where the CPU computes in it natively (AVX512-BF16 or AMX); elsewhere
torch emulates it and it runs slower than fp32. `torch.backends.cpu.get_cpu_capability()`
is not the test: it reports "AVX512" on AMD EPYC cores that do have AVX512-BF16. Ask
torch's own instruction probes, and the kernel's CPU flags as a second witness.
"""

from __future__ import annotations

from functools import lru_cache

import torch

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (torch's probes, else /proc/cpuinfo flags)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001 - a probe that cannot run is not a yes
            pass
    return any(flag in _cpuinfo_flags() for flag in _BF16_FLAGS)


def pick_dtype(requested: str = "auto") -> torch.dtype:
    """bf16 on CUDA or where the CPU has native bf16 (AVX512-BF16/AMX), else float32."""
    if requested != "auto":
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32,
                "float16": torch.float16}[requested]
    if torch.cuda.is_available():
        return torch.bfloat16
    return torch.bfloat16 if cpu_native_bf16() else torch.float32

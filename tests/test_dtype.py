"""dtype choice: bf16 where the CPU really has bf16 instructions, not where get_cpu_capability says AVX512."""

import torch

from restem_assets.generation import dtype


def test_cpuinfo_flags_are_read(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx512_bf16", "avx2"} <= dtype._cpuinfo_flags(str(info))
    assert dtype._cpuinfo_flags(str(tmp_path / "missing")) == set()


def test_auto_follows_the_real_instruction_support():
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() or \
        any(f in dtype._cpuinfo_flags() for f in ("avx512_bf16", "amx_bf16"))
    assert dtype.cpu_native_bf16() is native
    if not torch.cuda.is_available():
        assert dtype.pick_dtype("auto") == (torch.bfloat16 if native else torch.float32)


def test_explicit_choices_win():
    assert dtype.pick_dtype("bf16") == torch.bfloat16
    assert dtype.pick_dtype("float32") == torch.float32

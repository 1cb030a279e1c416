"""model.dtype=auto: bf16 where this CPU computes it faster than fp32 (AMX), fp32 elsewhere; overridable."""

from __future__ import annotations

import pytest

from distill import precision

AMX_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n\nprocessor\t: 1\n"
AVX512_BF16_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n"


def test_the_flags_of_the_first_processor_are_read():
    assert precision.cpu_flags(AMX_CPU) == {"fpu", "sse2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
    assert precision.cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert precision.cpu_flags("no flags here\n") == set()


def test_amx_decides_not_avx512_bf16():
    # AVX512-BF16 without AMX ran bf16 matmuls at 190 GFLOP/s against 306 in fp32 (distill/precision.py)
    assert precision.bf16_beats_fp32(precision.cpu_flags(AMX_CPU))
    assert not precision.bf16_beats_fp32(precision.cpu_flags(AVX512_BF16_CPU))


@pytest.mark.parametrize(("forced", "expected"), [("1", "bfloat16"), ("0", "float32")])
def test_the_environment_overrides_the_detection(monkeypatch, forced, expected):
    monkeypatch.setenv(precision.OVERRIDE_ENV, forced)
    assert precision.resolve_dtype("auto") == expected
    assert precision.resolve_dtype("float16") == "float16"  # an explicit dtype is never changed


def test_without_an_override_the_cpu_flags_decide(monkeypatch):
    monkeypatch.delenv(precision.OVERRIDE_ENV)
    monkeypatch.setattr(precision, "_cpu_has_amx", lambda: True)
    assert precision.auto_dtype() == "bfloat16"
    monkeypatch.setattr(precision, "_cpu_has_amx", lambda: False)
    assert precision.auto_dtype() == "float32"

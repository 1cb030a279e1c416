"""What `model.dtype: auto` means on this machine: bfloat16 on CUDA and on CPUs with AMX, float32 on other CPUs.

Measured side by side (2 threads, a 2048x576x1536 product; `benchmarks/precision.py` repeats it on any machine):
with AMX, bf16 ran at 597 GFLOP/s against 144 in fp32, and SmolLM2-135M forward + backward went from ~315 to ~650
tokens/s; on a CPU with AVX512-BF16 but no AMX, bf16 ran at 190 GFLOP/s against 306 in fp32, and training went from
318 to 210 tokens/s. So the flag that decides is AMX, not AVX512-BF16. DISTILL_CPU_BF16=1 or 0 overrides the
detection (model.dtype=bfloat16 or float32 in a recipe is the per-run choice).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

OVERRIDE_ENV = "DISTILL_CPU_BF16"
# model.dtype's values (torch dtype names), and quant.compute_dtype's.
DTYPES = ("auto", "bfloat16", "float16", "float32")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first processor listed in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def bf16_beats_fp32(flags: set[str]) -> bool:
    """AMX's bf16 tiles; AVX512-BF16 alone measured slower than fp32 (above)."""
    return "amx_bf16" in flags


@functools.cache
def _cpu_has_amx() -> bool:
    try:
        return bf16_beats_fp32(cpu_flags(Path("/proc/cpuinfo").read_text()))
    except OSError:  # not Linux: no cheap way to tell; fp32 is the safe side
        return False


def cpu_has_bf16() -> bool:
    """Whether bf16 matrix products beat fp32 on this CPU (AMX), unless DISTILL_CPU_BF16 says otherwise."""
    forced = os.environ.get(OVERRIDE_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return _cpu_has_amx()


def auto_dtype(cuda: bool | None = None) -> str:
    """What `auto` means: bfloat16 on CUDA (`cuda`: whether the run has it; None: this machine) and on CPUs whose
    bf16 beats fp32, else float32."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "bfloat16" if cuda or cpu_has_bf16() else "float32"


def resolve_dtype(dtype: str, cuda: bool | None = None) -> str:
    """A dtype name, with auto resolved (auto_dtype); distill.recipes.resolve calls it once per run, at start."""
    return auto_dtype(cuda) if dtype == "auto" else dtype

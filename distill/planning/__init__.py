"""Checks a recipe against the model's config.json and the hardware it declares, before anything loads a model.

`plan(cfg, stages)` returns, per stage, the memory per device part by part (weights, LoRA or optimizer states,
activations, LM head, vLLM's weights and KV cache) and the problems -- one line each, naming the keys to change:
contexts (max_model_len, prompt + max_tokens, SFT max_length against the data, GRPO completions against what the
SFT trained on), batch arithmetic (GRPO's generation batch divisible by G), adapters on their own base, the
installed stack inside its own declared ranges, bitsandbytes for QLoRA, and memory. `python -m distill.plan` prints
it; `check_before_load(cfg, stage)` raises PlanError so that every entry point can stop before a download.
"""

from __future__ import annotations

import os

from distill.config import Config, HardwareSection
from distill.errors import ConfigError
from distill.planning.memory import GIB
from distill.planning.parts import PlanError, StagePlan

STAGES = ("generate", "sft", "grpo", "kd", "eval", "compare")
# What a plan checks unless stages are named: kd only when named (or by the comparison when compare.arms has kd),
# since its teacher must be weights on this machine and a recipe's generate.teacher may be an API (DeepSeek-R1).
DEFAULT_STAGES = tuple(s for s in STAGES if s != "kd")


def hardware_of(cfg: Config) -> HardwareSection:
    """The recipe's hardware section (its values were checked when the config was parsed: distill.checks)."""
    return getattr(cfg, "hardware", None) or HardwareSection()


def plan(
    cfg: Config, stages: tuple[str, ...] = DEFAULT_STAGES, prompt_tokens: int | None = None, **options
) -> list[StagePlan]:
    """Every check of the given stages; raises ConfigError (one line) when a model's config cannot be found."""
    from distill.planning.pipeline import plan_stage

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage '{unknown[0]}'; expected one of {', '.join(STAGES)}")
    hardware = options.pop("hardware", None) or hardware_of(cfg)
    planned = frozenset(stages)
    return [plan_stage(cfg, hardware, stage, prompt_tokens, planned=planned, **options) for stage in stages]


def runtime_hardware(cfg: Config) -> tuple[HardwareSection, str | None]:
    """The declared hardware with what this process knows better: WORLD_SIZE (accelerate launch) for every stage's
    processes, and the CUDA device's own name and memory. On a machine without CUDA a GPU recipe's memory is not
    checked (the note says so)."""
    import dataclasses

    hardware = hardware_of(cfg)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        hardware = dataclasses.replace(hardware, processes={stage: world for stage in STAGES})
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        device = torch.cuda.get_device_properties(torch.cuda.current_device())
        return dataclasses.replace(hardware, gpu=device.name, gpu_memory_gib=device.total_memory / GIB), None
    if hardware.cuda:
        return hardware, f"no CUDA device here: memory on {hardware.gpu} not checked"
    return hardware, None


def check_before_load(cfg: Config, stage: str) -> None:
    """The plan's checks for one stage on this machine; raises PlanError (one line per problem) or ConfigError.
    Entry points call it after parsing their config and before loading any model. Exact checks (contexts, batch
    arithmetic, adapters' bases, versions, bitsandbytes) and the memory estimate stop a run; what rests on the
    prompt budget and the long-CoT conventions are for `python -m distill.plan` (recipe review)."""
    hardware, skip_memory = runtime_hardware(cfg)
    (result,) = plan(cfg, (stage,), hardware=hardware, check_memory=skip_memory is None, review=False)
    if result.problems:
        raise PlanError(result.problems)

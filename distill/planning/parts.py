"""What every stage planner shares and returns: the rows of the memory table, the stage's plan, the plan's error, the
prompt budgets. Apart from the package's __init__ so that the planners (stages, rl, pipeline) import it and the
package imports them, without a circle."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.config import HardwareSection
from distill.errors import ConfigError
from distill.planning.memory import GIB

# Prompt budgets in tokens (`prompt_tokens=` overrides them). R1's prompt around a benchmark problem: the longest
# MATH training problem is 4,309 characters (an [asy] figure, ~1,500 tokens), 99% are under 1,110 characters;
# MATH-500 1,733, AIME 1,734 (shared/data). The built-in synthetic problems are at most 99 characters: with the
# instruction and SmolLM2's default system turn about 60 tokens (recipes/smollm2.yaml).
PROMPT_TOKENS = 1024
SYNTHETIC_PROMPT_TOKENS = 128


def device_bytes(hardware: HardwareSection) -> float:
    """Memory of one device in bytes."""
    return hardware.gpu_memory_gib * GIB


def processes_for(hardware: HardwareSection, stage: str) -> int:
    """Training processes of a stage (hardware.processes; 1 when not named)."""
    return int(hardware.processes.get(stage, 1))


class PlanError(ConfigError):
    """Problems found before loading a model; the message holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Row:
    stage: str
    part: str
    gib: float
    fits: str = ""  # yes / NO on the lines that are checked


@dataclass
class StagePlan:
    stage: str
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

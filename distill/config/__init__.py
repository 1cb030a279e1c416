"""The recipe schema: every key, its type and its default, as dataclasses -- nothing else.

distill.recipes loads a recipe file and `key=value` overrides onto these (and checks them, distill.checks); this
package imports nothing of ours but the training fields (distill.training.fields, schema too), so the engines, the
trainers and the planner can all read it. The sections live in generation.py (generate, eval and their parts),
training.py (sft, grpo, kd) and comparison.py (compare, hardware); every name is importable from distill.config. Later stages add their sections to `Config`; one recipe file per model
holds all the sections that model uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distill.config.comparison import CompareSection, HardwareSection
from distill.config.generation import (
    EngineConfig,
    EvalSection,
    FilterConfig,
    GenerateConfig,
    PromptSource,
    SamplingConfig,
    VerifySection,
)
from distill.config.training import GRPOSection, KDSection, LengthTargetSection, SFTSection, TeacherServerSection

__all__ = [
    "CompareSection",
    "Config",
    "EngineConfig",
    "EvalSection",
    "FilterConfig",
    "GRPOSection",
    "GenerateConfig",
    "HardwareSection",
    "KDSection",
    "LengthTargetSection",
    "ModelConfig",
    "PromptSource",
    "SFTSection",
    "SamplingConfig",
    "TeacherServerSection",
    "VerifySection",
    "card_dir",
    "teacher_name",
]


@dataclass
class ModelConfig:
    # A built-in name (smollm2-135m), a local folder, or a hub id such as Qwen/Qwen2.5-7B-Instruct.
    name: str = "smollm2-135m"
    # Hub revision (branch, tag or commit); ignored for built-in names and local folders.
    revision: str | None = None
    # Weights dtype: auto, bfloat16, float16 or float32 (distill.precision.DTYPES). auto is resolved once when the
    # config loads -- bfloat16 on CUDA and on CPUs with AMX, else float32 (distill.precision) -- and the resolved
    # name is what config.yaml, manifests, cards and resume checks record.
    dtype: str = "auto"
    # Run the model repository's own Python code (models transformers does not ship); only for repos you trust.
    trust_remote_code: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    sft: SFTSection = field(default_factory=SFTSection)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    kd: KDSection = field(default_factory=KDSection)
    eval: EvalSection = field(default_factory=EvalSection)
    compare: CompareSection = field(default_factory=CompareSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    # The run's seed: data order, adapter initialization, synthetic prompts, and sampling unless a section sets its own.
    seed: int = 42
    # Where a stage writes its outputs; each stage makes its own sub-folder.
    output_dir: str = "outputs"
    # Experiment trackers, as TRL's report_to: none, tensorboard, trackio, wandb, mlflow, or several (a list, or
    # report_to=tensorboard,trackio). One default for every stage that reports -- sft, grpo and kd through TRL's
    # integrations (every logged key, grpo.monitor's warnings too), eval its results -- that a stage's own
    # `<stage>.report_to` overrides. tensorboard writes into each run's folder (<run>/runs/; `tensorboard --logdir
    # <output_dir>`), trackio into its local store (`trackio show`). tensorboard and trackio: pip extra `trackers`.
    report_to: str | list[str] = "none"
    # The trackers' project (TRL's `project`, trackio's; wandb's WANDB_PROJECT and mlflow's experiment unless those
    # are set); each stage is a run in it named <stage>-<output folder>.
    project: str = "distill-factory"
    # Filled in by load_config with the recipe's name; not meant to be set by hand.
    recipe: str = ""


def card_dir(cfg: Config) -> Path:
    """Where distill.generate writes data cards: generate.card_dir, relative to output_dir unless absolute."""
    return Path(cfg.output_dir) / cfg.generate.card_dir


def teacher_name(cfg: Config) -> str:
    """generate.teacher, or the recipe's model when none is given (R1-Zero style self-distillation, the CPU demo)."""
    return cfg.generate.teacher or cfg.model.name

"""Each stage's settings: the comparison's resolved config with that stage's part set, written as a YAML file the
stage loads like a recipe (`python -m distill.sft recipe=<root>/stages/sft.yaml`).

A stage gets whole sections, not hand-built `key=value` strings: the GRPO and KD arms get the teacher's very
PromptSource (a field added to it reaches them without a change here). Building a stage's settings runs nothing:
the budget a stage is given (what distillation spent) is an argument, computed by grpo.compare.run once the stages
it needs have finished.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from distill.compare_table import ARM, SFT_ARMS, STAGE, TEACHER_STAGE, TOPK_ARMS
from distill.config import Config, teacher_name
from grpo.compare.servers import Served

# The stages that make the teacher and its verified dataset: what replicates share (compare.share_teacher).
TEACHER_STAGES = (TEACHER_STAGE, "generate")


def _name(stage: str) -> str:
    """The run name (or dataset name) a stage's output folder ends in: the table's `produces`."""
    return Path(STAGE[stage].produces).name


# The teacher's top-k the generate stage keeps for the okd arm when generate.teacher_logprobs is unset: vLLM's
# default cap on logprobs (a server needs --max-logprobs for more), and past ~20 the tail holds little mass.
OKD_TOPK = 20


class Layout:
    """Where each stage of one comparison writes, from the stage table's `produces`, under <output_dir>/compare/
    <run_name>/ (compare.run_name, default the recipe's name). `shared`: the layout of the run that made the teacher
    and its dataset (TEACHER_STAGES) for this one too -- a replicate sharing the first seed's teacher."""

    def __init__(self, cfg: Config, shared: Layout | None = None) -> None:
        self.cfg, self.shared = cfg, shared
        self.root = Path(cfg.output_dir) / "compare" / (cfg.compare.run_name or cfg.recipe)

    def folder(self, stage: str) -> Path:
        if self.shared is not None and stage in TEACHER_STAGES:
            return self.shared.folder(stage)
        return self.root / STAGE[stage].produces

    @property
    def dataset(self) -> Path:
        return self.folder("generate")

    @property
    def sft_dir(self) -> Path:
        return self.folder("sft")

    def grpo_dir(self, arm: str) -> Path:
        return self.train_dir(arm)

    @property
    def kd_dir(self) -> Path:
        return self.folder("kd")

    def train_dir(self, arm: str) -> Path:
        """The folder of the stage that trains an arm's model (the last of its stages)."""
        return self.folder(ARM[arm].stages[-1])

    @property
    def teacher(self) -> str:
        """The teacher every taught arm learns from: the RL-trained one (teacher_from=rl), or the given one."""
        if self.cfg.compare.teacher_from == "rl":
            return str(self.folder(TEACHER_STAGE))
        return teacher_name(self.cfg)

    def model_of(self, arm: str) -> str:
        """What distill.eval loads for an arm: the student, or the adapter (merged/ when SFT wrote one)."""
        if arm == "base":
            return self.cfg.model.name
        if arm in SFT_ARMS:
            merged = self.train_dir(arm) / "merged"
            return str(merged if merged.is_dir() else self.train_dir(arm))
        return str(self.train_dir(arm))

    def settings_file(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.yaml"


def _swept(cfg: Config, section) -> object:
    """With compare.sweep, a training stage checkpoints at those fractions of its run and keeps them all."""
    if not cfg.compare.sweep:
        return section
    return dataclasses.replace(section, save_fractions=list(cfg.compare.sweep), save_total_limit=None)


def stage_config(
    cfg: Config,
    layout: Layout,
    stage: str,
    budget: float | None = None,
    models: list[str] | None = None,
    served: Served | None = None,
) -> Config:
    """The settings `stage` runs with: `cfg` (the comparison's, resolved) with output_dir the comparison's root and
    the stage's own section set. `budget`: FLOPs a budgeted stage may spend (compare.match_budget); `models`: the
    eval stages' NAME=MODEL entries; `served`: the teacher's servers the generate stage samples from."""
    c, replace = cfg.compare, dataclasses.replace
    out = replace(cfg, output_dir=str(layout.root))
    if stage == "generate":
        teacher = layout.teacher if c.teacher_from == "rl" else cfg.generate.teacher
        # card_dir relative to output_dir (the root): distill.config.card_dir joins them once.
        generate = replace(cfg.generate, dataset_name=_name(stage), card_dir="data_cards", push_to_hub=False)
        if served is not None:
            engine = cfg.generate.engine
            engine = replace(
                engine, kind="openai", urls=served.urls, served_model=served.served_model or engine.served_model
            )
            generate = replace(generate, engine=engine)
        if any(arm in c.arms for arm in TOPK_ARMS):  # the same pass keeps them: no second one for the okd arm
            generate = replace(generate, teacher_logprobs=cfg.generate.teacher_logprobs or OKD_TOPK)
        return replace(out, generate=replace(generate, teacher=teacher))
    if stage in ("sft", "sft_okd"):
        # Both on the one dataset: arm b with cross-entropy only (the paper's distillation, whatever sft.kd_weight
        # says), arm f with compare.offline_kd_weight -- unpacked, as the KD loss needs (sft.padding_free still packs
        # a batch's rows without cutting them).
        kd = {"kd_weight": c.offline_kd_weight, "packing": False} if stage == "sft_okd" else {"kd_weight": 0.0}
        sft = replace(cfg.sft, dataset=str(layout.dataset), run_name=_name(stage), **kd)
        return replace(out, sft=_swept(cfg, sft))
    if stage == TEACHER_STAGE:  # R1-Zero on the teacher: the recipe's own grpo section and prompts
        steps = cfg.grpo.max_steps if c.teacher_max_steps is None else c.teacher_max_steps
        dynamic = cfg.grpo.dynamic_sampling if c.teacher_dynamic_sampling is None else c.teacher_dynamic_sampling
        grpo = replace(cfg.grpo, target="teacher", run_name=_name(stage), init_from=None, max_steps=steps)
        return replace(out, grpo=replace(grpo, dynamic_sampling=dynamic))
    prompts = replace(cfg.generate.prompts)  # the prompts the teacher was given
    if stage == "kd":
        steps = cfg.kd.max_steps if c.kd_max_steps is None else c.kd_max_steps
        kd = replace(cfg.kd, teacher=layout.teacher, run_name=_name(stage), init_from=None, prompts=prompts)
        kd = replace(kd, max_steps=steps, max_flops=cfg.kd.max_flops if budget is None else budget)
        return replace(out, kd=_swept(cfg, kd))
    if stage in ("grpo_rl", "grpo_distill_rl"):
        steps = cfg.grpo.max_steps if c.grpo_max_steps is None else c.grpo_max_steps
        init = str(layout.sft_dir) if stage == "grpo_distill_rl" else None
        grpo = replace(cfg.grpo, target="student", template="r1", prompts=prompts, run_name=_name(stage))
        grpo = replace(
            grpo, init_from=init, max_steps=steps, max_flops=cfg.grpo.max_flops if budget is None else budget
        )
        return replace(out, grpo=_swept(cfg, grpo))
    if stage in ("eval", "eval_context"):
        limit = c.context_problems if stage == "eval_context" else cfg.eval.prompts.limit
        evaluation = replace(cfg.eval, models=list(models or []), prompts=replace(cfg.eval.prompts, limit=limit))
        return replace(out, eval=evaluation)
    raise KeyError(f"no settings for stage {stage!r}: add it to grpo.compare.stages.stage_config")


def write_settings(cfg: Config, path: Path) -> Path:
    """`cfg` as a recipe file (dataclasses -> dict -> YAML) that distill.config.load_config reads back."""
    from omegaconf import OmegaConf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return path

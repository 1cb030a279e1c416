"""One stage's plan: its own checks (distill.planning.stages), the installed stack, the recipe conventions for
long chains of thought on GPUs, the batch the recipe's comment promises, and grpo.compare's arms."""

from __future__ import annotations

import dataclasses
import re

from distill import trackers
from distill.compare_table import ARM, ARMS, STAGE, TEACHER_STAGE, shares_teacher, stages_of
from distill.config import Config, HardwareSection, teacher_name
from distill.planning.kd import kd_teacher, plan_kd
from distill.planning.parts import StagePlan, processes_for
from distill.planning.rl import plan_grpo
from distill.planning.stages import Ctx, plan_engine, plan_sft, problem, sft_base, sft_prompt
from distill.planning.versions import FIX, check_versions, summary
from distill.recipes import recipe_path

# Long-CoT anchors (GPU recipes; the CPU demo's 135M model was tuned by measurement, recipes/smollm2.yaml):
# open-r1's GRPO runs fine-tune fully at 1e-6; LoRA wants ~10x that ("LoRA without regret", Schulman et al. 2025)
# at alpha = r, so the rate x alpha/r stays at or under 1e-5. R1 itself: 3e-6 for full fine-tuning.
MAX_LORA_GRPO_RATE = 1e-5
MAX_FULL_GRPO_RATE = 3e-6
# OpenR1-Distill-7B's SFT (open-r1 recipes/OpenR1-Distill-7B/sft/config_distill.yaml): max_grad_norm 0.2,
# cosine_with_min_lr (min_lr_rate 0.1).
MAX_SFT_GRAD_NORM = 0.2
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "eight": 8, "sixteen": 16, "thirty-two": 32}
# The stand-alone stage (distill.plan stage=...) that plans a comparison stage's way of planning: planned in the same
# call, the comparison does not repeat it.
STANDALONE = {"generate": "generate", "sft": "sft", "grpo_student": "grpo", "grpo_teacher": "grpo", "kd": "kd"}
BATCH_KEYS = ("grpo.per_device_train_batch_size", "grpo.gradient_accumulation_steps", "grpo.num_generations")


def _min_lr(section, key: str) -> list[str]:
    kwargs = section.trainer.get("lr_scheduler_kwargs") or {}
    if section.lr_scheduler_type == "cosine_with_min_lr" and not ({"min_lr", "min_lr_rate"} & set(kwargs)):
        return [
            problem(
                f"{key}: lr_scheduler_type=cosine_with_min_lr needs min_lr or min_lr_rate in {key}.trainer.lr_scheduler_kwargs "
                "(transformers raises at the first step otherwise)",
                f"{key}.trainer.lr_scheduler_kwargs",
            )
        ]
    return []


def sft_conventions(cfg: Config, hw: HardwareSection, review: bool = True) -> list[str]:
    sft, out = cfg.sft, _min_lr(cfg.sft, "sft")
    if not (hw.cuda and review):
        return out
    if sft.max_grad_norm > MAX_SFT_GRAD_NORM:
        out.append(
            problem(
                f"sft: max_grad_norm={sft.max_grad_norm:g}; OpenR1-Distill-7B clips at 0.2 on long traces",
                "sft.max_grad_norm",
            )
        )
    if sft.lr_scheduler_type == "cosine":
        out.append(
            problem(
                "sft: plain cosine decays to 0; OpenR1-Distill-7B uses cosine_with_min_lr (min_lr_rate 0.1)",
                "sft.lr_scheduler_type",
            )
        )
    if sft.attn_implementation is None:
        out.append(
            problem(
                "sft: no attention implementation set (sdpa, or flash_attention_2 with flash-attn installed)",
                "sft.attn_implementation",
            )
        )
    return out


def grpo_conventions(cfg: Config, hw: HardwareSection, stage: str = "grpo", review: bool = True) -> list[str]:
    g, out = cfg.grpo, _min_lr(cfg.grpo, "grpo")
    if not (hw.cuda and review):
        return out
    if g.method == "full" and g.learning_rate > MAX_FULL_GRPO_RATE:
        out.append(
            problem(
                f"{stage}: learning_rate={g.learning_rate:g} for full fine-tuning is above R1's 3e-6",
                "grpo.learning_rate",
            )
        )
    scaled = g.learning_rate * g.lora.alpha / g.lora.r
    if g.method != "full" and scaled > MAX_LORA_GRPO_RATE:
        best = MAX_LORA_GRPO_RATE * g.lora.r / g.lora.alpha
        out.append(
            problem(
                f"{stage}: learning_rate={g.learning_rate:g} at LoRA r={g.lora.r}/alpha={g.lora.alpha} is "
                f"{scaled / MAX_LORA_GRPO_RATE:.0f}x open-r1's 1e-6 full fine-tuning rate scaled for LoRA (x10, / alpha/r): "
                f"use <= {best:.2g}",
                "grpo.learning_rate",
            )
        )
    if g.loss_type == "grpo":
        out.append(
            problem(
                f"{stage}: loss_type=grpo is length-biased (TRL's docs); open-r1 uses dr_grpo or dapo", "grpo.loss_type"
            )
        )
    return out


def recipe_batch_comment(cfg: Config, hw: HardwareSection) -> list[str]:
    """The grpo section's comment "N prompts x G ..." against per device x accumulation x processes."""
    if not cfg.recipe:
        return []
    text = recipe_path(cfg.recipe).read_text()
    section = re.search(r"^grpo:\n(.*?)(?=^\S)", text + "\nend", re.S | re.M)
    comments = "\n".join(
        line for line in (section.group(1) if section else "").splitlines() if line.strip().startswith("#")
    )
    found = re.search(r"([\w-]+) prompts x (?:G=)?(\d+)", comments, re.I)
    if not found:
        return []
    word = found.group(1).lower()
    prompts = int(word) if word.isdigit() else NUMBER_WORDS.get(word)
    g, group = cfg.grpo, int(found.group(2))
    per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps * processes_for(hw, "grpo")
    if prompts is None or (prompts * group, group) == (per_step, g.num_generations):
        return []
    return [
        problem(
            f"grpo: the recipe's comment says {found.group(0)} per step; its settings give {per_step} completions = "
            f"{per_step / g.num_generations:g} prompts x G={g.num_generations}",
            *BATCH_KEYS,
            "hardware.processes.grpo",
        )
    ]


def _uses_vllm(cfg: Config, stage: str) -> bool:
    if stage == "generate":
        return cfg.generate.engine.kind == "vllm"
    if stage == "eval":
        return cfg.eval.engine.kind == "vllm"
    if stage == "grpo":
        return cfg.grpo.use_vllm is not False
    if stage == "kd":
        return cfg.kd.use_vllm is not False
    return stage == "compare"


def _merge(into: StagePlan, part: StagePlan) -> None:
    into.rows += part.rows
    into.problems += part.problems
    into.notes += part.notes


def plan_compare(ctx: Ctx, sp: StagePlan, planned: frozenset[str] = frozenset()) -> None:
    """grpo.compare's stages on the recipe, as the stage table lists them for compare.arms (distill.compare_table):
    the teacher's GRPO (teacher_from=rl), generate and SFT, GRPO on the student as is (c) and from the SFT adapter
    (d), on-policy distillation (e), and the evaluation of each arm's model (an adapter is merged onto its base).
    What equals a stage planned in the same call (`planned`) is not repeated: generate, sft, grpo (the teacher's
    GRPO, and GRPO (c) as before), kd, eval of model.name."""
    cfg, arms = ctx.cfg, [a for a in ARMS if a in ctx.cfg.compare.arms]
    c, max_tokens = cfg.compare, cfg.generate.sampling.max_tokens
    stages = dict.fromkeys(s for arm in arms for s in stages_of(arm, c.teacher_from, c.match_budget))
    parts = []
    # grpo.compare gives GRPO and KD the teacher's prompts and GRPO the R1 template (grpo.compare.stages).
    student = dataclasses.replace(
        cfg.grpo, target="student", template="r1", init_from=None, prompts=cfg.generate.prompts
    )
    for name in stages:
        how = STAGE[name].planned_as
        if STANDALONE.get(how) in planned and name != "sft_okd":  # okd's SFT holds the full logits besides
            continue
        part = StagePlan(f"compare/{name}")
        if how == "generate":
            plan_engine(ctx, part, "generate", teacher_name(cfg), max_tokens, "generate.sampling.max_tokens")
        elif how == "sft":
            part.problems += sft_conventions(cfg, ctx.hw, ctx.review)
            plan_sft(ctx, part, kd_weight={"sft_okd": c.offline_kd_weight, "sft": 0.0}.get(name))
        elif how == "grpo_student":
            part.problems += grpo_conventions(cfg, ctx.hw, part.stage, ctx.review)
            plan_grpo(ctx, part, student)
        elif how == "grpo_on_sft":
            sft_tokens = (cfg.sft.max_length or sft_prompt(ctx) + max_tokens) - sft_prompt(ctx)
            trained = min(sft_tokens, max_tokens) if cfg.sft.dataset is None else sft_tokens
            plan_grpo(ctx, part, student, adapter_on=sft_base(cfg), trained=trained)
        elif how == "grpo_teacher":  # the recipe's own grpo section, R1-Zero on model.name
            part.problems += grpo_conventions(cfg, ctx.hw, part.stage, ctx.review)
            plan_grpo(ctx, part, dataclasses.replace(cfg.grpo, target="teacher", init_from=None))
        elif how == "kd":  # the RL-made teacher does not exist yet: its base model stands for it
            kd = dataclasses.replace(cfg.kd, init_from=None, prompts=cfg.generate.prompts)
            plan_kd(ctx, part, kd, teacher=teacher_name(cfg) if c.teacher_from == "given" else cfg.model.name)
        parts.append(part)
    on_sft_base = ("distill", "distill_rl", "okd")  # arms whose model is an adapter trained by distill.sft
    if set(on_sft_base) & set(arms) and {"base", "rl", "kd"} & set(arms) and sft_base(cfg) != cfg.model.name:
        sp.problems.append(
            problem(
                f"compare: arms (b, d, f) distill into sft.init_from={cfg.sft.init_from} (arm (d) trains its adapter on "
                f"that base) but arms (a, c, e) use model.name={cfg.model.name}: the arms do not share one student",
                "model.name",
                "sft.init_from",
            )
        )
    models: dict[str, list[str]] = {}
    for arm in arms:  # an arm's model is an adapter on its student's base: that base is what the engine loads
        model = sft_base(cfg) if arm in on_sft_base else cfg.model.name
        if not (model == cfg.model.name and "eval" in planned):
            models.setdefault(model, []).append(ARM[arm].letter)
    for model, letters in models.items():
        parts.append(StagePlan(f"compare/eval ({', '.join(letters)})"))
        plan_engine(
            ctx, parts[-1], "eval", model, cfg.eval.sampling.max_tokens or max_tokens, "eval.sampling.max_tokens"
        )
    for part in parts:
        _merge(sp, part)
    if c.seeds:
        sp.notes.append(replicates_note(cfg, arms, list(stages)))


def replicates_note(cfg: Config, arms: list[str], stages: list[str]) -> str:
    """What compare.seeds repeats (grpo.compare.replicates): the stages run per seed and once, and the one evaluation's
    model count. Memory is one seed's: the seeds run one after another."""
    c = cfg.compare
    once = [s for s in stages if s in (TEACHER_STAGE, "generate")] if shares_teacher(c) else []
    per_seed = [s for s in stages if s not in once]
    trained = [a for a in arms if a != "base"]
    teachers = 0 if c.teacher_from != "rl" else 1 if once else len(c.seeds)
    models = len(c.seeds) * len(trained) + len(c.sweep) * len(trained) + ("base" in arms) + teachers
    return (
        f"compare.seeds: {len(c.seeds)} replicates, one after another (the memory above is one seed's); once: "
        f"{', '.join(once) or 'nothing'}; per seed: {', '.join(per_seed)}; then one distill.eval run of {models} "
        "models (each seed's arms, the first seed's sweep points, the student as is once"
        f"{', the shared teacher once' if once else ''})"
    )


def trackers_missing(cfg: Config, stage: str) -> list[str]:
    """A line per stage whose report_to names a tracker not installed here (grpo.compare runs sft, grpo, eval, kd)."""
    stages = (stage,) if stage != "compare" else ("sft", "grpo", "eval", *(("kd",) if "kd" in cfg.compare.arms else ()))
    return [f"{stage}: {line}" for s in stages if s in trackers.STAGES and (line := trackers.missing(cfg, s))]


def plan_stage(
    cfg: Config,
    hw: HardwareSection,
    stage: str,
    prompt_tokens: int | None,
    check_memory: bool = True,
    review: bool = True,
    overridden: frozenset[str] = frozenset(),
    planned: frozenset[str] = frozenset(),
) -> StagePlan:
    """One stage's plan; `planned` names the other stages of the same call (grpo.compare does not repeat them)."""
    ctx = Ctx(cfg=cfg, hw=hw, prompt_override=prompt_tokens, check_memory=check_memory, review=review)
    sp = StagePlan(stage)
    problems, notes = check_versions(_uses_vllm(cfg, stage))
    sp.problems += [problem(f"{stage}: {line}", f"the environment: {FIX}") for line in problems]
    sp.notes += [f"installed: {summary()}", *notes]
    sp.problems += trackers_missing(cfg, stage)
    if stage == "generate":
        plan_engine(
            ctx, sp, "generate", teacher_name(cfg), cfg.generate.sampling.max_tokens, "generate.sampling.max_tokens"
        )
    elif stage == "eval":
        plan_engine(
            ctx,
            sp,
            "eval",
            cfg.model.name,
            cfg.eval.sampling.max_tokens or cfg.generate.sampling.max_tokens,
            "eval.sampling.max_tokens",
        )
    elif stage == "sft":
        sp.problems += sft_conventions(cfg, hw, review)
        plan_sft(ctx, sp)
    elif stage == "grpo":
        sp.problems += grpo_conventions(cfg, hw, review=review)
        if review and not (set(BATCH_KEYS) | {"hardware.processes.grpo"}) & overridden:
            sp.problems += recipe_batch_comment(cfg, hw)
        plan_grpo(ctx, sp)
    elif stage == "kd":
        plan_kd(ctx, sp, teacher=kd_teacher(cfg))
    else:
        plan_compare(ctx, sp, planned)
    return sp

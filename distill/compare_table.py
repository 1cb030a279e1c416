"""grpo.compare's stage and arm tables: pure data, no imports.

Running (grpo.compare.run), planning (distill.planning.pipeline.plan_compare), `--help` and the report all read these
tables, so a stage added here is run, planned, listed and reported at once. They live in `distill`, not in
`grpo.compare`, because `python -m distill.plan stage=compare` plans the comparison and `distill` never imports
`grpo`; what is not data -- how each stage's settings are built from the comparison's -- is grpo.compare.stages'.
"""

from __future__ import annotations

from dataclasses import dataclass

# A stage's `needs` entry for "the teacher's own stage, when the comparison makes the teacher" (teacher_from=rl).
TEACHER_STAGE = "grpo_teacher"


@dataclass(frozen=True)
class Stage:
    """One process grpo.compare runs, `python -m <module> recipe=<its resolved settings>.yaml`."""

    name: str  # its ledger key (stages.json), settings file stages/<name>.yaml and log logs/<name>.stdout
    module: str  # the entry point it runs
    section: str  # the config section it reads: its keys in grpo.compare --help
    produces: str  # its output folder under the comparison's root
    # The stages that must have finished first (TEACHER_STAGE only with compare.teacher_from=rl).
    needs: tuple[str, ...]
    # How distill.plan plans it (distill.planning.pipeline.plan_compare): generate, sft, grpo_student, grpo_on_sft,
    # grpo_teacher, kd, eval.
    planned_as: str
    # With compare.match_budget, it stops at what distillation spent (grpo/kd.max_flops): generate and sft run first.
    budgeted: bool
    # It trains: compare.launcher starts it on several processes (accelerate, srun). generate and eval run as one
    # process whatever the launcher: their engines spread the work themselves (tensor parallel, a server fleet).
    parallel: bool
    help: str


STAGES: tuple[Stage, ...] = (
    Stage(
        TEACHER_STAGE, "grpo.train", "grpo", "grpo/teacher", (), "grpo_teacher", False, True,
        "R1-Zero GRPO on model.name makes the teacher first (compare.teacher_from=rl; compare.teacher_max_steps)",
    ),
    Stage(
        "generate", "distill.generate", "generate", "datasets/teacher", (TEACHER_STAGE,), "generate", False, False,
        "the teacher samples generate.prompts; the verifiers keep the correct answers (the dataset and its card)",
    ),
    Stage(
        "sft", "distill.sft", "sft", "sft/distill", ("generate",), "sft", False, True,
        "SFT of the student on the teacher's dataset: arm (b)",
    ),
    Stage(
        "sft_okd", "distill.sft", "sft", "sft/okd", ("generate",), "sft", False, True,
        "SFT on the same dataset with the KD loss on the teacher's stored top-k log-probs: arm (f) "
        "(compare.offline_kd_weight)",
    ),
    Stage(
        "grpo_rl", "grpo.train", "grpo", "grpo/rl", (), "grpo_student", True, True,
        "GRPO on the student as is, on the teacher's prompts, R1's template: arm (c) (compare.grpo_max_steps)",
    ),
    Stage(
        "grpo_distill_rl", "grpo.train", "grpo", "grpo/distill_rl", ("sft",), "grpo_on_sft", True, True,
        "GRPO from the distilled adapter, as arm (c) otherwise: arm (d)",
    ),
    Stage(
        "kd", "distill.kd", "kd", "kd/kd", (TEACHER_STAGE,), "kd", True, True,
        "on-policy distillation on the teacher's prompts: the student samples, the teacher scores: arm (e) "
        "(compare.kd_max_steps)",
    ),
    Stage(
        "eval", "distill.eval", "eval", "eval", (), "eval", False, False,
        "every row's model on the held-out problems, one engine for all (eval.models)",
    ),
    Stage(
        "eval_context", "distill.eval", "eval", "eval", (), "eval", False, False,
        "the context rows (the teacher, sweep points) on the first compare.context_problems problems",
    ),
)  # fmt: skip
STAGE = {stage.name: stage for stage in STAGES}


@dataclass(frozen=True)
class Arm:
    """One row of the report: a model the comparison evaluates."""

    name: str
    letter: str  # the paper's Table 6 letter; (t) the teacher, reported beside the arms
    label: str
    stages: tuple[str, ...]  # the training stages that make its model (their needs before them); the last trains it


ARM_ROWS: tuple[Arm, ...] = (
    Arm("base", "a", "(a) student as is", ()),
    Arm("distill", "b", "(b) distillation: SFT on the teacher's verified samples", ("sft",)),
    Arm("rl", "c", "(c) RL: GRPO on the student", ("grpo_rl",)),
    Arm("distill_rl", "d", "(d) distillation, then GRPO", ("grpo_distill_rl",)),
    Arm("kd", "e", "(e) on-policy distillation: the student samples, the teacher scores", ("kd",)),
    Arm("okd", "f", "(f) offline KD: SFT on the same samples against the teacher's stored top-k", ("sft_okd",)),
    Arm("teacher", "t", "(t) the teacher: R1-Zero GRPO on the model, before any arm", (TEACHER_STAGE,)),
)
ARM = {arm.name: arm for arm in ARM_ROWS}
# What compare.arms may name (the teacher is a row only when the comparison makes it).
ARMS = tuple(arm.name for arm in ARM_ROWS if arm.name != "teacher")
LABELS = {arm.name: arm.label for arm in ARM_ROWS}
GRPO_ARMS = tuple(arm.name for arm in ARM_ROWS if arm.stages and STAGE[arm.stages[-1]].module == "grpo.train")
# The arms whose model an SFT stage trains: an adapter on sft.init_from's base (or merged onto it, with sft.merge).
SFT_ARMS = tuple(arm.name for arm in ARM_ROWS if arm.stages and STAGE[arm.stages[-1]].module == "distill.sft")
# The arms that train on the teacher's stored top-k log-probs: with one in compare.arms the generate stage keeps them.
TOPK_ARMS = ("okd",)
TEACHER_FROM = ("given", "rl")
# compare.launcher: how a training stage's processes start (grpo.compare.launch renders each).
LAUNCHERS = ("plain", "accelerate", "srun")


def stages_of(arm: str, teacher_from: str = "given", match_budget: bool = False) -> tuple[str, ...]:
    """The stages an arm needs, in the order they run: each stage after what it needs (the teacher's stage only with
    teacher_from=rl; generate and sft before a budgeted stage with match_budget)."""
    order: list[str] = []

    def add(name: str) -> None:
        if name in order or (name == TEACHER_STAGE and teacher_from != "rl" and arm != "teacher"):
            return
        stage = STAGE[name]
        needs = stage.needs + (("generate", "sft") if stage.budgeted and match_budget else ())
        for need in needs:
            add(need)
        order.append(name)

    for name in ARM[arm].stages:
        add(name)
    return tuple(order)


def taught(arm: str) -> bool:
    """An arm that learns from the teacher: one of its stages needs the teacher's."""
    return TEACHER_STAGE in stages_of(arm, "rl") and arm != "teacher"


def shares_teacher(compare) -> bool:
    """Whether compare.seeds' replicates learn from one teacher and dataset, made once (compare.share_teacher with a
    teacher the comparison makes); the planner and grpo.compare.replicates both ask."""
    return compare.share_teacher and compare.teacher_from == "rl"

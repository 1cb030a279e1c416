"""`python -m grpo.compare [recipe=NAME] [key=value ...]`: distillation against RL on one student (the paper's Table 6).

The arms, on the same student, the same prompts and the same evaluation:

    base        (a) the student as is
    distill     (b) SFT on the teacher's rejection-sampled dataset (distill.generate, then distill.sft)
    rl          (c) GRPO on the student with the prompts the teacher was given (grpo.train target=student)
    distill_rl  (d) distillation, then GRPO from the distilled adapter
    kd          (e) on-policy distillation (distill.kd): the student samples, the teacher scores every token

With compare.teacher_from=rl (R1's order, what the CPU recipe does: no stronger model ships offline), the teacher is
made first -- R1-Zero GRPO on model.name (grpo.train grpo.target=teacher) -- and arms (b), (d) and (e) learn from it
while (c) trains the untouched student; the teacher's evaluation and its RL cost stand beside the arms as row (t).

Every stage runs as its own `python -m ...` process with the recipe and the overrides given here (so each frees its
engine's memory, shows its own progress and resumes itself after a crash), writing under
<output_dir>/compare/<run_name>/. A stage that finished is recorded in `stages.json` and not run again
(compare.resume). With compare.match_budget, GRPO's steps are chosen by its FLOPs: each GRPO run stops once it has
spent what distillation spent, the teacher's generation included (grpo.max_flops; grpo.max_steps, or
compare.grpo_max_steps, caps it).

With compare.min_detectable (points of pass@1), every evaluation is sized by that question (grpo.sizing): one sample
per problem and as many held-out problems as a paired comparison needs to resolve that gap 80% of the time.

The report (report/): table.md like Table 6 with paired statistics (arm against arm on the same problems: difference,
interval, p-value, minimum detectable difference), accuracy-vs-compute and GRPO length plots, compare.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from distill import cli
from distill.config import Config, teacher_name
from distill.errors import UserError
from distill.prompt_sets import DataError

SUMMARY = "The DeepSeek-R1 Table 6 comparison on one student: as is, distilled, GRPO, distilled + GRPO, on-policy KD."
ARMS = ("base", "distill", "rl", "distill_rl", "kd")
# Arm -> the stages it needs, in order (with compare.teacher_from=rl, the taught arms first make the teacher).
STAGES = {
    "base": (),
    "distill": ("generate", "sft"),
    "rl": ("grpo_rl",),
    "distill_rl": ("generate", "sft", "grpo_distill_rl"),
    "kd": ("kd",),
    "teacher": ("grpo_teacher",),
}
TAUGHT = ("distill", "distill_rl", "kd")
TEACHER_DATASET = "teacher"


class StageError(UserError, RuntimeError):
    """A stage's process failed; the message names the command to rerun it alone."""


def _run_stage(command: list[str], stdout=None) -> tuple[int, str | None]:
    """Run a stage, passing its stderr through (progress bars, its summary) and its stdout to `stdout` (a file; None:
    this process's); its exit status and its last `error:` line, which the comparison's own error repeats."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=subprocess.PIPE)
    tail = b""
    while chunk := os.read(proc.stderr.fileno(), 1 << 16):  # chunks, not lines: progress bars redraw with \r
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        tail = (tail + chunk)[-(1 << 14) :]
    proc.stderr.close()
    errors = [
        line.split(": error: ", 1)[1] for line in tail.decode("utf-8", "replace").splitlines() if ": error: " in line
    ]
    return proc.wait(), errors[-1].strip() if errors else None


def run_root(cfg: Config) -> Path:
    return Path(cfg.output_dir) / "compare" / (cfg.compare.run_name or cfg.recipe)


def same_prompts(cfg: Config, section: str = "grpo") -> list[str]:
    """<section>.prompts overrides (grpo, kd) that give that stage exactly the prompts the teacher was given."""
    src = cfg.generate.prompts
    pairs = {
        "sets": "[" + ",".join(src.sets) + "]",
        "synthetic_per_level": src.synthetic_per_level,
        "synthetic_levels": "[" + ",".join(map(str, src.synthetic_levels)) + "]",
        "split": src.split,
        "subset": src.subset,
        "limit": src.limit,
    }
    overrides = [f"{section}.prompts.{k}={'null' if v is None else v}" for k, v in pairs.items()]
    overrides += [f"{section}.prompts.fields.{k}={v}" for k, v in src.fields.items()]
    return overrides


class Comparison:
    """The run folder, its ledger of finished stages, and the commands that fill it."""

    def __init__(self, cfg: Config, overrides: list[str]) -> None:
        self.cfg = cfg
        self.root = run_root(cfg)
        self.common = [f"recipe={cfg.recipe}", *overrides, f"output_dir={self.root}"]
        if cfg.compare.min_detectable is not None:
            from grpo.sizing import sized_eval

            self.common += sized_eval(cfg)  # after the user's overrides: the question decides the eval's size
        self.ledger_path = self.root / "stages.json"
        self.ledger: dict[str, dict] = {}
        if cfg.compare.resume and self.ledger_path.is_file():
            self.ledger = json.loads(self.ledger_path.read_text())

    # --- where each stage writes ------------------------------------------------------------------------------
    @property
    def dataset(self) -> Path:
        return self.root / "datasets" / TEACHER_DATASET

    @property
    def sft_dir(self) -> Path:
        return self.root / "sft" / "distill"

    def grpo_dir(self, arm: str) -> Path:
        return self.root / "grpo" / arm

    @property
    def kd_dir(self) -> Path:
        return self.root / "kd" / "kd"

    @property
    def teacher(self) -> str:
        """The teacher every taught arm learns from: the RL-trained one (teacher_from=rl), or the given one."""
        if self.cfg.compare.teacher_from == "rl":
            return str(self.grpo_dir("teacher"))
        return teacher_name(self.cfg)

    def model_of(self, arm: str) -> str:
        """What distill.eval loads for an arm: the student, or the adapter (merged/ when SFT wrote one)."""
        if arm == "base":
            return self.cfg.model.name
        if arm == "distill":
            merged = self.sft_dir / "merged"
            return str(merged if merged.is_dir() else self.sft_dir)
        if arm == "kd":
            return str(self.kd_dir)
        return str(self.grpo_dir(arm))

    def stages_of(self, arm: str) -> tuple[str, ...]:
        made = self.cfg.compare.teacher_from == "rl" and arm in TAUGHT
        return (*(STAGES["teacher"] if made else ()), *STAGES[arm])

    # --- stages -----------------------------------------------------------------------------------------------
    def budget(self, key: str) -> list[str]:
        """With match_budget, `key` (grpo.max_flops, kd.max_flops) set to what distillation spent, which then runs
        first: generation and SFT."""
        if not self.cfg.compare.match_budget:
            return []
        for needed in ("generate", "sft"):
            self.run(needed, *self.stage_argv(needed))
        return [f"{key}={self.distill_flops():.6g}"]

    def stage_argv(self, stage: str) -> tuple[str, list[str]]:
        c = self.cfg.compare
        if stage == "generate":
            teacher = [f"generate.teacher={self.teacher}"] if c.teacher_from == "rl" else []
            return "distill.generate", [
                f"generate.dataset_name={TEACHER_DATASET}",
                # Relative to output_dir (the comparison's root), as distill.config.card_dir reads it: the root given
                # here again would be joined onto itself when it is relative (make demo's outputs/...).
                "generate.card_dir=data_cards",
                "generate.push_to_hub=false",
                *teacher,
            ]
        if stage == "sft":
            return "distill.sft", [f"sft.dataset={self.dataset}", "sft.run_name=distill", *self.sweep_args("sft")]
        if stage == "grpo_teacher":  # R1-Zero on the teacher: the recipe's own grpo section and prompts
            steps = [] if c.teacher_max_steps is None else [f"grpo.max_steps={c.teacher_max_steps}"]
            return "grpo.train", ["grpo.target=teacher", "grpo.run_name=teacher", "grpo.init_from=null", *steps]
        if stage == "kd":
            steps = [] if c.kd_max_steps is None else [f"kd.max_steps={c.kd_max_steps}"]
            kd = [f"kd.teacher={self.teacher}", "kd.run_name=kd", "kd.init_from=null", *same_prompts(self.cfg, "kd")]
            return "distill.kd", [*kd, *steps, *self.budget("kd.max_flops"), *self.sweep_args("kd")]
        grpo = ["grpo.target=student", "grpo.template=r1", *same_prompts(self.cfg), *self.sweep_args("grpo")]
        if c.grpo_max_steps is not None:
            grpo.append(f"grpo.max_steps={c.grpo_max_steps}")
        grpo += self.budget("grpo.max_flops")
        return "grpo.train", {
            "grpo_rl": [*grpo, "grpo.run_name=rl", "grpo.init_from=null"],
            "grpo_distill_rl": [*grpo, "grpo.run_name=distill_rl", f"grpo.init_from={self.sft_dir}"],
        }[stage]

    def run(self, name: str, module: str, argv: list[str]) -> dict:
        """Runs `python -m module` once; a finished run is taken from the ledger."""
        if name in self.ledger:
            return self.ledger[name]
        command = [sys.executable, "-m", module, *self.common, *argv]
        # A stage's stdout (TRL's per-step log lines, its own table) goes to a file: the comparison's stdout is the
        # report's table alone.
        out = self.root / "logs" / f"{name}.stdout"
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"grpo.compare: [{name}] {' '.join(command[1:])}  (stdout: {out})", file=sys.stderr, flush=True)
        start = time.perf_counter()
        with out.open("w") as stdout:
            code, last_error = _run_stage(command, stdout)
        if code != 0:
            why = f": {last_error}" if last_error else ""
            raise StageError(
                f"stage {name} failed (exit {code}){why}; rerun it alone with: python {' '.join(command[1:])}"
            )
        self.ledger[name] = {"command": " ".join(command[1:]), "wall_s": round(time.perf_counter() - start, 1)}
        self.root.mkdir(parents=True, exist_ok=True)
        self.ledger_path.write_text(json.dumps(self.ledger, indent=2) + "\n")
        return self.ledger[name]

    def train_arm(self, arm: str) -> None:
        for stage in self.stages_of(arm):
            self.run(stage, *self.stage_argv(stage))

    def evaluations(self, arms: list[str]) -> list[tuple[str, str]]:
        """(run name, model) of every evaluation: each arm's final model, then the budget sweep's checkpoints."""
        finals = [(arm, self.model_of(arm)) for arm in arms]
        return finals + [
            (sweep_name(arm, fraction), str(self.train_dir(arm) / f"checkpoint-{step}"))
            for arm in arms
            for fraction, step in self.sweep_points(arm)
        ]

    def evaluate(self, arms: list[str]) -> None:
        """The evaluations in one distill.eval stage (eval.models) -- two with compare.context_problems, whose rows
        see fewer problems: the student's fine-tunes and checkpoints share one vLLM engine, which reloads weights in
        place instead of starting again for each (~30 s a start on CPU). Only the models without results run: a
        resumed comparison, or one given a new arm."""
        c, evaluations = self.cfg.compare, self.evaluations(arms)
        context = [e for e in evaluations if c.context_problems and is_context(e[0])]
        stages = {
            "eval": ([e for e in evaluations if e not in context], []),
            "eval_context": (context, [f"eval.prompts.limit={c.context_problems}"]),
        }
        for stage, (group, limit) in stages.items():
            todo = [(n, m) for n, m in group if not (c.resume and (self.root / "eval" / n / "results.json").is_file())]
            if todo:
                self.ledger.pop(stage, None)  # run again for the models it lacks
                listed = ",".join(f"{name}={model}" for name, model in todo)
                self.run(stage, "distill.eval", [f"eval.models=[{listed}]", *limit])

    # --- the budget sweep -------------------------------------------------------------------------------------
    def sweep_args(self, section: str) -> list[str]:
        """With compare.sweep, the training stage checkpoints at those fractions of its run and keeps them all."""
        if not self.cfg.compare.sweep:
            return []
        fractions = ",".join(f"{f:g}" for f in self.cfg.compare.sweep)
        return [f"{section}.save_fractions=[{fractions}]", f"{section}.save_total_limit=null"]

    def train_dir(self, arm: str) -> Path:
        return {"distill": self.sft_dir, "kd": self.kd_dir}.get(arm) or self.grpo_dir(arm)

    def sweep_points(self, arm: str) -> list[tuple[float, int]]:
        """(fraction, step) of each sweep checkpoint the arm's last training stage saved before its final step, from
        its save_fractions.json (distill.compute.SaveAtFractions); the final model is the arm's own row."""
        if arm in ("base", "teacher") or not self.cfg.compare.sweep:
            return []
        from distill.compute import SaveAtFractions

        folder = self.train_dir(arm)
        marks = folder / SaveAtFractions.FILE
        final = max((m["step"] for m in read_jsonl(folder / "metrics.jsonl")), default=0)
        saved = json.loads(marks.read_text()) if marks.is_file() else {}
        points = {}
        for fraction, step in sorted(saved.items(), key=lambda kv: float(kv[0])):
            if step < final and (folder / f"checkpoint-{step}").is_dir():
                points.setdefault(step, float(fraction))  # two marks on one step: one checkpoint, the first mark
        return sorted((f, step) for step, f in points.items())

    # --- compute ----------------------------------------------------------------------------------------------
    def params(self, name: str) -> int:
        """A model's parameters; an adapter's are its base's (merged: LoRA adds no inference FLOPs once merged)."""
        from distill.compute import parameter_count
        from distill.models import resolve_for_inference

        return parameter_count(resolve_for_inference(name, trust_remote_code=self.cfg.model.trust_remote_code))

    def trained(self, folder: Path, stage: str, upto: int | None) -> tuple[list[dict], float]:
        """A training stage's metrics.jsonl lines and wall time, or -- at a sweep point -- those of its steps up to
        `upto`, with the wall time pro rata by steps."""
        metrics, wall = read_jsonl(folder / "metrics.jsonl"), self.ledger[stage]["wall_s"]
        if upto is None:
            return metrics, wall
        last = max((m["step"] for m in metrics), default=1)
        return [m for m in metrics if m["step"] <= upto], wall * upto / max(last, 1)

    def distill_compute(self, upto: int | None = None):
        from distill.compute import generation_compute, sft_compute

        teacher = self.params(self.teacher)
        student = self.params(self.cfg.model.name)
        gen = generation_compute(self.dataset / ".work" / "journal.jsonl", teacher, self.ledger["generate"]["wall_s"])
        metrics, wall = self.trained(self.sft_dir, "sft", upto)
        return gen + sft_compute(metrics, student, wall)

    def distill_flops(self) -> float:
        return self.distill_compute().flops

    def grpo_compute(self, arm: str, upto: int | None = None):
        from distill.compute import grpo_compute

        g = self.cfg.grpo
        per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", 1))
        metrics, wall = self.trained(self.grpo_dir(arm), f"grpo_{arm}", upto)
        return grpo_compute(metrics, self.params(self.cfg.model.name), per_step, wall)

    def kd_compute(self, upto: int | None = None):
        from distill.compute import kd_compute

        k = self.cfg.kd
        per_step = k.per_device_train_batch_size * k.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", 1))
        metrics, wall = self.trained(self.kd_dir, "kd", upto)
        student, teacher = self.params(self.cfg.model.name), self.params(self.teacher)
        return kd_compute(metrics, student, teacher, per_step, wall)

    def compute(self, arm: str, upto: int | None = None):
        """An arm's compute, all of it or (a sweep point) up to step `upto` of its last training stage."""
        from distill.compute import Compute

        return {
            "base": Compute,
            "distill": lambda: self.distill_compute(upto),
            "rl": lambda: self.grpo_compute("rl", upto),
            "distill_rl": lambda: self.distill_compute() + self.grpo_compute("distill_rl", upto),
            "kd": lambda: self.kd_compute(upto),
            "teacher": lambda: self.grpo_compute("teacher"),
        }[arm]()

    def results(self, arm: str) -> dict:
        return json.loads((self.root / "eval" / arm / "results.json").read_text())

    def problem_scores(self, arm: str) -> dict[str, dict[str, float]]:
        """Benchmark -> problem id -> the arm's pass@1 on it (its share of correct samples), from distill.eval's
        samples.jsonl: what the paired statistics compare."""
        verdicts: dict[str, dict[str, list[bool]]] = {}
        for s in read_jsonl(self.root / "eval" / arm / "samples.jsonl"):
            verdicts.setdefault(s["benchmark"], {}).setdefault(s["id"], []).append(s["verdict"] == "correct")
        return {bench: {i: sum(v) / len(v) for i, v in problems.items()} for bench, problems in verdicts.items()}


def is_context(name: str) -> bool:
    """A row that gives the comparison its context rather than one of its answers: the student as is, the teacher,
    a budget sweep's checkpoint (compare.context_problems)."""
    return name in ("base", "teacher") or "@" in name


def sweep_name(arm: str, fraction: float) -> str:
    """A sweep point's evaluation and row name: the arm at a fraction of its run (rl@0.5)."""
    return f"{arm}@{fraction:g}"


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path} is missing: its stage did not finish")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare(cfg: Config, overrides: list[str]) -> Path:
    """Runs every arm's missing stages and evaluation, then writes the report; returns the report folder."""
    from grpo.report import write_report

    run = Comparison(cfg, overrides)
    arms = [a for a in ARMS if a in cfg.compare.arms]
    if cfg.compare.teacher_from == "rl" and any(a in TAUGHT for a in arms):
        arms.append("teacher")  # made first by the taught arms' stages; evaluated like an arm, reported apart
    for arm in arms:
        run.train_arm(arm)
    run.evaluate(arms)
    rows = {
        arm: {
            "label": LABELS[arm],
            "model": run.model_of(arm),
            "compute": run.compute(arm).to_dict(),
            "results": run.results(arm),
            "problem_scores": run.problem_scores(arm),
            "grpo_metrics": read_jsonl(run.grpo_dir(arm) / "metrics.jsonl") if arm in GRPO_ARMS else None,
        }
        for arm in arms
    }
    for arm in arms:  # the budget sweep's points, after the arms: rows of their own, marked with the arm they sample
        for fraction, step in run.sweep_points(arm):
            name = sweep_name(arm, fraction)
            rows[name] = {
                "label": f"{LABELS[arm].split(' ', 1)[0]} at {fraction:.0%} of its run (step {step})",
                "sweep_of": arm,
                "fraction": fraction,
                "step": step,
                "model": str(run.train_dir(arm) / f"checkpoint-{step}"),
                "compute": run.compute(arm, upto=step).to_dict(),
                "results": run.results(name),
                "problem_scores": run.problem_scores(name),
            }
    return write_report(cfg, rows, run.root / "report")


LABELS = {
    "base": "(a) student as is",
    "distill": "(b) distillation: SFT on the teacher's verified samples",
    "rl": "(c) RL: GRPO on the student",
    "distill_rl": "(d) distillation, then GRPO",
    "kd": "(e) on-policy distillation: the student samples, the teacher scores",
    "teacher": "(t) the teacher: R1-Zero GRPO on the model, before any arm",
}
GRPO_ARMS = ("rl", "distill_rl", "teacher")


def _compare(cfg: Config, argv: list[str]) -> int:
    overrides = [a for a in argv if not a.startswith("recipe=")]
    report = compare(cfg, overrides)
    table = (report / "table.md").read_text()
    # The table and its reading, without the markdown image links (their files are listed below).
    print("\n".join(line for line in table.splitlines() if not line.startswith("![")).rstrip() + "\n")
    print(f"report: {report / 'table.md'}")
    for name in ("accuracy_vs_compute.png", "grpo_response_length.png", "compare.json"):
        print(f"        {report / name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    sections = ("compare", "generate", "sft", "grpo", "eval")
    return cli.run("grpo.compare", SUMMARY, sections, argv, _compare, stage="compare")


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m grpo.compare [recipe=NAME] [key=value ...]`: distillation against RL on one student (the paper's Table 6).

The arms, on the same student, the same prompts and the same evaluation:

    base        (a) the student as is
    distill     (b) SFT on the teacher's rejection-sampled dataset (distill.generate, then distill.sft)
    rl          (c) GRPO on the student with the prompts the teacher was given (grpo.train target=student)
    distill_rl  (d) distillation, then GRPO from the distilled adapter

Every stage runs as its own `python -m ...` process with the recipe and the overrides given here (so each frees its
engine's memory, shows its own progress and resumes itself after a crash), writing under
<output_dir>/compare/<run_name>/. A stage that finished is recorded in `stages.json` and not run again
(compare.resume). With compare.match_budget, GRPO's steps are chosen by its FLOPs: each GRPO run stops once it has
spent what distillation spent, the teacher's generation included (grpo.max_flops; grpo.max_steps, or
compare.grpo_max_steps, caps it).

The report (report/): table.md like Table 6, accuracy-vs-compute and GRPO length plots, compare.json.
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

SUMMARY = "The DeepSeek-R1 Table 6 comparison on one student: as is, distilled, GRPO, distilled + GRPO."
ARMS = ("base", "distill", "rl", "distill_rl")
# Arm -> the stages it needs, in order.
STAGES = {
    "base": (),
    "distill": ("generate", "sft"),
    "rl": ("grpo_rl",),
    "distill_rl": ("generate", "sft", "grpo_distill_rl"),
}
TEACHER_DATASET = "teacher"


class StageError(UserError, RuntimeError):
    """A stage's process failed; the message names the command to rerun it alone."""


def _run_stage(command: list[str]) -> tuple[int, str | None]:
    """Run a stage, passing its stderr through (progress bars, its summary); its exit status and its last
    `error:` line, which the comparison's own error repeats."""
    proc = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.PIPE)
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


def same_prompts(cfg: Config) -> list[str]:
    """grpo.* overrides that give GRPO exactly the prompts the teacher was given."""
    src = cfg.generate.prompts
    pairs = {
        "grpo.prompts.sets": "[" + ",".join(src.sets) + "]",
        "grpo.prompts.synthetic_per_level": src.synthetic_per_level,
        "grpo.prompts.synthetic_levels": "[" + ",".join(map(str, src.synthetic_levels)) + "]",
        "grpo.prompts.split": src.split,
        "grpo.prompts.subset": src.subset,
        "grpo.prompts.limit": src.limit,
    }
    overrides = [f"{k}={'null' if v is None else v}" for k, v in pairs.items()]
    overrides += [f"grpo.prompts.fields.{k}={v}" for k, v in src.fields.items()]
    return overrides


class Comparison:
    """The run folder, its ledger of finished stages, and the commands that fill it."""

    def __init__(self, cfg: Config, overrides: list[str]) -> None:
        self.cfg = cfg
        self.root = run_root(cfg)
        self.common = [f"recipe={cfg.recipe}", *overrides, f"output_dir={self.root}"]
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

    def model_of(self, arm: str) -> str:
        """What distill.eval loads for an arm: the student, or the adapter (merged/ when SFT wrote one)."""
        if arm == "base":
            return self.cfg.model.name
        if arm == "distill":
            merged = self.sft_dir / "merged"
            return str(merged if merged.is_dir() else self.sft_dir)
        return str(self.grpo_dir(arm))

    # --- stages -----------------------------------------------------------------------------------------------
    def stage_argv(self, stage: str) -> tuple[str, list[str]]:
        grpo = ["grpo.target=student", "grpo.template=r1", *same_prompts(self.cfg)]
        if self.cfg.compare.grpo_max_steps is not None:
            grpo.append(f"grpo.max_steps={self.cfg.compare.grpo_max_steps}")
        if self.cfg.compare.match_budget and stage.startswith("grpo_"):
            for needed in ("generate", "sft"):  # the budget is what distillation spent: it runs first
                self.run(needed, *self.stage_argv(needed))
            grpo.append(f"grpo.max_flops={self.distill_flops():.6g}")
        return {
            "generate": (
                "distill.generate",
                [
                    f"generate.dataset_name={TEACHER_DATASET}",
                    f"generate.card_dir={self.root / 'data_cards'}",
                    "generate.push_to_hub=false",
                ],
            ),
            "sft": ("distill.sft", [f"sft.dataset={self.dataset}", "sft.run_name=distill"]),
            "grpo_rl": ("grpo.train", [*grpo, "grpo.run_name=rl", "grpo.init_from=null"]),
            "grpo_distill_rl": ("grpo.train", [*grpo, "grpo.run_name=distill_rl", f"grpo.init_from={self.sft_dir}"]),
        }[stage]

    def run(self, name: str, module: str, argv: list[str]) -> dict:
        """Runs `python -m module` once; a finished run is taken from the ledger."""
        if name in self.ledger:
            return self.ledger[name]
        command = [sys.executable, "-m", module, *self.common, *argv]
        print(f"grpo.compare: [{name}] {' '.join(command[1:])}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        code, last_error = _run_stage(command)
        if code != 0:
            why = f": {last_error}" if last_error else ""
            raise StageError(
                f"stage {name} failed (exit {code}){why}; rerun it alone with: python {' '.join(command[1:])}"
            )
        self.ledger[name] = {"command": " ".join(command[1:]), "wall_s": round(time.perf_counter() - start, 1)}
        self.root.mkdir(parents=True, exist_ok=True)
        self.ledger_path.write_text(json.dumps(self.ledger, indent=2) + "\n")
        return self.ledger[name]

    def run_arm(self, arm: str) -> None:
        for stage in STAGES[arm]:
            self.run(stage, *self.stage_argv(stage))
        self.run(f"eval_{arm}", "distill.eval", [f"model.name={self.model_of(arm)}", f"eval.run_name={arm}"])

    # --- compute ----------------------------------------------------------------------------------------------
    def params(self, name: str) -> int:
        from distill.models import resolve_model
        from grpo.compute import parameter_count

        return parameter_count(resolve_model(name))

    def distill_compute(self):
        from grpo.compute import generation_compute, sft_compute

        teacher = self.params(teacher_name(self.cfg))
        student = self.params(self.cfg.model.name)
        gen = generation_compute(self.dataset / ".work" / "journal.jsonl", teacher, self.ledger["generate"]["wall_s"])
        sft = sft_compute(read_jsonl(self.sft_dir / "metrics.jsonl"), student, self.ledger["sft"]["wall_s"])
        return gen + sft

    def distill_flops(self) -> float:
        return self.distill_compute().flops

    def grpo_compute(self, arm: str):
        from grpo.compute import grpo_compute

        g = self.cfg.grpo
        per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", 1))
        metrics = read_jsonl(self.grpo_dir(arm) / "metrics.jsonl")
        return grpo_compute(metrics, self.params(self.cfg.model.name), per_step, self.ledger[f"grpo_{arm}"]["wall_s"])

    def compute(self, arm: str):
        from grpo.compute import Compute

        return {
            "base": Compute,
            "distill": self.distill_compute,
            "rl": lambda: self.grpo_compute("rl"),
            "distill_rl": lambda: self.distill_compute() + self.grpo_compute("distill_rl"),
        }[arm]()

    def results(self, arm: str) -> dict:
        return json.loads((self.root / "eval" / arm / "results.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path} is missing: its stage did not finish")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare(cfg: Config, overrides: list[str]) -> Path:
    """Runs every arm's missing stages and evaluation, then writes the report; returns the report folder."""
    from grpo.report import write_report

    run = Comparison(cfg, overrides)
    arms = [a for a in ARMS if a in cfg.compare.arms]
    for arm in arms:
        run.run_arm(arm)
    rows = {
        arm: {
            "label": LABELS[arm],
            "model": run.model_of(arm),
            "compute": run.compute(arm).to_dict(),
            "results": run.results(arm),
            "grpo_metrics": read_jsonl(run.grpo_dir(arm) / "metrics.jsonl") if arm in ("rl", "distill_rl") else None,
        }
        for arm in arms
    }
    return write_report(cfg, rows, run.root / "report")


LABELS = {
    "base": "(a) student as is",
    "distill": "(b) distillation: SFT on the teacher's verified samples",
    "rl": "(c) RL: GRPO on the student",
    "distill_rl": "(d) distillation, then GRPO",
}


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

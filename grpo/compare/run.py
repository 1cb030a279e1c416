"""Running the comparison: each arm's missing stages as processes (in the stage table's order), the evaluations, then
the rows the report is made of.

Every stage runs as its own `python -m <module> recipe=<root>/stages/<name>.yaml` process (so each frees its engine's
memory, shows its own progress and resumes itself after a crash), writing under <output_dir>/compare/<run_name>/. A
stage that finished is recorded in `stages.json` and not run again (compare.resume). A training stage may run on
several processes (compare.launcher: `accelerate launch`, or srun on a cluster; grpo.compare.launch), and the
generate stage on the teacher's vLLM servers (compare.teacher_servers, teacher_urls; grpo.compare.servers).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import ChainMap
from pathlib import Path

from distill import cli
from distill.compare_table import ARM, ARMS, GRPO_ARMS, LABELS, STAGE, STAGES, stages_of, taught
from distill.config import Config
from distill.errors import UserError
from grpo.compare.accounting import Accounts, read_jsonl, sized_eval
from grpo.compare.launch import shown, stage_command
from grpo.compare.progress import watch
from grpo.compare.servers import Served, teacher_servers
from grpo.compare.stages import TEACHER_STAGES, Layout, stage_config, write_settings


class StageError(UserError, RuntimeError):
    """A stage's process failed; the message names the command to rerun it alone."""


# Lines of a stage's stderr that say nothing about the comparison: the libraries' weight loading and saving bars, a
# missing Triton on CPU, and the stage's own "next:" hint (it is run here, not alone). They go to logs/<stage>.stderr.
CHATTER = re.compile(
    rb"Loading safetensors checkpoint shards|Loading weights|Writing model shards|Triton not available|^next: "
)


class _Filter:
    """Passes a stage's stderr through, segment by segment (a progress bar redraws with \r), keeping CHATTER out of
    the terminal and in `hidden`."""

    def __init__(self, hidden) -> None:
        self.hidden, self.pending = hidden, b""

    def feed(self, chunk: bytes) -> None:
        self.pending += chunk
        *done, self.pending = re.split(rb"(?<=[\r\n])", self.pending)
        for segment in done:
            self._emit(segment)
        sys.stderr.flush()

    def close(self) -> None:
        if self.pending:
            self._emit(self.pending)
        sys.stderr.flush()

    def _emit(self, segment: bytes) -> None:
        if CHATTER.search(segment.lstrip()):
            self.hidden.write(segment)
        else:
            sys.stderr.buffer.write(segment)


def _run_stage(command: list[str], stdout=None, hidden=None) -> tuple[int, str | None]:
    """Run a stage, passing its stderr through (progress bars, its summary; CHATTER to `hidden`, a binary file, when
    given) and its stdout to `stdout` (a file; None: this process's); its exit status and its last `error:` line, which
    the comparison's own error repeats."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=subprocess.PIPE)
    passing = _Filter(hidden) if hidden is not None else None
    tail = b""
    try:
        while chunk := os.read(proc.stderr.fileno(), 1 << 16):  # chunks, not lines: progress bars redraw with \r
            if passing is None:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
            else:
                passing.feed(chunk)
            tail = (tail + chunk)[-(1 << 14) :]
    except BaseException:  # the comparison was stopped (SIGTERM, Ctrl-C): so is its stage, which checkpoints first
        _stop(proc)
        raise
    if passing is not None:
        passing.close()
    proc.stderr.close()
    errors = [
        line.split(": error: ", 1)[1] for line in tail.decode("utf-8", "replace").splitlines() if ": error: " in line
    ]
    return proc.wait(), errors[-1].strip() if errors else None


def _stop(proc: subprocess.Popen, grace: float = 300.0) -> None:
    """SIGTERM a stage (a trainer finishes its step and saves a checkpoint; accelerate's launcher passes it to every
    rank), SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Stopped(SystemExit):
    """SIGTERM reached the comparison: raised where it runs, so the running stage and the teacher's servers stop
    (with-blocks and finally clauses run) before it exits with 128 + 15, as a process killed by SIGTERM would."""


def _raise_stopped(signum, frame) -> None:
    raise Stopped(128 + signum)


class Comparison:
    """The run folder, its ledger of finished stages, and the stage processes that fill it.

    `shared`: the comparison whose teacher and verified dataset (TEACHER_STAGES) this one uses instead of making its
    own -- a replicate sharing the first seed's (grpo.compare.replicates): those stages run there, once, and are
    read from its folder and ledger. Evaluations are read from `eval_root / eval_name(row)`: this run's eval/ folder,
    or the one evaluation a set of replicates shares."""

    def __init__(self, cfg: Config, shared: Comparison | None = None) -> None:
        if cfg.compare.min_detectable is not None:
            cfg = sized_eval(cfg)  # the question decides the eval's size, whatever the eval section says
        self.cfg, self.shared = cfg, shared
        self.layout = Layout(cfg, shared.layout if shared else None)
        self.root = self.layout.root
        self.ledger_path = self.root / "stages.json"
        self.ledger: dict[str, dict] = {}
        if cfg.compare.resume and self.ledger_path.is_file():
            self.ledger = json.loads(self.ledger_path.read_text())
        # The teacher's stages' wall times (its compute, the generation's) are in the ledger of the run that made it.
        ledger = ChainMap(self.ledger, shared.ledger) if shared else self.ledger
        self.accounts = Accounts(cfg, self.layout, ledger)
        self.eval_root = self.root / "eval"
        self.eval_name = str  # a row's evaluation folder under eval_root: its own name here
        if shared is None:
            self._check_okd_dataset()

    def _check_okd_dataset(self) -> None:
        """The okd arm added to a run whose generate stage finished without the teacher's top-k: its SFT stage would
        stop at the dataset check after the other arms had run. Said now, before any stage runs."""
        shards = sorted((self.layout.dataset / "data").glob("*.parquet"))
        if "okd" not in self.cfg.compare.arms or "generate" not in self.ledger or not shards:
            return
        import pyarrow.parquet as pq

        from distill.dataset_writer import LOGPROB_COLUMNS

        missing = [c for c in LOGPROB_COLUMNS if c not in pq.read_schema(shards[0]).names]
        if missing:
            raise UserError(
                f"compare.arms has okd, but this run's teacher dataset {self.layout.dataset} was generated without the "
                f"teacher's top-k log-probs (no {', '.join(missing)} column): give the run a new compare.run_name, "
                "where the teacher samples once more and keeps them"
            )

    def arms(self) -> list[str]:
        """The rows this comparison trains and evaluates: compare.arms in the table's order, then the teacher when
        the comparison makes it (made first by the taught arms' stages; evaluated like an arm, reported apart)."""
        c = self.cfg.compare
        arms = [a for a in ARMS if a in c.arms]
        if c.teacher_from == "rl" and any(taught(a) for a in arms):
            arms.append("teacher")
        return arms

    def settings(self, stage: str, models: list[str] | None = None, served: Served | None = None) -> Config:
        """A stage's resolved settings; a budgeted stage's FLOP budget read from the finished distillation stages."""
        budget = None
        if STAGE[stage].budgeted and self.cfg.compare.match_budget:
            budget = float(f"{self.accounts.distill_flops():.6g}")
        return stage_config(self.cfg, self.layout, stage, budget, models, served)

    def run(self, name: str, models: list[str] | None = None) -> dict:
        """Runs stage `name` once with its settings file; a finished run is taken from the ledger. The teacher's
        servers (compare.teacher_servers) are up while a stage that samples the teacher runs, and only then."""
        if self.shared is not None and name in TEACHER_STAGES:
            return self.shared.run(name)
        if name in self.ledger:
            return self.ledger[name]
        with teacher_servers(self.cfg, name, lambda: self.settings(name, models), self.root / "logs") as served:
            return self._run(name, models, served)

    def _run(self, name: str, models: list[str] | None, served: Served | None) -> dict:
        resolved = self.settings(name, models, served)
        settings = write_settings(resolved, self.layout.settings_file(name))
        command = stage_command(self.cfg, name, settings)  # compare.launcher's (grpo.compare.launch)
        # A stage's stdout (TRL's per-step log lines, its own table) goes to a file: the comparison's stdout is the
        # report's table alone.
        out = self.root / "logs" / f"{name}.stdout"
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"grpo.compare: [{name}] {shown(command)}  (stdout: {out})", file=sys.stderr, flush=True)
        start = time.perf_counter()
        # A line per logging step of a training stage on the terminal (grpo.compare.progress).
        progress = watch(name, resolved, self.layout.folder(name))
        with out.open("w") as stdout, out.with_suffix(".stderr").open("wb") as hidden, progress:
            code, last_error = _run_stage(command, stdout, hidden)
        if code != 0:
            why = f": {last_error}" if last_error else ""
            raise StageError(f"stage {name} failed (exit {code}){why}; rerun it alone with: {shown(command)}")
        self.ledger[name] = {"command": shown(command), "wall_s": round(time.perf_counter() - start, 1)}
        self.root.mkdir(parents=True, exist_ok=True)
        self.ledger_path.write_text(json.dumps(self.ledger, indent=2) + "\n")
        return self.ledger[name]

    def train_arm(self, arm: str) -> None:
        c = self.cfg.compare
        for stage in stages_of(arm, c.teacher_from, c.match_budget):
            self.run(stage)

    def evaluations(self, arms: list[str]) -> list[tuple[str, str]]:
        """(run name, model) of every evaluation: each arm's final model, then the budget sweep's checkpoints."""
        finals = [(arm, self.layout.model_of(arm)) for arm in arms]
        return finals + [
            (sweep_name(arm, fraction), str(self.layout.train_dir(arm) / f"checkpoint-{step}"))
            for arm in arms
            for fraction, step in self.sweep_points(arm)
        ]

    def context(self, name: str) -> bool:
        """Whether row `name` is evaluated on compare.context_problems only (the eval_context stage)."""
        return bool(self.cfg.compare.context_problems) and is_context(name)

    def evaluate(self, arms: list[str]) -> None:
        """The evaluations of `arms` (their final models, the sweep's checkpoints) in this run's eval/ folder."""
        self.evaluate_models([(name, model, self.context(name)) for name, model in self.evaluations(arms)])

    def evaluate_models(self, entries: list[tuple[str, str, bool]]) -> None:
        """(name, model, context row?) evaluated in one distill.eval stage (eval.models) -- two with
        compare.context_problems, whose rows see fewer problems: the student's fine-tunes and checkpoints share one
        vLLM engine, which reloads weights in place instead of starting again for each (~30 s a start on CPU). Only
        the models without results run: a resumed comparison, or one given a new arm."""
        resume = self.cfg.compare.resume
        for stage, context in (("eval", False), ("eval_context", True)):
            group = [(n, m) for n, m, ctx in entries if ctx == context]
            todo = [(n, m) for n, m in group if not (resume and (self.root / "eval" / n / "results.json").is_file())]
            if todo:
                self.ledger.pop(stage, None)  # run again for the models it lacks
                self.run(stage, [f"{name}={model}" for name, model in todo])

    def sweep_points(self, arm: str) -> list[tuple[float, int]]:
        """(fraction, step) of each sweep checkpoint the arm's last training stage saved before its final step, from
        its save_fractions.json (distill.compute.SaveAtFractions); the final model is the arm's own row."""
        if arm in ("base", "teacher") or not self.cfg.compare.sweep:
            return []
        from distill.compute import SaveAtFractions

        folder = self.layout.train_dir(arm)
        marks = folder / SaveAtFractions.FILE
        final = max((m["step"] for m in read_jsonl(folder / "metrics.jsonl")), default=0)
        saved = json.loads(marks.read_text()) if marks.is_file() else {}
        points = {}
        for fraction, step in sorted(saved.items(), key=lambda kv: float(kv[0])):
            if step < final and (folder / f"checkpoint-{step}").is_dir():
                points.setdefault(step, float(fraction))  # two marks on one step: one checkpoint, the first mark
        return sorted((f, step) for step, f in points.items())

    def results(self, arm: str) -> dict:
        return json.loads((self.eval_root / self.eval_name(arm) / "results.json").read_text())

    def problem_scores(self, arm: str) -> dict[str, dict[str, float]]:
        """Benchmark -> problem id -> the arm's pass@1 on it (its share of correct samples), from distill.eval's
        samples.jsonl: what the paired statistics compare."""
        verdicts: dict[str, dict[str, list[bool]]] = {}
        for s in read_jsonl(self.eval_root / self.eval_name(arm) / "samples.jsonl"):
            verdicts.setdefault(s["benchmark"], {}).setdefault(s["id"], []).append(s["verdict"] == "correct")
        return {bench: {i: sum(v) / len(v) for i, v in problems.items()} for bench, problems in verdicts.items()}

    def rows(self, arms: list[str]) -> dict[str, dict]:
        """The report's rows: each arm's final model, then the budget sweep's points, each a row of its own marked
        with the arm it samples."""
        rows = {
            arm: {
                "label": LABELS[arm],
                "model": self.layout.model_of(arm),
                "compute": self.accounts.compute(arm).to_dict(),
                "results": self.results(arm),
                "problem_scores": self.problem_scores(arm),
                "grpo_metrics": (
                    read_jsonl(self.layout.train_dir(arm) / "metrics.jsonl") if arm in GRPO_ARMS else None
                ),
            }
            for arm in arms
        }
        for arm in arms:
            for fraction, step in self.sweep_points(arm):
                name = sweep_name(arm, fraction)
                rows[name] = {
                    "label": f"({ARM[arm].letter}) at {fraction:.0%} of its run (step {step})",
                    "sweep_of": arm,
                    "fraction": fraction,
                    "step": step,
                    "model": str(self.layout.train_dir(arm) / f"checkpoint-{step}"),
                    "compute": self.accounts.compute(arm, upto=step).to_dict(),
                    "results": self.results(name),
                    "problem_scores": self.problem_scores(name),
                }
        return rows


def is_context(name: str) -> bool:
    """A row that gives the comparison its context rather than one of its answers: the teacher, a budget sweep's
    checkpoint (compare.context_problems). The student as is is not: every arm is reported against it, on the arms'
    own problems."""
    return name == "teacher" or "@" in name


def sweep_name(arm: str, fraction: float) -> str:
    """A sweep point's evaluation and row name: the arm at a fraction of its run (rl@0.5)."""
    return f"{arm}@{fraction:g}"


def compare(cfg: Config) -> Path:
    """Runs every arm's missing stages and evaluation, then writes the report; returns the report folder (with
    compare.seeds, every arm trained once per seed, one evaluation of them all and the report over them:
    grpo.compare.replicates)."""
    if cfg.compare.seeds:
        from grpo.compare.replicates import replicate

        return replicate(cfg, Comparison)  # handed the class: replicates does not import this module
    return compare_rows(cfg)[1]


def compare_rows(cfg: Config) -> tuple[dict[str, dict], Path]:
    """One comparison: its rows, after its report is written; and the report folder."""
    from grpo.compare.report import write_report

    run = Comparison(cfg)
    arms = run.arms()
    for arm in arms:
        run.train_arm(arm)
    run.evaluate(arms)
    rows = run.rows(arms)
    return rows, write_report(cfg, rows, run.root / "report")


SUMMARY = (
    "The DeepSeek-R1 Table 6 comparison on one student: as is, distilled, GRPO, distilled + GRPO, on-policy KD, "
    "offline KD."
)


def help_summary() -> str:
    """--help's summary: the arms and the stages they run, from the stage table."""
    arms = [f"  {a.name:<11}({a.letter}) {a.label.split(') ', 1)[1]}: {', '.join(stages_of(a.name)) or 'no training'}"
            for a in ARM.values()]  # fmt: skip
    stages = [f"  {s.name:<16}python -m {s.module:<17}{s.help}" for s in STAGES]
    arms_line = "arms (compare.arms; row (t) with compare.teacher_from=rl) and the stages each runs:"
    return "\n".join([SUMMARY, "", arms_line, *arms, "", "stages:", *stages])


def _compare(cfg: Config, argv: list[str]) -> int:
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        report = compare(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
    table = (report / "table.md").read_text()
    # The table and its reading, without the markdown image links (their files are listed below).
    print("\n".join(line for line in table.splitlines() if not line.startswith("![")).rstrip() + "\n")
    print(f"report: {report / 'table.md'}")
    for name in ("accuracy_vs_compute.png", "accuracy_vs_budget.png", "grpo_response_length.png", "compare.json",
                 "replicates.json"):  # fmt: skip
        if (report / name).is_file():
            print(f"        {report / name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    sections = ("compare", *dict.fromkeys(s.section for s in STAGES))
    return cli.run("grpo.compare", help_summary(), sections, argv, _compare, stage="compare")

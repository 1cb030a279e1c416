"""The callback set the three trainers share -- metrics, a checkpoint on SIGTERM, saves at fractions of the run, the
FLOP budget -- and the one way they train under it (`fit`), plus the loss curve image.

sft and kd log through MetricsLog (JSON lines with tokens/s); grpo.train through its monitor (grpo.monitor), which
takes the metrics place in `training_callbacks`. The FLOP estimate and the two compute callbacks are distill.compute's.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from distill.compute import FlopBudget, SaveAtFractions
from distill.trackers import log_first
from distill.training.ranks import agreed

# Logged by Trainer/TRL at each logging step and kept in metrics.jsonl.
METRIC_KEYS = ("loss", "learning_rate", "grad_norm", "num_tokens", "mean_token_accuracy", "entropy", "epoch")


class MetricsLog(TrainerCallback):
    """One JSON line per logging step: step, loss, learning_rate, grad_norm, tokens_per_s and TRL's token metrics.

    tokens_per_s counts the non-padding tokens (prompt + completion) that went through the model since the previous
    line, per second of wall time, from TRL's running `num_tokens` (summed over processes); it is also added to the
    step's logs, for the trackers (report_to).
    """

    adds_to_logs = True  # run ahead of the trackers' callbacks (distill.trackers.log_first)

    def __init__(self, path: Path, renamed: dict[str, str] | None = None) -> None:
        self.path = path
        # Other logged keys to keep, under a short name (distill.kd: completions/mean_length -> mean_length).
        self.renamed = renamed or {}
        self.last_time = 0.0
        self.last_tokens = 0.0
        self.history: list[dict] = []  # every line, also those of the run this one resumes

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_time, self.last_tokens = time.perf_counter(), 0.0  # TRL's num_tokens restarts with each process
        if state.is_world_process_zero and self.path.is_file():
            # A resumed run repeats the steps after its checkpoint: drop their old lines.
            lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.history = [line for line in lines if line["step"] <= state.global_step]
            self.path.write_text("".join(json.dumps(line) + "\n" for line in self.history))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        record = {"step": state.global_step, **{k: logs[k] for k in METRIC_KEYS if k in logs}}
        record.update({short: logs[key] for key, short in self.renamed.items() if key in logs})
        if "num_tokens" in logs:
            record["tokens_per_s"] = round((logs["num_tokens"] - self.last_tokens) / max(now - self.last_time, 1e-9), 2)
            logs["tokens_per_s"] = record["tokens_per_s"]
            self.last_tokens = logs["num_tokens"]
        self.last_time = now
        self.history.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class SaveOnSignal(TrainerCallback):
    """On SIGTERM (a preempted job, `kill`), finish the current step, save a checkpoint and stop.

    The handler only sets a flag; the Trainer saves at the step's end through `control`. Under several processes
    every rank must save at the same step (ZeRO-3 and FSDP gather the weights collectively), so the flag is agreed
    with an all-reduce each step -- transformers' own `enable_jit_checkpoint` does not do that.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
        self.signals = signals
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> SaveOnSignal:
        for sig in self.signals:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def _agreed(self, args) -> bool:
        return agreed([self.received is not None], args.device)[0]

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(args):
            self.received = self.received or signal.SIGTERM  # a rank told by the others stops too
            control.should_save = True
            control.should_training_stop = True


class NameBaseInCheckpoints(TrainerCallback):
    """Each checkpoint's adapter_config.json names the base as another machine resolves it (a hub id and commit, a
    built-in name), as the final adapter's does: PEFT writes the local cache folder the weights came from, and a
    checkpoint is what a budget sweep evaluates and what a user may push or copy."""

    def __init__(self, base: tuple[str, str | None]) -> None:
        self.base = base

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from distill.training.outputs import record_base

            record_base(Path(args.output_dir) / f"checkpoint-{state.global_step}", *self.base)


def training_callbacks(
    section, metrics: TrainerCallback, spent: Callable[[], float] | None = None, base: tuple | None = None
):
    """(callbacks, stop): the one callback set of sft, grpo and kd. `metrics` first (the FLOP callbacks read its
    history through `spent`, the run's estimated FLOPs so far); then the checkpoint on SIGTERM (`stop`, which `fit`
    arms), the saves at `section.save_fractions`, the stop at `section.max_flops` where the section has a budget, and
    the base's name in each checkpoint (`base`: distill.training.trainee.trainee_reference's (id, revision))."""
    budget = getattr(section, "max_flops", None)
    stop = SaveOnSignal()
    callbacks = [metrics, stop, SaveAtFractions(section.save_fractions, spent, budget)]
    if base is not None:
        callbacks.append(NameBaseInCheckpoints(base))
    if budget is not None:
        callbacks.append(FlopBudget(spent, budget))
    return callbacks, stop


def fit(trainer, stop: SaveOnSignal, resume: str | None, prog: str) -> int | None:
    """Train (from the checkpoint `resume`, if any) with SIGTERM caught; None when the run ended, else the exit
    status 128 + signal after the checkpoint of the step in flight is saved (the same command resumes it)."""
    log_first(trainer)
    with stop:
        trainer.train(resume_from_checkpoint=resume)
    if stop.received is None:
        return None
    step = trainer.state.global_step
    if not trainer.is_world_process_zero():
        return 128 + stop.received
    print(
        f"{prog}: stopped by signal {signal.Signals(stop.received).name} at step {step}; checkpoint saved in "
        f"{trainer.args.output_dir}/checkpoint-{step}; run the same command to resume",
        file=sys.stderr,
    )
    return 128 + stop.received


def plot_loss(metrics: Path, image: Path, title: str) -> None:
    """The training loss against the optimizer step, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color="#4C72B0", marker="." if len(rows) < 50 else "")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(image, dpi=100)
    plt.close(fig)

"""One compact line per logging step of a training stage, on the comparison's terminal.

A stage's per-step log (TRL's dicts) goes to logs/<stage>.stdout and its stderr shows a bare progress bar; while the
stage runs, `watch` tails the metrics.jsonl it writes (grpo.monitor for grpo.train, MetricsLog for distill.sft and
distill.kd) and prints each new step:

    grpo.compare: [grpo_rl] step 3/10  reward 0.42  accuracy 0.25  length 118  tokens/s 45.6
    grpo.compare: [sft] step 7/20  loss 1.234  tokens/s 812

and a GRPO step's warnings (reward hacking, length collapse, ...) on lines of their own. The lines go to stderr, as
the bar does: the comparison's stdout is the report's table alone.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from pathlib import Path

from distill.compare_table import STAGE
from distill.config import Config

TRAINERS = ("grpo.train", "distill.sft", "distill.kd")
# record field -> (label, format), in line order; a field the stage does not log is left out.
COLUMNS = {
    "loss": ("loss", "{:.3f}"),
    "reward": ("reward", "{:.3f}"),
    "accuracy": ("accuracy", "{:.3f}"),
    "mean_length": ("length", "{:.0f}"),
    "tokens_per_s": ("tokens/s", "{:.1f}"),
}
# GRPO's loss is not a quality signal (it is near 0 by construction); its rewards are.
GRPO_COLUMNS = ("reward", "accuracy", "mean_length", "tokens_per_s")


def step_line(stage: str, record: dict, total: int | None) -> str:
    """A metrics.jsonl record as one line; `total`: the stage's max_steps (None: decided by epochs or a budget)."""
    fields = GRPO_COLUMNS if "reward" in record else [f for f in COLUMNS if f != "reward"]
    step = f"step {record['step']}" + (f"/{total}" if total else "")
    values = [f"{COLUMNS[f][0]} {COLUMNS[f][1].format(record[f])}" for f in fields if record.get(f) is not None]
    return f"grpo.compare: [{stage}] " + "  ".join([step, *values])


class StageProgress:
    """Prints a line (step_line) per new record of `metrics` on `stream`, polling every `interval` seconds in a
    thread while the context is open, and once more as it closes. Records already there when it opens (a resumed
    stage's earlier steps) are not repeated; a partly written last line waits for its end."""

    def __init__(self, stage: str, metrics: Path, total: int | None, stream=None, interval: float = 2.0) -> None:
        self.stage, self.metrics, self.total, self.interval = stage, Path(metrics), total, interval
        self.stream = stream if stream is not None else sys.stderr
        self.offset = 0
        self.last_step = max((r["step"] for r in self._new_records()), default=0)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _new_records(self) -> list[dict]:
        try:
            with self.metrics.open("rb") as f:
                if f.seek(0, 2) < self.offset:  # rewritten (a resumed run drops the steps after its checkpoint)
                    self.offset = 0
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def poll(self) -> list[str]:
        """Print the lines of the records written since the last poll; returns them."""
        lines = []
        for record in self._new_records():
            if record["step"] <= self.last_step:
                continue
            self.last_step = record["step"]
            lines.append(step_line(self.stage, record, self.total))
            lines += [
                f"grpo.compare: [{self.stage}] step {record['step']}: warning: {w}"
                for w in record.get("warnings") or []
            ]
        if lines:
            # On a terminal, clear the progress bar's line first (as tqdm.write does); the stage redraws it below.
            clear = "\r\x1b[K" if getattr(self.stream, "isatty", lambda: False)() else ""
            self.stream.write("".join(f"{clear}{line}\n" for line in lines))
            self.stream.flush()
        return lines

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            self.poll()

    def __enter__(self) -> StageProgress:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        self.poll()


def watch(stage: str, settings: Config, folder: Path) -> contextlib.AbstractContextManager:
    """StageProgress on a training stage's metrics.jsonl in `folder` (its output folder); nothing for the others."""
    spec = STAGE[stage]
    if spec.module not in TRAINERS:
        return contextlib.nullcontext()
    steps = getattr(settings, spec.section).max_steps
    return StageProgress(stage, Path(folder) / "metrics.jsonl", steps if steps > 0 else None)

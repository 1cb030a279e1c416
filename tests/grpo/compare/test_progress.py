"""grpo.compare.progress: a training stage's metrics.jsonl, tailed while it is written, as one line per step."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from distill.recipes import load_config
from grpo.compare.progress import StageProgress, step_line, watch

# Recorded lines of grpo.monitor's and MetricsLog's metrics.jsonl (fields trimmed to those the line reads and a few).
GRPO = {"step": 3, "reward": 0.4216, "accuracy": 0.25, "mean_length": 117.6, "tokens_per_s": 45.63, "loss": 0.0012,
        "kl": 0.01, "warnings": []}  # fmt: skip
SFT = {"step": 7, "loss": 1.23449, "learning_rate": 2e-4, "tokens_per_s": 812.04, "mean_token_accuracy": 0.6}
KD = {"step": 2, "loss": 0.5, "mean_length": 64.0, "tokens_per_s": None}


@pytest.mark.parametrize(
    "stage, record, total, line",
    [
        (
            "grpo_rl",
            GRPO,
            10,
            "grpo.compare: [grpo_rl] step 3/10  reward 0.422  accuracy 0.250  length 118  tokens/s 45.6",
        ),
        ("sft", SFT, 20, "grpo.compare: [sft] step 7/20  loss 1.234  tokens/s 812.0"),
        ("kd", KD, None, "grpo.compare: [kd] step 2  loss 0.500  length 64"),
    ],
)
def test_a_step_is_one_line_in_a_fixed_format(stage, record, total, line):
    assert step_line(stage, record, total) == line


def _append(path: Path, *records: dict, partial: str = "") -> None:
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + partial)


def test_each_new_step_prints_once_and_a_resumed_runs_earlier_steps_are_not_repeated(tmp_path):
    metrics, shown = tmp_path / "metrics.jsonl", io.StringIO()
    _append(metrics, {**GRPO, "step": 1})  # from the run this one resumes
    progress = StageProgress("grpo_rl", metrics, 4, stream=shown)
    assert progress.poll() == []

    _append(metrics, {**GRPO, "step": 2}, partial='{"step": 3, "rew')  # a line being written is not read yet
    assert [line.split("  ")[0] for line in progress.poll()] == ["grpo.compare: [grpo_rl] step 2/4"]
    with metrics.open("a") as f:
        f.write('ard": 0.5}\n')
    assert progress.poll() == ["grpo.compare: [grpo_rl] step 3/4  reward 0.500"]
    assert progress.poll() == []

    warned = {**GRPO, "step": 4, "warnings": ["response length collapsed: mean 3.0 tokens"]}
    _append(metrics, warned)
    assert progress.poll()[1] == "grpo.compare: [grpo_rl] step 4: warning: response length collapsed: mean 3.0 tokens"
    assert shown.getvalue().count("\n") == 4 and "\x1b" not in shown.getvalue()  # not a terminal: no escapes


def test_a_rewritten_file_is_read_from_its_start(tmp_path):
    """A resumed run rewrites metrics.jsonl with the steps up to its checkpoint; the steps after it come again."""
    metrics = tmp_path / "metrics.jsonl"
    _append(metrics, *({**SFT, "step": s} for s in (1, 2, 3)))
    progress = StageProgress("sft", metrics, None, stream=io.StringIO())
    metrics.write_text(json.dumps({**SFT, "step": 1}) + "\n")
    _append(metrics, {**SFT, "step": 4})
    assert [line.split("  ")[0] for line in progress.poll()] == ["grpo.compare: [sft] step 4"]


def test_lines_appear_while_the_stage_runs_and_the_last_ones_when_it_ends(tmp_path):
    metrics, shown = tmp_path / "metrics.jsonl", io.StringIO()
    with StageProgress("sft", metrics, 3, stream=shown, interval=0.01):
        _append(metrics, {**SFT, "step": 1})
        for _ in range(6000):  # the watcher's thread prints it, whenever it next looks (a bound, not a timing)
            if "step 1/3" in shown.getvalue():
                break
            time.sleep(0.01)
        assert "step 1/3" in shown.getvalue()
        _append(metrics, {**SFT, "step": 2}, {**SFT, "step": 3})
    assert [line.split("  ")[0] for line in shown.getvalue().splitlines()] == [
        f"grpo.compare: [sft] step {s}/3" for s in (1, 2, 3)
    ]


def test_training_stages_are_watched_with_their_max_steps_and_the_others_are_not(tmp_path):
    cfg = load_config(["grpo.max_steps=12", "sft.max_steps=-1"])
    grpo = watch("grpo_rl", cfg, tmp_path / "grpo" / "rl")
    assert isinstance(grpo, StageProgress) and (grpo.total, grpo.metrics) == (12, tmp_path / "grpo/rl/metrics.jsonl")
    assert watch("sft", cfg, tmp_path).total is None  # epochs decide
    assert not isinstance(watch("eval", cfg, tmp_path), StageProgress)
    assert not isinstance(watch("generate", cfg, tmp_path), StageProgress)

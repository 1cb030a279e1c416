"""grpo.monitor: metrics per step and the warnings (reward hacking, length collapse, format gaming, errors)."""

from __future__ import annotations

import json

import pytest
from reward_doubles import EOS, GAMED, HONEST, InlinePool, call_reward

from grpo import rewards
from grpo.monitor import ERROR_SHARE, Detector, GRPOMonitor, record_from_logs

# --- monitor ------------------------------------------------------------------------------------------------------


def _history(format_series, accuracy_series, lengths=None):
    lengths = lengths or [50.0] * len(format_series)
    return [
        {"step": i + 1, "format": f, "accuracy": a, "mean_length": n}
        for i, (f, a, n) in enumerate(zip(format_series, accuracy_series, lengths, strict=True))
    ]


def test_detector_flags_format_rising_while_accuracy_falls():
    detector = Detector(window=6, min_change=0.1)
    hacked = _history([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0.5, 0.5, 0.4, 0.2, 0.1, 0.1])
    assert any("reward hacking" in w for w in detector.check(hacked))
    healthy = _history([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0.2, 0.3, 0.3, 0.4, 0.5, 0.5])
    assert detector.check(healthy) == []
    assert detector.check(hacked[:3]) == []  # too few steps to judge


def test_detector_flags_length_collapse():
    detector = Detector(window=3, collapse_fraction=0.5)
    collapsing = _history([0.0] * 6, [0.3] * 6, lengths=[100, 110, 90, 40, 30, 20])
    assert any("length collapsed" in w for w in detector.check(collapsing))
    assert detector.check(_history([0.0] * 6, [0.3] * 6, lengths=[100, 110, 90, 80, 95, 70])) == []


def test_a_completion_gaming_the_format_reward_is_flagged():
    """`<think>x</think>\\boxed{}` earns the full format reward, answers nothing: the monitor warns."""
    funcs, _ = rewards.build_reward_funcs(
        {"accuracy": 1.0, "format": 1.0}, InlinePool(), max_completion_length=64, eos_ids={EOS}
    )
    accuracy, fmt = funcs[0], funcs[1]
    assert rewards.is_format_gaming(GAMED, 1.0, correct=False)
    assert not rewards.is_format_gaming(HONEST, 1.0, correct=True)

    detector, history = Detector(window=4, min_change=0.1, gaming_share=0.5), []
    # two honest steps, then two steps where every completion games the format
    for completions in ([HONEST, "7"], [HONEST, "7"], [GAMED, GAMED], [GAMED, GAMED]):
        acc, metrics = call_reward(accuracy, completions)
        form, _ = call_reward(fmt, completions)
        logs = {
            "reward": sum(acc) / 2 + sum(form) / 2,
            "rewards/accuracy/mean": sum(acc) / 2,
            "rewards/format/mean": sum(form) / 2,
            "format_gaming": metrics["format_gaming"],
        }
        history.append(record_from_logs(len(history) + 1, logs, ["accuracy", "format"], 2))
        warnings = detector.check(history)
    assert history[-1]["format_gaming"] == 1.0 and history[-1]["accuracy"] == 0.0 and history[-1]["format"] == 1.0
    assert any("game the format reward" in w for w in warnings)
    assert any("reward hacking" in w for w in warnings)


@pytest.mark.parametrize(
    ("per_step", "shares", "counts", "warned_steps"),
    [
        # warned when the share crosses the threshold, not again while it stays above, again after it came back
        (8, [0.0, 0.25, 0.5, 0.0, 0.125], [0, 2, 4, 0, 1], [2, 5]),
        (20, [0.05, 0.05, 0.1], [1, 1, 2], [3]),  # 1 in 20 is at the threshold, not past it
        (8, [1.0], [8], [1]),  # every verifier failed in the first step
        (8, [None, 0.5], [None, 4], [2]),  # a step logged without the share
    ],
)
def test_monitor_counts_verifier_errors_and_warns_past_the_threshold(
    tmp_path, caplog, per_step, shares, counts, warned_steps
):
    from types import SimpleNamespace

    monitor = GRPOMonitor(tmp_path, ["accuracy", "format"], per_step, Detector(error_share=ERROR_SHARE))
    state = SimpleNamespace(global_step=0, is_world_process_zero=True)
    monitor.on_train_begin(None, state, None)
    for share in shares:
        state.global_step += 1
        every_failed = share == 1.0  # TRL logs None for a mean over no scored completion
        logs = {"reward": None if every_failed else 0.5, "rewards/accuracy/mean": None if every_failed else 0.5}
        if share is not None:
            logs["verifier_error_share"] = share
        with caplog.at_level("WARNING", logger="grpo.monitor"):
            monitor.on_log(None, state, None, logs=logs)

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["verifier_errors"] for r in lines] == counts
    assert [r["verifier_error_share"] for r in lines] == shares
    warned = [r["step"] for r in lines if any("`error`" in w for w in r["warnings"])]
    assert warned == warned_steps
    logged = [r for r in caplog.records if "`error`" in r.getMessage()]
    assert [r.levelname for r in logged] == ["WARNING"] * len(warned_steps)

"""VerifierPool's time bound: CPU time in the worker (so a busy machine does not turn verdicts into timeouts), a
wall-time backstop with one retry in a fresh worker, and the timeouts counted. The verifiers here are stand-ins,
run in the workers by name."""

from __future__ import annotations

import time
from pathlib import Path

from distill.verifiers.base import Verdict, correct
from distill.verifiers.pool import VerifierPool

BOUND = 1.0


def starved_once(row: dict) -> Verdict:
    """Stuck for a long wall time the first time only, without using CPU: a worker starved on a loaded machine."""
    marker = Path(row["marker"])
    if not marker.exists():
        marker.touch()
        time.sleep(60)
    return correct("second try")


def slow_without_cpu(row: dict) -> Verdict:
    """More wall time than the bound, little CPU: a verdict on a machine busy with other work."""
    time.sleep(BOUND * 1.5)
    return correct("in time")


def heavy(row: dict) -> Verdict:
    """CPU-bound inside one C call (a huge power), which no Python-level alarm could interrupt."""
    for _ in range(100):
        9 ** (9**8)
    return correct("never")


def row(**fields) -> dict:
    return {"task": "math", "completion": "\\boxed{1}", "answer": "1", **fields}


def test_a_wall_timeout_is_retried_once_in_a_fresh_worker_and_counted(tmp_path):
    with VerifierPool(workers=1, timeout=BOUND, verify=starved_once) as pool:
        (verdict,) = pool.map([row(marker=str(tmp_path / "tried"))])
        assert verdict.verdict == "correct" and verdict.reason == "second try", verdict
        assert pool.timeouts == {"cpu": 0, "wall": 1, "retried": 1, "recovered": 1}


def test_the_bound_is_cpu_time_not_wall_time():
    with VerifierPool(workers=1, timeout=BOUND, verify=slow_without_cpu) as pool:
        (verdict,) = pool.map([row()])
    assert verdict.verdict == "correct", verdict
    assert pool.timeouts == {"cpu": 0, "wall": 0, "retried": 0, "recovered": 0}


def test_a_cpu_timeout_ends_the_worker_even_in_c_code_and_is_not_retried():
    with VerifierPool(workers=1, timeout=BOUND, verify=heavy) as pool:
        verdicts = list(pool.map([row(), row()]))
    assert [v.verdict for v in verdicts] == ["timeout", "timeout"] and "CPU" in verdicts[0].reason, verdicts
    assert pool.timeouts == {"cpu": 2, "wall": 0, "retried": 0, "recovered": 0}


def test_the_pool_still_judges_real_rows_after_a_cpu_timeout():
    tower = "9^{9^{9^{9}}}"
    with VerifierPool(workers=1, timeout=BOUND) as pool:
        verdicts = list(pool.map([row(completion=f"\\boxed{{{tower}}}", answer="1.5"), row()]))
    assert verdicts[0].verdict in ("timeout", "wrong") and verdicts[1].verdict == "correct", verdicts


def test_the_default_pool_takes_the_cores_of_its_rank(monkeypatch):
    """grpo.train holds a pool on every rank: under a launch of 2 processes on a machine (LOCAL_WORLD_SIZE, set by
    torchrun) each takes half the cores it may run on, not every core; never fewer than 1."""
    from distill.verifiers.pool import cores_per_process

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cores_per_process() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cores_per_process() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert cores_per_process() == 1

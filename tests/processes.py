"""Helpers for tests that run a stage in a child process and signal it at a chosen point."""

from __future__ import annotations

import subprocess
import time

import pytest


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Poll `predicate` until true; fail with the child's stderr if it ends or stalls first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"training ended or stalled before the kill point:\n{proc.communicate()[1][-3000:]}")
        time.sleep(0.05)

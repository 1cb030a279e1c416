"""Verify many rows at once, each verdict bounded in time.

Math verdicts run in worker processes (pebble's ProcessPool): a verdict that passes its time bound has its worker
killed and replaced, and comes back as `timeout` while the pool keeps going -- never SIGALRM in a thread, which
sympy-heavy code can ignore and which cannot run outside the main thread. Code verdicts already run in a sandboxed
subprocess with its own limits, so they run in threads of this process (the thread only waits on the sandbox).

Workers start from a forkserver that has imported the verifiers once, so a replaced worker is ready in milliseconds
and no worker inherits the parent's threads (torch, tokenizers) through a plain fork.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pebble

from distill.verifiers.base import Verdict, error, timeout
from distill.verifiers.registry import verify_row

# Tasks whose verifier starts its own bounded subprocess; everything else runs in the killable process pool.
SUBPROCESS_TASKS = frozenset({"code"})


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["distill.verifiers.registry"])
    return ctx


def settle(future: Future, bound: float) -> Verdict:
    """The verdict of a submitted row; a timeout or a crashed worker becomes a `timeout` or `error` verdict."""
    try:
        return future.result()
    except FutureTimeout:
        return timeout(f"no verdict within {bound:g} s")
    except pebble.ProcessExpired as e:
        return error(f"verifier process died (exit code {e.exitcode})")
    except Exception as e:  # a verifier bug must not stop a whole dataset: report it on the row
        return error(f"{type(e).__name__}: {e}"[:200])


class VerifierPool:
    """`with VerifierPool(workers=2, timeout=5.0) as pool: verdicts = list(pool.map(rows))`.

    workers: processes for math verdicts and threads for code verdicts (default: all CPU cores).
    timeout: seconds per math verdict (in its worker) and per code sandbox run (wall time).
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0):
        self.workers = workers or os.cpu_count() or 1
        self.timeout = timeout
        self._processes = pebble.ProcessPool(max_workers=self.workers, context=_context())
        self._threads = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox")

    def warm_up(self) -> VerifierPool:
        """Start the workers and make each verifier's first call now, and wait for them. Called between the engine's
        start and its sampling: on a CPU machine the engine's threads own every core, and a worker starting mid-run
        stalls them far longer than its own CPU time."""
        warm = {"task": "math", "answer": "1", "completion": "\\boxed{1}"}
        for future in [self._processes.schedule(verify_row, args=(warm,)) for _ in range(self.workers)]:
            future.result()
        return self

    def submit(self, row: dict) -> Future:
        """A future of the row's Verdict (never raises: failures come back as `timeout` or `error` verdicts)."""
        if row.get("task") in SUBPROCESS_TASKS:
            return self._threads.submit(verify_row, {**row, "timeout": self.timeout})
        return self._processes.schedule(verify_row, args=(row,), timeout=self.timeout)

    def judge(self, rows: Iterable[dict], window: int | None = None) -> Iterator[tuple[dict, Verdict]]:
        """(row, verdict) pairs in input order; at most `window` rows in flight, so a huge file never sits in memory."""
        window = window or self.workers * 32
        pending: deque[tuple[dict, Future]] = deque()
        for row in rows:
            pending.append((row, self.submit(row)))
            if len(pending) >= window:
                done, future = pending.popleft()
                yield done, settle(future, self.timeout)
        while pending:
            done, future = pending.popleft()
            yield done, settle(future, self.timeout)

    def map(self, rows: Iterable[dict], window: int | None = None) -> Iterator[Verdict]:
        """Verdicts in input order."""
        return (verdict for _, verdict in self.judge(rows, window))

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        self._processes.stop()
        self._processes.join()

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Verify many rows at once, each verdict bounded in CPU time.

Math verdicts run in worker processes (pebble's ProcessPool). Each verdict may spend `timeout` seconds of its
worker's CPU time -- CPU time, not wall time, so that a verdict does not depend on how busy the machine is. The
kernel enforces it (ITIMER_PROF: SIGPROF, left at its default action, ends the worker even inside a long C call such
as a huge power, which no Python-level handler could interrupt); the worker is replaced and the row comes back as
`timeout`. A wall-time backstop of WALL_FACTOR times the bound catches a worker starved of CPU: that row is tried
once more in a fresh worker before it counts as `timeout`. Never SIGALRM in a thread, which sympy-heavy code can
ignore and which cannot run outside the main thread. Code verdicts already run in a sandboxed subprocess with its
own limits, so they run in threads of this process (the thread only waits on the sandbox).

Workers start from a forkserver that has imported the verifiers once, so a replaced worker is ready in milliseconds
and no worker inherits the parent's threads (torch, tokenizers) through a plain fork.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pebble

from distill.verifiers.base import Verdict, error, timeout
from distill.verifiers.registry import TASKS, verify_row

# Tasks whose verifier starts its own bounded subprocess; everything else runs in the killable process pool.
SUBPROCESS_TASKS = frozenset(name for name, contract in TASKS.items() if contract.subprocess)
WALL_FACTOR = 2.0  # the wall-time backstop, in multiples of the CPU-time bound: reached only when starved of CPU


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["distill.verifiers.registry"])
    return ctx


def cores_per_process() -> int:
    """The cores this process may run on (its affinity mask: a Slurm or container limit), divided among the
    processes of a multi-process launch on this machine (LOCAL_WORLD_SIZE, set by torchrun): each rank of grpo.train
    holds a pool, and N pools each taking every core would put N workers on each core. At least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(cores // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1), 1)


def cpu_bounded(verify: Callable[[dict], Verdict], row: dict, cpu_seconds: float) -> Verdict:
    """In a worker: verify(row), the kernel ending this process once the call has used `cpu_seconds` of CPU time
    (user + system, all threads: ITIMER_PROF; nothing in the workers handles SIGPROF, so it terminates)."""
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        return verify(row)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def settle(future: Future, bound: float) -> Verdict:
    """The verdict of a submitted row; a timeout or a crashed worker becomes a `timeout` or `error` verdict."""
    try:
        return future.result()
    except FutureTimeout:
        return timeout(f"no verdict within {bound:g} s")
    except pebble.ProcessExpired as e:
        if e.exitcode == -signal.SIGPROF:
            return timeout(f"no verdict within {bound:g} s of CPU time")
        return error(f"verifier process died (exit code {e.exitcode})")
    except Exception as e:  # a verifier bug must not stop a whole dataset: report it on the row
        return error(f"{type(e).__name__}: {e}"[:200])


class VerifierPool:
    """`with VerifierPool(workers=2, timeout=5.0) as pool: verdicts = list(pool.map(rows))`.

    workers: processes for math verdicts and threads for code verdicts (default: the cores this process may use,
        shared among the training processes of a multi-process launch on this machine: `cores_per_process`).
    timeout: the time bound of each verdict, in seconds, with its meaning per task from registry.TASKS (`time_bound`):
        CPU seconds of a math worker (wall-time backstop WALL_FACTOR times that, then one retry in a fresh worker),
        wall-clock seconds of each code sandbox run.
    verify: what a worker runs on a row (tests pass their own; it must be importable by name).
    timeouts: this pool's count of math rows that ran out of CPU time (`cpu`), of wall time (`wall`, each try),
        were retried (`retried`) and were judged on the retry (`recovered`).
    """

    def __init__(
        self, workers: int | None = None, timeout: float = 5.0, verify: Callable[[dict], Verdict] = verify_row
    ):
        self.workers = workers or cores_per_process()
        self.timeout = timeout
        self.wall_timeout = timeout * WALL_FACTOR
        self.verify = verify
        self.timeouts: Counter = Counter({"cpu": 0, "wall": 0, "retried": 0, "recovered": 0})
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

    def _schedule(self, row: dict) -> Future:
        args = (self.verify, row, self.timeout)
        return self._processes.schedule(cpu_bounded, args=args, timeout=self.wall_timeout)

    def submit(self, row: dict) -> Future:
        """A future of the row's first try (settle it with `result`, which counts and retries timeouts)."""
        if row.get("task") in SUBPROCESS_TASKS:
            return self._threads.submit(self.verify, row, self.timeout)
        return self._schedule(row)

    def result(self, row: dict, future: Future) -> Verdict:
        """The row's Verdict (never raises: failures come back as `timeout` or `error` verdicts). A math row that
        overran the wall-time backstop (its worker starved of CPU) is tried once more in a fresh worker."""
        if row.get("task") in SUBPROCESS_TASKS:
            return settle(future, self.timeout)
        for retry in (False, True):
            try:
                verdict = future.result()
                self.timeouts["recovered"] += retry
                return verdict
            except FutureTimeout:
                self.timeouts["wall"] += 1
                if not retry:
                    self.timeouts["retried"] += 1
                    future = self._schedule(row)  # pebble has replaced the worker it stopped
            except pebble.ProcessExpired as e:
                self.timeouts["cpu"] += e.exitcode == -signal.SIGPROF
                return settle(future, self.timeout)
            except Exception:
                return settle(future, self.timeout)
        return timeout(f"no verdict within {self.wall_timeout:g} s of wall time, twice (machine too busy)")

    def judge(self, rows: Iterable[dict], window: int | None = None) -> Iterator[tuple[dict, Verdict]]:
        """(row, verdict) pairs in input order; at most `window` rows in flight, so a huge file never sits in memory."""
        window = window or self.workers * 32
        pending: deque[tuple[dict, Future]] = deque()
        for row in rows:
            pending.append((row, self.submit(row)))
            if len(pending) >= window:
                yield pending[0][0], self.result(*pending.popleft())
        while pending:
            yield pending[0][0], self.result(*pending.popleft())

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

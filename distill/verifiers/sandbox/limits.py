"""What one sandboxed run may use (Limits), what it did (SandboxResult), and the per-process limits and uids that
the bootstrap applies."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

UID_BASE = 1_600_000_000  # uids no real account uses; one per concurrent run when the host is root
UID_POOL_SIZE = 4096


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed run.

    timeout: wall-clock seconds from launch (sandbox and interpreter start, ~20 ms, included); the per-process
        CPU-time limit is one second more, rounded up, so that a busy loop always ends on the wall clock.
    memory_bytes: address-space limit per process (RLIMIT_AS).
    run_memory_bytes: memory of the whole run, every process, memfd, shm and tmpfs page included (the control
        group's cap, see cgroups.py; only where a cgroup layer works).
    max_output_bytes: stdout (and, separately, stderr) bytes read before the run is killed.
    file_bytes: largest file the program may write (RLIMIT_FSIZE).
    disk_bytes: size of the writable tmpfs at /sandbox (bwrap only; /dev/shm gets a quarter of it).
    nproc: processes plus threads the run's uid may have (RLIMIT_NPROC).
    """

    timeout: float = 5.0
    memory_bytes: int = 1 << 30
    max_output_bytes: int = 1 << 20
    file_bytes: int = 16 << 20
    disk_bytes: int = 64 << 20
    nproc: int = 32
    run_memory_bytes: int = (1 << 30) + (256 << 20)


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did.

    exit_code: the exit status, or minus the signal that killed it (bwrap's 128+N is mapped back to -N).
    stdout: up to max_output_bytes of standard output. stderr_tail: the last 8 KiB of standard error.
    result: what the driver (the judge, in a judged run) wrote to the result pipe after the start marker, at most
        4 KiB. program_exit: in a judged run, how the program's process ended when the judge failed it (exit
        status, or minus a signal), None while it was still running or when the judge passed it.
    memory_cap / memory_peak: the cgroups layer that capped the run's memory, and the run's peak in bytes by that
        group's count (None without a group). oom_killed: the kernel killed a process of the run at that cap.
    started: the bootstrap set the limits, dropped privileges and reached the driver; False means the sandbox
        itself failed (the untrusted code never ran).
    timed_out: "wall" or "cpu" when a time limit ended the run, else None.
    output_exceeded: stdout, stderr or the result pipe went past its cap, so the run was killed.
    wall_seconds: seconds from launch to exit.
    """

    exit_code: int | None
    stdout: bytes
    stderr_tail: bytes
    result: bytes
    started: bool
    timed_out: str | None
    output_exceeded: bool
    wall_seconds: float
    backend: str
    program_exit: int | None = None
    memory_cap: str = "rlimit"  # the cgroups layer that capped the whole run's memory
    memory_peak: int | None = None
    oom_killed: bool = False


class SandboxUnavailable(RuntimeError):
    """No sandbox layer can run code here without running it with the host's privileges."""


class _UidPool:
    """Distinct uids for concurrent runs (thread-safe)."""

    def __init__(self, base: int, size: int) -> None:
        self._free, self._lock = list(range(base + size - 1, base - 1, -1)), threading.Lock()

    def acquire(self) -> int:
        with self._lock:
            return self._free.pop()  # IndexError only with more than UID_POOL_SIZE concurrent runs

    def release(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)


uids = _UidPool(UID_BASE, UID_POOL_SIZE)


def env(home: str) -> dict[str, str]:
    one = "1"  # BLAS thread pools reserve address space per thread and count against RLIMIT_NPROC
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "USER": "sandbox",
            "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": one, "OMP_NUM_THREADS": one,
            "MKL_NUM_THREADS": one}  # fmt: skip


def cpu_seconds(limits: Limits) -> int:
    return math.ceil(limits.timeout) + 1


def rlimits(limits: Limits) -> list[tuple[str, int, int]]:
    cpu = cpu_seconds(limits)
    return [
        ("RLIMIT_CPU", cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second later if that is caught
        ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
        ("RLIMIT_FSIZE", limits.file_bytes, limits.file_bytes),
        ("RLIMIT_NPROC", limits.nproc, limits.nproc),
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_NOFILE", 64, 64),  # few descriptors: each can pin kernel memory (pipes, sockets)
    ]

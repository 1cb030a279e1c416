"""Run untrusted Python in a throwaway sandbox and collect what it did.

Layers, strongest first (the first that works is probed once per process and cached):

* `bwrap`: bubblewrap with new pid, net, ipc, uts and cgroup namespaces. The file system is a fresh read-only root
  holding only the system directories and this interpreter's prefixes (no /work, /home, /root, datasets or
  checkpoints), plus size-capped tmpfs mounts at /sandbox (the cwd; /tmp points there) and /dev/shm. When the pid
  namespace's init dies every process in it dies, so nothing outlives a run.
* `unshare`: util-linux `unshare` with new net, pid and mount namespaces; the rest of the file system stays visible
  (read-only only through file permissions). Used when bwrap is missing or fails.
* `plain`: no namespaces at all, only the limits below. Used when neither works.

In every layer a small bootstrap (sandboxed/bootstrap.py, started with `python -I -S`) sets the rlimits (CPU time, address space,
file size, process count, no core dumps), drops to an unprivileged uid when the host runs as root, closes every
inherited fd except the result pipe, and only then runs the driver that runs the untrusted code. Dropping privileges
in the bootstrap rather than before bwrap is deliberate: this interpreter may live under a directory the sandbox uid
cannot enter (e.g. /root/.pyenv), and bwrap resolves bind sources with the caller's permissions. Each concurrent run
gets its own uid from a pool (rather than sharing `nobody`), so RLIMIT_NPROC bounds each run separately and a fork
bomb in one run cannot starve another. The host enforces the wall-clock limit, reads stdout incrementally up to a cap
and kills the process group (and, in the `plain` layer, every process of the run's uid) before returning.
"""
# Modules: limits (Limits, SandboxResult, rlimits, uids), layers (the command lines), run (one launched run),
# reap (the cleanup), cgroups (the run's memory cap), seccomp (the system calls it may make); the code that runs
# inside is in ../sandboxed/.

from __future__ import annotations

import logging
import shutil
import sys
import threading
from pathlib import Path

from distill.verifiers.sandbox import cgroups, seccomp
from distill.verifiers.sandbox.layers import BACKENDS
from distill.verifiers.sandbox.limits import Limits, SandboxResult, SandboxUnavailable
from distill.verifiers.sandbox.run import launch

__all__ = ["BACKENDS", "MAIN_DRIVER", "Limits", "SandboxResult", "SandboxUnavailable", "backend", "cgroups",
           "isolation", "run_judged", "run_sandboxed", "seccomp"]  # fmt: skip

log = logging.getLogger(__name__)
# The default driver: run PROGRAM as the __main__ script (sandboxed/script.py's loader).
MAIN_DRIVER = (Path(__file__).resolve().parents[1] / "sandboxed" / "script.py").read_text() + (
    '\nload_program(PROGRAM, "__main__")\n'
)
_probe_lock = threading.Lock()
_probed: list[str] = []  # the chosen layer, once probed ("" when none works)


def backend() -> str:
    """The strongest sandbox layer that works here ("bwrap", "unshare" or "plain"), probed once per process.

    Raises SandboxUnavailable when none can run code without the host's privileges.
    """
    with _probe_lock:
        if not _probed:
            _probed.append("")
            for name in BACKENDS:
                if name != "plain" and shutil.which(name) is None:
                    continue
                try:
                    r = launch(name, "print('ok')", None, Limits(timeout=20.0), MAIN_DRIVER, {}, sys.executable)
                except OSError as e:
                    log.debug("sandbox layer %s failed to start: %s", name, e)
                    continue
                if r.started and r.exit_code == 0 and r.stdout == b"ok\n":
                    _probed[0] = name
                    break
                log.debug("sandbox layer %s unusable: %r", name, r.stderr_tail[-500:])
            if _probed[0] != "bwrap":
                log.warning("bubblewrap is unusable here; untrusted code gets the weaker %r sandbox", _probed[0])
    if not _probed[0]:
        raise SandboxUnavailable(
            "no sandbox layer works: install bubblewrap, or make the interpreter readable to other users "
            "(as root, untrusted code runs under a throwaway uid that must be able to import the standard library)"
        )
    return _probed[0]


def isolation() -> str:
    """The layers that run untrusted code here, e.g. "bwrap+cgroup1": the sandbox, then the run's memory cap."""
    try:
        name = backend()
    except SandboxUnavailable:
        name = "none"
    return f"{name}+{cgroups.layer()}"


def run_sandboxed(
    program: str,
    *,
    stdin: bytes | None = None,
    limits: Limits | None = None,
    driver: str = MAIN_DRIVER,
    payload: dict | None = None,
    backend_name: str | None = None,
    python: str | None = None,
) -> SandboxResult:
    """Run `program` (Python source) in the sandbox and return what it did. Thread-safe.

    stdin: bytes for standard input (default /dev/null). limits: see Limits (seconds, bytes).
    driver: Python source the bootstrap runs once the limits are set, with globals PROGRAM (the source),
        PAYLOAD (`payload`; marshal-able values only) and RESULT_FD (a pipe whose bytes come back as
        SandboxResult.result). The default runs PROGRAM as the __main__ script.
    backend_name / python: force a layer or an interpreter (for tests); default the strongest layer that works
        here and this interpreter. Raises SandboxUnavailable when no layer works.
    """
    name = backend_name or backend()
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {name!r}")
    return launch(name, program, stdin, limits or Limits(), driver, payload or {}, python or sys.executable)


def run_judged(
    program: str,
    *,
    driver: str,
    judge_driver: str,
    judge_payload: dict,
    limits: Limits | None = None,
    backend_name: str | None = None,
    python: str | None = None,
) -> SandboxResult:
    """Run `program` under `driver` in one process and `judge_driver` in another (see BOOTSTRAP). Thread-safe.

    The program's process gets globals PROGRAM, REQUESTS and RESPONSES (pipe ends to and from the judge); the
    judge's gets PAYLOAD (`judge_payload`, marshal-able), RESULT_FD, REQUESTS and RESPONSES. Only the judge holds
    the result pipe, and the judge's config is read only after the program's process was forked.
    """
    name = backend_name or backend()
    judge = {"driver": judge_driver, "payload": judge_payload}
    return launch(name, program, None, limits or Limits(), driver, {}, python or sys.executable, judge)

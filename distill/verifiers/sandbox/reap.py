"""Ending a run: killing what is left of it and waiting until none of its processes runs."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import signal
import subprocess
import time

log = logging.getLogger(__name__)
RESULT_CAP = 4096  # bytes accepted on the result pipe (and read from bwrap's info pipe)


def await_namespace(info_r: int, info: bytearray, limit: float = 5.0) -> None:
    """Wait (at most `limit` seconds) until bwrap's init has exited, i.e. its pid namespace is empty.

    bwrap exits as soon as its init reports the program's status, while the kernel is still killing the rest of the
    namespace; the init itself exits only once every other process in it is gone.
    """
    with contextlib.suppress(OSError):
        info += os.read(info_r, RESULT_CAP)
    found = re.search(rb'"child-pid"\s*:\s*(\d+)', info)
    pidfd = open_pidfd(int(found.group(1))) if found else None
    if pidfd is not None:
        try:
            poller = select.poll()  # not select.select: the host may hold more than 1024 fds
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(limit * 1000):
                log.warning("sandbox pid namespace still alive %.0f s after the run", limit)
        finally:
            os.close(pidfd)


def open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def has_exited(pid: int) -> bool:
    try:  # WNOWAIT leaves the child for finish() to reap
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_uid(uid: int, limit: float = 5.0) -> None:
    """Kill every process of `uid` and wait (at most `limit` seconds) until none is left running.

    kill(-1) sent from that uid reaches exactly its processes, daemons included; SIGKILL takes effect asynchronously.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cmd = ["kill", "-KILL", "--", "-1"]
        subprocess.run(cmd, user=uid, group=uid, extra_groups=[], stderr=subprocess.DEVNULL, check=False)
        if not running_as(uid):
            return
        time.sleep(0.01)
    log.warning("processes of sandbox uid %d still alive %.0f s after the run", uid, limit)


def running_as(uid: int) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith(("Z", "X")):
                return True
    return False

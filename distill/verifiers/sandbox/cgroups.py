"""One memory and process cap for a whole sandboxed run, through the kernel's control groups.

Per-process rlimits miss memory that no single process maps: memfd pages held by open descriptors, detached SysV
shared memory, tmpfs files. A control group charges all of it to the run. Layers, strongest first, probed once:

* `cgroup2`: a child group per run under this process's own cgroup v2 group, with `memory.max`,
  `memory.swap.max = 0` and `pids.max` (needs the memory and pids controllers delegated to that group);
* `cgroup1`: the v1 `memory` (`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` where swap is accounted)
  and `pids` (`pids.max`) hierarchies, a child group per run under this process's groups there;
* `rlimit`: neither is writable; only the per-process limits hold (RLIMIT_AS, RLIMIT_NPROC per uid, RLIMIT_FSIZE
  per file including memfd, size-capped tmpfs), which a determined program can exceed with memfd or shm.

A run enters its group through a one-line `sh` prefix (`echo 0 > cgroup.procs; exec ...`) before the sandbox starts,
so every process it makes is born inside the group; afterwards the group is killed whole and removed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import signal
import time

log = logging.getLogger(__name__)

LAYERS = ("cgroup2", "cgroup1", "rlimit")
_counter = itertools.count()
# Moves the shell into each group named before "--", then becomes the sandbox command.
ENTER = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 121; shift; done; shift; exec "$@"'
ENTER_FAILED = 121  # the exit status of the prefix when a group refused the process


def _own_groups() -> dict[str, str]:
    """controller (or "" for cgroup v2) -> this process's group path, from /proc/self/cgroup."""
    groups = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                groups[c] = path
    return groups


def _mounts() -> dict[str, str]:
    """controller (or "" for cgroup v2) -> mount point."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            _, point, kind, options = line.split()[:4]
            if kind == "cgroup2":
                found.setdefault("", point)
            elif kind == "cgroup":
                for option in options.split(","):
                    found.setdefault(option, point)
    return found


def _write(path: str, value: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(value)
        return True
    except OSError:
        return False


class RunGroup:
    """The groups of one run: `prefix` enters them; `close()` kills what is left and removes them."""

    def __init__(self, dirs: list[str]):
        self.dirs = dirs

    @property
    def prefix(self) -> list[str]:
        return ["sh", "-c", ENTER, "sh", *[os.path.join(d, "cgroup.procs") for d in self.dirs], "--"]

    def peak_bytes(self) -> int | None:
        for d in self.dirs:
            for name in ("memory.peak", "memory.max_usage_in_bytes"):
                with contextlib.suppress(OSError, ValueError), open(os.path.join(d, name)) as f:
                    return int(f.read())
        return None

    def oom_kills(self) -> int:
        """Processes of the run that the OOM killer ended at the group's cap (0 where the kernel does not count)."""
        for d in self.dirs:
            for name in ("memory.events", "memory.oom_control"):  # cgroup v2, v1: both have a line "oom_kill N"
                with contextlib.suppress(OSError, ValueError), open(os.path.join(d, name)) as f:
                    for line in f:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
        return 0

    def close(self, limit: float = 5.0) -> None:
        deadline = time.monotonic() + limit
        for d in self.dirs:
            while True:
                pids = _pids(d)
                if not pids or time.monotonic() > deadline:
                    break
                if not _write(os.path.join(d, "cgroup.kill"), "1"):
                    for pid in pids:
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
                time.sleep(0.002)
            for _ in range(200):  # rmdir fails while the kernel still tears the last process down
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
            else:
                log.warning("could not remove the sandbox group %s", d)


def _pids(group: str) -> list[int]:
    try:
        with open(os.path.join(group, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def _make(parent: str, settings: list[tuple[str, str]]) -> str | None:
    path = os.path.join(parent, f"distill-sandbox-{os.getpid()}-{next(_counter)}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    for name, value in settings:
        if os.path.exists(os.path.join(path, name)) and not _write(os.path.join(path, name), value):
            RunGroup([path]).close()
            return None
    return path


def _v2_parent() -> str | None:
    mount, own = _mounts().get(""), _own_groups().get("")
    if mount is None or own is None:
        return None
    parent = os.path.join(mount, own.lstrip("/"))
    try:
        with open(os.path.join(parent, "cgroup.controllers")) as f:
            if not {"memory", "pids"} <= set(f.read().split()):
                return None
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            enabled = set(f.read().split())
    except OSError:
        return None
    if not {"memory", "pids"} <= enabled and not _write(
        os.path.join(parent, "cgroup.subtree_control"), "+memory +pids"
    ):
        return None
    return parent


def _v1_parents() -> tuple[str, str] | None:
    mounts, own = _mounts(), _own_groups()
    if "memory" not in mounts or "pids" not in mounts or "memory" not in own or "pids" not in own:
        return None
    return tuple(os.path.join(mounts[c], own[c].lstrip("/")) for c in ("memory", "pids"))  # type: ignore[return-value]


def open_group(layer: str, memory_bytes: int, pids: int) -> RunGroup | None:
    """A new group for one run in `layer` (None for `rlimit`, or when the group could not be made)."""
    if layer == "cgroup2" and (parent := _v2_parent()):
        settings = [("memory.max", str(memory_bytes)), ("memory.swap.max", "0"), ("pids.max", str(pids))]
        path = _make(parent, settings)
        return RunGroup([path]) if path else None
    if layer == "cgroup1" and (parents := _v1_parents()):
        memory = _make(parents[0], [("memory.limit_in_bytes", str(memory_bytes)),
                                    ("memory.memsw.limit_in_bytes", str(memory_bytes))])  # fmt: skip
        if memory is None:
            return None
        task_cap = _make(parents[1], [("pids.max", str(pids))])
        if task_cap is None:
            RunGroup([memory]).close()
            return None
        return RunGroup([memory, task_cap])
    return None


@functools.lru_cache(maxsize=1)
def layer() -> str:
    """The strongest layer that works here, probed once per process by making (and removing) a group."""
    for name in LAYERS[:-1]:
        group = open_group(name, 64 << 20, 8)
        if group is not None:
            group.close()
            return name
    log.info("no writable control group: sandboxed runs are capped per process only (rlimits)")
    return "rlimit"

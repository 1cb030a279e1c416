"""The sandbox layers (bubblewrap, util-linux unshare, plain) as command lines around the bootstrap."""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from pathlib import Path

from distill.verifiers.sandbox.limits import Limits

BACKENDS = ("bwrap", "unshare", "plain")
# The first Python a run executes (sandboxed/bootstrap.py): it is passed with -c, so no file of this tree needs to be
# readable by the run's uid.
BOOTSTRAP = (Path(__file__).resolve().parents[1] / "sandboxed" / "bootstrap.py").read_text()


@functools.lru_cache(maxsize=1)
def site_paths() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(p for k in ("purelib", "platlib") if os.path.isdir(p := paths.get(k, ""))))


def python_dirs(python: str) -> list[str]:
    """Directories the interpreter needs: prefixes, stdlib, site-packages and the executable's directories."""
    paths = sysconfig.get_paths()
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(python)]
    dirs += [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    dirs.append(os.path.dirname(os.path.realpath(python)))
    out: list[str] = []
    for d in sorted({os.path.realpath(p) for p in dirs} | {os.path.abspath(p) for p in dirs}, key=len):
        if os.path.isdir(d) and not any(d == o or d.startswith(o + os.sep) for o in out):
            out.append(d)
    return out


@functools.lru_cache(maxsize=64)
def bwrap_args(limits: Limits, root: bool, python: str) -> tuple[str, ...]:
    args = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--die-with-parent", "--new-session"]
    if root:  # privileged bwrap; the bootstrap needs only these two capabilities to drop to the run's uid
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:  # unprivileged: a user namespace, and no further ones inside it
        args += ["--unshare-user", "--disable-userns"]
    made: set[str] = {"/"}  # paths that exist in the new root
    bound: list[str] = []  # host directories bound in; their subdirectories need nothing more
    for d in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
            bound.append(d)
        made.add(d)
    for d in python_dirs(python):
        if any(d.startswith(b + os.sep) for b in bound):
            continue
        parts = d.strip("/").split("/")
        for i in range(1, len(parts)):  # bwrap would create missing parents 0700, closed to the run's uid
            parent = "/" + "/".join(parts[:i])
            if parent not in made:
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--ro-bind", d, d]
        bound.append(d)
        made.add(d)
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(max(limits.disk_bytes // 4, 1 << 20)), "--perms", "1777", "--tmpfs", "/dev/shm"]
    args += ["--size", str(limits.disk_bytes), "--perms", "1777", "--tmpfs", "/sandbox"]
    # /tmp points at the writable /sandbox, unless the interpreter itself lives under /tmp (a venv there): then /tmp
    # holds its read-only binds, and TMPDIR (see env) still sends temporary files to /sandbox.
    tmp = [] if "/tmp" in made else ["--symlink", "/sandbox", "/tmp"]
    return (*args, *tmp, "--chdir", "/sandbox", "--remount-ro", "/", "--")


def command(backend: str, limits: Limits, root: bool, python: str) -> list[str]:
    interpreter = [python, "-I", "-S", "-B", "-c", BOOTSTRAP]
    if backend == "bwrap":
        return [*bwrap_args(limits, root, python), *interpreter]
    if backend == "unshare":
        flags = ["--net", "--pid", "--ipc", "--mount", "--mount-proc", "--fork", "--kill-child"]
        return ["unshare", *flags, *([] if root else ["--map-root-user"])] + interpreter
    return interpreter

"""Run untrusted Python in a throwaway sandbox and collect what it did.

Layers, strongest first (the first that works is probed once per process and cached):

* `bwrap`: bubblewrap with new pid, net, ipc, uts and cgroup namespaces. The file system is a fresh read-only root
  holding only the system directories and this interpreter's prefixes (no /work, /home, /root, datasets or
  checkpoints), plus size-capped tmpfs mounts at /sandbox (the cwd; /tmp points there) and /dev/shm. When the pid
  namespace's init dies every process in it dies, so nothing outlives a run.
* `unshare`: util-linux `unshare` with new net, pid and mount namespaces; the rest of the file system stays visible
  (read-only only through file permissions). Used when bwrap is missing or fails.
* `plain`: no namespaces at all, only the limits below. Used when neither works.

In every layer a small bootstrap (BOOTSTRAP, started with `python -I -S`) sets the rlimits (CPU time, address space,
file size, process count, no core dumps), drops to an unprivileged uid when the host runs as root, closes every
inherited fd except the result pipe, and only then runs the driver that runs the untrusted code. Dropping privileges
in the bootstrap rather than before bwrap is deliberate: this interpreter may live under a directory the sandbox uid
cannot enter (e.g. /root/.pyenv), and bwrap resolves bind sources with the caller's permissions. Each concurrent run
gets its own uid from a pool (rather than sharing `nobody`), so RLIMIT_NPROC bounds each run separately and a fork
bomb in one run cannot starve another. The host enforces the wall-clock limit, reads stdout incrementally up to a cap
and kills the process group (and, in the `plain` layer, every process of the run's uid) before returning.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
import math
import os
import re
import select
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass

from distill.verifiers import cgroups, seccomp

log = logging.getLogger(__name__)

BACKENDS = ("bwrap", "unshare", "plain")
UID_BASE = 1_600_000_000  # uids no real account uses; one per concurrent run when the host is root
UID_POOL_SIZE = 4096
_STDERR_TAIL = 8192  # bytes of stderr kept
_RESULT_CAP = 4096  # bytes accepted on the result pipe
_STARTED = b"S"  # the bootstrap writes this once limits and uid are in place, before any untrusted code runs

# Runs as `python -I -S -B -c BOOTSTRAP CFG_FD RESULT_FD [JUDGE_FD]`. The config (marshal) arrives on CFG_FD (a
# memfd, so nothing is written to disk and the program cannot reopen it once it is closed). With JUDGE_FD, the run is
# judged: the bootstrap forks the program's process first, and only then reads the judge's config (the tests, the
# nonce) from JUDGE_FD and forks the judge under another uid, so the program's memory never held either (see
# sandboxed/judge.py). Untrusted code never runs in this process.
BOOTSTRAP = r"""
import os, sys, marshal, resource
def _read(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return marshal.loads(b"".join(chunks))
def _seccomp(program):  # seccomp.py's allow-list; from here on only the calls it names work
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    buf = ctypes.create_string_buffer(program, len(program))
    prog = Prog(len(program) // 8, ctypes.addressof(buf))
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(prog), 0, 0):
        raise OSError(ctypes.get_errno(), "seccomp")
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace, no /proc/PID/mem or fd of this process
def _code(driver):  # the host sends a code object when this is its own interpreter (no compile per run)
    return driver if type(driver) is type(_code.__code__) else compile(driver, "<driver>", "exec", dont_inherit=True)
def _become(uid):
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
def _keep_only(fds):
    low = 3
    for fd in sorted(fds):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
def _run(driver, g, uid, keep):  # in a forked process of a judged run
    _become(uid)
    _keep_only(keep)
    try:
        exec(_code(driver), g)
        sys.stdout.flush()
    except BaseException as e:
        try:  # the interpreter's own printer: importing traceback would cost every failing run ~10 ms
            sys.__excepthook__(type(e), e, e.__traceback__)
            sys.__stderr__.flush()
        except BaseException:
            pass
        os._exit(1)  # not a normal exit: leftover threads or atexit hooks of the program must not delay it
    os._exit(0)
_fds = [int(a) for a in sys.argv[1:]]
_res_fd = _fds[1]
_cfg = _read(_fds[0])
for _name, _soft, _hard in _cfg["rlimits"]:
    resource.setrlimit(getattr(resource, _name), (_soft, _hard))
if _cfg["seccomp"]:
    _seccomp(_cfg["seccomp"])
sys.path.extend(_cfg["path"])
import builtins
builtins.exit = builtins.quit = sys.exit  # -S skips site, which defines them
sys.argv = ["solution.py"]
os.write(_res_fd, b"S")
_g = {"__name__": "__sandbox_driver__", "PROGRAM": _cfg["program"], "PAYLOAD": _cfg["payload"]}
if len(_fds) == 2:  # one program: it ends as a script does (atexit hooks, buffers flushed, traceback on error)
    _g["RESULT_FD"] = _res_fd
    _become(_cfg["uid"])
    _keep_only([_res_fd])
    _driver = _code(_cfg["driver"])
    del _cfg
    exec(_driver, _g)
    sys.exit(0)
import json, struct  # the wire format's modules, imported once here rather than in both forked processes
_req_r, _req_w = os.pipe()
_resp_r, _resp_w = os.pipe()
_program = os.fork()
if _program == 0:
    _g.update(REQUESTS=_req_r, RESPONSES=_resp_w)
    _driver, _uid = _cfg["driver"], _cfg["uid"]
    del _cfg
    _run(_driver, _g, _uid, [_req_r, _resp_w])
os.close(_req_r)
os.close(_resp_w)
del _g, _cfg
_judge = _read(_fds[2])
_judge_pid = os.fork()
if _judge_pid == 0:
    _g = {"__name__": "__judge__", "PAYLOAD": _judge["payload"], "RESULT_FD": _res_fd, "REQUESTS": _req_w,
          "RESPONSES": _resp_r}
    _run(_judge["driver"], _g, _judge["uid"], [_res_fd, _req_w, _resp_r])
del _judge
os.close(_req_w)
os.close(_resp_r)
_status = os.waitstatus_to_exitcode(os.waitpid(_judge_pid, 0)[1])
# The program is stopped now, the same way whatever the verdict: this process exits and the host kills what is left,
# so nothing it can observe depends on whether its answers were right. Only when its own end stopped the tests (the
# judge's status 4) is its exit status awaited, briefly, for the host's timeout classification (a CPU-limit kill is
# a timeout): it is dead or dying by then, and learns nothing from the wait.
_fate = b"running"
try:
    if _status != 4:
        raise OSError("not asked")
    import select
    _pidfd = os.pidfd_open(_program)
    if select.select([_pidfd], [], [], 0.2)[0]:
        _fate = b"%d" % os.waitstatus_to_exitcode(os.waitpid(_program, 0)[1])
except OSError:
    pass
os.write(_res_fd, b"\0" + _fate)
os._exit(_status)
"""

# The default driver: run PROGRAM as the __main__ script. Its source is also written to the cwd so that the
# interpreter's own traceback printing (cheap, unlike importing traceback/linecache) can show the failing lines.
MAIN_DRIVER = r"""
import os, sys, types
_path = os.path.join(os.getcwd(), "solution.py")
try:
    with open(_path, "w", encoding="utf-8") as _f:
        _f.write(PROGRAM)
except OSError:
    pass
_mod = types.ModuleType("__main__")
_mod.__file__ = _path
sys.modules["__main__"] = _mod
exec(compile(PROGRAM, _path, "exec", dont_inherit=True), _mod.__dict__)
"""


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


_uids = _UidPool(UID_BASE, UID_POOL_SIZE)
_probe_lock = threading.Lock()
_probed: list[str] = []  # the chosen layer, once probed ("" when none works)


@functools.lru_cache(maxsize=1)
def _site_paths() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(p for k in ("purelib", "platlib") if os.path.isdir(p := paths.get(k, ""))))


def _python_dirs(python: str) -> list[str]:
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
def _bwrap_args(limits: Limits, root: bool, python: str) -> tuple[str, ...]:
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
    for d in _python_dirs(python):
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
    # holds its read-only binds, and TMPDIR (see _env) still sends temporary files to /sandbox.
    tmp = [] if "/tmp" in made else ["--symlink", "/sandbox", "/tmp"]
    return (*args, *tmp, "--chdir", "/sandbox", "--remount-ro", "/", "--")


def _command(backend: str, limits: Limits, root: bool, python: str) -> list[str]:
    interpreter = [python, "-I", "-S", "-B", "-c", BOOTSTRAP]
    if backend == "bwrap":
        return [*_bwrap_args(limits, root, python), *interpreter]
    if backend == "unshare":
        flags = ["--net", "--pid", "--ipc", "--mount", "--mount-proc", "--fork", "--kill-child"]
        return ["unshare", *flags, *([] if root else ["--map-root-user"])] + interpreter
    return interpreter


def _env(home: str) -> dict[str, str]:
    one = "1"  # BLAS thread pools reserve address space per thread and count against RLIMIT_NPROC
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "USER": "sandbox",
            "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": one, "OMP_NUM_THREADS": one,
            "MKL_NUM_THREADS": one}  # fmt: skip


def _cpu_seconds(limits: Limits) -> int:
    return math.ceil(limits.timeout) + 1


def _rlimits(limits: Limits) -> list[tuple[str, int, int]]:
    cpu = _cpu_seconds(limits)
    return [
        ("RLIMIT_CPU", cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second later if that is caught
        ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
        ("RLIMIT_FSIZE", limits.file_bytes, limits.file_bytes),
        ("RLIMIT_NPROC", limits.nproc, limits.nproc),
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_NOFILE", 64, 64),  # few descriptors: each can pin kernel memory (pipes, sockets)
    ]


@functools.lru_cache(maxsize=1)
def _seccomp_filter() -> bytes:
    return seccomp.allow_list()


@functools.lru_cache(maxsize=8)
def _compiled(driver: str):
    return compile(driver, "<driver>", "exec", dont_inherit=True)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class _Run:
    """One launched sandbox: its pipes, the loop that reads them under the caps, and the cleanup."""

    def __init__(self, backend: str, limits: Limits, python: str, stdin: bytes | None, config: dict,
                 judge: dict | None = None) -> None:  # fmt: skip
        self.backend, self.limits, self.proc, self.workdir, self.group = backend, limits, None, None, None
        self.uids: list[int] = []
        self.out, self.err, self.res, self.info = bytearray(), bytearray(), bytearray(), bytearray()
        self.err_total, self.exceeded, self.timed_out, self.judged = 0, False, None, judge is not None
        (self.res_r, res_w), (self.info_r, info_w) = os.pipe(), os.pipe()
        os.set_blocking(self.info_r, False)
        close = [res_w, info_w]
        try:
            if os.geteuid() == 0:  # the program's uid, and the judge's: neither can signal or trace the other
                self.uids = [_uids.acquire() for _ in range(2 if judge is not None else 1)]
            uid = self.uids[0] if self.uids else None
            if backend != "bwrap":
                self.workdir = tempfile.mkdtemp(prefix="sandbox-")
                if uid is not None:
                    os.chown(self.workdir, uid, uid)
            if python == sys.executable:
                config["driver"] = _compiled(config["driver"])
                judge = judge and {**judge, "driver": _compiled(judge["driver"])}
            config = {**config, "uid": uid, "rlimits": _rlimits(limits), "seccomp": _seccomp_filter(),
                      "path": _site_paths() if python == sys.executable else []}  # fmt: skip
            close.append(cfg_fd := _memfd("sandbox-config", marshal.dumps(config)))
            fds = [cfg_fd, res_w]
            if judge is not None:
                judge = {**judge, "uid": self.uids[1] if self.uids else None}
                fds.append(_memfd("sandbox-judge", marshal.dumps(judge)))
                close.append(fds[-1])
            in_fd = subprocess.DEVNULL if stdin is None else _memfd("sandbox-stdin", stdin)
            close += [in_fd] if stdin is not None else []
            cmd = _command(backend, limits, uid is not None, python) + [str(fd) for fd in fds]
            if backend == "bwrap":  # bwrap reports the pid of its init there; see finish()
                cmd[1:1] = ["--info-fd", str(info_w)]
            self.group = cgroups.open_group(cgroups.layer(), limits.run_memory_bytes, 2 * limits.nproc + 8)
            if self.group is not None:
                cmd = self.group.prefix + cmd
            self.start = time.monotonic()
            self.proc = subprocess.Popen(
                cmd, stdin=in_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(*fds, info_w),
                cwd=self.workdir or "/", env=_env(self.workdir or "/sandbox"),
                start_new_session=True,  # its own session and process group, which cleanup kills whole
            )  # fmt: skip
        except BaseException:
            self._release()
            raise
        finally:
            for fd in close:
                os.close(fd)
        self.fds = (self.proc.stdout.fileno(), self.proc.stderr.fileno(), self.res_r, self.info_r)

    def _read(self, fd: int, sel: selectors.BaseSelector) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            sel.unregister(fd)
        elif fd == self.fds[0]:
            self.out += chunk
            self.exceeded |= len(self.out) > self.limits.max_output_bytes
        elif fd == self.fds[1]:
            self.err_total += len(chunk)
            self.err = (self.err + chunk)[-_STDERR_TAIL:]
            self.exceeded |= self.err_total > self.limits.max_output_bytes
        else:
            buf = self.res if fd == self.res_r else self.info
            buf += chunk
            self.exceeded |= len(buf) > _RESULT_CAP

    def pump(self) -> None:
        """Read output until the process exits, a cap is passed or the wall-clock limit is reached."""
        deadline = self.start + self.limits.timeout
        pidfd = _pidfd(self.proc.pid)
        with selectors.DefaultSelector() as sel:
            for fd in self.fds:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            if pidfd is not None:
                sel.register(pidfd, selectors.EVENT_READ)
            try:
                exited = False
                while not exited and not self.exceeded:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.timed_out = "wall"
                        break
                    for key, _ in sel.select(remaining if pidfd is not None else min(remaining, 0.01)):
                        if key.fd == pidfd:
                            exited = True
                        else:
                            self._read(key.fd, sel)
                    exited = exited or (pidfd is None and _has_exited(self.proc.pid))
                while exited and not self.exceeded:  # drain; a leftover child may hold a pipe open, so no waiting
                    ready = [key.fd for key, _ in sel.select(0) if key.fd != pidfd]
                    if not ready:
                        break
                    for fd in ready:
                        self._read(fd, sel)
            finally:
                if pidfd is not None:
                    os.close(pidfd)

    def finish(self) -> SandboxResult:
        """Kill whatever is left, reap, wait until every process of the run is gone, clean up, describe the run."""
        pid = self.proc.pid
        _killpg(pid)  # with bwrap: kills bwrap and its init, and the kernel then kills the whole pid namespace
        try:
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        except ChildProcessError:
            code = None
        self.proc.returncode = -signal.SIGKILL if code is None else code  # reaped here; keeps Popen quiet
        wall = time.monotonic() - self.start
        if self.backend == "bwrap":
            _await_namespace(self.info_r, self.info)
            if code is not None and 128 < code <= 128 + 64:
                code = 128 - code  # bwrap reports a child killed by signal N as 128 + N
        else:  # without a pid namespace, children may have left the group or the session
            _killpg(pid)
            if self.backend == "plain" and self.group is None:
                for uid in self.uids:
                    _kill_uid(uid)
        cap = cgroups.layer() if self.group is not None else "rlimit"
        peak = self.group.peak_bytes() if self.group is not None else None
        oom = self.group is not None and self.group.oom_kills() > 0
        self._release()
        started = self.res[:1] == _STARTED
        result, program_exit = self._parse_result() if started else (b"", None)
        cpu_killed = not oom and _cpu_killed(code, program_exit, wall, self.limits)
        if self.timed_out is None and not self.exceeded and cpu_killed:
            self.timed_out = "cpu"  # soft CPU limit: SIGXCPU; the hard one (if SIGXCPU is caught): SIGKILL
        return SandboxResult(
            exit_code=code, stdout=bytes(self.out[: self.limits.max_output_bytes]), stderr_tail=bytes(self.err),
            result=result, started=started, timed_out=self.timed_out, output_exceeded=self.exceeded,
            wall_seconds=wall, backend=self.backend, program_exit=program_exit, memory_cap=cap, memory_peak=peak,
            oom_killed=oom,
        )  # fmt: skip

    def _parse_result(self) -> tuple[bytes, int | None]:
        """The driver's bytes, and (judged runs) the program's exit status that the bootstrap appended."""
        body = bytes(self.res[1:])
        if not self.judged or b"\0" not in body:
            return body, None
        result, _, fate = body.rpartition(b"\0")
        return result, int(fate) if fate.lstrip(b"-").isdigit() else None

    def _release(self) -> None:
        if self.proc is not None:
            self.proc.stdout.close()
            self.proc.stderr.close()
        os.close(self.res_r)
        os.close(self.info_r)
        if self.group is not None:
            self.group.close()
            self.group = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        for uid in self.uids:
            _uids.release(uid)
        self.uids = []


def _cpu_killed(code: int | None, program_exit: int | None, wall: float, limits: Limits) -> bool:
    """Whether the CPU-time rlimit ended the run: SIGXCPU at its soft limit, or SIGKILL at its hard one when SIGXCPU
    was caught; a SIGKILL that came sooner than the run's threads could have spent the hard limit on this machine's
    cores is not it (the program's own kill, or the OOM killer's)."""
    signals = {c for c in (code, program_exit) if c is not None}
    if -signal.SIGXCPU in signals:
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return -signal.SIGKILL in signals and wall * cores >= _cpu_seconds(limits) + 1


def _await_namespace(info_r: int, info: bytearray, limit: float = 5.0) -> None:
    """Wait (at most `limit` seconds) until bwrap's init has exited, i.e. its pid namespace is empty.

    bwrap exits as soon as its init reports the program's status, while the kernel is still killing the rest of the
    namespace; the init itself exits only once every other process in it is gone.
    """
    with contextlib.suppress(OSError):
        info += os.read(info_r, _RESULT_CAP)
    found = re.search(rb'"child-pid"\s*:\s*(\d+)', info)
    pidfd = _pidfd(int(found.group(1))) if found else None
    if pidfd is not None:
        try:
            poller = select.poll()  # not select.select: the host may hold more than 1024 fds
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(limit * 1000):
                log.warning("sandbox pid namespace still alive %.0f s after the run", limit)
        finally:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    try:  # WNOWAIT leaves the child for finish() to reap
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_uid(uid: int, limit: float = 5.0) -> None:
    """Kill every process of `uid` and wait (at most `limit` seconds) until none is left running.

    kill(-1) sent from that uid reaches exactly its processes, daemons included; SIGKILL takes effect asynchronously.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cmd = ["kill", "-KILL", "--", "-1"]
        subprocess.run(cmd, user=uid, group=uid, extra_groups=[], stderr=subprocess.DEVNULL, check=False)
        if not _running_as(uid):
            return
        time.sleep(0.01)
    log.warning("processes of sandbox uid %d still alive %.0f s after the run", uid, limit)


def _running_as(uid: int) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith(("Z", "X")):
                return True
    return False


def _launch(backend: str, program: str, stdin: bytes | None, limits: Limits, driver: str, payload: dict,
            python: str, judge: dict | None = None) -> SandboxResult:  # fmt: skip
    run = _Run(backend, limits, python, stdin, {"program": program, "payload": payload, "driver": driver}, judge)
    try:
        run.pump()
    finally:
        result = run.finish()
    return result


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
                    r = _launch(name, "print('ok')", None, Limits(timeout=20.0), MAIN_DRIVER, {}, sys.executable)
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
    return _launch(name, program, stdin, limits or Limits(), driver, payload or {}, python or sys.executable)


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
    return _launch(name, program, None, limits or Limits(), driver, {}, python or sys.executable, judge)

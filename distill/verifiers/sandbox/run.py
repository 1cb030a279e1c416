"""One launched sandbox: its control group, pipes and config, the loop that reads its output under the caps, and
the cleanup that leaves nothing of it running."""

from __future__ import annotations

import functools
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from distill.verifiers.sandbox import cgroups, seccomp
from distill.verifiers.sandbox.layers import command, site_paths
from distill.verifiers.sandbox.limits import Limits, SandboxResult, cpu_seconds, env, rlimits, uids
from distill.verifiers.sandbox.reap import RESULT_CAP, await_namespace, has_exited, kill_uid, killpg, open_pidfd

_STDERR_TAIL = 8192  # bytes of stderr kept
_STARTED = b"S"  # the bootstrap writes this once limits and uid are in place, before any untrusted code runs


@functools.lru_cache(maxsize=1)
def seccomp_filter() -> bytes:
    return seccomp.allow_list()


@functools.lru_cache(maxsize=8)
def compiled(driver: str):
    return compile(driver, "<driver>", "exec", dont_inherit=True)


def memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class Run:
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
                self.uids = [uids.acquire() for _ in range(2 if judge is not None else 1)]
            uid = self.uids[0] if self.uids else None
            if backend != "bwrap":
                self.workdir = tempfile.mkdtemp(prefix="sandbox-")
                if uid is not None:
                    os.chown(self.workdir, uid, uid)
            if python == sys.executable:
                config["driver"] = compiled(config["driver"])
                judge = judge and {**judge, "driver": compiled(judge["driver"])}
            config = {**config, "uid": uid, "rlimits": rlimits(limits), "seccomp": seccomp_filter(),
                      "path": site_paths() if python == sys.executable else []}  # fmt: skip
            close.append(cfg_fd := memfd("sandbox-config", marshal.dumps(config)))
            fds = [cfg_fd, res_w]
            if judge is not None:
                judge = {**judge, "uid": self.uids[1] if self.uids else None}
                fds.append(memfd("sandbox-judge", marshal.dumps(judge)))
                close.append(fds[-1])
            in_fd = subprocess.DEVNULL if stdin is None else memfd("sandbox-stdin", stdin)
            close += [in_fd] if stdin is not None else []
            cmd = command(backend, limits, uid is not None, python) + [str(fd) for fd in fds]
            if backend == "bwrap":  # bwrap reports the pid of its init there; see finish()
                cmd[1:1] = ["--info-fd", str(info_w)]
            self.group = cgroups.open_group(cgroups.layer(), limits.run_memory_bytes, 2 * limits.nproc + 8)
            if self.group is not None:
                cmd = self.group.prefix + cmd
            self.start = time.monotonic()
            self.proc = subprocess.Popen(
                cmd, stdin=in_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(*fds, info_w),
                cwd=self.workdir or "/", env=env(self.workdir or "/sandbox"),
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
            self.exceeded |= len(buf) > RESULT_CAP

    def pump(self) -> None:
        """Read output until the process exits, a cap is passed or the wall-clock limit is reached."""
        deadline = self.start + self.limits.timeout
        pidfd = open_pidfd(self.proc.pid)
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
                    exited = exited or (pidfd is None and has_exited(self.proc.pid))
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
        killpg(pid)  # with bwrap: kills bwrap and its init, and the kernel then kills the whole pid namespace
        try:
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        except ChildProcessError:
            code = None
        self.proc.returncode = -signal.SIGKILL if code is None else code  # reaped here; keeps Popen quiet
        wall = time.monotonic() - self.start
        if self.backend == "bwrap":
            await_namespace(self.info_r, self.info)
            if code is not None and 128 < code <= 128 + 64:
                code = 128 - code  # bwrap reports a child killed by signal N as 128 + N
        else:  # without a pid namespace, children may have left the group or the session
            killpg(pid)
            if self.backend == "plain" and self.group is None:
                for uid in self.uids:
                    kill_uid(uid)
        cap = cgroups.layer() if self.group is not None else "rlimit"
        peak = self.group.peak_bytes() if self.group is not None else None
        oom = self.group is not None and self.group.oom_kills() > 0
        self._release()
        started = self.res[:1] == _STARTED
        result, program_exit = self._parse_result() if started else (b"", None)
        cpu_killed = not oom and killed_by_cpu_limit(code, program_exit, wall, self.limits)
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
            uids.release(uid)
        self.uids = []


def killed_by_cpu_limit(code: int | None, program_exit: int | None, wall: float, limits: Limits) -> bool:
    """Whether the CPU-time rlimit ended the run: SIGXCPU at its soft limit, or SIGKILL at its hard one when SIGXCPU
    was caught; a SIGKILL that came sooner than the run's threads could have spent the hard limit on this machine's
    cores is not it (the program's own kill, or the OOM killer's)."""
    signals = {c for c in (code, program_exit) if c is not None}
    if -signal.SIGXCPU in signals:
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return -signal.SIGKILL in signals and wall * cores >= cpu_seconds(limits) + 1


def launch(backend: str, program: str, stdin: bytes | None, limits: Limits, driver: str, payload: dict,
            python: str, judge: dict | None = None) -> SandboxResult:  # fmt: skip
    run = Run(backend, limits, python, stdin, {"program": program, "payload": payload, "driver": driver}, judge)
    try:
        run.pump()
    finally:
        result = run.finish()
    return result

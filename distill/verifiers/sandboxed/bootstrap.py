"""The first Python a sandboxed run executes (run as `python -I -S -B -c <this file's source> CFG_FD RESULT_FD
[JUDGE_FD]`, see distill/verifiers/sandbox/layers.py).

The config (marshal) arrives on CFG_FD (a
memfd, so nothing is written to disk and the program cannot reopen it once it is closed). With JUDGE_FD, the run is
judged: the bootstrap forks the program's process first, and only then reads the judge's config (the tests, the
nonce) from JUDGE_FD and forks the judge under another uid, so the program's memory never held either (see
sandboxed/judge.py). Untrusted code never runs in this process.
"""

import marshal
import os
import resource
import sys


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
import builtins  # noqa: E402 -- after the limits, so no time is spent before them

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
import json, struct  # noqa: E401, E402, F401, I001 -- the wire format's modules, imported once here rather than in both forked processes

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
    _g = {
        "__name__": "__judge__",
        "PAYLOAD": _judge["payload"],
        "RESULT_FD": _res_fd,
        "REQUESTS": _req_w,
        "RESPONSES": _resp_r,
    }
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

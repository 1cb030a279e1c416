"""The sandbox, round 3 (#21): no run learns from another, no run holds host memory outside its cap.

Two mechanisms, each tested alone: the seccomp allow-list (keyrings, page-cache probes, io_uring, userfaultfd and
every socket family but AF_UNIX are refused; what Python programs need still works), and a judge whose requests do
not depend on whether an earlier check passed (tests mode and io mode). The cross-run tests give the program a
perfect memory between runs (what it wrote to stderr is pasted into its next run's source), the worst case of every
channel that outlives a run, and check that even so no later run is credited.
"""

from __future__ import annotations

import errno
import json
import platform
import re

import pytest
from test_code import LAYER, fence

from distill.verifiers import code, sandbox
from distill.verifiers.code import verify_code
from distill.verifiers.sandbox import seccomp

pytestmark = pytest.mark.skipif(not LAYER, reason="no sandbox layer can run untrusted code on this machine")
x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="the table's raw syscall numbers are x86_64's")

# name -> (Python that makes the call and leaves its errno in `e`, the errno the filter must give)
REFUSED = {
    "add_key (keyrings outlive the run)": ("sc(248, b'user', b'k', b'v', 1, -4)", errno.ENOSYS),
    "keyctl": ("sc(250, 0, -4, 0)", errno.ENOSYS),
    "request_key": ("sc(249, b'user', b'k', None, 0)", errno.ENOSYS),
    "io_uring_setup": ("sc(425, 8, None)", errno.ENOSYS),
    "userfaultfd": ("sc(323, 0)", errno.ENOSYS),
    "bpf": ("sc(321, 0, None, 0)", errno.ENOSYS),
    "perf_event_open": ("sc(298, None, 0, -1, -1, 0)", errno.ENOSYS),
    "ptrace": ("sc(101, 16, 1, 0, 0)", errno.ENOSYS),
    "process_vm_readv": ("sc(310, 1, None, 0, None, 0, 0)", errno.ENOSYS),
    "fadvise64 (evicts the page cache)": ("sc(221, fd, 0, 0, 4)", errno.ENOSYS),
    "mincore (reads page-cache residency)": ("sc(27, 0, 4096, None)", errno.ENOSYS),
    "readahead": ("sc(187, fd, 0, 4096)", errno.ENOSYS),
    "cachestat": ("sc(451, fd, None, None, 0)", errno.ENOSYS),
    "preadv2 with RWF_NOWAIT (probes the page cache)": ("os.preadv(fd, [bytearray(8)], 0, os.RWF_NOWAIT)", 95),
    "madvise MADV_PAGEOUT": ("sc(28, buf, 4096, 21)", errno.EINVAL),
    "madvise MADV_MERGEABLE (KSM)": ("sc(28, buf, 4096, 12)", errno.EINVAL),
    "mlock": ("sc(149, buf, 4096)", errno.ENOSYS),
    "socket AF_INET (tcp)": ("socket.socket(socket.AF_INET, socket.SOCK_STREAM)", errno.EAFNOSUPPORT),
    "socket AF_INET (udp)": ("socket.socket(socket.AF_INET, socket.SOCK_DGRAM)", errno.EAFNOSUPPORT),
    "socket AF_INET6": ("socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)", errno.EAFNOSUPPORT),
    "socket AF_NETLINK": ("socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)", errno.EAFNOSUPPORT),
    "socket AF_PACKET": ("socket.socket(17, socket.SOCK_RAW, 0)", errno.EAFNOSUPPORT),
    "socket AF_VSOCK": ("socket.socket(40, socket.SOCK_STREAM, 0)", errno.EAFNOSUPPORT),
    "unshare": ("sc(272, 0x10000000)", errno.ENOSYS),
    "clone with CLONE_NEWNET": ("sc(56, 0x40000000 | 17, 0, 0, 0, 0)", errno.EPERM),
    "mount": ("sc(165, b'none', b'/sandbox', b'tmpfs', 0, None)", errno.ENOSYS),
}
_PRELUDE = """
import ctypes, errno, json, mmap, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    if libc.syscall(ctypes.c_long(nr), *args) < 0:
        raise OSError(ctypes.get_errno(), "syscall")
fd = os.open(sys.executable, os.O_RDONLY)
area = mmap.mmap(-1, 4096)
buf = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(area)))
found = {}
"""


def _probe(snippets: dict[str, str]) -> dict:
    program = _PRELUDE
    for name, snippet in snippets.items():
        program += (
            f"try:\n    {snippet}\n    found[{name!r}] = 0\nexcept OSError as e:\n    found[{name!r}] = e.errno\n"
        )
    r = sandbox.run_sandboxed(program + "print(json.dumps(found))\n", limits=sandbox.Limits(timeout=20.0))
    assert r.exit_code == 0, r.stderr_tail[-500:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def refused() -> dict:
    return _probe({name: snippet for name, (snippet, _) in REFUSED.items()})


@x86_64
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_calls_that_outlive_a_run_or_escape_its_cap_are_refused(refused, name):
    assert refused[name] == REFUSED[name][1], (name, errno.errorcode.get(refused[name], refused[name]))


def test_what_python_programs_need_still_works():
    program = (
        "import asyncio, mmap, multiprocessing, os, resource, socket, subprocess, tempfile, threading\n"
        "a, b = socket.socketpair()\na.send(b'x')\nassert b.recv(1) == b'x'\n"
        "fd = os.open(os.__file__, os.O_RDONLY)\nassert os.preadv(fd, [bytearray(4)], 0) == 4\n"
        "m = mmap.mmap(-1, 1 << 20)\nm.madvise(mmap.MADV_DONTNEED)\n"
        "assert subprocess.run(['echo', 'hi'], capture_output=True).stdout == b'hi\\n'\n"
        "t = threading.Thread(target=print, args=('thread',))\nt.start()\nt.join()\n"
        "with multiprocessing.Pool(2) as p:\n    assert p.map(abs, [-1, -2]) == [1, 2]\n"
        "assert asyncio.run(asyncio.sleep(0, result=5)) == 5\n"
        "with tempfile.TemporaryDirectory() as d:\n    open(d + '/f', 'w').write('y')\n"
        "os.close(os.memfd_create('m'))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    r = sandbox.run_sandboxed(program, limits=sandbox.Limits(timeout=20.0))
    assert r.exit_code == 0, r.stderr_tail[-800:]
    assert r.stdout.decode().splitlines() == ["thread", "(64, 64)"]


def test_the_filter_is_an_allow_list():
    """Unknown calls fall to the end of the program (ENOSYS); only the named groups and checked calls pass."""
    program = seccomp.allow_list("x86_64")
    assert program and len(program) % 8 == 0 and len(program) // 8 < 4096
    last = program[-8:]
    assert last[4:] == (0x00050000 | errno.ENOSYS).to_bytes(4, "little")
    refused = {"add_key", "keyctl", "request_key", "io_uring_setup", "userfaultfd", "mincore", "fadvise64", "unshare"}
    assert not refused & seccomp.allowed_names()
    assert seccomp.allow_list("sparc64") == b""  # no table: the bootstrap then runs without a filter


# --- the judge: the same requests whether the answers are right or wrong

BOOL_TESTS = "\n".join(f"assert f({n}) == {v}" for n, v in enumerate([True, False, True, True, False, True]))
LOGGING = "import sys\ndef f(n):\n    sys.stderr.write(f'call {n}\\n')\n    sys.stderr.flush()\n"


def _judged(program: str, tests: str) -> tuple[sandbox.SandboxResult, bytes]:
    payload = {"tests": tests, "nonce": b"n" * 32, "names": list(code.free_names(tests)), "max_frame": code.MAX_FRAME,
               "entry_points": ["f"]}  # fmt: skip
    r = sandbox.run_judged(program, driver=code.PROGRAM_DRIVER, judge_driver=code.JUDGE_DRIVER, judge_payload=payload)
    return r, payload["nonce"]


def _calls(r: sandbox.SandboxResult) -> list[str]:
    return re.findall(r"call \S+", r.stderr_tail.decode())


FAILING = {  # how the first check fails: the later checks must still be asked
    "a wrong value": LOGGING + "    return n != 0 and n in (2, 3, 5)\n",
    "an exception": LOGGING + "    if n == 0:\n        raise ValueError(n)\n    return n in (0, 2, 3, 5)\n",
    "a value the comparison rejects": LOGGING + "    return 'x' if n == 0 else n in (0, 2, 3, 5)\n",
}


@pytest.mark.parametrize("how", sorted(FAILING))
def test_the_program_sees_the_same_requests_whatever_its_answers(how):
    right, nonce = _judged(LOGGING + "    return n in (0, 2, 3, 5)\n", BOOL_TESTS)
    assert right.result == b"P" + nonce, right
    wrong, _ = _judged(FAILING[how], BOOL_TESTS)
    assert wrong.result.startswith(b"F") and b"line 1" in wrong.result, wrong.result
    assert _calls(wrong) == _calls(right) == [f"call {n}" for n in range(6)]


def test_a_program_that_ends_itself_stops_the_tests_with_a_reason():
    v = verify_code(fence("import os\ndef f(n):\n    os.kill(os.getpid(), 9)"), tests=BOOL_TESTS, entry_point="f")
    assert v.verdict == "wrong" and "the program exited (killed by SIGKILL)" in v.reason, v


def test_the_program_is_stopped_at_once_after_a_failed_check():
    """After its last answer a program lives as briefly when it was wrong as when it was right (it used to get
    0.2 s more when wrong: a timing oracle)."""
    ticker = (
        "import os, sys, threading, time\n"
        "os._exit = lambda status: time.sleep(5)\n"  # lives on when the judge hangs up, to see how long it is let
        "def tick():\n    while True:\n        time.sleep(0.005)\n        sys.stderr.write('t')\n        sys.stderr.flush()\n"
        "threading.Thread(target=tick, daemon=True).start()\n"
        "def f(n):\n    sys.stderr.write('|')\n    sys.stderr.flush()\n"
    )
    for answer in ("n in (0, 2, 3, 5)", "n in (2, 3, 5)"):
        r, _ = _judged(ticker + f"    return {answer}\n", BOOL_TESTS)
        assert r.stderr_tail.count(b"|") == 6
        after = r.stderr_tail.decode().rpartition("|")[2]
        assert after.count("t") < 20, (answer, len(after))


def _remembering(memory: dict) -> str:
    """A program that keeps `memory` (what earlier runs saw) and flips the answer to the check it was stopped at."""
    return (
        "import sys\nMEMORY = " + repr(memory) + "\n"
        "def f(n):\n    sys.stderr.write(f'call {n}\\n')\n    sys.stderr.flush()\n"
        "    return MEMORY.get(str(n), False)\n"
    )


def _learn(memory: dict, seen: list[int], total: int) -> dict:
    """What a program with a perfect memory between runs learns: the run stopped after the check that failed."""
    if seen and len(seen) < total:
        memory = {**memory, str(seen[-1]): not memory.get(str(seen[-1]), False)}
    return memory


def test_no_later_run_is_credited_in_tests_mode():
    memory: dict = {}
    for run in range(8):
        r, nonce = _judged(_remembering(memory), BOOL_TESTS)
        assert r.result != b"P" + nonce, f"run {run} credited after learning {memory}"
        memory = _learn(memory, [int(c.split()[1]) for c in _calls(r)], 6)
    assert memory == {}


def test_no_later_run_is_credited_in_io_mode(monkeypatch):
    cases = [{"input": str(n), "output": str(v)} for n, v in enumerate([True, False, True, True])]
    seen: list[int] = []
    real = code.run_sandboxed

    def spy(program, **kwargs):
        r = real(program, **kwargs)
        seen.extend(int(n) for n in re.findall(rb"case (\d+)", r.stderr_tail))
        return r

    monkeypatch.setattr(code, "run_sandboxed", spy)
    memory: dict = {}
    for run in range(6):
        program = (
            "import sys\nMEMORY = " + repr(memory) + "\nn = input()\n"
            "sys.stderr.write(f'case {n}\\n')\nprint(MEMORY.get(n, False))\n"
        )
        seen.clear()
        v = verify_code(fence(program), io=cases)
        assert v.verdict == "wrong" and v.reason == "case 1: output differs", (run, v, memory)
        memory = _learn(memory, list(seen), len(cases))
    assert memory == {}


def test_a_crash_still_ends_the_io_cases_early():
    runs = []
    real = code.run_sandboxed

    def count(program, **kwargs):
        runs.append(1)
        return real(program, **kwargs)

    cases = [{"input": "", "output": "x"}] * 3
    try:
        code.run_sandboxed = count
        v = verify_code(fence("import os\nos.kill(os.getpid(), 9)"), io=cases)
    finally:
        code.run_sandboxed = real
    assert v.verdict == "wrong" and "SIGKILL" in v.reason and "time limit" not in v.reason, v
    assert len(runs) == 1


def test_a_run_killed_at_its_memory_cap_says_so():
    if sandbox.cgroups.layer() == "rlimit":
        pytest.skip("no writable control group here: nothing caps the run as a whole")
    hoard = "import os, time\nos.fork()\nb = b'x' * (700 << 20)\ntime.sleep(3)\n"  # two processes, 1.4 GB
    v = verify_code(fence(hoard), io=[{"input": "", "output": ""}], timeout=20.0)
    assert v.verdict == "wrong" and "OOM killer" in v.reason and "time limit" not in v.reason, v

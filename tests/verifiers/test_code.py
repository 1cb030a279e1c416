"""Code verifier: canonical benchmark solutions pass, mutants fail, and the sandbox holds (host untouched)."""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from distill.prompt_sets import prompt_helpers
from distill.verifiers import code, sandbox
from distill.verifiers.code import extract_program, verify_code

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _layer() -> str:
    try:
        return sandbox.backend()
    except sandbox.SandboxUnavailable:
        return ""


LAYER = _layer()
pytestmark = pytest.mark.skipif(not LAYER, reason="no sandbox layer can run untrusted code on this machine")
needs_bwrap = pytest.mark.skipif(LAYER != "bwrap", reason="bubblewrap is unusable on this machine")
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-4, 4) == 0"


def fence(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


def rows(name: str) -> list[dict]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"benchmark data {path} is absent")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def verify_all(jobs: list[tuple], timeout: float = 5.0) -> list:
    """Verdicts of (program, tests[, entry_point]) jobs."""

    def one(job: tuple):
        return verify_code(fence(job[0]), tests=job[1], entry_point=job[2] if len(job) > 2 else None, timeout=timeout)

    with ThreadPoolExecutor(2) as pool:  # the verifier is used from thread pools; this also checks thread safety
        return list(pool.map(one, jobs))


def humaneval_tests(row: dict) -> str:
    """A HumanEval row's tests as distill.prompt_sets builds them: the prompt's helpers, the test, the check call."""
    return prompt_helpers(row["prompt"], row["entry_point"]) + row["test"] + f"\ncheck({row['entry_point']})"


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry))
            except OSError:
                pass
    return found


# --- extraction and the think-block policy


def test_extract_program_takes_last_python_block_of_answer():
    text = "```python\na = 1\n```\ntext\n```py\nb = 2\n```\n```Python\nc = 3\n```\n```\nplain\n```"
    assert extract_program(text) == "c = 3\n"
    assert extract_program("```python3\nx = 1\n```") == "x = 1\n"
    assert extract_program("<think>```python\nx = 1\n```</think>\n```python\ny = 2\n```") == "y = 2\n"
    assert extract_program("```python\nx = 1\n") is None  # truncated block
    assert extract_program("```js\nx = 1\n```") is None


def test_no_answer_cases():
    assert verify_code("I don't know.", tests=ADD_TESTS).verdict == "no_answer"
    assert verify_code("<think>\n" + fence("def add(a, b): return a + b"), tests=ADD_TESTS).verdict == "no_answer"
    inside = "<think>\n" + fence("def add(a, b): return a + b") + "</think>\nThe answer is above."
    assert verify_code(inside, tests=ADD_TESTS).verdict == "no_answer"
    after = "<think>\nhmm\n</think>\n" + fence("def add(a, b): return a + b")
    assert verify_code(after, tests=ADD_TESTS).verdict == "correct"


def test_tests_mode_skips_main_guard_and_io_mode_runs_it():
    program = fence("def add(a, b): return a + b\nif __name__ == '__main__':\n    print(add(int(input()), 1))")
    assert verify_code(program, tests=ADD_TESTS).verdict == "correct"
    assert verify_code(program, io=[{"input": "41", "output": "42"}]).verdict == "correct"


def test_sandbox_failure_is_an_error_not_a_verdict_on_the_code():
    r = sandbox.run_sandboxed("print(1)", python="/nonexistent/python3")
    assert not r.started and r.exit_code != 0


def test_argument_errors_and_bad_tests():
    with pytest.raises(ValueError):
        verify_code(fence("x = 1"))
    with pytest.raises(ValueError):
        verify_code(fence("x = 1"), tests="assert x", io=[])
    v = verify_code(fence("x = 1"), tests="assert x ==", task_id="row field is ignored")
    assert v.verdict == "error" and "tests do not compile" in v.reason


# --- benchmark data: canonical solutions pass, mutants fail


@pytest.mark.slow
def test_humaneval_canonical_pass_and_mutants_fail():
    data = rows("humaneval.jsonl")
    tests = [humaneval_tests(r) for r in data]
    jobs = [(r["prompt"] + r["canonical_solution"], t, r["entry_point"]) for r, t in zip(data, tests, strict=True)]
    verdicts = verify_all(jobs)
    failed = [(r["task_id"], v) for r, v in zip(data, verdicts, strict=True) if v.verdict != "correct"]
    assert not failed and len(verdicts) == 164
    mutants = [(r["prompt"] + "    return None\n", t, r["entry_point"]) for r, t in zip(data, tests, strict=True)]
    swapped = [data[(i + 1) % len(data)]["canonical_solution"] for i in range(len(data))]
    mutants += [(r["prompt"] + body, t, r["entry_point"]) for r, body, t in zip(data, swapped, tests, strict=True)]
    passed = [(i, v) for i, v in enumerate(verify_all(mutants)) if v.verdict == "correct"]
    assert not passed  # measured: all 328 mutants fail (wrong, or timeout for a few swapped bodies)


@pytest.mark.slow
def test_mbpp_canonical_pass_and_mutants_fail():
    data = rows("mbpp_sanitized.jsonl")
    tests = ["\n".join(r["test_imports"] + r["test_list"]) for r in data]
    # task 123 (amicable numbers below 9999) takes ~6 s of CPU in the reference solution itself
    jobs = [(r["code"], t, r["entry_point"]) for r, t in zip(data, tests, strict=True)]
    verdicts = verify_all(jobs, timeout=30.0)
    failed = [(r["task_id"], v) for r, v in zip(data, verdicts, strict=True) if v.verdict != "correct"]
    assert not failed and len(verdicts) == 427
    mutants = [
        (f"def {r['entry_point']}(*args, **kwargs):\n    return None\n", t, r["entry_point"])
        for r, t in zip(data, tests, strict=True)
    ]
    for i, (r, t) in enumerate(zip(data, tests, strict=True)):
        other = data[(i + 1) % len(data)]
        mutants.append((other["code"] + f"\n{r['entry_point']} = {other['entry_point']}\n", t, r["entry_point"]))
    passed = [(i, v) for i, v in enumerate(verify_all(mutants)) if v.verdict == "correct"]
    assert not passed  # measured: all 854 mutants fail


# --- the tests must really have run


@pytest.mark.parametrize(
    "program",
    [
        "import sys\ndef add(a, b): return 0\nsys.exit(0)",
        "import os\ndef add(a, b): return 0\nos._exit(0)",
        "def add(a, b): return 0\nraise SystemExit",
        "def add(a, b): return 0\nraise KeyboardInterrupt",
        "import sys\ndef add(a, b): sys.exit(0)",
        "import os\ndef add(a, b): os._exit(0)",
        "def add(a, b): return 0\nprint('All tests passed')\nprint('OK')\nprint('PASS')\nimport os; os._exit(0)",
        "import sys, os\ndef add(a, b): return 0\nsys.stdout.write('PASS\\n' * 3); sys.stdout.flush(); os._exit(0)",
        "import atexit, os\ndef add(a, b): return 0\natexit.register(lambda: print('OK'))\nraise SystemExit(0)",
        "import os\ndef add(a, b): return 0\nfor fd in range(3, 256):\n    try: os.write(fd, b'0' * 32)\n    except OSError: pass",
    ],
)
def test_exiting_or_printing_before_tests_gets_no_credit(program):
    v = verify_code(fence(program), tests=ADD_TESTS)
    assert v.verdict == "wrong", v


@pytest.mark.parametrize(
    "program",
    [
        "class X:\n    __eq__ = lambda *a: True\n    __hash__ = lambda s: 0\ndef add(a, b): return X()",
        "class X:\n    __eq__ = staticmethod(slice)\ndef add(a, b): return X()",
        "class X(int):\n    __eq__ = lambda *a: True\ndef add(a, b): return X(7)",
        "class X:\n    __eq__ = lambda *a: True\ndef add(a, b): return [X()][0]",
        "import builtins\nclass X:\n    __eq__ = lambda *a: True\nbuiltins.abs = lambda x: X()\ndef add(a, b): return 9",
    ],
)
def test_always_equal_objects_get_no_credit(program):
    tests = ADD_TESTS + "\nassert abs(add(1, 1)) == 2"
    assert verify_code(fence(program), tests=tests).verdict == "wrong"


def test_always_equal_hacks_in_containers_and_orderings():
    fake = "class X:\n    __eq__ = __lt__ = __gt__ = __contains__ = lambda *a: True\n    __hash__ = lambda s: 0\n"
    cases = [
        ("def f(): return [1, X(), 3]", "assert f() == [1, 2, 3]"),
        ("def f(): return {'a': X()}", "assert f() == {'a': 5}"),
        ("def f(): return (X(), {X()})", "assert f() == (1, {2})"),
        ("def f(): return X()", "assert f() < 1e-6"),
        ("def f(): return X()", "assert abs(f() - 1.5) > -1"),
        ("def f(): return X()", "assert 5 in f()"),
        ("def f(): return [X()]", "assert 5 in f()"),
        ("def f(): return X()", "assert f() in [1, 2]"),
    ]
    for program, tests in cases:
        assert verify_code(fence(fake + program), tests=tests).verdict == "wrong", program


def test_honest_rich_values_still_pass():
    program = (
        "from fractions import Fraction\nfrom decimal import Decimal\nfrom collections import Counter, OrderedDict, namedtuple\n"
        "P = namedtuple('P', 'x y')\nclass Pair:\n    def __init__(self, a, b): self.a, self.b = a, b\n"
        "def g(): return Fraction(1, 2)\ndef h(): return Counter('aab')\ndef k(): return OrderedDict(a=1)\n"
        "def m(): return float('nan')\ndef p(): return P(1, 2)\ndef big(): return 3 ** 5000\n"
        "def gen(n): return (i * i for i in range(n))\ndef d(): return Decimal('1.10')\n"
        "def longest(pairs): return max(p.b - p.a for p in pairs)\ndef sort_in_place(xs): xs.sort()\n"
        "def fails(x):\n    raise ValueError(x)\n"
    )
    tests = (
        "assert g() == 0.5\nassert h() == {'a': 2, 'b': 1}\nassert k() == {'a': 1}\nassert g() < 1\n"
        "assert m() != m()\nassert 'a' in h()\nassert p() == (1, 2) and p()[1] == 2\nassert big() == 3 ** 5000\n"
        "assert list(gen(4)) == [0, 1, 4, 9]\nassert d() == __import__('decimal').Decimal('1.1')\n"
        "assert longest([Pair(1, 5), Pair(2, 3)]) == 4\nxs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]\n"
        "try:\n    fails(1)\n    raise AssertionError\nexcept ValueError:\n    pass\n"
        "assert isinstance(g(), __import__('fractions').Fraction) and type(p()) is tuple\n"
    )
    assert verify_code(fence(program), tests=tests).verdict == "correct"


def test_program_objects_equal_only_themselves():
    """An object that is not plain data stays in the program's process: a known miss, never a credit."""
    program = "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\ndef f(): return P(1)\n"
    assert verify_code(fence(program), tests="assert f() == P(1)").verdict == "wrong"
    assert verify_code(fence(program), tests="p = f()\nassert p == p and p.x == 1").verdict == "correct"


# --- credit only for values the program computes (the judge runs the tests apart from the program)

ALWAYS_EQUAL = "class X:\n    __eq__ = lambda s, o: True\n    __hash__ = lambda s: 0\n"
F_TESTS = "assert f(3) == 10\nassert f(5) == 26\nassert f(0) == 1"
FORK_CANDIDATES = (
    "import os\ndef f(n):\n    for c in range(200):\n        pid = os.fork()\n        if pid == 0:\n"
    "            os.closerange(3, 4096); return c\n"
    "        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0: return c\n"
)
HOSTILE = {
    "fork one child per candidate answer": (FORK_CANDIDATES, F_TESTS),
    "fork, child closes every descriptor": (FORK_CANDIDATES.replace("3, 4096", "0, 4096"), F_TESTS),
    "always-equal in a list subclass": (
        ALWAYS_EQUAL + "class L(list): pass\ndef f(n): return L([X()])",
        "assert f(3) == [10]",
    ),
    "always-equal in a namedtuple": (
        ALWAYS_EQUAL + "import collections\nP = collections.namedtuple('P', 'a b')\ndef f(n): return P(X(), X())",
        "assert f(3) == (10, 1)",
    ),
    "always-equal in a defaultdict": (
        ALWAYS_EQUAL
        + "import collections\ndef f(n):\n    d = collections.defaultdict(X)\n    d['a'] = X()\n    return d",
        "assert f(3) == {'a': 10}",
    ),
    "__eq__ True to builtins, NotImplemented otherwise": (
        "class X:\n    def __eq__(s, o):\n        return True if type(o) in (int, str, list) else NotImplemented\n"
        "def f(n): return X()",
        F_TESTS,
    ),
    "always-equal past a walk's budget": (
        ALWAYS_EQUAL + "def f(n): return [0] * 100001 + [X()]",
        "assert f(3) == [0] * 100001 + [10]",
    ),
    "top-level patch of operator.eq": (
        ALWAYS_EQUAL
        + "import operator\noperator.eq = lambda a, b: True\nclass L(list): pass\ndef f(n): return L([X()])",
        "import operator\nassert operator.eq(f(3), [10])\nassert f(3) == [10]",
    ),
    "math.isclose replaced": (
        "import math\nmath.isclose = lambda *a, **k: True\ndef f(n): return 0.0",
        "import math\nassert math.isclose(f(3), 10.0)",
    ),
    "fake module in sys.modules": (
        "import sys, types\nm = types.ModuleType('math')\nm.isclose = lambda *a, **k: True\nsys.modules['math'] = m\n"
        "def f(n): return 0.0",
        "import math\nassert math.isclose(f(3), 10.0)",
    ),
    "a name the tests use without importing it": (
        "import types\nsys = types.SimpleNamespace(getsizeof=lambda x: 7)\ndef tuple_size(t): return 7",
        "assert tuple_size((1, 2, 3)) == sys.getsizeof((1, 2, 3))",
    ),
    "builtins patched at the top level": (
        ALWAYS_EQUAL + "import builtins\nbuiltins.abs = lambda x: X()\nbuiltins.len = lambda x: 3\ndef f(n): return 9",
        "assert abs(f(1)) == 2\nassert len(str(f(3))) == 3",
    ),
    "the nonce read from a frame": (
        "import sys, os\ndef f(n):\n    fr = sys._getframe()\n    while fr is not None:\n"
        "        p = fr.f_globals.get('PAYLOAD') or {}\n        if 'nonce' in p:\n"
        "            os.write(fr.f_globals['RESULT_FD'], b'P' + p['nonce']); os._exit(0)\n"
        "        fr = fr.f_back\n    return 0",
        F_TESTS,
    ),
    "the tests read from memory": (
        "import gc, re\ndef f(n):\n    for o in gc.get_objects():\n        if isinstance(o, str) and 'assert f(' in o:\n"
        "            return int(dict(re.findall(r'assert f\\((\\d+)\\) == (\\d+)', o))[str(n)])\n    return -1",
        F_TESTS,
    ),
    "the driver patched through a function's globals": (
        "import sys\ndef f(n):\n    for fr in list(sys._current_frames().values()):\n        while fr is not None:\n"
        "            g = fr.f_globals\n            for k in ('__verifier_cmp__', 'CHANNEL', '_cmp'):\n"
        "                g.pop(k, None)\n            fr = fr.f_back\n    return 0",
        F_TESTS,
    ),
    "a forged verdict on every descriptor": (
        "import os\ndef f(n):\n    for fd in range(3, 256):\n        try: os.write(fd, b'P' + b'0' * 32)\n"
        "        except OSError: pass\n    return 0",
        F_TESTS,
    ),
    "exits inside the call": ("import os\ndef f(n): os._exit(0)", F_TESTS),
    "dies inside a call the tests guard": (
        "import os\ndef f(n): os._exit(0)",
        "try:\n    f(3)\nexcept BaseException:\n    pass",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_get_no_credit(name):
    program, tests = HOSTILE[name]
    v = verify_code(fence(program), tests=tests, entry_point="f" if "f(" in tests else None, timeout=10.0)
    assert v.verdict in ("wrong", "timeout"), (name, v)


def test_honest_versions_of_the_hostile_tests_pass():
    """The hostile table's tests are satisfiable: an honest program passes every one that a program can pass."""
    honest = "import sys\ndef f(n): return n * n + 1\ndef tuple_size(t): return sys.getsizeof(t)"
    for name, (_, tests) in HOSTILE.items():
        if "f(3) == [10]" in tests or "(10, 1)" in tests or "{'a': 10}" in tests or "100001" in tests:
            continue  # these expect other return types; the hack is what matters there
        if "10.0" in tests or "abs(" in tests or "except BaseException" in tests:
            continue
        assert verify_code(fence(honest), tests=tests).verdict == "correct", name


def test_prompt_helpers_come_from_the_row_not_the_program():
    """HumanEval/38: a program that redefines `encode_cyclic` as the identity gets nothing."""
    row = next((r for r in rows("humaneval.jsonl") if r["task_id"] == "HumanEval/38"), None)
    assert row is not None
    hack = "def encode_cyclic(s):\n    return s\ndef decode_cyclic(s):\n    return s\n"
    tests = humaneval_tests(row)
    assert verify_code(fence(hack), tests=tests, entry_point="decode_cyclic").verdict == "wrong"
    honest = row["prompt"] + row["canonical_solution"]
    assert verify_code(fence(honest), tests=tests, entry_point="decode_cyclic").verdict == "correct"


def test_entry_point_is_the_programs_even_where_a_builtin_has_its_name():
    """MBPP 126 asks for `sum`: the builtin must not stand in for a program that lacks it."""
    tests = "assert sum(10, 15) == 6"
    assert verify_code(fence("x = 1"), tests=tests, entry_point="sum").verdict == "wrong"
    honest = (
        "def sum(a, b):\n    return __builtins__['sum'](d for d in range(1, min(a, b)) if a % d == 0 and b % d == 0)"
    )
    honest = "import builtins\ndef sum(a, b):\n    return builtins.sum(d for d in range(1, min(a, b)) if a % d == b % d == 0)"
    assert verify_code(fence(honest), tests=tests, entry_point="sum").verdict == "correct"


def test_program_text_in_reasons_is_capped_and_marked():
    long_name = "E" * 3000
    program = f"class {long_name}(Exception): pass\ndef f(n): raise {long_name}('x' * 3000)"
    v = verify_code(fence(program), tests=F_TESTS)
    assert v.verdict == "wrong" and len(v.reason) < 300 and "«" in v.reason, v
    crash = verify_code(
        fence(f"class {long_name}(Exception): pass\nraise {long_name}"), io=[{"input": "", "output": ""}]
    )
    assert crash.verdict == "wrong" and len(crash.reason) < 300 and "«" in crash.reason, crash


def test_no_user_namespaces_inside():
    program = (
        "import ctypes, os, subprocess\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "made = libc.unshare(0x10000000) == 0\n"
        "tool = subprocess.run(['unshare', '--user', 'true'], capture_output=True).returncode == 0\n"
        "print(made, tool)\n"
    )
    r = sandbox.run_sandboxed(program, limits=sandbox.Limits(timeout=10.0))
    assert r.exit_code == 0 and r.stdout == b"False False\n", (r.stdout, r.stderr_tail[-300:])


HOARDERS = {
    "memfd": "import os\nfds = []\nwhile True:\n    fd = os.memfd_create('x')\n"
    "    try:\n        os.write(fd, b'x' * (15 << 20))\n    except OSError:\n        pass\n    fds.append(fd)\n",
    "sysv shm": "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.shmat.restype = ctypes.c_void_p\nwhile True:\n"
    "    i = libc.shmget(0, 64 << 20, 0o1600)\n    a = libc.shmat(i, None, 0)\n    if i < 0 or a == ctypes.c_void_p(-1).value:\n"
    "        break\n    ctypes.memset(a, 1, 64 << 20)\n    libc.shmdt(ctypes.c_void_p(a))\n",
}


@pytest.mark.parametrize("kind", sorted(HOARDERS))
def test_one_run_holds_at_most_its_memory_cap(kind):
    """memfd pages and detached SysV shm escape RLIMIT_AS; the run's control group counts them."""
    if sandbox.cgroups.layer() == "rlimit":
        pytest.skip("no writable control group here: the rlimit layer cannot cap memfd or shm")
    limits = sandbox.Limits(timeout=20.0)
    r = sandbox.run_sandboxed(HOARDERS[kind], limits=limits)
    assert r.memory_cap in ("cgroup1", "cgroup2") and r.memory_peak is not None
    assert r.memory_peak <= limits.run_memory_bytes <= int(1.5 * (1 << 30)), r.memory_peak
    assert r.exit_code != 0  # the cap ended it (the OOM killer or a failed allocation)
    assert r.oom_killed or r.exit_code > 0


# --- the sandbox


def test_infinite_loop_times_out_within_limit():
    v = verify_code(fence("def add(a, b):\n    while True:\n        pass"), tests=ADD_TESTS, timeout=1.0)
    assert v.verdict == "timeout" and "time limit of 1s" in v.reason, v


def test_memory_bomb_is_contained():
    v = verify_code(fence("x = bytearray(8 << 30)"), tests="pass")
    assert v.verdict == "wrong" and "MemoryError" in v.reason
    grow = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))"
    v = verify_code(fence(grow), tests="pass", memory_bytes=256 << 20)
    assert v.verdict in ("wrong", "timeout"), v
    assert verify_code(fence("def add(a, b): return a + b"), tests=ADD_TESTS).verdict == "correct"


def test_fork_bomb_is_bounded_and_cleaned_up():
    marker = f"{secrets.randbelow(10**9)}.5"
    program = (
        "import os, subprocess\nn = 0\n"
        "for _ in range(500):\n"
        f"    try:\n        subprocess.Popen(['sleep', '{marker}'])\n        n += 1\n"
        "    except OSError:\n        break\n"
        "print(n)\n"
    )
    r = sandbox.run_sandboxed(program, limits=sandbox.Limits(timeout=10.0, nproc=32))
    assert r.exit_code == 0, r.stderr_tail
    assert 0 < int(r.stdout) < 32
    assert processes_with(marker) == []


def test_children_and_daemons_are_gone_after_return():
    marker = f"{secrets.randbelow(10**9)}.25"
    program = (
        "import os, subprocess\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"  # a plain child
        "if os.fork() == 0:\n"  # a double-forked daemon in its own session
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{marker}'])\n"
        "    os._exit(0)\n"
        "def add(a, b): return a + b\n"
    )
    assert verify_code(fence(program), tests=ADD_TESTS, timeout=30.0).verdict == "correct"  # not the wall limit
    assert processes_with(marker) == []


def test_output_flood_is_cut_off_quickly():
    v = verify_code(fence("while True:\n    print('x' * 10000)"), tests="pass")
    assert v.verdict == "wrong" and "output limit" in v.reason
    r = sandbox.run_sandboxed("while True:\n    print('x' * 10000)", limits=sandbox.Limits(max_output_bytes=100_000))
    assert r.output_exceeded and len(r.stdout) == 100_000 and r.timed_out is None


@needs_bwrap
def test_host_files_are_out_of_reach(tmp_path):
    tmp_path.chmod(0o777)
    target = tmp_path / "keep.txt"
    target.write_text("original")
    target.chmod(0o666)
    program = (
        "import os\nresults = []\n"
        f"for path in [{str(target)!r}, {str(tmp_path / 'new.txt')!r}, '/usr/pwned', '/etc/pwned']:\n"
        "    try:\n        open(path, 'w').write('pwned')\n        results.append(path)\n"
        "    except OSError:\n        pass\n"
        "open('scratch.txt', 'w').write('fine')  # the sandbox's own directory is writable\n"
        f"hidden = not os.path.exists({str(DATA)!r}) and not os.path.exists('/work/shared')\n"
    )
    v = verify_code(fence(program), tests="assert results == [] and hidden")
    assert v.verdict == "correct", v
    assert target.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_network_is_unreachable():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    program = (
        "import socket\nconnected = True\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
        "except OSError:\n    connected = False\n"
    )
    try:
        v = verify_code(fence(program), tests="assert connected is False")
        assert v.verdict == "correct", v
        assert select.select([listener], [], [], 0.2)[0] == []  # nothing reached the listener
    finally:
        listener.close()


# --- stdin/stdout cases


def test_io_cases():
    double = fence("n = int(input())\nprint(n * 2)")
    cases = [{"input": "2\n", "output": "4\n"}, {"input": "5", "output": "10"}]
    assert verify_code(double, io=cases).verdict == "correct"
    v = verify_code(double, io=cases + [{"input": "1", "output": "3"}])
    assert v.verdict == "wrong" and v.reason == "case 3: output differs"
    spaced = fence("print('a  b   ')\nprint('c')\nprint()\nprint()")
    assert verify_code(spaced, io=[{"input": "", "output": "a  b\nc"}]).verdict == "correct"
    assert verify_code(spaced, io=[{"input": "", "output": "a b\nc"}]).verdict == "wrong"
    crash = verify_code(double, io=[{"input": "x", "output": "4"}])
    assert crash.verdict == "wrong" and "ValueError" in crash.reason
    exits_nonzero = fence("print(4)\nimport sys\nsys.exit(3)")
    assert verify_code(exits_nonzero, io=[{"input": "", "output": "4"}]).verdict == "wrong"
    exits_zero = fence("print(4)\nexit()")  # site's exit() is still there
    assert verify_code(exits_zero, io=[{"input": "", "output": "4"}]).verdict == "correct"
    slow = verify_code(fence("while True: pass"), io=[{"input": "", "output": ""}], timeout=1.0)
    assert slow.verdict == "timeout"


def test_io_main_guard_and_big_input():
    program = fence(
        "import sys\ndef main():\n    print(sum(map(int, sys.stdin.read().split())))\nif __name__ == '__main__':\n    main()"
    )
    numbers = " ".join(str(i) for i in range(200_000))
    assert verify_code(program, io=[{"input": numbers, "output": str(sum(range(200_000)))}]).verdict == "correct"


# --- weaker layers (where bwrap is missing)


@pytest.mark.parametrize("layer", ["plain", "unshare"])
def test_fallback_layers_run_and_clean_up(layer):
    python = shutil.which("python3", path="/usr/bin:/bin")
    if layer == "unshare" and shutil.which("unshare") is None or python is None:
        pytest.skip(f"{layer} layer needs unshare and a system python3")
    marker = f"{secrets.randbelow(10**9)}.75"
    program = (
        f"import os\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{marker}'])\nprint('hello')"
    )
    r = sandbox.run_sandboxed(program, backend_name=layer, python=python)
    if not r.started:
        pytest.skip(f"{layer} layer does not start here: {r.stderr_tail[-200:]!r}")
    assert r.exit_code == 0 and r.stdout == b"hello\n"
    assert processes_with(marker) == []
    r = sandbox.run_sandboxed("while True: pass", backend_name=layer, python=python, limits=sandbox.Limits(timeout=1))
    assert r.timed_out == "wall"  # the CPU limit is a second later, so a busy loop always meets the wall first
    for program, passed in [("def f(n): return n * n + 1", True), (FORK_CANDIDATES, False)]:
        nonce = secrets.token_hex(16).encode()
        payload = {"tests": F_TESTS, "nonce": nonce, "names": ["f"], "entry_points": ["f"], "max_frame": 1 << 20}
        r = sandbox.run_judged(program, driver=code.PROGRAM_DRIVER, judge_driver=code.JUDGE_DRIVER,
                               judge_payload=payload, backend_name=layer, python=python)  # fmt: skip
        assert (r.result == b"P" + nonce) is passed, r

"""Code verifier: canonical benchmark solutions pass, mutants fail, and the sandbox holds (host untouched)."""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from distill.verifiers import sandbox
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


def verify_all(jobs: list[tuple[str, str]], timeout: float = 5.0) -> list:
    with ThreadPoolExecutor(2) as pool:  # the verifier is used from thread pools; this also checks thread safety
        return list(pool.map(lambda j: verify_code(fence(j[0]), tests=j[1], timeout=timeout), jobs))


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
    tests = [r["test"] + f"\ncheck({r['entry_point']})" for r in data]
    verdicts = verify_all([(r["prompt"] + r["canonical_solution"], t) for r, t in zip(data, tests, strict=True)])
    failed = [(r["task_id"], v) for r, v in zip(data, verdicts, strict=True) if v.verdict != "correct"]
    assert not failed and len(verdicts) == 164
    mutants = [(r["prompt"] + "    return None\n", t) for r, t in zip(data, tests, strict=True)]
    swapped = [data[(i + 1) % len(data)]["canonical_solution"] for i in range(len(data))]
    mutants += [(r["prompt"] + body, t) for r, body, t in zip(data, swapped, tests, strict=True)]
    passed = [(i, v) for i, v in enumerate(verify_all(mutants)) if v.verdict == "correct"]
    assert not passed  # measured: all 328 mutants fail (wrong, or timeout for a few swapped bodies)


@pytest.mark.slow
def test_mbpp_canonical_pass_and_mutants_fail():
    data = rows("mbpp_sanitized.jsonl")
    tests = ["\n".join(r["test_imports"] + r["test_list"]) for r in data]
    # task 123 (amicable numbers below 9999) takes ~6 s of CPU in the reference solution itself
    verdicts = verify_all([(r["code"], t) for r, t in zip(data, tests, strict=True)], timeout=30.0)
    failed = [(r["task_id"], v) for r, v in zip(data, verdicts, strict=True) if v.verdict != "correct"]
    assert not failed and len(verdicts) == 427
    mutants = [
        (f"def {r['entry_point']}(*args, **kwargs):\n    return None\n", t) for r, t in zip(data, tests, strict=True)
    ]
    for i, (r, t) in enumerate(zip(data, tests, strict=True)):
        other = data[(i + 1) % len(data)]
        mutants.append((other["code"] + f"\n{r['entry_point']} = {other['entry_point']}\n", t))
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


def test_honest_rich_comparisons_still_pass():
    program = (
        "from dataclasses import dataclass\nfrom fractions import Fraction\nfrom collections import Counter, OrderedDict\n"
        "@dataclass\nclass P:\n    x: int\n"
        "def f(): return P(1)\ndef g(): return Fraction(1, 2)\ndef h(): return Counter('aab')\n"
        "def k(): return OrderedDict(a=1)\ndef m(): return float('nan')\n"
    )
    tests = (
        "assert f() == P(1)\nassert g() == 0.5\nassert h() == {'a': 2, 'b': 1}\nassert k() == {'a': 1}\n"
        "assert g() < 1\nassert m() != m()\nassert 'a' in h()\nassert f() in [P(1)]"
    )
    assert verify_code(fence(program), tests=tests).verdict == "correct"


# --- the sandbox


def test_infinite_loop_times_out_within_limit():
    start = time.monotonic()
    v = verify_code(fence("def add(a, b):\n    while True:\n        pass"), tests=ADD_TESTS, timeout=1.0)
    assert v.verdict == "timeout"
    assert time.monotonic() - start < 6.0  # generous: the machine may be loaded; the limit itself is 1 s


def test_memory_bomb_is_contained():
    start = time.monotonic()
    v = verify_code(fence("x = bytearray(8 << 30)"), tests="pass")
    assert v.verdict == "wrong" and "MemoryError" in v.reason
    grow = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))"
    v = verify_code(fence(grow), tests="pass", memory_bytes=256 << 20)
    assert v.verdict in ("wrong", "timeout"), v
    assert time.monotonic() - start < 20.0
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
    start = time.monotonic()
    assert verify_code(fence(program), tests=ADD_TESTS, timeout=30.0).verdict == "correct"
    assert time.monotonic() - start < 15.0  # the daemon holding stdout open did not keep the host waiting
    assert processes_with(marker) == []


def test_output_flood_is_cut_off_quickly():
    start = time.monotonic()
    v = verify_code(fence("while True:\n    print('x' * 10000)"), tests="pass")
    assert v.verdict == "wrong" and "output limit" in v.reason
    r = sandbox.run_sandboxed("while True:\n    print('x' * 10000)", limits=sandbox.Limits(max_output_bytes=100_000))
    assert r.output_exceeded and len(r.stdout) == 100_000
    assert time.monotonic() - start < 5.0


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
    assert r.timed_out == "wall"

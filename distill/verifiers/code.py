"""Code verifier: run the completion's last ```python block against tests or stdin/stdout cases in the sandbox.

Verdicts: `correct` only when every test ran to the end (or every io case printed the expected output and exited 0);
`wrong` for failed assertions, crashes, wrong output or output past the cap; `no_answer` when the answer part holds no
```python block; `timeout` when a time limit ended a run; `error` only when the sandbox itself (or the row's tests)
failed, so the completion was never judged.

How "the tests really ran" is established (tests mode): the driver (TESTS_DRIVER) receives a random nonce over a
memfd the bootstrap reads and closes before any untrusted code runs (so it is in no file, argv or environment),
runs the program and then the tests in one module namespace, and writes the nonce to the result pipe only after the
tests' last statement; the host credits a run only if the pipe delivered exactly the nonce and the process exited 0.

Defended: sys.exit / os._exit / SystemExit / KeyboardInterrupt anywhere before the tests finish; printing "OK",
"PASS", "All tests passed" or anything else; objects whose __eq__ (or <, <=, >, >=, `in`) claims to match anything,
also inside lists, tuples, dicts and sets: the asserts' comparisons are rewritten so a truthy result is discarded when
an operand also "matches" a private sentinel object; builtins patched by the program's top level (restored before
the tests); trace/profile hooks set by the program (cleared before the tests); reading the tests from disk (they
never touch the disk); expected io outputs (they never enter the sandbox).
Not defended: code that deliberately inspects or patches the running driver or tests at call time (frames, gc,
ctypes, /proc/self/mem; replacing `__verifier_cmp__` or a module function the tests use from inside the function
under test); sentinel-aware fake objects; comparisons outside `assert` statements, chained comparisons, `!=` and
`not in`; tests written as unittest.TestCase methods (their assertEqual compares inside unittest). Any of these needs
adversarial code aimed at this harness, not a generic trick; a separate-process checker would be the next step.
"""

from __future__ import annotations

import ast
import functools
import re
import secrets

from distill.verifiers.base import Verdict, answer_part, correct, error, no_answer, timeout, wrong
from distill.verifiers.sandbox import Limits, SandboxResult, SandboxUnavailable, run_sandboxed

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?:python3?|py)\b[^\n]*\n(.*?)^[ \t]*```", re.IGNORECASE | re.DOTALL | re.MULTILINE
)
_CMP_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)

# Runs in the sandbox (see sandbox.run_sandboxed) after limits are set; PAYLOAD holds "tests" and "nonce".
TESTS_DRIVER = r"""
import os, sys, types, builtins, operator

def _report(data):
    try:
        os.write(RESULT_FD, data)
    except OSError:
        pass

class _Sentinel:  # equal to nothing but itself; no honest value claims to equal or order against it
    __slots__ = ()

_SENTINEL = _Sentinel()
_SCALARS = frozenset((int, float, complex, str, bytes, bool, type(None)))
_CONTAINERS = frozenset((list, tuple, set, frozenset, dict))
_OPS = (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
        lambda a, b: a in b, lambda a, b: a not in b)

def _claims(value, op):
    try:
        return bool(op(value, _SENTINEL)) or bool(op(_SENTINEL, value))
    except Exception:
        return False

def _fake(value, op):
    # walk plain containers (bounded) and probe every other leaf against the sentinel
    stack, budget = [value], 100000
    while stack and budget > 0:
        budget -= 1
        x = stack.pop()
        t = type(x)
        if t in _SCALARS:
            continue
        if t in _CONTAINERS:
            stack.extend(x.items() if t is dict else x)
        elif _claims(x, operator.eq) or (op is not operator.eq and _claims(x, op)):
            return True
    return False

def _cmp(i, a, b):
    r = _OPS[i](a, b)
    if i in (1, 7) or (type(r) is bool and not r):
        return r
    if i == 6:  # a in b: a fake a or a fake element of b matches anything; a fake b contains anything
        fake = _fake(a, operator.eq) or _fake(b, operator.eq) or (
            type(b) not in _CONTAINERS and type(b) not in _SCALARS and _claims_contains(b))
    else:
        fake = _fake(a, _OPS[i]) or _fake(b, _OPS[i])
    return False if fake else r

def _claims_contains(b):
    try:
        return bool(_SENTINEL in b)
    except Exception:
        return False

def _main(program, tests, nonce):
    path = os.path.join(os.getcwd(), "solution.py")
    try:  # so that tracebacks can show the program's lines (the tests stay off the disk)
        with open(path, "w", encoding="utf-8") as f:
            f.write(program)
    except OSError:
        pass
    mod = types.ModuleType("solution")
    mod.__file__ = path
    sys.modules["solution"] = mod
    ns = mod.__dict__
    saved, settrace, setprofile = dict(builtins.__dict__), sys.settrace, sys.setprofile
    phase = "program"
    try:
        exec(compile(program, path, "exec", dont_inherit=True), ns)
        phase = "tests"
        bd = builtins.__dict__
        for k in [k for k in bd if k not in saved]:
            del bd[k]
        bd.update(saved)
        settrace(None)
        setprofile(None)
        ns["__builtins__"] = builtins
        ns["__verifier_cmp__"] = _cmp
        exec(compile(tests, "tests.py", "exec", dont_inherit=True), ns)
    except BaseException as e:
        _report(("F%s:%s" % (phase, type(e).__name__)).encode("utf-8", "replace")[:200])
        try:  # the interpreter's own printer: importing traceback would cost every failing run ~10 ms
            sys.__excepthook__(type(e), e, e.__traceback__)
            sys.__stderr__.flush()
        except BaseException:
            pass
        os._exit(1)  # not a normal exit: leftover threads or atexit hooks of the program must not delay it
    _report(nonce)
    os._exit(0)

_main(PROGRAM, PAYLOAD.pop("tests"), PAYLOAD.pop("nonce"))
"""


def extract_program(completion: str) -> str | None:
    """The last fenced ```python (or ```py, ```Python, ```python3) block of the answer part, or None.

    Only the text after the last `</think>` counts (see base.answer_part); an unclosed block does not count.
    """
    answer = answer_part(completion)
    return None if answer is None else _last_block(answer)


def _last_block(text: str) -> str | None:
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else None


class _GuardAsserts(ast.NodeTransformer):
    """Rewrite `a OP b` inside assert statements to `__verifier_cmp__(OP_INDEX, a, b)` (see TESTS_DRIVER)."""

    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        node.test = _GuardCompares().visit(node.test)
        return node


class _GuardCompares(ast.NodeTransformer):
    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) != 1 or not isinstance(node.ops[0], _CMP_OPS):
            return node
        index = next(i for i, op in enumerate(_CMP_OPS) if isinstance(node.ops[0], op))
        args = [ast.Constant(index), node.left, node.comparators[0]]
        return ast.copy_location(ast.Call(ast.Name("__verifier_cmp__", ast.Load()), args, []), node)


@functools.lru_cache(maxsize=256)  # GRPO verifies a group of samples per problem back to back
def _guarded_tests(tests: str) -> str:
    """The tests with their assert comparisons guarded; raises SyntaxError for tests that do not compile."""
    tree = ast.parse(tests, "tests.py")
    guarded = ast.unparse(ast.fix_missing_locations(_GuardAsserts().visit(tree)))
    try:  # unparse has known corner cases (f-strings); never let the guard break tests that compile
        compile(guarded, "tests.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return tests
    return guarded


def _short(stderr: bytes) -> str:
    """The last line of a traceback ("ValueError: ..."), shortened, for reasons."""
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip()[:120] if lines else ""


def _failure(r: SandboxResult, limits: Limits, prefix: str = "") -> Verdict | None:
    """The verdict for a run that timed out, flooded output, or never got the sandbox going; None otherwise."""
    if not r.started:
        if r.timed_out:
            return error(f"sandbox did not start within {limits.timeout:g}s")
        return error(f"sandbox failed to start (exit {r.exit_code}): {_short(r.stderr_tail)}")
    if r.timed_out:
        what = "CPU" if r.timed_out == "cpu" else "wall-clock"
        return timeout(f"{prefix}{what} time limit of {limits.timeout:g}s exceeded")
    if r.output_exceeded:
        return wrong(f"{prefix}output limit of {limits.max_output_bytes} bytes exceeded")
    return None


def _verify_tests(program: str, tests: str, limits: Limits) -> Verdict:
    try:
        guarded = _guarded_tests(tests)
    except (SyntaxError, ValueError, RecursionError) as e:
        return error(f"tests do not compile: {type(e).__name__}: {e}")
    nonce = secrets.token_hex(16).encode()
    r = run_sandboxed(program, limits=limits, driver=TESTS_DRIVER, payload={"tests": guarded, "nonce": nonce})
    if r.started and r.result == nonce and r.exit_code == 0 and not r.timed_out and not r.output_exceeded:
        return correct("all tests passed")
    failed = _failure(r, limits)
    if failed is not None:
        return failed
    if r.result.startswith(b"F") and b":" in r.result:
        phase, exc = r.result[1:].decode("utf-8", "replace").split(":", 1)
        return wrong(f"{exc} in {phase}")
    if r.exit_code is not None and r.exit_code < 0:
        return wrong(f"killed by signal {-r.exit_code} before the tests completed")
    return wrong(f"exited (status {r.exit_code}) before the tests completed")


def _normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def _verify_io(program: str, cases: list[dict], limits: Limits) -> Verdict:
    if not cases:
        return error("no io cases")
    for k, case in enumerate(cases, 1):
        r = run_sandboxed(program, stdin=str(case["input"]).encode(), limits=limits)
        failed = _failure(r, limits, f"case {k}: ")
        if failed is not None:
            return failed
        if r.exit_code != 0:
            detail = _short(r.stderr_tail) or f"exit status {r.exit_code}"
            return wrong(f"case {k}: runtime error ({detail.split(':', 1)[0]})")
        if _normalize(r.stdout.decode("utf-8", "replace")) != _normalize(str(case["output"])):
            return wrong(f"case {k}: output differs")
    return correct(f"all {len(cases)} cases passed")


def verify_code(
    completion: str,
    *,
    tests: str | None = None,
    io: list[dict] | None = None,
    timeout: float = 5.0,
    memory_bytes: int = 1 << 30,
    **row_fields: object,
) -> Verdict:
    """Judge a completion's last ```python block. Thread-safe (the work happens in subprocesses).

    tests: Python source with assertions, run after the program in the same namespace (a module named `solution`,
        so an `if __name__ == "__main__":` block does not run; stdin is empty); passes only if it runs to the end
        without the program exiting first. io: [{"input": str, "output": str}, ...]: each case runs the program once with `input` on stdin and
        compares stdout with `output` (trailing whitespace of each line and of the whole output ignored); it must also
        exit 0. The program runs as `__main__`. Stops at the first failing case. Exactly one of tests / io.
    timeout: wall-clock seconds per run (each io case is a run), interpreter start included; also the CPU limit.
    memory_bytes: address-space limit per process. row_fields: other dataset columns, ignored.
    """
    if (tests is None) == (io is None):
        raise ValueError("verify_code needs exactly one of tests= or io=")
    answer = answer_part(completion)
    if answer is None:
        return no_answer("unclosed <think> block")
    program = _last_block(answer)
    if program is None:
        return no_answer("no ```python block in the answer")
    limits = Limits(timeout=timeout, memory_bytes=memory_bytes)
    try:
        return _verify_tests(program, tests, limits) if tests is not None else _verify_io(program, io, limits)
    except SandboxUnavailable as e:
        return error(str(e))
    except OSError as e:  # fork/pipe/memfd failures on the host: not the completion's fault
        return error(f"sandbox failed: {e}")

"""Code verifier: run the completion's last ```python block against tests or stdin/stdout cases in the sandbox.

Verdicts: `correct` only when every test ran to the end (or every io case printed the expected output and exited 0);
`wrong` for failed assertions, crashes, wrong output or output past the cap; `no_answer` when the answer part holds no
```python block; `timeout` when a time limit ended a run; `error` only when the sandbox itself (or the row's tests)
failed, so the completion was never judged.

Tests mode runs two processes in one sandbox (sandbox.run_judged; sandboxed/judge.py says how): the program loads
alone in one, under one throwaway uid; the tests run in the other, the judge, under another uid, forked before the
program's first line and never its descendant. The tests' names that the program must provide (the row's
`entry_point`, and any other name the tests use but neither define, import nor find among the builtins and the
standard modules) are proxies: a call sends the arguments as plain data, the program's process computes, and the
return value comes back as plain data rebuilt from the judge's own types (sandboxed/wire.py). So credit depends only on
the values the program computes for the tests' inputs, compared by code the program cannot reach: always-equal
objects, patched `operator`/`math`/builtins, fake modules, redefined prompt helpers, frame and gc tricks, forks
that try candidate answers, closed or forged result pipes all act only inside the program's own process. Only the
judge holds the nonce and the result pipe; the host credits a run only if that pipe delivered exactly the nonce.

Known limits (misses, never credit): an object the program returns that is not plain data stays in its process and
is equal only to itself (a dataclass result compared with `P(1)` fails); arguments the tests pass must be plain data
or such objects (a lambda argument makes the row `error`); iterators are materialized (at most wire.MAX_ITEMS);
in-place changes to list/dict/set/bytearray arguments are copied back, deeper aliasing is not. HumanEval's prompt
helpers (`poly`, `encode_cyclic`, ...) must be part of the row's tests, as distill.prompt_sets builds them.
"""

from __future__ import annotations

import functools
import re
import secrets
import signal
import symtable
from pathlib import Path

from distill.verifiers.base import Verdict, answer_part, correct, error, no_answer, timeout, wrong
from distill.verifiers.sandbox import Limits, SandboxResult, SandboxUnavailable, run_judged, run_sandboxed

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?:python3?|py)\b[^\n]*\n(.*?)^[ \t]*```", re.IGNORECASE | re.DOTALL | re.MULTILINE
)
_SANDBOXED = Path(__file__).with_name("sandboxed")
_WIRE = (_SANDBOXED / "wire.py").read_text()
PROGRAM_DRIVER = _WIRE + (_SANDBOXED / "script.py").read_text() + (_SANDBOXED / "candidate.py").read_text()
JUDGE_DRIVER = _WIRE + (_SANDBOXED / "judge.py").read_text()
MAX_FRAME = 16 << 20  # bytes of one answer from the program
PROGRAM_TEXT = 200  # characters of program-controlled text (stderr) kept in a reason


def extract_program(completion: str) -> str | None:
    """The last fenced ```python (or ```py, ```Python, ```python3) block of the answer part, or None.

    Only the text after the last `</think>` counts (see base.answer_part); an unclosed block does not count.
    """
    answer = answer_part(completion)
    return None if answer is None else _last_block(answer)


def _last_block(text: str) -> str | None:
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else None


@functools.lru_cache(maxsize=256)  # GRPO verifies a group of samples per problem back to back
def free_names(tests: str) -> tuple[str, ...]:
    """Names the tests use (in any scope) but never bind at module level; raises SyntaxError if they do not compile."""
    compile(tests, "tests.py", "exec", dont_inherit=True)
    table = symtable.symtable(tests, "tests.py", "exec")
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    found: set[str] = set()
    stack = [table]
    while stack:
        scope = stack.pop()
        for sym in scope.get_symbols():
            module_level = scope.get_type() == "module" or sym.is_global()
            if module_level and sym.is_referenced() and sym.get_name() not in bound:
                found.add(sym.get_name())
        stack.extend(scope.get_children())
    return tuple(sorted(found))


def program_text(data: bytes | str, limit: int = PROGRAM_TEXT) -> str:
    """Text the program controls, capped and quoted so it cannot pose as the verifier's own words."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = (text[:limit] + "...") if len(text) > limit else text
    return "«" + text.encode("ascii", "backslashreplace").decode() + "»"  # escaped: no newlines, no « » inside


def _last_line(stderr: bytes) -> str:
    """The last line of a traceback ("ValueError: ...")."""
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _failure(r: SandboxResult, limits: Limits, prefix: str = "") -> Verdict | None:
    """The verdict for a run that timed out, flooded output, ran out of memory or never got the sandbox going; None
    otherwise."""
    if not r.started:
        if r.timed_out:
            return error(f"sandbox did not start within {limits.timeout:g}s")
        return error(f"sandbox failed to start (exit {r.exit_code}): {_last_line(r.stderr_tail)[:200]}")
    if r.oom_killed:
        return wrong(f"{prefix}killed by the OOM killer at the run's memory cap of {limits.run_memory_bytes >> 20} MiB")
    if r.timed_out:
        what = "CPU" if r.timed_out == "cpu" else "wall-clock"
        return timeout(f"{prefix}{what} time limit of {limits.timeout:g}s exceeded")
    if r.output_exceeded:
        return wrong(f"{prefix}output limit of {limits.max_output_bytes} bytes exceeded")
    return None


def _killed(status: int | None) -> str:
    """The words ' (killed by SIGKILL)' for a negative exit status, else an empty string."""
    if status is None or status >= 0:
        return ""
    try:
        return f" (killed by {signal.Signals(-status).name})"
    except ValueError:
        return f" (killed by signal {-status})"


def _verify_tests(program: str, tests: str, limits: Limits, entry_point: str | None) -> Verdict:
    try:
        names = free_names(tests)
    except (SyntaxError, ValueError, RecursionError) as e:
        return error(f"tests do not compile: {type(e).__name__}: {e}")
    nonce = secrets.token_hex(16).encode()
    payload = {"tests": tests, "nonce": nonce, "names": list(names), "max_frame": MAX_FRAME,
               "entry_points": [entry_point] if entry_point else []}  # fmt: skip
    r = run_judged(program, driver=PROGRAM_DRIVER, judge_driver=JUDGE_DRIVER, judge_payload=payload, limits=limits)
    if r.started and r.result == b"P" + nonce and r.exit_code == 0 and not r.timed_out and not r.output_exceeded:
        return correct("all tests passed")
    if r.started and r.result.startswith(b"F"):  # a check failed: that decides, whatever the run did after it
        label, _, reason = r.result[1:].decode("utf-8", "replace").partition(": ")
        if label == "error":
            return error(reason)
        if reason.endswith("the program exited"):  # its own end stopped the tests: a limit may say why
            return _failure(r, limits) or wrong(reason + _killed(r.program_exit))
        return wrong(reason)
    failed = _failure(r, limits)
    if failed is not None:
        return failed
    if r.exit_code is not None and r.exit_code < 0:
        return wrong(f"killed by signal {-r.exit_code} before the tests completed")
    return wrong(f"the judge ended (status {r.exit_code}) before the tests completed")


def _normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def _verify_io(program: str, cases: list[dict], limits: Limits) -> Verdict:
    """Every case runs, whatever the output of the ones before it: stopping at a wrong output would tell the program
    (in its next case, and across runs through anything that outlives one) that its output was wrong. Only its own
    failures stop the cases early (a crash, a time limit, an output flood), which it knows of anyway."""
    if not cases:
        return error("no io cases")
    first_wrong = None
    for k, case in enumerate(cases, 1):
        r = run_sandboxed(program, stdin=str(case["input"]).encode(), limits=limits)
        failed = _failure(r, limits, f"case {k}: ")
        if failed is not None:
            return first_wrong or failed
        if r.exit_code != 0:
            detail = _last_line(r.stderr_tail).split(":", 1)[0] if (r.exit_code or 0) > 0 else ""
            shown = program_text(detail, 60) if detail else f"exit status {r.exit_code}{_killed(r.exit_code)}"
            return first_wrong or wrong(f"case {k}: runtime error ({shown})")
        if first_wrong is None and _normalize(r.stdout.decode("utf-8", "replace")) != _normalize(str(case["output"])):
            first_wrong = wrong(f"case {k}: output differs")
    return first_wrong or correct(f"all {len(cases)} cases passed")


def verify_code(
    completion: str,
    *,
    tests: str | None = None,
    io: list[dict] | None = None,
    timeout: float = 5.0,
    memory_bytes: int = 1 << 30,
    entry_point: str | None = None,
    **row_fields: object,
) -> Verdict:
    """Judge a completion's last ```python block. Thread-safe (the work happens in subprocesses).

    tests: Python source with assertions, run by the judge against the program loaded as the module `solution` (so
        an `if __name__ == "__main__":` block does not run; stdin is empty); passes only if it runs to its end and the
        program's process never died. entry_point: the name the tests call the program by, taken from the program
        even where a builtin has the same name. io: [{"input": str, "output": str}, ...]: each case runs the program
        once with `input` on stdin and compares stdout with `output` (trailing whitespace of each line and of the
        whole output ignored); it must also exit 0. The program runs as `__main__`. Every case runs unless the
        program crashes or runs out of time (see _verify_io). Exactly one of tests / io.
    timeout: wall-clock seconds per run (each io case is a run), interpreter start included; the CPU limit per
        process is one second more. memory_bytes: address-space limit per process (the whole run's cap is
        Limits.run_memory_bytes). row_fields: other dataset columns, ignored.
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
        if tests is not None:
            return _verify_tests(program, tests, limits, entry_point)
        return _verify_io(program, io, limits)
    except SandboxUnavailable as e:
        return error(str(e))
    except OSError as e:  # fork/pipe/memfd failures on the host: not the completion's fault
        return error(f"sandbox failed: {e}")

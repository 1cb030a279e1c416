"""What a row must hold for its task's verifier; checked before any work so bad input fails early and by name."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from distill.errors import UserError


@dataclass(frozen=True)
class TaskContract:
    """What a row of one task carries for its verifier -- the one statement of the row contract.

    required: fields of which a row needs at least one (code: exactly one of tests / io, see check_reference);
    optional: other fields the verifier reads; subprocess: the verifier bounds itself in a sandboxed subprocess, so
    it runs in a thread (else in the pool's killable worker processes); time_bound: what the pool's `timeout` means
    for this task (its one meaning, shown by `distill.verify --help`).
    """

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    subprocess: bool = False
    time_bound: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


TASKS: dict[str, TaskContract] = {
    "math": TaskContract(
        required=("answer",),
        optional=("fallback_last_number",),
        time_bound="CPU seconds of the worker process that judges it (a wall-time backstop of 2x, one retry)",
    ),
    "code": TaskContract(
        required=("tests", "io"),
        optional=("entry_point",),
        subprocess=True,
        time_bound="wall-clock seconds of each sandboxed run (each io case is a run; CPU limit 1 s more)",
    ),
}


class RowError(UserError, ValueError):
    """A row that its verifier cannot judge; the message names the field and what was expected."""


def _check_io(io: object) -> None:
    if not isinstance(io, list) or not io:
        raise RowError('field \'io\': expected a non-empty list of {"input", "output"} objects')
    for i, case in enumerate(io):
        if not isinstance(case, dict) or not all(isinstance(case.get(k), str) for k in ("input", "output")):
            raise RowError(f"field 'io[{i}]': expected an object with string 'input' and 'output'")


def _check_answer(answer: object) -> None:
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or str(answer).strip() == "":
        raise RowError(f"field 'answer': expected a non-empty string (or number), got {answer!r}")


def _check_tests(tests: object) -> None:
    if not isinstance(tests, str):
        raise RowError("field 'tests': expected Python source as a string")


def _check_entry_point(entry: object) -> None:
    if not (isinstance(entry, str) and entry.isidentifier()):
        raise RowError(f"field 'entry_point': expected a Python name, got {entry!r}")


def _check_flag(value: object) -> None:
    if not isinstance(value, bool):
        raise RowError(f"field 'fallback_last_number': expected true or false, got {value!r}")


# One check per reference field of TASKS (the row contract).
FIELD_CHECKS = {"answer": _check_answer, "tests": _check_tests, "io": _check_io, "entry_point": _check_entry_point,
                "fallback_last_number": _check_flag}  # fmt: skip


def check_reference(row: dict) -> None:
    """Raise RowError unless the row names a known task and carries exactly one of that task's required fields
    (TASKS), each of its reference fields well formed."""
    task = row.get("task")
    if task not in TASKS:
        raise RowError(f"field 'task': expected one of {', '.join(TASKS)}, got {task!r}")
    contract = TASKS[task]
    present = [f for f in contract.required if row.get(f) is not None]
    if len(contract.required) == 1 and not present:
        FIELD_CHECKS[contract.required[0]](row.get(contract.required[0]))
    if len(present) != 1:
        names = "/".join(f"'{f}'" for f in contract.required)
        raise RowError(f"fields {names}: a {task} row needs exactly one of them")
    for f in contract.fields:
        if row.get(f) is not None:
            FIELD_CHECKS[f](row[f])


def check_completion(row: dict) -> None:
    if not isinstance(row.get("completion"), str):
        raise RowError(f"field 'completion': expected a string, got {type(row.get('completion')).__name__}")


def prompt_helpers(prompt: str, entry_point: str) -> str:
    """The top-level statements of a HumanEval-style prompt other than the function to complete, as source."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError as e:
        raise RowError(f"field 'prompt': does not parse as Python ({e.msg}, line {e.lineno})") from None
    lines = prompt.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if getattr(node, "name", None) != entry_point:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept += lines[first - 1 : node.end_lineno]
    return "".join(kept)


def with_prompt_helpers(row: dict) -> dict:
    """The row with its prompt's helpers (HumanEval/32 `poly`, /38 `encode_cyclic`, ...) at the head of its tests.

    Tests that call a helper the prompt defines must get the prompt's definition, never the program's: a program
    that redefines `encode_cyclic` as the identity would otherwise pass a test of `decode_cyclic`. Applies to a
    code row with `tests` and `entry_point` whose `prompt` (or `problem`) is Python source defining the entry point,
    wherever the row comes from; any other row is returned as it is.
    """
    tests, entry = row.get("tests"), row.get("entry_point")
    if not isinstance(tests, str) or not isinstance(entry, str):
        return row
    for field in ("prompt", "problem"):
        source = row.get(field)
        try:
            tree = ast.parse(source) if isinstance(source, str) else None
        except (SyntaxError, ValueError):
            continue
        if tree is not None and any(getattr(node, "name", None) == entry for node in tree.body):
            helpers = prompt_helpers(source, entry)
            if helpers.strip() and not tests.startswith(helpers):
                return {**row, "tests": helpers + ("" if helpers.endswith("\n") else "\n") + tests}
            return row
    return row


def lone_surrogate(row: dict) -> str | None:
    """The first field (`io[0].input` style for nested ones) whose text holds a lone surrogate (JSON's `\\ud800`
    escape decodes to one), which no encoder, sandbox or tokenizer accepts; None when there is none."""

    def find(value: object, path: str) -> str | None:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(value, dict):
            return next((p for k, v in value.items() if (p := find(v, f"{path}.{k}"))), None)
        elif isinstance(value, list):
            return next((p for i, v in enumerate(value) if (p := find(v, f"{path}[{i}]"))), None)
        return None

    return next((p for k, v in row.items() if (p := find(v, str(k)))), None)

"""What a row must hold for its task's verifier; checked before any work so bad input fails early and by name."""

from __future__ import annotations

from distill.errors import UserError


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


# One check per reference field of registry.TASKS (the row contract).
FIELD_CHECKS = {"answer": _check_answer, "tests": _check_tests, "io": _check_io, "entry_point": _check_entry_point,
                "fallback_last_number": _check_flag}  # fmt: skip


def check_reference(row: dict) -> None:
    """Raise RowError unless the row names a known task and carries exactly one of that task's required fields
    (registry.TASKS), each of its reference fields well formed."""
    from distill.verifiers.registry import TASKS

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

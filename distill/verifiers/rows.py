"""What a row must hold for its task's verifier; checked before any work so bad input fails early and by name."""

from __future__ import annotations


class RowError(ValueError):
    """A row that its verifier cannot judge; the message names the field and what was expected."""


def _check_io(io: object) -> None:
    if not isinstance(io, list) or not io:
        raise RowError('field \'io\': expected a non-empty list of {"input", "output"} objects')
    for i, case in enumerate(io):
        if not isinstance(case, dict) or not all(isinstance(case.get(k), str) for k in ("input", "output")):
            raise RowError(f"field 'io[{i}]': expected an object with string 'input' and 'output'")


def check_reference(row: dict) -> None:
    """Raise RowError unless the row names a known task and carries that task's reference fields."""
    from distill.verifiers.registry import VERIFIERS

    task = row.get("task")
    if task not in VERIFIERS:
        raise RowError(f"field 'task': expected one of {', '.join(VERIFIERS)}, got {task!r}")
    if task == "math":
        answer = row.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or str(answer).strip() == "":
            raise RowError(f"field 'answer': expected a non-empty string (or number), got {answer!r}")
    elif task == "code":
        has_tests, has_io = row.get("tests") is not None, row.get("io") is not None
        if has_tests == has_io:
            raise RowError("fields 'tests'/'io': a code row needs exactly one of them")
        if has_tests and not isinstance(row["tests"], str):
            raise RowError("field 'tests': expected Python source as a string")
        entry = row.get("entry_point")
        if entry is not None and not (isinstance(entry, str) and entry.isidentifier()):
            raise RowError(f"field 'entry_point': expected a Python name, got {entry!r}")
        if has_io:
            _check_io(row["io"])


def check_completion(row: dict) -> None:
    if not isinstance(row.get("completion"), str):
        raise RowError(f"field 'completion': expected a string, got {type(row.get('completion')).__name__}")

"""The one registry of verifiers, shared by rejection sampling, evaluation and GRPO rewards.

A verifier is a pure function `(completion, **row_fields) -> Verdict` (no torch, no network). Rows name their
verifier with `task` and carry its reference fields (`answer` for math; `tests` or `io` for code), so generation,
evaluation and the GRPO rewards all run exactly this code, and a fix lands everywhere at once.

`VERIFIERS` judge correctness (reward 1.0 only when correct). `SHAPING` holds the extra GRPO rewards: format and
language consistency in [0, 1], DAPO's overlong punishment and the n-gram repetition penalty in [-1, 0]; each module's
docstring gives its formula, and the weights in a recipe decide how they add up.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from distill.verifiers.base import Verdict, error
from distill.verifiers.code import verify_code
from distill.verifiers.format import format_reward
from distill.verifiers.language import language_consistency_reward
from distill.verifiers.length import overlong_reward
from distill.verifiers.math import verify_math
from distill.verifiers.repetition import repetition_reward
from distill.verifiers.rows import TASKS, lone_surrogate, with_prompt_helpers

VERIFIERS: dict[str, Callable[..., Verdict]] = {
    "math": verify_math,
    "code": verify_code,
}

SHAPING: dict[str, Callable[..., Verdict]] = {
    "format": format_reward,
    "language": language_consistency_reward,
    "overlong": overlong_reward,
    "repetition": repetition_reward,
}

# Row fields that are not the verifier's keyword arguments. `timeout` is the pool's, never a row's: a dataset must not
# set its own verifier's time bound.
_NOT_ARGUMENTS = ("task", "completion", "timeout")


REFERENCE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for c in TASKS.values() for f in c.fields))
# Fields stored as JSON text in datasets (Arrow columns need one type in every row; io is a list of objects).
JSON_FIELDS = frozenset({"io"})


def implied_task(row: dict) -> str | None:
    """The one task whose required fields the row has, when it names none."""
    tasks = [name for name, c in TASKS.items() if any(row.get(f) is not None for f in c.required)]
    return tasks[0] if len(tasks) == 1 else None


def reference_columns(row: dict) -> dict:
    """Every reference field, None where absent, JSON text for JSON_FIELDS and the answer as text (datasets store
    integer answers as numbers): a row for a columnar dataset, one type per column."""
    out = {}
    for f in REFERENCE_FIELDS:
        value = row.get(f)
        if value is not None and f in JSON_FIELDS and not isinstance(value, str):
            value = json.dumps(value)
        elif value is not None and f == "answer":
            value = str(value)
        out[f] = value
    return out


def reference(row: dict) -> dict:
    """The row's reference fields that are set, JSON_FIELDS decoded: the verifier's keyword arguments."""
    out = {f: row[f] for f in REFERENCE_FIELDS if row.get(f) is not None}
    for f in JSON_FIELDS & out.keys():
        if isinstance(out[f], str):
            out[f] = json.loads(out[f])
    return out


def verify_row(row: dict, time_bound: float | None = None) -> Verdict:
    """Judge one row `{"task": ..., "completion": ..., <reference fields>}` with its task's verifier. time_bound:
    seconds, passed to a verifier that bounds itself (TASKS[task].subprocess; see its `time_bound`); the pool bounds
    the others."""
    verifier = VERIFIERS.get(row.get("task"))  # type: ignore[arg-type]
    if verifier is None:
        raise KeyError(f"unknown task {row.get('task')!r}; known: {', '.join(VERIFIERS)}")
    bad = lone_surrogate(row)
    if bad is not None:
        return error(f"field {bad!r}: holds a lone surrogate (valid JSON, not valid Unicode); not judged")
    row = with_prompt_helpers(row)
    fields = {k: v for k, v in row.items() if k not in _NOT_ARGUMENTS}
    if isinstance(fields.get("answer"), (int, float)):  # datasets often store integer answers as numbers
        fields["answer"] = str(fields["answer"])
    if time_bound is not None and TASKS[row["task"]].subprocess:
        fields["timeout"] = time_bound
    return verifier(row["completion"], **fields)

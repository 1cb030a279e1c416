"""The one registry of verifiers, shared by rejection sampling, evaluation and GRPO rewards.

A verifier is a pure function `(completion, **row_fields) -> Verdict` (no torch, no network). Rows name their
verifier with `task` and carry its reference fields (`answer` for math; `tests` or `io` for code), so generation,
evaluation and the GRPO rewards all run exactly this code, and a fix lands everywhere at once.

`VERIFIERS` judge correctness (reward 1.0 only when correct). `SHAPING` holds the extra GRPO rewards: format and
language consistency in [0, 1], DAPO's overlong punishment and the n-gram repetition penalty in [-1, 0]; each module's
docstring gives its formula, and the weights in a recipe decide how they add up.
"""

from __future__ import annotations

from collections.abc import Callable

from distill.verifiers.base import Verdict
from distill.verifiers.code import verify_code
from distill.verifiers.format import format_reward
from distill.verifiers.language import language_consistency_reward
from distill.verifiers.length import overlong_reward
from distill.verifiers.math import verify_math
from distill.verifiers.repetition import repetition_reward

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

# Row fields that are not the verifier's keyword arguments.
_NOT_ARGUMENTS = ("task", "completion")


def verify_row(row: dict) -> Verdict:
    """Judge one row `{"task": ..., "completion": ..., <reference fields>}` with its task's verifier."""
    verifier = VERIFIERS.get(row.get("task"))  # type: ignore[arg-type]
    if verifier is None:
        raise KeyError(f"unknown task {row.get('task')!r}; known: {', '.join(VERIFIERS)}")
    fields = {k: v for k, v in row.items() if k not in _NOT_ARGUMENTS}
    if isinstance(fields.get("answer"), (int, float)):  # datasets often store integer answers as numbers
        fields["answer"] = str(fields["answer"])
    return verifier(row["completion"], **fields)

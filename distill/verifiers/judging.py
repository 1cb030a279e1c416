"""The one judging function of rollouts (generation, evaluation) and GRPO rewards: reward == eval in code.

A completion cut at its token limit is `no_answer` and is not run at all: R1 keeps only finished traces, and the
plain-number fallback could otherwise credit whatever number the text stopped on. Every other completion gets its
task's verdict through the VerifierPool, within the pool's time bound, whose meaning per task is stated once, in
registry.TASKS (`time_bound`). Rollouts know a cut sample by its finish reason; GRPO's rewards by its token ids
(`cut_at_length`): both then call `judge`.
"""

from __future__ import annotations

from collections.abc import Sequence

from distill.verifiers.base import Verdict, no_answer
from distill.verifiers.pool import VerifierPool

TRUNCATED = no_answer("truncated at max_tokens")


def cut_at_length(ids: Sequence[int] | None, max_length: int, eos_ids: set[int]) -> bool:
    """A completion of `ids` was cut at `max_length` tokens: as long as allowed and not ended by an end-of-sequence
    token. False when the ids are unknown."""
    return ids is not None and len(ids) >= max_length and (not ids or ids[-1] not in eos_ids)


def judge(pool: VerifierPool, rows: Sequence[dict], truncated: Sequence[bool]) -> list[Verdict]:
    """The verdict of each row `{"task", "completion", <reference fields>}`, in order; `truncated[i]` marks a
    completion cut at its token limit (TRUNCATED, never verified)."""
    if len(rows) != len(truncated):
        raise ValueError(f"{len(rows)} rows but {len(truncated)} truncation flags")
    verdicts = iter(pool.map([row for row, cut in zip(rows, truncated, strict=True) if not cut]))
    return [TRUNCATED if cut else next(verdicts) for cut in truncated]

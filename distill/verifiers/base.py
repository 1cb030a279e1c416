"""The verdict every verifier returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

VerdictLabel = Literal["correct", "wrong", "no_answer", "timeout", "error"]
VERDICTS: tuple[VerdictLabel, ...] = ("correct", "wrong", "no_answer", "timeout", "error")


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one completion.

    reward: in [0, 1] for the accuracy verifiers (1.0 only when `correct`); the GRPO shaping rewards document their
        own range (penalties are <= 0).
    verdict: one of VERDICTS.
    reason: short human-readable text (why), for data cards and debugging.
    """

    reward: float
    verdict: VerdictLabel
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def correct(reason: str = "") -> Verdict:
    return Verdict(1.0, "correct", reason)


def wrong(reason: str = "") -> Verdict:
    return Verdict(0.0, "wrong", reason)


def no_answer(reason: str = "") -> Verdict:
    return Verdict(0.0, "no_answer", reason)


def timeout(reason: str = "") -> Verdict:
    return Verdict(0.0, "timeout", reason)


def error(reason: str = "") -> Verdict:
    return Verdict(0.0, "error", reason)


def answer_part(completion: str) -> str | None:
    """The part of a completion that holds its final answer, or None if it has none.

    Where the completion opens a `<think>` block, only the text after the last `</think>` counts; a `<think>` that is
    never closed means the output was truncated mid-reasoning, so there is no answer. A completion without any think
    block is judged whole. (R1's template prefills `<think>\n`, so a completion may start inside the block and hold a
    lone `</think>`: that also counts as a closed block.)
    """
    if "</think>" in completion:
        return completion.rsplit("</think>", 1)[1]
    if "<think>" in completion:
        return None
    return completion

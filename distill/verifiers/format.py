"""R1's format reward: the reasoning in one `<think>…</think>` block, then an answer.

reward = 1 if the completion is `[<think>] reasoning </think> answer` with non-empty reasoning, exactly one closing
tag, no other think tags, and a non-empty answer after it; else 0. The opening tag may be missing because R1's
template can prefill `<think>\\n` into the prompt, so the completion starts inside the block.
With `require_boxed=True` (math), the answer must also hold a `\\boxed{...}`.
"""

from __future__ import annotations

from distill.verifiers.base import Verdict


def format_reward(completion: str, *, require_boxed: bool = False, **_row_fields) -> Verdict:
    text = completion.lstrip()
    if text.startswith("<think>"):
        text = text[len("<think>") :]
    if text.count("</think>") != 1:
        found = text.count("</think>")
        return Verdict(0.0, "wrong", "no </think>" if found == 0 else f"{found} </think> tags")
    reasoning, answer = text.split("</think>")
    if "<think>" in reasoning or "<think>" in answer:
        return Verdict(0.0, "wrong", "nested or repeated <think>")
    if not reasoning.strip():
        return Verdict(0.0, "wrong", "empty reasoning")
    if not answer.strip():
        return Verdict(0.0, "wrong", "no answer after </think>")
    if require_boxed and "\\boxed{" not in answer:
        return Verdict(0.0, "wrong", "no \\boxed{} in the answer")
    return Verdict(1.0, "correct", "format ok")

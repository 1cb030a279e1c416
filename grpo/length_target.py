"""L1's length-target reward (grpo.reward_weights.length_target): train the policy to think for as many tokens as
its prompt asks.

Reference: Aggarwal & Welleck 2025, "L1: Controlling How Long A Reasoning Model Thinks With Reinforcement Learning"
(arXiv:2503.04697), LCPO-Exact. Each training prompt gets a target n_target, drawn per prompt, and the instruction
"Think for {n_target} tokens." after R1's instruction in its user turn (L1's data script appends it with a space). The
reward of a completion y of n_y generated tokens is

    r(y) = 1[y is correct] - alpha * |n_target - n_y|                       (L1's LCPO-Exact; alpha = 0.0003)

Here the two terms are two reward functions that TRL adds with grpo.reward_weights: `accuracy` is the existing
verifier reward (weight 1 in L1) and `length_target` returns -alpha * |n_target - n_y|, so with both weights 1 and no
other component the total is L1's. Examples (alpha = 0.0003, n_target = 1000): 1000 tokens -> 0; 900 or 1100 tokens ->
-0.03; 0 tokens -> -0.3. A correct answer at 1100 tokens earns 1 - 0.03 = 0.97 in all.

- n_y is len(completion_ids): the tokens TRL generated, up to and including the end-of-sequence token, which is what
  TRL's completions/mean_length counts (thinking and answer both, as L1 counts the whole response).
- n_target is uniform on grpo.length_target.range = [min, max] (L1: [100, 4000]), drawn from (seed, prompt id) alone:
  the same recipe and seed give every prompt the same target in every run and every resume, whatever the other
  prompts are. A prompt keeps its target over epochs (L1's dataset is fixed too).
- A completion whose verifier failed gets None, as from every other reward function (grpo.rewards, SKIPPING).
- The reward logs, per generation batch (TRL's log_metric, averaged per logged step): length_target/target (mean
  n_target), length_target/achieved (mean n_y) and length_target/abs_error (mean |n_target - n_y|); grpo.monitor
  writes them to metrics.jsonl as target_length, achieved_length and length_error.

Not done here: L1's LCPO-Max variant, r = 1[correct] * clip(alpha * (n_target - n_y) + delta, 0, 1), which rewards
staying under a budget rather than hitting it.
"""

from __future__ import annotations

import random
from statistics import fmean

# The prompt's column that carries each row's target (TRL passes it to the reward functions by this name).
COLUMN = "length_target"


def draw_target(seed: int, prompt_id: str, low: int, high: int) -> int:
    """A target in [low, high] tokens for one prompt: a string seed makes it the same in every process and run (no
    PYTHONHASHSEED), and keying it by the prompt id keeps it apart from the other prompts and their order."""
    return random.Random(f"length_target:{seed}:{prompt_id}").randint(low, high)


def with_instruction(prompt: str | list[dict], instruction: str) -> str | list[dict]:
    """The prompt with `instruction` appended to its user turn after a space, as L1 does: the last user message of a
    chat prompt, or the question of R1-Zero's plain-text template (before its closing " Assistant:")."""
    if isinstance(prompt, str):
        closing = " Assistant:"
        if not prompt.endswith(closing):
            raise ValueError(f"a plain-text prompt should end with {closing!r}: {prompt[-40:]!r}")
        return f"{prompt[: -len(closing)]} {instruction}{closing}"
    last_user = max(i for i, m in enumerate(prompt) if m["role"] == "user")
    return [{**m, "content": f"{m['content']} {instruction}"} if i == last_user else m for i, m in enumerate(prompt)]


def add_length_targets(rows: list[dict], seed: int, low: int, high: int, instruction: str) -> list[dict]:
    """Training rows (distill.training.prompts.training_rows) with a target each: the COLUMN and the instruction
    (`instruction` with {n} replaced by the target) in the prompt."""
    out = []
    for row in rows:
        target = draw_target(seed, row["id"], low, high)
        prompt = with_instruction(row["prompt"], instruction.format(n=target))
        out.append({**row, "prompt": prompt, COLUMN: target})
    return out


def length_penalty(target: int, generated: int, alpha: float) -> float:
    """-alpha * |target - generated| (tokens): 0 at the target, -alpha per token away from it on either side."""
    return -alpha * abs(target - generated)


def length_target_reward(alpha: float):
    """The reward function for TRL: -alpha * |n_target - n_y| per completion (module docstring)."""

    def length_target(completions, completion_ids, length_target, log_metric=None, **_columns) -> list[float]:
        achieved = [len(ids) for ids in completion_ids]
        if log_metric is not None and achieved:
            log_metric("length_target/target", fmean(length_target))
            log_metric("length_target/achieved", fmean(achieved))
            log_metric(
                "length_target/abs_error", fmean(abs(t - n) for t, n in zip(length_target, achieved, strict=True))
            )
        return [length_penalty(t, n, alpha) for t, n in zip(length_target, achieved, strict=True)]

    return length_target

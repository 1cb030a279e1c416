"""Reward-function doubles shared by the grpo tests: pools that judge in-process, scripted verdicts, a caller."""

from __future__ import annotations

EOS = 2
GAMED = "<think>x</think>\\boxed{}"
HONEST = "<think>3 plus 4 makes 7, so the sum is 7.</think> The answer is \\boxed{7}."
BROKEN = "<think>3 plus 4 makes 7.</think> \\boxed{7}"  # the ScriptedPool's verifier fails on this one


def chars(completions, **_):
    """Test-only reward that varies between completions of a random model (the verifiers give it 0 everywhere)."""
    from grpo import rewards

    return [len(rewards.completion_text(c)) / 100 for c in completions]


def add_chars_reward() -> None:
    """grpo.train's rewards plus `chars` (in this process), so that a tiny random policy has advantages to learn."""
    from grpo import rewards

    original = rewards.build_reward_funcs

    def with_chars(*args, **kwargs):
        funcs, weights = original(*args, **kwargs)
        return [*funcs, chars], [*weights, 1.0]

    rewards.build_reward_funcs = with_chars


class InlinePool:
    """VerifierPool's interface without processes, for reward-function unit tests."""

    def map(self, rows):
        from distill.verifiers.registry import verify_row

        return (verify_row(row) for row in rows)


class ScriptedPool(InlinePool):
    """The shared verifiers, except for the completions given a verdict here (a sandbox that fails on demand)."""

    def __init__(self, verdicts: dict[str, str]) -> None:
        self.verdicts = verdicts

    def map(self, rows):
        from distill.verifiers import base

        rows = list(rows)
        real = iter(super().map([r for r in rows if r["completion"] not in self.verdicts]))
        return [
            getattr(base, self.verdicts[r["completion"]])("scripted")
            if r["completion"] in self.verdicts
            else next(real)
            for r in rows
        ]


def call_reward(func, completions, ids=None, **columns):
    metrics: dict[str, float] = {}
    n = len(completions)
    columns = {"task": ["math"] * n, "answer": ["7"] * n, **columns}
    ids = ids or [[5, EOS]] * n
    scores = func(completions=completions, completion_ids=ids, log_metric=metrics.__setitem__, **columns)
    return scores, metrics

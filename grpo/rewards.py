"""The shared verifiers (distill.verifiers.registry) as TRL reward functions, one named function per component.

TRL calls each function as `f(prompts=, completions=, completion_ids=, **columns)`, where every other dataset column
(task, answer, tests, io, fallback_last_number, ...) comes as a list with one entry per completion, and logs the mean
of each function's rewards as `rewards/<name>/mean`; `GRPOConfig.reward_weights` decides how they add up to `reward`.

- accuracy: the row's verifier (VERIFIERS[task]: math or code) run through a VerifierPool, so a hanging verdict is
  killed after its time bound. A completion cut at max_completion_length earns nothing, as in distill.generate (R1
  keeps only finished traces, and the plain-number fallback would credit whatever number the text stopped on).
  A `timeout` verdict earns 0 (the policy's program or answer ran too long); an `error` verdict (the verifier or the
  sandbox failed) is not the policy's doing and earns None -- see SKIPPING below.
- format, language, overlong, repetition: the SHAPING functions, called directly (pure, microseconds each).
- length_target: L1's length-target reward, -alpha * |n_target - n_y| for a target given in the prompt (formula,
  reference and the prompt's instruction: grpo.length_target).
- reflection: a monitor, weight 0: 1.0 when the completion holds a reflection phrase ("wait", "let me re-check",
  "re-evaluate", ...), so TRL's mean is the share of such completions -- the aha-moment tracker.
Accuracy and format are always computed (weight 0 when not rewarded): the reward-hacking monitor compares them. The
accuracy function also logs `format_gaming` through TRL's `log_metric`: the share of completions with perfect format,
a wrong answer and next to no reasoning (`<think>x</think>\\boxed{}`), and `verifier_error_share`: the share of the
batch's completions left unscored because their verdict was `error` (grpo.monitor turns it into a count per step and
warns past a threshold).

SKIPPING. TRL 1.16's GRPOTrainer._calculate_rewards turns a None reward into NaN, and _generate_and_score_completions
scores a completion with `(rewards_per_func * reward_weights).nansum(dim=1)`: a NaN next to numbers counts as 0, so a
None from accuracy alone would still score the completion as wrong (the weight-0 format and reflection functions always
return numbers). Only a completion for which EVERY function returns None is left out (`unscorable_mask`: reward NaN,
out of its group's mean and std, advantage 0 through nan_to_num). So accuracy records which completions errored (Skips)
and every other function built here returns None for the same completions.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from distill.verifiers.judging import cut_at_length, judge
from distill.verifiers.pool import VerifierPool
from distill.verifiers.registry import REFERENCE_FIELDS, SHAPING, reference
from grpo.length_target import length_target_reward

COMPONENTS = ("accuracy", "format", "language", "overlong", "repetition", "length_target")
MONITORS = ("reflection",)
# Fewer words of reasoning than this, with perfect format and a wrong answer, is gaming the format reward.
MIN_REASONING_WORDS = 5
# R1's "aha moment" words and the self-checks that follow them; word boundaries keep "await" and "hmmm" out.
REFLECTION = re.compile(
    r"\b(wait|hmm|let me (re-?check|check|verify|re-?think|reconsider|re-?evaluate)|re-?evaluate|re-?examine|"
    r"re-?check|double[- ]check|on second thought|i made a mistake|that'?s not right)\b",
    re.IGNORECASE,
)

RewardFunc = Callable[..., list[float | None]]


class Skips:
    """Which completions of the batch being scored got an `error` verdict: accuracy records them, the other reward
    functions of build_reward_funcs return None for them. TRL passes the same `completions` list to every reward
    function of one batch (accuracy first), so the list's identity names the batch; any other list has no skips."""

    def __init__(self) -> None:
        self._completions: list | None = None
        self._errors: list[bool] = []

    def record(self, completions: list, errors: list[bool]) -> None:
        self._completions, self._errors = completions, errors

    def errors(self, completions: list) -> list[bool]:
        if completions is self._completions:
            return self._errors
        return [False] * len(completions)


def completion_text(completion: str | list[dict]) -> str:
    """The generated text: conversational completions are [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


def has_reflection(text: str) -> bool:
    return REFLECTION.search(text) is not None


def is_format_gaming(text: str, format_score: float, correct: bool) -> bool:
    """Perfect format, a wrong answer and (almost) no reasoning: the format reward earned without doing the task."""
    reasoning = text.split("</think>", 1)[0].replace("<think>", "")
    return format_score >= 1.0 and not correct and len(reasoning.split()) < MIN_REASONING_WORDS


def _named(name: str, func: RewardFunc) -> RewardFunc:
    func.__name__ = func.__qualname__ = name  # TRL logs rewards/<__name__>/mean
    return func


def _reference(columns: dict, i: int) -> dict:
    return reference({k: columns[k][i] for k in REFERENCE_FIELDS if k in columns})


def accuracy_reward(pool: VerifierPool, max_length: int, eos_ids: set[int], skips: Skips | None = None) -> RewardFunc:
    """1.0 for a verified-correct answer, None when the verifier failed (`error`), else 0.0; also logs the
    format-gaming share and the share of `error` verdicts. A truncated completion earns 0.0 whatever its verdict."""

    def accuracy(completions, task, completion_ids=None, log_metric=None, **columns) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        rows = [
            {"task": t, "completion": x, **_reference(columns, i)}
            for i, (t, x) in enumerate(zip(task, texts, strict=True))
        ]
        ids = completion_ids or [None] * len(texts)
        verdicts = judge(pool, rows, [cut_at_length(i, max_length, eos_ids) for i in ids])
        errors = [v.verdict == "error" for v in verdicts]
        scores: list[float | None] = [None if v.verdict == "error" else v.reward for v in verdicts]
        if skips is not None:
            skips.record(completions, errors)
        if log_metric is not None:
            gaming = [
                is_format_gaming(x, SHAPING["format"](x).reward, s > 0)
                for x, s in zip(texts, scores, strict=True)
                if s is not None
            ]
            if gaming:  # none when every verdict failed: no share to report
                log_metric("format_gaming", sum(gaming) / len(gaming))
            log_metric("verifier_error_share", sum(errors) / max(len(errors), 1))
        return scores

    return _named("accuracy", accuracy)


def skipping(func: RewardFunc, skips: Skips) -> RewardFunc:
    """`func`, returning None for the completions whose verifier failed (so TRL leaves them out: see SKIPPING)."""

    def skipped(completions, **columns) -> list[float | None]:
        scores = func(completions=completions, **columns)
        return [None if e else s for s, e in zip(scores, skips.errors(completions), strict=True)]

    return _named(func.__name__, skipped)


def shaping_reward(name: str, **params) -> RewardFunc:
    """A SHAPING function as a reward; `overlong` reads each completion's token count from completion_ids."""
    shape = SHAPING[name]

    def reward(completions, completion_ids=None, **_columns) -> list[float]:
        texts = [completion_text(c) for c in completions]
        if name == "overlong":
            return [
                shape(x, num_tokens=len(ids), **params).reward for x, ids in zip(texts, completion_ids, strict=True)
            ]
        return [shape(x, **params).reward for x in texts]

    return _named(name, reward)


def reflection(completions, **_columns) -> list[float]:
    """1.0 when the completion reflects on its own work; weight 0, a monitor."""
    return [1.0 if has_reflection(completion_text(c)) else 0.0 for c in completions]


def build_reward_funcs(
    weights: dict[str, float],
    pool: VerifierPool,
    *,
    max_completion_length: int,
    eos_ids: set[int],
    language: str = "en",
    overlong_cache: int | None = None,
    repetition_ngram: int = 3,
    length_alpha: float = 0.0003,
) -> tuple[list[RewardFunc], list[float]]:
    """The reward functions and their weights, in the same order, for GRPOTrainer and GRPOConfig.reward_weights.
    A completion whose verifier failed gets None from every one of them, so TRL skips it (see SKIPPING)."""
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown reward component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    params = {
        "language": {"language": language},
        "overlong": {"max_length": max_completion_length, "cache_length": overlong_cache or max_completion_length // 4},
        "repetition": {"ngram_size": repetition_ngram},
    }
    skips = Skips()
    funcs = [accuracy_reward(pool, max_completion_length, eos_ids, skips)]  # first: it records the skips
    scale = [weights.get("accuracy", 0.0)]
    for name in COMPONENTS[1:]:
        if weights.get(name, 0.0) != 0.0 or name == "format":
            if name == "length_target":  # alpha: tokens -> reward (grpo.length_target)
                func = length_target_reward(length_alpha)
            else:
                func = shaping_reward(name, **params.get(name, {}))
            funcs.append(skipping(func, skips))
            scale.append(weights.get(name, 0.0))
    funcs.append(skipping(reflection, skips))
    scale.append(0.0)
    return funcs, scale

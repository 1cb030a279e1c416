"""The GRPO shaping rewards: format, language consistency, DAPO overlong punishment, n-gram repetition."""

import pytest

from distill.verifiers.format import format_reward
from distill.verifiers.language import language_consistency_reward
from distill.verifiers.length import overlong_reward
from distill.verifiers.repetition import repetition_reward


@pytest.mark.parametrize(
    ("completion", "reward", "reason"),
    [
        ("<think>\n2+3=5\n</think>\nThe answer is \\boxed{5}.", 1.0, "format ok"),
        ("2+3=5\n</think>\n\\boxed{5}", 1.0, "format ok"),  # <think> prefilled in the prompt
        ("\\boxed{5}", 0.0, "no </think>"),
        ("<think>\n2+3=5", 0.0, "no </think>"),  # truncated
        ("<think></think>\\boxed{5}", 0.0, "empty reasoning"),
        ("<think>ok</think>   ", 0.0, "no answer after </think>"),
        ("<think>a</think>b</think>c", 0.0, "2 </think> tags"),
        ("<think>a<think>b</think>c", 0.0, "nested or repeated <think>"),
        ("<think>a</think>b<think>c", 0.0, "nested or repeated <think>"),
    ],
)
def test_format_reward(completion, reward, reason):
    verdict = format_reward(completion)
    assert (verdict.reward, verdict.reason) == (reward, reason)


def test_format_reward_can_require_a_box():
    assert format_reward("<think>a</think>5", require_boxed=True).reward == 0.0
    assert format_reward("<think>a</think>\\boxed{5}", require_boxed=True).reward == 1.0


@pytest.mark.parametrize(
    ("completion", "language", "reward"),
    [
        ("<think>First add two and three.</think>\\boxed{5}", "en", 1.0),
        ("<think>First add 2 and 3, 然后 get five</think>\\boxed{5}", "en", 5 / 7),  # 5 Latin words, 2 ideographs
        ("<think>然后</think>", "zh", 1.0),
        ("<think>然后 done</think>", "zh", 2 / 3),
        ("<think>123 + 456</think>", "en", 1.0),  # no words at all
        ("<think>Schritt für Schritt</think>", "en", 1.0),  # Latin script: the rule is script, not language
        ("<think>шаг за шагом ok</think>", "en", 1 / 4),
        ("plain text without think, 中文", "en", 4 / 6),
    ],
)
def test_language_consistency_is_the_share_of_target_words(completion, language, reward):
    assert language_consistency_reward(completion, language=language).reward == pytest.approx(reward)


def test_language_consistency_ignores_the_answer_part():
    assert language_consistency_reward("<think>add</think>答案是五", language="en").reward == 1.0


@pytest.mark.parametrize(
    ("num_tokens", "expected"),
    [(0, 0.0), (768, 0.0), (769, -1 / 256), (896, -0.5), (1024, -1.0), (1025, -1.0), (10_000, -1.0)],
)
def test_overlong_punishment_follows_dapo(num_tokens, expected):
    verdict = overlong_reward("x", num_tokens=num_tokens, max_length=1024, cache_length=256)
    assert verdict.reward == pytest.approx(expected)


def test_overlong_rejects_a_cache_longer_than_the_limit():
    with pytest.raises(ValueError, match="cache_length"):
        overlong_reward("x", num_tokens=1, max_length=10, cache_length=20)


@pytest.mark.parametrize(
    ("text", "ngram_size", "expected"),
    [
        ("a b c d e f", 3, 0.0),
        ("a b a b a b", 2, -(1 - 2 / 5)),  # 5 bigrams, 2 distinct
        ("wait wait wait wait", 3, -(1 - 1 / 2)),
        ("too short", 3, 0.0),
        ("Wait WAIT wait", 1, -(1 - 1 / 3)),  # case-insensitive
    ],
)
def test_repetition_penalty(text, ngram_size, expected):
    assert repetition_reward(text, ngram_size=ngram_size).reward == pytest.approx(expected)


def test_repetition_penalty_scales_with_max_penalty_and_flags_runaway_loops():
    loop = "Let me check again. " * 200
    assert repetition_reward(loop, max_penalty=-0.5).reward == pytest.approx(-0.5 * (1 - 4 / 798))
    with pytest.raises(ValueError):
        repetition_reward(loop, max_penalty=0.5)

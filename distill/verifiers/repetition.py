"""N-gram repetition penalty (as in open-r1's `repetition_penalty_reward`, after Yeo et al. 2025).

With the completion's lower-cased words split on whitespace and its n-grams of `ngram_size` words:
    penalty = (1 - distinct n-grams / all n-grams) * max_penalty
so 0 for text with no repeated n-gram, approaching max_penalty (negative, default -1) for runaway repetition;
0 when the text has fewer than `ngram_size` words. A penalty in [max_penalty, 0], added to the other rewards.
"""

from __future__ import annotations

from distill.verifiers.base import Verdict


def repeated_ngram_share(text: str, ngram_size: int) -> float:
    """Share of the text's word n-grams that repeat an earlier one, in [0, 1)."""
    words = text.lower().split()
    ngrams = [tuple(words[i : i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
    if not ngrams:
        return 0.0
    return 1.0 - len(set(ngrams)) / len(ngrams)


def repetition_reward(completion: str, *, ngram_size: int = 3, max_penalty: float = -1.0, **_row_fields) -> Verdict:
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
    share = repeated_ngram_share(completion, ngram_size)
    verdict = "correct" if share == 0 else "wrong"
    return Verdict(share * max_penalty, verdict, f"{share:.0%} of {ngram_size}-grams repeated")

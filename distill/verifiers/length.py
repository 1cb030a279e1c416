"""DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), in tokens.

With L_max = max_length and L_cache = cache_length, for a completion of |y| = num_tokens tokens:
    0                                   if |y| <= L_max - L_cache
    ((L_max - L_cache) - |y|) / L_cache if L_max - L_cache < |y| <= L_max
    -1                                  if |y| > L_max
The value is in [-1, 0] and is added to the accuracy reward: a penalty, not a score.
"""

from __future__ import annotations

from distill.verifiers.base import Verdict


def overlong_reward(completion: str, *, num_tokens: int, max_length: int, cache_length: int, **_row_fields) -> Verdict:
    if not 0 < cache_length <= max_length:
        raise ValueError(f"need 0 < cache_length <= max_length, got {cache_length} and {max_length}")
    soft_start = max_length - cache_length
    if num_tokens <= soft_start:
        return Verdict(0.0, "correct", f"{num_tokens} tokens <= {soft_start}")
    if num_tokens <= max_length:
        penalty = (soft_start - num_tokens) / cache_length
        return Verdict(penalty, "wrong", f"{num_tokens} tokens in the last {cache_length} before {max_length}")
    return Verdict(-1.0, "wrong", f"{num_tokens} tokens > {max_length}")

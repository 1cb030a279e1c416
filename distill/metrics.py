"""Evaluation metrics over k samples per problem, as the DeepSeek-R1 paper reports them.

- pass@1: the mean accuracy over the k samples of each problem, averaged over problems (mean of c_i / n_i), with a
  bootstrap standard error over problems -- on 30 AIME problems one problem is 3.3 points, so the error bar matters.
- cons@k: majority vote over the extracted final answers; a problem counts as solved when the most common answer
  is a correct one.
- pass@k: the chance that at least one of k samples is correct, by the unbiased estimator of Chen et al. 2021
  ("Evaluating Large Language Models Trained on Code"), 1 - C(n-c, k) / C(n, k), averaged over problems.
- paired differences: two models scored on the same problems differ per problem; the paired bootstrap over problems
  gives the mean difference's confidence interval and p-value, and the minimum detectable difference states the
  evaluation's power at its size (Miller 2024, "Adding Error Bars to Evals", sections 3-5).

Pure functions of verdicts and answer keys: no model, no verifier, no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the chance that k of the n samples, drawn without replacement, hold a correct one
    (c of n correct). As the product prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def k_values(n: int) -> list[int]:
    """The k reported for n samples per problem: 1, the powers of 2 below n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return [*ks, n]


def majority_answer(keys: Sequence[str | None]) -> str | None:
    """The most common answer key; ties go to the key seen first; None (no answer) does not vote."""
    votes = Counter(key for key in keys if key is not None)
    if not votes:
        return None
    top = max(votes.values())
    return next(key for key in keys if key is not None and votes[key] == top)


def consensus_correct(keys: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Whether the majority answer is right: judged right when any sample carrying that answer was judged correct
    (samples with equal keys state the same answer, so one verdict speaks for all of them)."""
    winner = majority_answer(keys)
    return winner is not None and any(ok for key, ok in zip(keys, correct, strict=True) if key == winner)


def bootstrap_stderr(values: Sequence[float], resamples: int, seed: int) -> float | None:
    """Standard error of the mean of `values` (one per problem): the standard deviation of the mean over `resamples`
    resamplings of the problems with replacement. None when it cannot be estimated (no resamples, < 2 problems)."""
    data = np.asarray(values, dtype=float)
    if resamples < 1 or data.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    return float(means.std(ddof=1)) if resamples > 1 else None


def summarize(problems: Sequence[Sequence[dict]], vote: bool, bootstrap: int, seed: int) -> dict:
    """A benchmark's metrics from its problems' samples. Each sample: `verdict` ("correct", ...), `num_tokens`,
    `finish_reason` ("length" = truncated) and, when `vote`, `answer_key` (None: no vote). Accuracies are fractions
    in [0, 1]; mean_tokens in generated tokens per sample; truncated the share of samples cut at max_tokens.
    cons@k is None when not `vote` (code: there is no answer to vote on)."""
    if not problems or any(not samples for samples in problems):
        raise ValueError("every problem needs at least one sample")
    correct = [[s["verdict"] == "correct" for s in samples] for samples in problems]
    accuracy = [sum(ok) / len(ok) for ok in correct]
    ks = k_values(min(len(ok) for ok in correct))
    everything = [s for samples in problems for s in samples]
    cons = None
    if vote:
        solved = [
            consensus_correct([s["answer_key"] for s in samples], ok)
            for samples, ok in zip(problems, correct, strict=True)
        ]
        cons = sum(solved) / len(solved)
    return {
        "problems": len(problems),
        "samples": max(len(ok) for ok in correct),
        "pass@1": sum(accuracy) / len(accuracy),
        "pass@1_stderr": bootstrap_stderr(accuracy, bootstrap, seed),
        "cons@k": cons,
        "pass@k": {str(k): float(np.mean([pass_at_k(len(ok), sum(ok), k) for ok in correct])) for k in ks},
        "mean_tokens": sum(s["num_tokens"] for s in everything) / len(everything),
        "truncated": sum(s["finish_reason"] == "length" for s in everything) / len(everything),
        "verdicts": dict(Counter(s["verdict"] for s in everything)),
    }


def paired_difference(
    a: Sequence[float], b: Sequence[float], resamples: int, seed: int, confidence: float = 0.95, power: float = 0.8
) -> dict:
    """Model A against model B on the same problems: `a[i]`, `b[i]` are their scores on problem i (pass@1 over its
    samples, in [0, 1]). Returns the mean difference A - B, its percentile bootstrap interval at `confidence`
    (resampling problems, so both models keep their pairing), the two-sided bootstrap p-value of "no difference"
    (the share of resampled means at least as far from the observed one as the observed one is from 0, Efron and
    Tibshirani 16.4, counted with +1 so it is never 0), the standard deviation of the per-problem differences, and
    the minimum detectable difference: the true gap this many problems would resolve with probability `power` at
    level 1 - confidence, (z_{1-alpha/2} + z_{power}) * sd / sqrt(n). That is None where the two models scored alike
    on every problem (sd 0: these data hold nothing to size a difference by)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or len(a) != len(b) or d.size < 2:
        raise ValueError(
            f"a paired comparison needs two equal-length score lists of >= 2 problems, got {len(a)}, {len(b)}"
        )
    if resamples < 1:
        raise ValueError(f"a paired bootstrap needs >= 1 resample, got {resamples}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    observed = float(d.mean())
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    extreme = np.count_nonzero(np.abs(means - observed) >= abs(observed) - 1e-12)
    sd = float(d.std(ddof=1))
    z = NormalDist().inv_cdf(1 - tail) + NormalDist().inv_cdf(power)
    return {
        "problems": int(d.size),
        "difference": observed,
        "ci": [float(low), float(high)],
        "p_value": float((extreme + 1) / (resamples + 1)),
        "sd": sd,
        "min_detectable": z * sd / float(np.sqrt(d.size)) if sd > 0 else None,
        "confidence": confidence,
        "power": power,
    }


def problems_to_detect(difference: float, sd: float, confidence: float = 0.95, power: float = 0.8) -> int:
    """How many problems a paired comparison needs to resolve a true gap of `difference` (a fraction of pass@1)
    with probability `power` at level 1 - confidence, when per-problem differences have standard deviation `sd`:
    ((z_{1-alpha/2} + z_{power}) * sd / difference)^2, rounded up."""
    if not 0 < difference <= 1 or sd <= 0:
        raise ValueError(f"needs 0 < difference <= 1 and sd > 0, got difference={difference}, sd={sd}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2) + NormalDist().inv_cdf(power)
    return int(np.ceil((z * sd / difference) ** 2))

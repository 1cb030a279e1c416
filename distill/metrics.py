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

import math
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
    (resampling problems, so both models keep their pairing), the two-sided p-value of "no difference" that this
    interval inverts (twice the smaller share of resampled means on either side of 0, counted with +1 so it is never
    0: p < 1 - confidence where the interval excludes 0, so a verdict and its p never disagree; the shifted-null p of
    Efron and Tibshirani 16.4 did, on skewed 0/1 differences), the standard deviation of the per-problem differences, and
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
    beyond_zero = min(np.count_nonzero(means <= 0), np.count_nonzero(means >= 0))
    sd = float(d.std(ddof=1))
    z = NormalDist().inv_cdf(1 - tail) + NormalDist().inv_cdf(power)
    return {
        "problems": int(d.size),
        "difference": observed,
        "ci": [float(low), float(high)],
        "p_value": min(1.0, 2 * (beyond_zero + 1) / (resamples + 1)),
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


def t_quantile(q: float, df: float) -> float:
    """The q-quantile (0.5 < q < 1) of Student's t with `df` (> 0, fractional allowed) degrees of freedom: the
    density integrated numerically and inverted by interpolation (no scipy in the CPU install); within 1e-4 of the
    tables from df = 1 up."""
    if not 0.5 < q < 1 or df <= 0:
        raise ValueError(f"t_quantile needs 0.5 < q < 1 and df > 0, got q={q}, df={df}")
    if df > 1e4:
        return NormalDist().inv_cdf(q)
    x = np.linspace(0.0, 1.0, 200_001) ** 2 * 400  # dense near 0, where the mass is; 400 covers df=1 at q=0.9992
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    if q > cdf[-1]:
        raise ValueError(f"t_quantile: q={q} is beyond the table for df={df}")
    return float(np.interp(q, cdf, x))


def _seed_components(scores: np.ndarray) -> tuple[float, float, float]:
    """For one arm's pass@1, seeds x problems: (variance of its per-seed means, the within-evaluation residual
    variance of one score once seed and problem effects are removed, the between-training-runs variance). One seed:
    nothing between runs can be measured (0, 0, 0)."""
    seeds, problems = scores.shape
    if seeds < 2:
        return 0.0, 0.0, 0.0
    means = scores.mean(axis=1)
    resid = scores - means[:, None] - scores.mean(axis=0)[None, :] + scores.mean()
    within = float((resid**2).sum() / ((seeds - 1) * (problems - 1)))
    spread = float(means.var(ddof=1))
    return spread, within, max(0.0, spread - within / problems)


def replicated_difference(a, b, confidence: float = 0.95, power: float = 0.8) -> dict:
    """Arm A against arm B when each was trained with several seeds and every model was evaluated on the same
    problems: `a[s][p]`, `b[s][p]` are pass@1 of the arm's seed-s model on problem p (an arm trained once, or not at
    all -- the student as is -- has one row). The difference of the arms' means over seeds and problems, with an
    interval that covers both the training runs' spread and the evaluation's.

    Its variance is the sum of (1) the per-problem differences' variance over P problems -- the problems the
    evaluation happened to draw and its sampling noise, as the paired bootstrap over problems measures -- and
    (2) for each arm, its per-seed means' variance over its S seeds -- the run-to-run spread a second training run
    shows. (2) also holds the evaluation noise once more, divided by S*P: a conservative overlap, small next to (1).
    With 3 seeds (2) is itself known to 2 degrees of freedom, so the interval uses Student's t with Welch-
    Satterthwaite's degrees of freedom rather than a normal or a bootstrap over 3 seeds (which covers too little:
    a bootstrap of 3 values cannot see a spread beyond them). tests/test_eval.py checks its coverage by simulation.

    Returns the difference, the interval, whether the sign holds in every seed (seed s of A against seed s of B; an
    arm with one row against each seed of the other), the share of the variance that is between training runs, and
    what sizes the next run: the per-component variances `min_detectable` and `seeds_to_detect` read."""
    A, B = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if A.shape[1] != B.shape[1] or A.shape[1] < 2 or A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"needs seeds x problems arrays on the same >= 2 problems, got {A.shape} and {B.shape}")
    if A.shape[0] > 1 and B.shape[0] > 1 and A.shape[0] != B.shape[0]:
        raise ValueError(f"two trained arms need the same seeds, got {A.shape[0]} and {B.shape[0]}")
    problems = A.shape[1]
    per_problem = A.mean(axis=0) - B.mean(axis=0)
    problem_term = float(per_problem.var(ddof=1)) / problems
    comps = [_seed_components(x) for x in (A, B)]
    seed_terms = [run / x.shape[0] for (_, _, run), x in zip(comps, (A, B), strict=True)]
    variance = problem_term + sum(seed_terms)
    parts = [(problem_term, problems - 1)] + [(t, x.shape[0] - 1) for t, x in zip(seed_terms, (A, B), strict=True)]
    denom = sum(term**2 / df for term, df in parts if df > 0 and term > 0)
    df = variance**2 / denom if denom > 0 else float("inf")
    half = t_quantile(1 - (1 - confidence) / 2, df) * math.sqrt(variance) if variance > 0 else 0.0
    difference = float(per_problem.mean())
    per_seed = (
        A.mean(axis=1) - B.mean(axis=1)
        if A.shape[0] == B.shape[0]
        else (A.mean(axis=1)[:, None] - B.mean(axis=1)[None, :]).ravel()
    )
    between = sum(seed_terms)
    within_eval = [w for _, w, _ in comps]
    interaction = max(
        0.0, float(per_problem.var(ddof=1)) - sum(w / x.shape[0] for w, x in zip(within_eval, (A, B), strict=True))
    )
    return {
        "problems": problems,
        "seeds": [int(A.shape[0]), int(B.shape[0])],
        "difference": difference,
        "ci": [difference - half, difference + half],
        "df": df,
        "sign_every_seed": bool(np.all(np.sign(per_seed) == np.sign(difference))) if difference != 0 else False,
        "per_seed": [float(x) for x in per_seed],
        "between_runs_share": between / (between + problem_term) if between + problem_term > 0 else 0.0,
        "variance": {
            "problem": interaction,  # arm-by-problem, per problem
            "runs": [run for _, _, run in comps],  # between training runs, per arm
            "evaluation": within_eval,  # one score's evaluation noise, per arm
        },
        "confidence": confidence,
        "power": power,
    }


def min_detectable(variance: dict, seeds: int, problems: int, confidence: float = 0.95, power: float = 0.8) -> float:
    """The true gap (a fraction of pass@1) a comparison with `seeds` training runs per arm and `problems` problems
    resolves with probability `power` at level 1 - confidence, for the variance components `replicated_difference`
    measured: (z_{1-alpha/2} + z_power) * sqrt(problem/P + sum(runs)/S + sum(evaluation)/(S*P)). An arm not trained
    (one row) adds nothing between runs."""
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2) + NormalDist().inv_cdf(power)
    var = (
        variance["problem"] / problems
        + sum(variance["runs"]) / seeds
        + sum(variance["evaluation"]) / (seeds * problems)
    )
    return z * math.sqrt(var)


def seeds_to_detect(variance: dict, gap: float, problems: int, confidence: float = 0.95, power: float = 0.8,
                    most: int = 1000) -> int | None:  # fmt: skip
    """The fewest training seeds per arm that resolve a true `gap` on `problems` problems (min_detectable <= gap);
    None when no number of seeds up to `most` does -- the problems then are the limit, not the seeds."""
    for seeds in range(1, most + 1):
        if min_detectable(variance, seeds, problems, confidence, power) <= gap:
            return seeds
    return None

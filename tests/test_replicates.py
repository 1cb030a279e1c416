"""Differences between arms trained with several seeds (distill.metrics.replicated_difference): the interval covers
both training-run and evaluation noise, checked by simulation; seeds and problems sized together."""

import math

import numpy as np
import pytest

from distill.metrics import min_detectable, paired_difference, replicated_difference, seeds_to_detect, t_quantile


@pytest.mark.parametrize(("df", "table"), [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (30, 2.042)])
def test_t_quantiles_match_the_tables(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=2e-3)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _arm(rng, difficulty, shift, seeds, run_sd, samples=4):
    """pass@1 over `samples` samples, seeds x problems: each training run moves the arm's logit by N(0, run_sd); the
    arm's own per-problem strengths are fixed across its runs."""
    strength = rng.normal(0, 0.3, difficulty.size)
    runs = rng.normal(0, run_sd, (seeds, 1))
    return rng.binomial(samples, _sigmoid(difficulty + shift + strength + runs)) / samples


def _true_gap(shift_a, shift_b, run_sd, draws=2_000_000):
    rng = np.random.default_rng(0)
    d = rng.normal(-1.5, 1.5, draws)
    a = _sigmoid(d + shift_a + rng.normal(0, 0.3, draws) + rng.normal(0, run_sd, draws)).mean()
    b = _sigmoid(d + shift_b + rng.normal(0, 0.3, draws) + rng.normal(0, run_sd, draws)).mean()
    return a - b


def _covers(ci, truth):
    return ci[0] <= truth <= ci[1]


@pytest.mark.parametrize("run_sd", [0.0, 0.4])
def test_the_interval_over_seeds_and_problems_holds_its_level(run_sd):
    """3 seeds per arm, 100 problems drawn anew each trial, 4 samples each. With training runs that move an arm by
    several points (run_sd 0.4 on the logit: about 5 points between two seeds, as measured on the CPU comparison),
    the interval still covers the true gap about 95% of the time, where the paired bootstrap over problems alone
    (the report's old interval, on the seed-averaged scores) covers far less; without run-to-run noise it is not
    much wider than that bootstrap's."""
    rng = np.random.default_rng(5)
    truth = _true_gap(0.3, 0.0, run_sd)
    trials, ours, problems_only, widths = 300, [], [], []
    for i in range(trials):
        difficulty = rng.normal(-1.5, 1.5, 100)
        a, b = _arm(rng, difficulty, 0.3, 3, run_sd), _arm(rng, difficulty, 0.0, 3, run_sd)
        rep = replicated_difference(a, b)
        old = paired_difference(a.mean(axis=0), b.mean(axis=0), 400, seed=i)
        ours.append(_covers(rep["ci"], truth))
        problems_only.append(_covers(old["ci"], truth))
        widths.append((rep["ci"][1] - rep["ci"][0]) / (old["ci"][1] - old["ci"][0]))
    assert 0.92 <= np.mean(ours) <= 0.995
    if run_sd:
        assert np.mean(problems_only) < 0.8
    else:
        assert np.median(widths) < 1.35


def test_sign_per_seed_and_the_share_between_runs():
    rng = np.random.default_rng(1)
    difficulty = rng.normal(-1.0, 1.0, 200)
    a = _arm(rng, difficulty, 0.8, 3, 0.0)
    b = _arm(rng, difficulty, 0.0, 3, 0.0)
    steady = replicated_difference(a, b)
    assert steady["difference"] > 0 and steady["sign_every_seed"] and len(steady["per_seed"]) == 3
    assert steady["between_runs_share"] < 0.2
    noisy = a + np.array([[0.3], [-0.3], [0.0]])  # one run far ahead, one behind: the sign no longer holds
    flipped = replicated_difference(noisy, b)
    assert not flipped["sign_every_seed"] and flipped["between_runs_share"] > 0.5
    assert flipped["ci"][1] - flipped["ci"][0] > 3 * (steady["ci"][1] - steady["ci"][0])
    base = b[:1]  # the student as is: evaluated once, not trained
    against_base = replicated_difference(a, base)
    assert against_base["seeds"] == [3, 1] and len(against_base["per_seed"]) == 3
    with pytest.raises(ValueError, match="same seeds"):
        replicated_difference(a, b[:2])
    with pytest.raises(ValueError, match="same >= 2 problems"):
        replicated_difference(a, b[:, :5])


def test_seeds_to_detect_sizes_the_next_run_from_the_measured_spread():
    """Run-to-run sd of 5 points per arm (the CPU comparison moved one arm 7 points between seed 42 and seed 7) on 454
    problems: a 5-point question needs S with z^2 (problem/P + (runs + evaluation/P)/S) <= 0.05^2, 23 seeds here; and
    no number of seeds resolves a gap below what the problems alone allow."""
    variance = {"problem": 0.04, "runs": [0.0025, 0.0025], "evaluation": [0.02, 0.02]}
    z = 2.8016
    per_seed = 0.005 + 0.04 / 454
    expected = math.ceil(per_seed / ((0.05 / z) ** 2 - 0.04 / 454))
    assert seeds_to_detect(variance, 0.05, problems=454) == expected == 23
    assert min_detectable(variance, 23, 454) <= 0.05 < min_detectable(variance, 22, 454)
    floor = z * math.sqrt(0.04 / 454)
    assert seeds_to_detect(variance, floor * 0.95, problems=454) is None

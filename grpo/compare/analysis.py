"""grpo.compare's analysis: pure functions of the report's rows (no files, no plotting), tested alone.

A row is one evaluated model: its evaluation (distill.eval's results.json as a dict), its per-problem pass@1
(`problem_scores`, benchmark -> problem id -> share of correct samples: what the paired statistics compare), its
compute (distill.compute.Compute as a dict) and, for a budget sweep's point, the arm it samples (`sweep_of`) and
the fraction of that arm's run (`fraction`).
"""

from __future__ import annotations

import math
import statistics

from distill.metrics import paired_difference
from distill.prompt_sets import DataError


def arms_only(rows: dict[str, dict]) -> dict[str, dict]:
    """The arms' own rows (their final models), without the budget sweep's points."""
    return {key: row for key, row in rows.items() if "sweep_of" not in row}


def benchmarks(rows: dict[str, dict]) -> list[str]:
    first = next(iter(rows.values()))
    return list(first["results"]["benchmarks"])


def score(row: dict, bench: str) -> tuple[float, float]:
    r = row["results"]["benchmarks"][bench]
    return r["pass@1"], r["pass@1_stderr"] or 0.0  # None: one problem, or eval.bootstrap=0


# The paper's question first (distillation against RL), then each trained arm against what it started from; offline
# KD against arm b, which trains on the same samples without the teacher's top-k (what the stored log-probs add).
PAIRS = (
    ("distill", "rl"),
    ("kd", "rl"),
    ("kd", "distill"),
    ("okd", "distill"),
    ("distill", "base"),
    ("rl", "base"),
    ("kd", "base"),
    ("okd", "base"),
    ("distill_rl", "distill"),
    ("distill_rl", "rl"),
    ("teacher", "base"),
)


def paired_scores(a: dict, b: dict, bench: str) -> tuple[list[float], list[float]]:
    """The two arms' pass@1 per problem, in one order, on the problems both were evaluated on: all of them, or those
    of the arm evaluated on a subset (compare.context_problems). Arms whose problems are not nested are refused."""
    sa, sb = a["problem_scores"][bench], b["problem_scores"][bench]
    if not (set(sa) <= set(sb) or set(sb) <= set(sa)):
        missing = sorted(set(sa) ^ set(sb))[:3]
        raise DataError(
            f"{bench}: arms {a['label']!r} and {b['label']!r} were not evaluated on the same problems "
            f"(e.g. {missing}); rerun their evaluations with the same eval.* settings"
        )
    ids = sorted(set(sa) & set(sb))
    return [sa[i] for i in ids], [sb[i] for i in ids]


def paired_statistics(rows: dict[str, dict], resamples: int, seed: int, confidence: float = 0.95) -> list[dict]:
    """Each pair of PAIRS present in `rows`, per benchmark: distill.metrics.paired_difference of their per-problem
    pass@1 (difference, interval, p-value, minimum detectable difference), with the pair's arms and benchmark."""
    rows = arms_only(rows)
    out = []
    for bench in benchmarks(rows):
        for a, b in PAIRS:
            if a in rows and b in rows:
                stats = paired_difference(*paired_scores(rows[a], rows[b], bench), resamples, seed, confidence)
                out.append({"benchmark": bench, "a": a, "b": b, **stats})
    return out


def resolved(stats: dict) -> bool:
    """A paired difference is resolved when its interval excludes 0."""
    low, high = stats["ci"]
    return low > 0 or high < 0


def on_problems(row: dict, like: dict) -> dict:
    """`row` scored on the problems `like` was evaluated on where those are fewer (a sweep checkpoint evaluated on
    compare.context_problems, the final model on all): pass@1 and its standard error recomputed from the per-problem
    scores, so that a curve along a run stays on one set of problems."""
    benches, kept = dict(row["results"]["benchmarks"]), {}
    for bench, scores in row["problem_scores"].items():
        ids = [i for i in like["problem_scores"].get(bench, {}) if i in scores]
        kept[bench] = {i: scores[i] for i in ids} if ids and len(ids) < len(scores) else scores
        if kept[bench] is not scores:
            values = list(kept[bench].values())
            stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
            mean = statistics.fmean(values)
            benches[bench] = {**benches[bench], "pass@1": mean, "pass@1_stderr": stderr, "problems": len(values)}
    return {**row, "results": {**row["results"], "benchmarks": benches}, "problem_scores": kept}


def sweep_levels(rows: dict[str, dict]) -> dict[float, dict[str, dict]]:
    """Fraction of each run -> arm -> its row there (1.0: the final models, on the sweep's problems), for the arms
    the sweep sampled."""
    levels: dict[float, dict[str, dict]] = {}
    for row in rows.values():
        if "sweep_of" in row:
            levels.setdefault(row["fraction"], {})[row["sweep_of"]] = row
    swept = {row["sweep_of"]: row for row in rows.values() if "sweep_of" in row}
    for arm, point in swept.items():
        levels.setdefault(1.0, {})[arm] = on_problems(rows[arm], point)
    return dict(sorted(levels.items()))


def sweep_leaders(rows: dict[str, dict], resamples: int, seed: int, confidence: float) -> list[dict]:
    """At each fraction of the runs and on each benchmark: the arm ahead, and its paired difference with the next."""
    out = []
    for fraction, at in sweep_levels(rows).items():
        for bench in benchmarks(rows):
            ranked = sorted(at, key=lambda arm: -score(at[arm], bench)[0])
            entry = {"fraction": fraction, "benchmark": bench, "ranking": ranked}
            if len(ranked) > 1:
                first, second = at[ranked[0]], at[ranked[1]]
                entry["paired"] = paired_difference(*paired_scores(first, second, bench), resamples, seed, confidence)
            out.append(entry)
    return out


def one_model(rows: list[dict]) -> bool:
    """Whether every seed's row of an arm is the same model (the student as is, a shared teacher): evaluated once,
    it is one replicate, not one per seed."""
    models = {row.get("model") for row in rows}
    return len(models) == 1 and None not in models


def _replicates(finals: dict[int, dict[str, dict]], seeds: list[int], arm: str, bench: str) -> list[dict]:
    """An arm's per-problem pass@1 per seed; one entry when every seed's row is one model (one_model)."""
    if one_model([finals[s][arm] for s in seeds]):
        seeds = seeds[:1]
    return [finals[s][arm]["problem_scores"][bench] for s in seeds]


def replicate_statistics(by_seed: dict[int, dict[str, dict]], confidence: float) -> list[dict]:
    """Each pair of PAIRS present in every seed's rows, per benchmark: distill.metrics.replicated_difference over the
    seeds' per-problem pass@1 on the problems every one of those rows was evaluated on (the interval over training
    runs and problems, the sign per seed, the share of variance between runs). A row that is the same model in every
    seed (its `model`) counts once."""
    from distill.metrics import replicated_difference

    seeds = list(by_seed)  # compare.seeds' order: the report's per-seed values follow it
    finals = {seed: arms_only(rows) for seed, rows in by_seed.items()}
    present = set.intersection(*(set(rows) for rows in finals.values()))
    out = []
    for bench in benchmarks(finals[seeds[0]]):
        for a, b in PAIRS:
            if a not in present or b not in present:
                continue
            sa, sb = _replicates(finals, seeds, a, bench), _replicates(finals, seeds, b, bench)
            ids = sorted(set.intersection(*(set(scores) for scores in sa + sb)))
            if len(ids) < 2:
                raise DataError(f"{bench}: arms {a!r} and {b!r} share fewer than 2 problems across the seeds")
            first = [[scores[i] for i in ids] for scores in sa]
            second = [[scores[i] for i in ids] for scores in sb]
            stats = replicated_difference(first, second, confidence)
            out.append({"benchmark": bench, "a": a, "b": b, "seed_values": seeds, **stats})
    return out

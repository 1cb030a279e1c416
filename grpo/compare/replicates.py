"""Training seeds as replicates (compare.seeds): every trained arm once per seed, one evaluation of them all, then one
report over seeds and problems.

Seed s trains its arms under <root>/seed-<s>/ with `seed=s`: its prompt draw, the data order and the adapter's
initialisation, the GRPO and KD rollouts -- what cannot be shared, since it is what a second training run changes.
Shared, because it is not part of a training run's luck or costs the same for every seed:
- the teacher and its verified dataset (compare.share_teacher, with teacher_from=rl): made once, in the first seed's
  folder with the first seed, and every seed's taught arms learn from them; false: each seed makes its own;
- the evaluation: once every seed has trained, one distill.eval stage (one vLLM engine that reloads weights) scores
  every seed's models, the student as is once and a shared teacher once, on the same held-out problems (eval's
  synthetic_seed and benchmark files do not follow `seed`), with the recipe's eval.sampling.seed, into <root>/eval/
  (<root>/stages.json its ledger). Each seed's report (seed-<s>/report/) is written from those results;
- the budget sweep (compare.sweep) is one run's picture: only the first seed checkpoints and evaluates it.
<root>/report/ holds the report over seeds and problems (grpo.compare.analysis.replicate_statistics,
distill.metrics.replicated_difference).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from distill.compare_table import ARMS, TEACHER_STAGE, stages_of, taught
from distill.compare_table import shares_teacher as teacher_shared
from distill.config import Config
from distill.errors import UserError
from distill.metrics import seeds_to_detect
from grpo.compare.analysis import one_model, replicate_statistics, resolved


def seed_config(cfg: Config, seed: int, sweep: bool = True) -> Config:
    """The comparison's settings for one seed: `seed` and the teacher's sampling seed set to it, its own run folder;
    `sweep`: whether it keeps compare.sweep (the first seed only)."""
    one = copy.deepcopy(cfg)
    one.seed = seed
    one.generate.sampling.seed = seed
    one.compare.seeds = []
    one.compare.sweep = list(cfg.compare.sweep) if sweep else []
    one.compare.run_name = f"{cfg.compare.run_name or cfg.recipe}/seed-{seed}"
    return one


def shares_teacher(cfg: Config) -> bool:
    return teacher_shared(cfg.compare)


def eval_name(seed: int, shared_teacher: bool, row: str) -> str:
    """A row's folder in the shared evaluation: the student as is and a shared teacher once for every seed, every
    other model per seed (seed-7.distill, seed-7.rl@0.33)."""
    if row == "base" or (row == "teacher" and shared_teacher):
        return row
    return f"seed-{seed}.{row}"


# The stages that learn from the teacher (every taught arm's, less the teacher's own and its dataset's): from the
# stage table, so a new taught arm (okd's sft_okd) is covered.
TAUGHT_STAGES = frozenset(
    stage for arm in ARMS if taught(arm) for stage in stages_of(arm, "rl") if stage not in (TEACHER_STAGE, "generate")
)


def _check_teacher(run, shared: bool) -> None:
    """A resumed seed folder must have been made with the same compare.share_teacher: its taught arms learnt from
    the teacher it then had."""
    taught = any(stage in run.ledger for stage in TAUGHT_STAGES)
    if (shared and "grpo_teacher" in run.ledger) or (not shared and taught and "grpo_teacher" not in run.ledger):
        raise UserError(
            f"{run.root} was made with compare.share_teacher={str(not shared).lower()}: its arms learnt from "
            "another teacher; set it back, or give the run a new compare.run_name"
        )


def replicate(cfg: Config, comparison) -> Path:
    """Trains every compare.seeds' arms, evaluates them all in one stage, writes each seed's report and the one
    over seeds; returns its folder. `comparison`: grpo.compare.run.Comparison (passed in: run imports this)."""
    from grpo.compare.report import write_report

    shared = shares_teacher(cfg)
    pool = comparison(_pool_config(cfg))
    runs, first = {}, None
    for i, seed in enumerate(cfg.compare.seeds):
        print(f"grpo.compare: seed {seed} ({i + 1} of {len(cfg.compare.seeds)})", file=sys.stderr, flush=True)
        run = comparison(seed_config(cfg, seed, sweep=i == 0), shared=first if shared else None)
        if i and cfg.compare.teacher_from == "rl":
            _check_teacher(run, shared)
        run.eval_root = pool.root / "eval"
        run.eval_name = lambda row, seed=seed: eval_name(seed, shared, row)
        first = first or run
        for arm in run.arms():
            run.train_arm(arm)
        runs[seed] = run
    entries: dict[str, tuple[str, bool]] = {}
    for run in runs.values():
        for row, model in run.evaluations(run.arms()):
            entries.setdefault(run.eval_name(row), (model, run.context(row)))
    pool.evaluate_models([(name, model, context) for name, (model, context) in entries.items()])
    by_seed = {}
    for seed, run in runs.items():
        by_seed[seed] = run.rows(run.arms())
        write_report(run.cfg, by_seed[seed], run.root / "report")
    return write_replicate_report(cfg, by_seed, pool.root / "report")


def _pool_config(cfg: Config) -> Config:
    """The shared evaluation's settings: the recipe's, in the replicates' root folder."""
    pool = copy.deepcopy(cfg)
    pool.compare.seeds = []
    return pool


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def _per_seed(s: dict) -> str:
    """Each seed's difference, named by its seed; one model against one (a shared teacher against the student as
    is) has a single value, no seed's own."""
    values = s["per_seed"]
    if len(values) == 1:
        return _points(values[0])
    return ", ".join(f"{seed}: {_points(x)}" for seed, x in zip(s["seed_values"], values, strict=True))


def replicate_table(stats: list[dict], target: float) -> list[str]:
    lines = [
        "| benchmark | pair | difference | interval | sign in every seed | per seed | between runs | verdict | "
        f"seeds for {100 * target:.0f} points |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in stats:
        low, high = s["ci"]
        verdict = ("beats" if s["difference"] > 0 else "trails") if resolved(s) else "not resolved"
        needed = seeds_to_detect(s["variance"], target, s["problems"], s["confidence"], s["power"])
        lines.append(
            f"| {s['benchmark']} | {s['a']} − {s['b']} | {_points(s['difference'])} | {_points(low)} to "
            f"{_points(high)} | {'yes' if s['sign_every_seed'] else 'no'} | "
            f"{_per_seed(s)} | {100 * s['between_runs_share']:.0f}% | {verdict} | "
            f"{needed if needed is not None else 'more problems first'} |"
        )
    return lines


def pass_table(scores: dict[int, dict[str, dict[str, float]]], once: set[str]) -> list[str]:
    """Every arm's pass@1 (`scores[seed][arm][benchmark]`) in every seed, in compare.seeds' order; 'models' is 1
    for the arms in `once`, one model standing for every seed (grpo.compare.analysis.one_model)."""
    seeds = list(scores)
    first = scores[seeds[0]]
    arms = [arm for arm in first if all(arm in arms_of for arms_of in scores.values())]
    lines = [
        f"| benchmark | arm | models | {' | '.join(f'seed {seed}' for seed in seeds)} |",
        f"|---|---|---:|{'---:|' * len(seeds)}",
    ]
    for bench in next(iter(first.values()), {}):
        for arm in arms:
            cells = " | ".join(f"{100 * scores[seed][arm][bench]:.1f}" for seed in seeds)
            lines.append(f"| {bench} | {arm} | {1 if arm in once else len(seeds)} | {cells} |")
    return lines


def teacher_sentence(stats: list[dict], shared: bool = False) -> str:
    """What the teacher row says: whether the taught arms learnt from a model measurably stronger than the student."""
    margins = [s for s in stats if (s["a"], s["b"]) == ("teacher", "base")]
    if not margins:
        return "The teacher was given, not made by the comparison: its margin over the student is not measured here."
    # One shared teacher is one model: its margin varies with the problems only, not with the seeds.
    over = "over problems (one teacher: no training-run spread to add)" if shared else "over seeds and problems"
    held = [s for s in margins if resolved(s) and s["difference"] > 0]
    if len(held) == len(margins):
        return f"The teacher beats the student as is, resolved {over}: the taught arms learn from a stronger model."
    return (
        f"The teacher's margin over the student as is is not resolved {over}: what the taught arms do here is "
        "closer to self-distillation than to distilling a stronger teacher."
    )


def shared_sentence(cfg: Config, seeds: list[int]) -> str:
    """What the replicates shared and what each seed made again."""
    c = cfg.compare
    if c.teacher_from != "rl":
        teacher = "the teacher was given (the same model for every seed), its data drawn per seed"
    elif shares_teacher(cfg):
        teacher = (
            f"one teacher and its verified dataset, made once with seed {seeds[0]} (in `seed-{seeds[0]}/`), taught "
            "every seed's arms (compare.share_teacher)"
        )
    else:
        teacher = "each seed made its own teacher and verified dataset (compare.share_teacher=false)"
    sweep = (
        f"the budget sweep's checkpoints were evaluated for seed {seeds[0]} only (its report has the curves)"
        if c.sweep
        else "no budget sweep (compare.sweep=[])"
    )
    return (
        f"Seeds {', '.join(map(str, seeds))}; every trained arm trained once per seed (its prompt draw, data order, "
        f"adapter initialisation and rollouts follow the seed); {teacher}. One distill.eval run scored every seed's "
        f"models, the student as is once{' and the shared teacher once' if shares_teacher(cfg) else ''}, on the "
        "same held-out problems; "
        f"{sweep}. Each seed's own report: `seed-<s>/report/table.md`."
    )


def write_replicate_report(cfg: Config, by_seed: dict[int, dict[str, dict]], folder: Path) -> Path:
    c = cfg.compare
    stats = replicate_statistics(by_seed, c.confidence)
    folder.mkdir(parents=True, exist_ok=True)
    scores = {
        seed: {arm: {b: row["results"]["benchmarks"][b]["pass@1"] for b in row["results"]["benchmarks"]}
               for arm, row in rows.items() if "sweep_of" not in row}
        for seed, rows in by_seed.items()
    }  # fmt: skip
    (folder / "replicates.json").write_text(
        json.dumps(
            {"seeds": list(by_seed), "share_teacher": shares_teacher(cfg), "pass@1": scores, "pairs": stats}, indent=2
        )
        + "\n"
    )
    shared = set.intersection(*(set(arms) for arms in scores.values()))
    once = {arm for arm in shared if one_model([by_seed[seed][arm] for seed in by_seed])}
    target = (c.min_detectable or 5.0) / 100  # compare.min_detectable is in points
    text = [
        f"# RL against distillation over {len(by_seed)} training seeds: recipe `{cfg.recipe}`",
        "",
        shared_sentence(cfg, list(by_seed)),
        "",
        f"Difference A − B in points of pass@1, with its {100 * c.confidence:.0f}% interval over training runs and "
        "problems (Student's t on the variance of both, distill.metrics.replicated_difference); 'between runs' is "
        "the share of that variance that another training seed brings; the last column, how many seeds per arm "
        f"would resolve a true {100 * target:.0f}-point gap 80% of the time on these problems.",
        "",
        *replicate_table(stats, target),
        "",
        teacher_sentence(stats, shares_teacher(cfg)),
        "",
        "pass@1 in points, per seed:",
        "",
        *pass_table(scores, once),
        "",
    ]
    (folder / "table.md").write_text("\n".join(text))
    return folder

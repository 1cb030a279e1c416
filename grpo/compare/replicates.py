"""Training seeds as replicates (compare.seeds): the whole comparison once per seed, then one report over them.

Seed s runs every stage again under <root>/seed-<s>/ with `seed=s`: its prompt draw, the teacher's sampling and its
verified dataset, the data order and the adapter's initialisation, the GRPO and KD rollouts, and the evaluation's
sampling. The teacher's data is drawn per seed (what one seed's teacher happened to write is part of that seed's
luck); the held-out problems are the same for every seed (eval's synthetic_seed and benchmark files do not follow
`seed`). Each seed keeps its own report; <root>/report/ holds the one over seeds and problems
(grpo.compare.analysis.replicate_statistics, distill.metrics.replicated_difference).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from distill.config import Config
from distill.metrics import seeds_to_detect
from grpo.compare.analysis import replicate_statistics, resolved
from grpo.compare.stages import Layout


def seed_config(cfg: Config, seed: int) -> Config:
    """The comparison's settings for one seed: `seed` and every sampling seed set to it, its own run folder."""
    one = copy.deepcopy(cfg)
    one.seed = seed
    one.generate.sampling.seed = seed
    one.eval.sampling.seed = seed
    one.compare.seeds = []
    one.compare.run_name = f"{cfg.compare.run_name or cfg.recipe}/seed-{seed}"
    return one


def replicate(cfg: Config, run_one) -> Path:
    """Runs `run_one(seed_cfg) -> (rows, report folder)` (grpo.compare.run's single comparison) for every
    compare.seeds, then writes the report over seeds; returns its folder."""
    by_seed = {}
    for i, seed in enumerate(cfg.compare.seeds, 1):
        print(f"grpo.compare: seed {seed} ({i} of {len(cfg.compare.seeds)})", file=sys.stderr, flush=True)
        by_seed[seed] = run_one(seed_config(cfg, seed))[0]
    return write_replicate_report(cfg, by_seed, Layout(cfg).root / "report")


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


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
            f"{', '.join(_points(x) for x in s['per_seed'])} | {100 * s['between_runs_share']:.0f}% | {verdict} | "
            f"{needed if needed is not None else 'more problems first'} |"
        )
    return lines


def teacher_sentence(stats: list[dict]) -> str:
    margins = [s for s in stats if (s["a"], s["b"]) == ("teacher", "base")]
    if not margins:
        return "The teacher was given, not made by the comparison: its margin over the student is not measured here."
    held = [s for s in margins if resolved(s) and s["difference"] > 0]
    if len(held) == len(margins):
        return "The teacher beats the student as is, resolved over seeds and problems: the taught arms learn from a stronger model."
    return (
        "The teacher's margin over the student as is is not resolved over seeds and problems: what the taught arms "
        "do here is closer to self-distillation than to distilling a stronger teacher."
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
        json.dumps({"seeds": list(by_seed), "pass@1": scores, "pairs": stats}, indent=2) + "\n"
    )
    target = (c.min_detectable or 5.0) / 100  # compare.min_detectable is in points
    text = [
        f"# RL against distillation over {len(by_seed)} training seeds: recipe `{cfg.recipe}`",
        "",
        f"Seeds {', '.join(map(str, by_seed))}; every trained arm (and the teacher, with compare.teacher_from=rl) "
        "trained once per seed, the teacher's data drawn per seed, every model evaluated on the same held-out "
        "problems. Each seed's own report: `seed-<s>/report/table.md`.",
        "",
        f"Difference A − B in points of pass@1, with its {100 * c.confidence:.0f}% interval over training runs and "
        "problems (Student's t on the variance of both, distill.metrics.replicated_difference); 'between runs' is "
        "the share of that variance that another training seed brings; the last column, how many seeds per arm "
        f"would resolve a true {100 * target:.0f}-point gap 80% of the time on these problems.",
        "",
        *replicate_table(stats, target),
        "",
        teacher_sentence(stats),
        "",
    ]
    (folder / "table.md").write_text("\n".join(text))
    return folder

"""An evaluation sized by the question (compare.min_detectable): as many held-out problems as a paired comparison
needs to resolve a true gap of that many points of pass@1 80% of the time, one sample each.

For a fixed number of generated tokens, more problems beat more samples per problem: the between-problem part of the
variance shrinks only with problems, the within-problem part with problems x samples (Miller 2024, section 4). So the
sized evaluation samples once per problem and spends its tokens on problems. How far two arms' per-problem scores
differ is not known before they run: compare.planning_sd stands in for it (a finished comparison's report gives the
measured one, and the minimum detectable difference it implies).
"""

from __future__ import annotations

from distill.config import Config
from distill.errors import ConfigError
from distill.metrics import problems_to_detect

POWER = 0.8  # the power the report's minimum detectable difference is stated at (distill.metrics.paired_difference)


def problems_needed(cfg: Config) -> int:
    c = cfg.compare
    return problems_to_detect(c.min_detectable / 100, c.planning_sd, c.confidence, POWER)


def held_out_per_level(cfg: Config, needed: int) -> int:
    """The smallest eval.prompts.synthetic_per_level (doubling) whose held-out synthetic problems number `needed`;
    raises ConfigError when the levels' problems run out first (small levels repeat: level 1 has 81)."""
    import dataclasses

    from distill.eval_sets import held_out_synthetic

    per_level, found = max(cfg.eval.prompts.synthetic_per_level, 1), 0
    while per_level <= 1 << 16:
        prompts = dataclasses.replace(cfg.eval.prompts, synthetic_per_level=per_level)
        found = len(held_out_synthetic(dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, prompts=prompts))))
        if found >= needed:
            return per_level
        per_level *= 2
    raise ConfigError(
        f"key 'compare.min_detectable': {cfg.compare.min_detectable:g} points needs {needed} held-out problems, and "
        f"eval.prompts.synthetic_levels={cfg.eval.prompts.synthetic_levels} hold {found} that no training stage "
        "draws; add levels, or ask for a larger difference"
    )


def sized_eval(cfg: Config) -> list[str]:
    """eval.* overrides for every evaluation of the comparison: one sample per problem, `problems_needed` problems
    per benchmark. Raises ConfigError when a benchmark has fewer problems than that."""
    from distill.eval_sets import load_benchmark

    needed = problems_needed(cfg)
    overrides = ["eval.sampling.n=1", f"eval.prompts.limit={needed}"]
    if "synthetic" in cfg.eval.prompts.sets:
        overrides.append(f"eval.prompts.synthetic_per_level={held_out_per_level(cfg, needed)}")
    for name in cfg.eval.prompts.sets:
        count = needed if name == "synthetic" else len(load_benchmark(cfg, name).prompts)
        if count < needed:
            raise ConfigError(
                f"key 'compare.min_detectable': {cfg.compare.min_detectable:g} points needs {needed} problems and "
                f"benchmark {name} has {count}; ask for a larger difference"
            )
    return overrides

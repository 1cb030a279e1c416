"""grpo.compare with compare.seeds: one comparison per training seed, one report over seeds and problems."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.errors import ConfigError
from distill.recipes import load_config
from grpo.compare.replicates import replicate, seed_config, write_replicate_report


def _row(scores: np.ndarray) -> dict:
    return {
        "label": "arm",
        "results": {"benchmarks": {"math500": {"pass@1": float(scores.mean())}}},
        "problem_scores": {"math500": {f"p{i}": float(x) for i, x in enumerate(scores)}},
    }


def _by_seed(run_spread: float, seeds=(1, 2, 3), problems: int = 120) -> dict[int, dict[str, dict]]:
    """Three seeds' rows: distill 10 points above rl on every seed's average; the teacher level with the base;
    each trained arm's runs moved by N(0, run_spread)."""
    rng = np.random.default_rng(0)
    level = rng.uniform(0.1, 0.5, problems)
    out = {}
    for seed in seeds:

        def arm(shift, trained=True):
            moved = shift + (rng.normal(0, run_spread) if trained else 0.0)
            return _row(np.clip(level + moved + rng.normal(0, 0.05, problems), 0, 1))

        out[seed] = {"base": arm(0.0, False), "distill": arm(0.12), "rl": arm(0.02), "teacher": arm(0.0)}
    return out


def _table(cfg, by_seed, tmp_path) -> tuple[str, dict]:
    folder = write_replicate_report(cfg, by_seed, tmp_path / "report")
    return (folder / "table.md").read_text(), json.loads((folder / "replicates.json").read_text())


def _line(table: str, pair: str) -> list[str]:
    return next(line for line in table.splitlines() if f"| {pair} |" in line).split(" | ")


def test_a_gap_that_holds_in_every_seed_is_resolved_and_a_noisy_one_is_not(tmp_path):
    cfg = load_config(["compare.seeds=[1,2,3]"])
    steady, data = _table(cfg, _by_seed(0.0), tmp_path / "a")
    cells = _line(steady, "distill − rl")
    assert cells[4] == "yes" and cells[7] == "beats"
    assert data["seeds"] == [1, 2, 3] and len(data["pass@1"]) == 3
    noisy, _ = _table(cfg, _by_seed(0.15), tmp_path / "b")
    cells = _line(noisy, "distill − rl")
    assert cells[7] == "not resolved" and int(cells[6].rstrip("%")) > 50  # most of the variance is between runs
    assert "closer to self-distillation" in noisy  # the teacher is level with the student as is
    assert "| math500 | distill − base |" in steady  # every arm against the student as is


def test_each_seed_runs_the_whole_comparison_in_its_own_folder(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", "compare.seeds=[7,42,3]", "generate.sampling.seed=5"])
    one = seed_config(cfg, 7)
    assert (one.seed, one.generate.sampling.seed, one.eval.sampling.seed) == (7, 7, 7)
    assert one.compare.seeds == [] and one.compare.run_name == "smollm2/seed-7"
    assert cfg.seed == 42 and cfg.compare.seeds == [7, 42, 3]  # the caller's settings untouched
    by_seed = _by_seed(0.0, seeds=(7, 42, 3))
    seen = []

    def run_one(seed_cfg):
        seen.append((seed_cfg.seed, seed_cfg.compare.run_name))
        return by_seed[seed_cfg.seed], None

    report = replicate(cfg, run_one)
    assert [s for s, _ in seen] == [7, 42, 3] and report == tmp_path / "compare" / "smollm2" / "report"
    assert (report / "table.md").is_file()


@pytest.mark.parametrize("seeds", ["[3]", "[1,1]"])
def test_seeds_must_be_two_or_more_distinct(seeds):
    with pytest.raises(ConfigError, match="compare.seeds"):
        load_config([f"compare.seeds={seeds}"])

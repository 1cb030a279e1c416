"""What each arm spent (tokens, FLOPs, wall time: distill.compute's estimates over its stages' records) and how large
the comparison's evaluation must be (compare.min_detectable).

Compute: each stage's metrics.jsonl (and the teacher's journal) with its wall time from the ledger (stages.json).

Sizing: as many held-out problems as a paired comparison needs to resolve a true gap of compare.min_detectable points
of pass@1 80% of the time, one sample each. For a fixed number of generated tokens, more problems beat more samples
per problem: the between-problem part of the variance shrinks only with problems, the within-problem part with
problems x samples (Miller 2024, section 4). How far two arms' per-problem scores differ is not known before they run:
compare.planning_sd stands in for it (a finished comparison's report gives the measured one, and the minimum
detectable difference it implies).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError
from distill.metrics import problems_to_detect
from distill.prompt_sets import DataError
from grpo.compare.stages import Layout

POWER = 0.8  # the power the report's minimum detectable difference is stated at (distill.metrics.paired_difference)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path} is missing: its stage did not finish")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- compute ----------------------------------------------------------------------------------------------------
class Accounts:
    """An arm's compute from its stages' records: all of it, or (a budget sweep's point) up to a step."""

    def __init__(self, cfg: Config, layout: Layout, ledger: dict[str, dict]) -> None:
        self.cfg, self.layout, self.ledger = cfg, layout, ledger

    def params(self, name: str) -> int:
        """A model's parameters; an adapter's are its base's (merged: LoRA adds no inference FLOPs once merged)."""
        from distill.compute import parameter_count
        from distill.models import resolve_for_inference

        return parameter_count(resolve_for_inference(name, trust_remote_code=self.cfg.model.trust_remote_code))

    def trained(self, folder: Path, stage: str, upto: int | None) -> tuple[list[dict], float]:
        """A training stage's metrics.jsonl lines and wall time (seconds), or -- at a sweep point -- those of its steps
        up to `upto`, with the wall time pro rata by steps."""
        metrics, wall = read_jsonl(folder / "metrics.jsonl"), self.ledger[stage]["wall_s"]
        if upto is None:
            return metrics, wall
        last = max((m["step"] for m in metrics), default=1)
        return [m for m in metrics if m["step"] <= upto], wall * upto / max(last, 1)

    def distill_compute(self, upto: int | None = None, stage: str = "sft"):
        """The teacher's generation and an SFT stage on its dataset (arm b's sft; arm f's sft_okd). The okd arm counts
        as SFT: the teacher's top-k log-probs come out of the very forward pass that sampled each token (no extra
        one), and its KD term -- a KL over k + 1 outcomes per token, from the log-softmax the cross-entropy computes
        anyway and one more pass over the vocabulary for the tail -- adds about V operations per token (V the
        vocabulary) against the 6·N of the forward and backward pass: not counted."""
        from distill.compute import generation_compute, sft_compute

        teacher = self.params(self.layout.teacher)
        student = self.params(self.cfg.model.name)
        journal = self.layout.dataset / ".work" / "journal.jsonl"
        gen = generation_compute(journal, teacher, self.ledger["generate"]["wall_s"])
        metrics, wall = self.trained(self.layout.folder(stage), stage, upto)
        return gen + sft_compute(metrics, student, wall)

    def distill_flops(self) -> float:
        """FLOPs distillation spent (teacher generation + SFT): the budget of the budgeted stages."""
        return self.distill_compute().flops

    def grpo_compute(self, arm: str, upto: int | None = None):
        from distill.compute import grpo_compute

        g = self.cfg.grpo
        per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", 1))
        metrics, wall = self.trained(self.layout.grpo_dir(arm), f"grpo_{arm}", upto)
        return grpo_compute(metrics, self.params(self.cfg.model.name), per_step, wall)

    def kd_compute(self, upto: int | None = None):
        from distill.compute import kd_compute

        k = self.cfg.kd
        per_step = k.per_device_train_batch_size * k.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", 1))
        metrics, wall = self.trained(self.layout.kd_dir, "kd", upto)
        student, teacher = self.params(self.cfg.model.name), self.params(self.layout.teacher)
        return kd_compute(metrics, student, teacher, per_step, wall)

    def compute(self, arm: str, upto: int | None = None):
        """An arm's compute, all of it or (a sweep point) up to step `upto` of its last training stage."""
        from distill.compute import Compute

        return {
            "base": Compute,
            "distill": lambda: self.distill_compute(upto),
            "rl": lambda: self.grpo_compute("rl", upto),
            "distill_rl": lambda: self.distill_compute() + self.grpo_compute("distill_rl", upto),
            "kd": lambda: self.kd_compute(upto),
            "okd": lambda: self.distill_compute(upto, "sft_okd"),  # the same generation as (b), its own SFT
            "teacher": lambda: self.grpo_compute("teacher"),
        }[arm]()


# --- sizing -----------------------------------------------------------------------------------------------------
def problems_needed(cfg: Config) -> int:
    c = cfg.compare
    return problems_to_detect(c.min_detectable / 100, c.planning_sd, c.confidence, POWER)


def held_out_per_level(cfg: Config, needed: int) -> int:
    """The smallest eval.prompts.synthetic_per_level (doubling) whose held-out synthetic problems number `needed`;
    raises ConfigError when the levels' problems run out first (small levels repeat: level 1 has 81)."""
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


def sized_eval(cfg: Config) -> Config:
    """`cfg` with every evaluation of the comparison sized by compare.min_detectable: one sample per problem,
    `problems_needed` problems per benchmark. Raises ConfigError when a benchmark has fewer problems than that."""
    from distill.eval_sets import load_benchmark

    needed = problems_needed(cfg)
    prompts = dataclasses.replace(cfg.eval.prompts, limit=needed)
    if "synthetic" in cfg.eval.prompts.sets:
        prompts = dataclasses.replace(prompts, synthetic_per_level=held_out_per_level(cfg, needed))
    for name in cfg.eval.prompts.sets:
        count = needed if name == "synthetic" else len(load_benchmark(cfg, name).prompts)
        if count < needed:
            raise ConfigError(
                f"key 'compare.min_detectable': {cfg.compare.min_detectable:g} points needs {needed} problems and "
                f"benchmark {name} has {count}; ask for a larger difference"
            )
    sampling = dataclasses.replace(cfg.eval.sampling, n=1)
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, prompts=prompts, sampling=sampling))

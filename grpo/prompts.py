"""GRPO's prompts: grpo.prompts' rows, kept by the pass rates grpo.pass_rates records, in grpo.template (the
shared machinery is distill.training.prompts, which on-policy distillation uses too)."""

from __future__ import annotations

from pathlib import Path

from distill.config import Config
from distill.training.prompts import (  # noqa: F401 (GRPO's view of the shared names)
    TEMPLATES,
    filter_by_pass_rate,
    prompt_rows,
    recorded_pass_rates,
    render_prompt,
    training_rows,
)


def template_name(cfg: Config) -> str:
    if cfg.grpo.template == "auto":
        return "r1_zero" if cfg.grpo.target == "teacher" else "r1"
    return cfg.grpo.template


def collect_prompts(cfg: Config) -> list[dict]:
    """Every configured prompt row, then the pass-rate filter; raises DataError or ConfigError."""
    g = cfg.grpo
    rows = prompt_rows(g.prompts, cfg.seed, "grpo")
    if g.pass_rates:
        rates = recorded_pass_rates(Path(g.pass_rates))
        rows = [{**r, "pass_rate": rates[r["id"]]} if r["id"] in rates else r for r in rows]
    return filter_by_pass_rate(rows, g.min_pass_rate, g.max_pass_rate)

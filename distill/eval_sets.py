"""The benchmark sets distill.eval scores: built-in files, local files, hub datasets and held-out synthetic problems,
each with its default k (open-r1's choices) and what identifies its data in the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError
from distill.models import file_sha256
from distill.prompt_sets import BUILTIN_PROMPTS, data_folder, load_prompts
from distill.tasks import synthetic_rows

# Samples per problem when eval.sampling.n is not set: open-r1's choices (AIME 64, MATH-500 4, GPQA 8, code 16), 4 for
# the rest. Looked up by the benchmark's name, else the longest key it starts with (aime_2024 -> aime).
DEFAULT_SAMPLES = {
    "aime": 64,
    "aime24": 64,
    "aime25": 64,
    "math": 4,
    "math500": 4,
    "math_train": 4,
    "gpqa": 8,
    "humaneval": 16,
    "mbpp": 16,
    "gsm8k": 4,
    "amc23": 4,
    "synthetic": 4,
}


@dataclass
class Benchmark:
    name: str
    prompts: list[dict]
    samples: int  # k per problem
    dataset: dict  # what identifies the data (file hash, or hub id and split)


def samples_for(name: str, task: str) -> int:
    """Default k for a benchmark (DEFAULT_SAMPLES), by its name, file stem or hub dataset name."""
    key = (Path(name).stem if Path(name).suffix else name.rsplit("/", 1)[-1]).lower()
    if key in DEFAULT_SAMPLES:
        return DEFAULT_SAMPLES[key]
    prefixes = [p for p in DEFAULT_SAMPLES if key.startswith(p)]
    if prefixes:
        return DEFAULT_SAMPLES[max(prefixes, key=len)]
    return 16 if task == "code" else 4


def dataset_identity(cfg: Config, name: str) -> dict:
    """The data behind a benchmark name: file and sha256 (built-in or local), hub id and split, or the generator."""
    ev, src = cfg.eval, cfg.eval.prompts
    if name == "synthetic":
        levels = src.synthetic_levels
        return {
            "generator": "distill.tasks",
            "per_level": src.synthetic_per_level,
            "levels": levels,
            "seed": ev.synthetic_seed,
            "held_out_from_seed": cfg.seed,
        }
    if name in BUILTIN_PROMPTS:
        entry = BUILTIN_PROMPTS[name]
        path = data_folder() / entry.file
        if path.is_file():
            return {"file": str(path), "sha256": file_sha256(path)}
        return {"hub": entry.hub, "subset": entry.hub_config, "split": entry.hub_split}
    path = Path(name).expanduser()
    if path.is_file():
        return {"file": str(path.resolve()), "sha256": file_sha256(path), "fields": src.fields}
    return {"hub": name, "subset": src.subset, "split": src.split, "fields": src.fields}


def held_out_synthetic(cfg: Config) -> list[dict]:
    """Synthetic problems from eval.synthetic_seed, without any problem text the recipe trains on (generate and grpo
    draw theirs from `seed`, and distill.kd) and each text once: small levels repeat problems across seeds and within
    one draw, and a repeated problem would count twice in the paired statistics, which assume independent ones."""
    ev, src = cfg.eval, cfg.eval.prompts
    if ev.synthetic_seed == cfg.seed:
        raise ConfigError(
            f"key 'eval.synthetic_seed' must differ from seed ({cfg.seed}): those are the training problems"
        )
    # What the training stages draw, at the largest of their sizes (not the eval's own: a large held-out draw would
    # then remove every problem of a small level, though training never sees most of them).
    per_level = (
        cfg.generate.prompts.synthetic_per_level,
        cfg.grpo.prompts.synthetic_per_level,
        cfg.kd.prompts.synthetic_per_level,
    )
    seen = {r["problem"] for r in synthetic_rows(max(per_level), src.synthetic_levels, seed=cfg.seed)}
    rows = []
    for row in synthetic_rows(src.synthetic_per_level, src.synthetic_levels, seed=ev.synthetic_seed):
        if row["problem"] not in seen:
            seen.add(row["problem"])
            rows.append(row)
    return rows


def load_benchmark(cfg: Config, name: str) -> Benchmark:
    src = cfg.eval.prompts
    if name == "synthetic":
        try:
            rows = held_out_synthetic(cfg)
        except ValueError as e:
            raise ConfigError(f"key 'eval.prompts.synthetic_levels': {e}") from None
        # Level by level would make a small limit all level 1: interleave the levels (stable sort by index).
        rows = sorted(rows, key=lambda row: int(row["id"].rsplit("-", 1)[1]))[: src.limit]
    else:
        rows = load_prompts(name, split=src.split, subset=src.subset, fields=src.fields, limit=src.limit)
    task = "code" if all(row["task"] == "code" for row in rows) else "math"
    k = cfg.eval.sampling.n or samples_for(name, task)
    return Benchmark(name, rows, k, dataset_identity(cfg, name))

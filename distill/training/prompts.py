"""Prompts for trainers that sample their own completions (GRPO, on-policy distillation): prompt rows as
distill.generate's, chosen by pass rate, templated, as a TRL dataset.

TRL's GRPOTrainer and DistillationTrainer read `prompt` (a list of chat messages, or plain text for the r1_zero
template); GRPO passes every other column to the reward functions: `task` picks the verifier and the reference fields
(answer, tests, io, fallback_last_number) feed it. `key` names the config section in messages (grpo, kd).
"""

from __future__ import annotations

from pathlib import Path

from distill.config import PromptSource
from distill.engines.base import R1_CODE_INSTRUCTION, R1_MATH_INSTRUCTION, user_prompt
from distill.errors import ConfigError
from distill.journal import read_journal
from distill.prompt_sets import DataError, load_prompts
from distill.tasks import synthetic_rows
from distill.verifiers.registry import REFERENCE_FIELDS, reference, reference_columns

TEMPLATES = ("r1", "r1_zero", "r1_zero_chat")
# DeepSeek-R1 paper, Table 1: the template DeepSeek-R1-Zero was trained with (the problem replaces "prompt"; here
# with R1's instruction appended, so the math verifier finds the \boxed{} answer).
R1_ZERO_INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think> <answer> answer here </answer>."
)
# Sources whose rows ask for the plain-number fallback (distill.tasks, distill.prompt_sets's gsm8k): a distill.generate
# dataset does not store the flag, so prompts read back from one get it from their source.
FALLBACK_SOURCES = frozenset({"synthetic", "gsm8k"})
COLUMNS = ("id", "task", "problem", *REFERENCE_FIELDS, "level", "source", "pass_rate")


def render_prompt(row: dict, template: str, key: str = "grpo") -> str | list[dict]:
    """The model's input for a prompt row: chat messages, or plain text for r1_zero."""
    question = user_prompt(row["problem"], row["task"])
    if template == "r1":
        return [{"role": "user", "content": question}]
    if template == "r1_zero":
        return f"{R1_ZERO_INSTRUCTION} User: {question} Assistant:"
    if template == "r1_zero_chat":
        return [{"role": "user", "content": f"{R1_ZERO_INSTRUCTION}\n\n{question}"}]
    raise ConfigError(f"key '{key}.template' expects auto or one of {', '.join(TEMPLATES)}, got {template!r}")


def is_generate_dataset(name: str) -> bool:
    return (Path(name) / "data").is_dir() and any((Path(name) / "data").glob("*.parquet"))


def _problem(user_content: str) -> str:
    """The problem text back from a dataset's user turn (user_prompt appended R1's instruction to it)."""
    for instruction in (R1_MATH_INSTRUCTION, R1_CODE_INSTRUCTION):
        if user_content.endswith("\n" + instruction):
            return user_content[: -len(instruction) - 1]
    return user_content


def generate_dataset_prompts(folder: Path) -> list[dict]:
    """One prompt row per prompt id of a distill.generate dataset (its rows are verified samples, several per id)."""
    import pyarrow.parquet as pq

    rows: dict[str, dict] = {}
    for shard in sorted((folder / "data").glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            if row["id"] in rows:
                continue
            prompt = {k: row.get(k) for k in COLUMNS if row.get(k) is not None}
            prompt.update(reference(prompt))
            if "problem" not in prompt:  # a dataset written before it kept the problem and the fallback flag
                prompt["problem"] = _problem(next(m["content"] for m in row["messages"] if m["role"] == "user"))
                prompt["fallback_last_number"] = row.get("source") in FALLBACK_SOURCES
            rows[row["id"]] = prompt
    return list(rows.values())


def recorded_pass_rates(folder: Path, key: str = "grpo") -> dict[str, float]:
    """Pass rate by prompt id: the journal has every sampled prompt, the dataset only prompts with a correct sample."""
    rates = {pid: r["pass_rate"] for pid, r in read_journal(folder / ".work" / "journal.jsonl").items()}
    if not rates and is_generate_dataset(str(folder)):
        rates = {r["id"]: r["pass_rate"] for r in generate_dataset_prompts(folder)}
    if not rates:
        raise DataError(f"{key}.pass_rates: {folder} holds no distill.generate journal or dataset")
    return rates


def prompt_rows(src: PromptSource, seed: int, key: str) -> list[dict]:
    """Every prompt row `src` names (synthetic tasks from `seed`, built-in sets, files, hub sets, distill.generate
    dataset folders); raises DataError (a repeated id) or ConfigError."""
    rows: list[dict] = []
    for name in src.sets:
        if name == "synthetic":  # same seed as distill.generate's: same ids, same problems, so pass rates match
            rows += synthetic_rows(src.synthetic_per_level, src.synthetic_levels, seed=seed)
        elif is_generate_dataset(name):
            rows += generate_dataset_prompts(Path(name))
        else:
            rows += load_prompts(name, split=src.split, subset=src.subset, fields=src.fields, limit=src.limit)
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise DataError(f"prompt id {row['id']!r} appears twice in {key}.prompts")
        seen.add(row["id"])
    return rows


def filter_by_pass_rate(rows: list[dict], low: float | None, high: float | None, key: str = "grpo") -> list[dict]:
    """Rows with low < pass_rate < high (strict); rows without a recorded pass rate are dropped once a bound is set."""
    if low is None and high is None:
        return rows
    if not any("pass_rate" in r for r in rows):
        raise ConfigError(
            f"{key}.min_pass_rate/max_pass_rate need pass rates: a distill.generate dataset folder in {key}.prompts, "
            f"or {key}.pass_rates=<that folder>"
        )
    lo = -1.0 if low is None else low
    hi = 2.0 if high is None else high
    kept = [r for r in rows if r.get("pass_rate") is not None and lo < r["pass_rate"] < hi]
    if not kept:
        raise DataError(f"no prompt has {lo:g} < pass_rate < {hi:g} (of {len(rows)} prompts)")
    return kept


def training_rows(prompts: list[dict], template: str, key: str = "grpo") -> list[dict]:
    """Rows for datasets.Dataset.from_list: every column has one type (registry.reference_columns; flags as bools)."""
    rows = []
    for p in prompts:
        columns = reference_columns(p)
        columns["fallback_last_number"] = bool(p.get("fallback_last_number", False))
        rows.append({"prompt": render_prompt(p, template, key), "id": str(p["id"]), "task": p["task"], **columns})
    return rows

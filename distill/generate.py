"""`python -m distill.generate [recipe=NAME] [key=value ...]`: a verified long-CoT dataset and its data card.

Loads prompts, samples `n` completions per prompt from the teacher, judges each with the shared verifiers, keeps
correct ones by a policy, filters, and writes a Parquet dataset (chat format) with a data card in `data_cards/`.

Resumable (distill.rollout): each chunk of prompts is appended to a journal once verified; killed at any moment and
started again with the same command, the run skips the prompts already in the journal, and writes the same dataset
as an uninterrupted one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from distill import cli
from distill.cli import write_effective_config
from distill.config import Config, teacher_name
from distill.engines import make_sampler as make_engine_sampler
from distill.engines.base import Sampler
from distill.errors import ConfigError
from distill.journal import open_work_dir, read_journal, run_fingerprint
from distill.prompt_sets import DataError, load_prompts
from distill.rollout import sample_verify_journal
from distill.tasks import synthetic_rows
from distill.verifiers.pool import VerifierPool

SUMMARY = "Sample from a teacher, keep verified-correct chains of thought, write a dataset and its data card."


def collect_prompts(cfg: Config) -> list[dict]:
    """Every prompt row of every configured set, checked (bad rows raise DataError before any sampling)."""
    src = cfg.generate.prompts
    rows: list[dict] = []
    for name in src.sets:
        if name == "synthetic":
            rows += synthetic_rows(src.synthetic_per_level, src.synthetic_levels, seed=cfg.seed)
        else:
            rows += load_prompts(name, split=src.split, subset=src.subset, fields=src.fields, limit=src.limit)
    seen: dict[str, str] = {}
    for row in rows:
        if row["id"] in seen:
            raise DataError(f"prompt id {row['id']!r} appears in both {seen[row['id']]} and {row['source']}")
        seen[row["id"]] = row["source"]
    return rows


def sample_and_verify(
    cfg: Config, prompts: list[dict], sampler: Sampler, pool: VerifierPool, journal: Path
) -> dict[str, dict]:
    """Journal records for every prompt, sampling only those not journaled yet."""
    gen = cfg.generate
    return sample_verify_journal(prompts, sampler, pool, journal, gen.sampling, gen.chunk_size, "generate")


def _teacher_revision(cfg: Config) -> str | None:
    return None if cfg.generate.teacher else cfg.model.revision


def check_teacher(cfg: Config) -> None:
    """The teacher exists (built-in, folder, or hub id), checked before anything is written or started; raises
    ModelError. A server's model name is the server's business."""
    if cfg.generate.engine.kind != "openai":
        from distill.models import check_model_name

        check_model_name(teacher_name(cfg), _teacher_revision(cfg))


def make_sampler(cfg: Config) -> Sampler:
    """The teacher's sampler, as generate.engine says (keeping the top-k log-probs with generate.teacher_logprobs)."""
    top_k = cfg.generate.teacher_logprobs or None
    if cfg.generate.engine.kind == "openai":
        return make_engine_sampler(cfg.generate.engine, teacher_name(cfg), cfg.model, cfg.seed, top_k)
    from distill.models import resolve_for_inference

    # A LoRA adapter teacher (grpo.compare's RL-trained teacher) is merged onto its base once for the engine.
    path = resolve_for_inference(teacher_name(cfg), _teacher_revision(cfg), cfg.model.trust_remote_code)
    return make_engine_sampler(cfg.generate.engine, path, cfg.model, cfg.seed, top_k)


def _ignored_model_name(cfg: Config, argv: list[str]) -> None:
    """model.name on the command line does not pick the teacher when the recipe names one: say so, don't run."""
    chosen = any(a.startswith("generate.teacher=") for a in argv)
    if cfg.generate.teacher and not chosen and any(a.startswith("model.name=") for a in argv):
        raise ConfigError(
            f"model.name does not choose the teacher here: the recipe sets generate.teacher={cfg.generate.teacher}; "
            "pass generate.teacher=... instead"
        )


TEACHER_FILE = "teacher.txt"  # in .work/: the sampler's model (a path, for provenance) when the journal was sampled


def _journaled_teacher(work: Path, cfg: Config) -> str:
    """The teacher that sampled the journal, for a rerun that samples nothing (and so starts no engine)."""
    path = work / TEACHER_FILE
    return path.read_text().strip() if path.exists() else teacher_name(cfg)


def _generate(cfg: Config, argv: list[str]) -> int:
    from distill.dataset_writer import build_dataset, decontaminate

    _ignored_model_name(cfg, argv)
    prompts, contamination = decontaminate(cfg, collect_prompts(cfg))
    check_teacher(cfg)
    out_dir = Path(cfg.output_dir) / "datasets" / cfg.generate.dataset_name
    journal = out_dir / ".work" / "journal.jsonl"
    open_work_dir(out_dir / ".work", run_fingerprint(cfg, prompts))
    write_effective_config(cfg, out_dir / ".work")
    gen = cfg.generate
    if all(p["id"] in (done := read_journal(journal)) for p in prompts):  # nothing to sample: no engine
        records, model = {p["id"]: done[p["id"]] for p in prompts}, _journaled_teacher(out_dir / ".work", cfg)
    else:
        sampler = make_sampler(cfg)
        (out_dir / ".work" / TEACHER_FILE).write_text(sampler.model + "\n")
        try:
            with VerifierPool(workers=gen.verify.workers, timeout=gen.verify.timeout) as pool:
                records = sample_and_verify(cfg, prompts, sampler, pool.warm_up(), journal)
        finally:
            sampler.close()
        model = sampler.model
    command = "python -m distill.generate " + " ".join(argv)
    card = build_dataset(cfg, prompts, records, contamination, out_dir, command, teacher=model)
    stats = json.loads((out_dir / "stats.json").read_text())
    made = f"{stats['rows']} rows from {stats['prompts_sampled']} prompts ({stats['correct']} of {stats['samples']} samples correct)"
    print(f"distill.generate: {made} in {out_dir}; data card {card}", file=sys.stderr)
    print(f"next: python -m distill.sft recipe={cfg.recipe} sft.dataset={out_dir}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run("distill.generate", SUMMARY, ("generate",), argv, _generate, stage="generate")


if __name__ == "__main__":
    raise SystemExit(main())

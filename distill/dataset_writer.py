"""From verified samples to the dataset: decontamination, keep policy, filters, Parquet shards and the card's stats."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from distill.config import Config
from distill.engines.base import user_prompt
from distill.filters import Decontaminator, apply_filters
from distill.models import file_sha256
from distill.prompt_sets import DataError, load_prompts
from distill.verifiers.registry import reference_columns


def decontaminate(cfg: Config, prompts: list[dict]) -> tuple[list[dict], dict]:
    """Drop prompts that share a word n-gram with a benchmark problem; the report goes into the data card."""
    filters = cfg.generate.filters
    report: dict = {"ngram": filters.decontaminate_ngram, "checked": [], "unchecked": {}, "removed": {}}
    texts: dict[str, list[str]] = {}
    for name in filters.decontaminate:
        if name in cfg.generate.prompts.sets:  # asked for as prompts on purpose: checking it against itself removes all
            report["unchecked"][name] = "is a prompt source of this run"
            continue
        try:
            texts[name] = [row["problem"] for row in load_prompts(name)]
            report["checked"].append(name)
        except DataError as e:
            print(f"distill.generate: warning: cannot decontaminate against {name}: {e}", file=sys.stderr)
            report["unchecked"][name] = str(e)
    checker = Decontaminator(texts, n=filters.decontaminate_ngram)
    kept = []
    removed: Counter = Counter()
    for prompt in prompts:
        hit = checker.match(prompt["problem"])
        if hit is None:
            kept.append(prompt)
        else:
            removed[hit] += 1
    report["removed"] = dict(removed)
    return kept, report


KEEP_POLICIES = ("all", "first_k", "shortest")  # keep_by_policy's choices (generate.keep)


def keep_by_policy(samples: list[dict], policy: str, k: int) -> list[int]:
    """Indices of the samples to keep among a prompt's samples: all correct, the first k correct, or the shortest."""
    correct = [i for i, s in enumerate(samples) if s["verdict"] == "correct"]
    if policy == "first_k":
        return correct[:k]
    if policy == "shortest":
        return sorted(correct, key=lambda i: (samples[i]["num_tokens"], i))[:1]
    return correct


def _row(prompt: dict, record: dict, index: int, teacher: str) -> dict:
    sample = record["samples"][index]
    topk = {column: sample[column] for column in ("topk_ids", "topk_logprobs") if sample.get("token_ids") is not None}
    if topk:
        topk["completion_ids"] = sample["token_ids"]
    return {
        "messages": [
            {"role": "user", "content": user_prompt(prompt["problem"], prompt["task"])},
            {"role": "assistant", "content": sample["text"]},
        ],
        "id": prompt["id"],
        "sample_index": index,
        "task": prompt["task"],
        **reference_columns(prompt),
        "problem": prompt["problem"],
        "source": prompt["source"],
        "level": prompt.get("level"),
        "teacher": teacher,
        "pass_rate": record["pass_rate"],
        "num_tokens": sample["num_tokens"],
        **topk,  # generate.teacher_logprobs: the teacher's ids and top-k (LOGPROB_COLUMNS)
        # for apply_filters; dropped before writing
        "prompt_id": prompt["id"],
        "completion": sample["text"],
    }


def select_rows(cfg: Config, prompts: list[dict], records: dict[str, dict], teacher: str) -> tuple[list[dict], dict]:
    """Rows kept by the policy and the filters, in prompt order, and the counts at each stage."""
    gen, filters = cfg.generate, cfg.generate.filters
    candidates = []
    for prompt in prompts:
        record = records[prompt["id"]]
        for index in keep_by_policy(record["samples"], gen.keep, gen.max_per_prompt):
            candidates.append(_row(prompt, record, index, teacher))
    readability = None
    if filters.readability:
        readability = {
            "language": filters.language,
            "min_language_share": filters.min_language_share,
            "max_paragraph_chars": filters.max_paragraph_chars,
            "max_repeated_share": filters.max_repeated_share,
        }
    kept, removed = apply_filters(
        candidates, dedup=filters.dedup, near_dup_threshold=filters.near_dup_threshold, readability=readability
    )
    rows = [{k: v for k, v in r.items() if k not in ("prompt_id", "completion")} for r in kept]
    return rows, {"kept_by_policy": len(candidates), "removed_by_filter": removed, "rows": len(rows)}


def acceptance(prompts: list[dict], records: dict[str, dict], key: str) -> dict[str, dict]:
    """Samples, correct samples and their ratio, grouped by a prompt field (source, level)."""
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for prompt in prompts:
        samples = records[prompt["id"]]["samples"]
        group = groups[str(prompt.get(key, "-"))]
        group[0] += len(samples)
        group[1] += sum(s["verdict"] == "correct" for s in samples)
    return {g: {"samples": n, "correct": c, "rate": c / n if n else 0.0} for g, (n, c) in sorted(groups.items())}


def length_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)
    return {
        "count": len(ordered),
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
    }


# Column types that must not depend on the rows: in a math-only dataset `tests`, `io` and `entry_point` are all None,
# which Arrow would type `null`, and a code dataset written later would then not concatenate with it.
COLUMN_TYPES = {"id": "string", "task": "string", "answer": "string", "tests": "string", "io": "string",
                "entry_point": "string", "fallback_last_number": "bool", "problem": "string", "source": "string",
                "level": "int64", "teacher": "string", "pass_rate": "float64", "num_tokens": "int64",
                "sample_index": "int64"}  # fmt: skip
# generate.teacher_logprobs: (element type, list depth). int32 holds any vocabulary; float16 log-probs keep about 3
# significant digits (at most 0.0003 nats off above -1, 0.004 at -10) in fewer bytes than float32 -- README's
# "Offline KD from one teacher pass" has the bytes per token measured both ways.
LOGPROB_COLUMNS = {"completion_ids": ("int32", 1), "topk_ids": ("int32", 2), "topk_logprobs": ("float16", 2)}


def _feature(name: str):
    from datasets import List, Value

    if name in COLUMN_TYPES:
        return Value(COLUMN_TYPES[name])
    kind, depth = LOGPROB_COLUMNS[name]
    feature = Value(kind)
    for _ in range(depth):
        feature = List(feature)
    return feature


def _typed(part: list[dict]):
    """The rows as a Dataset whose known columns have their own types, whatever values they hold."""
    from datasets import Dataset

    data = Dataset.from_list(part)
    features = data.features.copy()
    for name in data.column_names:
        if name in COLUMN_TYPES or name in LOGPROB_COLUMNS:
            features[name] = _feature(name)
    return data.cast(features)


def logprob_storage(out_dir: Path, files: list[dict], tokens: int) -> dict:
    """Bytes per generated token of each LOGPROB_COLUMNS column in the written (compressed) Parquet shards, and in
    all: what keeping the teacher's top-k costs on disk."""
    import pyarrow.parquet as pq

    sizes = dict.fromkeys(LOGPROB_COLUMNS, 0)
    for f in files:
        meta = pq.ParquetFile(out_dir / f["name"]).metadata
        for group in range(meta.num_row_groups):
            for index in range(meta.num_columns):
                column = meta.row_group(group).column(index)
                name = column.path_in_schema.split(".")[0]
                if name in sizes:
                    sizes[name] += column.total_compressed_size
    per_token = {name: round(size / max(tokens, 1), 2) for name, size in sizes.items()}
    return {"tokens": tokens, "bytes_per_token": {**per_token, "total": round(sum(sizes.values()) / max(tokens, 1), 2)}}


def write_shards(rows: list[dict], out_dir: Path, shard_rows: int) -> list[dict]:
    """Parquet shards in out_dir/data, replaced as a whole; returns each file's name, rows and sha256."""
    count = max(1, -(-len(rows) // shard_rows))
    for stale in out_dir.glob(".data-*"):  # a write killed midway: never part of the dataset (nor of an upload)
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".data-", dir=out_dir))
    staging.chmod(0o755)  # mkdtemp makes it 0700; the dataset is meant to be read by others
    files = []
    for i in range(count):
        part = rows[i * shard_rows : (i + 1) * shard_rows]
        path = staging / f"train-{i:05d}-of-{count:05d}.parquet"
        _typed(part).to_parquet(str(path))
        files.append({"name": f"data/{path.name}", "rows": len(part), "sha256": file_sha256(path)})
    final = out_dir / "data"
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    return files


def build_dataset(
    cfg: Config,
    prompts: list[dict],
    records: dict[str, dict],
    contamination: dict,
    out_dir: Path,
    command: str,
    teacher: str,
) -> Path:
    """Write the dataset's shards and its data card; returns the card's path."""
    from distill.cards import write_data_card
    from distill.model_ids import hub_reference

    # The `teacher` column names the model as another machine resolves it (a repo id, a built-in name), not the
    # cache folder the engine loaded; the card's provenance keeps the folder's fingerprint.
    rows, stages = select_rows(cfg, prompts, records, hub_reference(teacher)[0])
    files = write_shards(rows, out_dir, cfg.generate.shard_rows)
    verdicts = Counter(s["verdict"] for p in prompts for s in records[p["id"]]["samples"])
    pass_rates = [records[p["id"]]["pass_rate"] for p in prompts]
    stats = {
        "prompts": len(prompts) + sum(contamination["removed"].values()),
        "prompts_decontaminated": sum(contamination["removed"].values()),
        "prompts_sampled": len(prompts),
        "samples": sum(verdicts.values()),
        "verdicts": dict(verdicts),
        "correct": verdicts.get("correct", 0),
        **stages,
        "prompts_all_correct": sum(r == 1.0 for r in pass_rates),
        "prompts_none_correct": sum(r == 0.0 for r in pass_rates),
        "acceptance_by_source": acceptance(prompts, records, "source"),
        "acceptance_by_level": acceptance(prompts, records, "level"),
        "lengths": length_stats([r["num_tokens"] for r in rows]),
        "truncated_samples": sum(s["finish_reason"] == "length" for p in prompts for s in records[p["id"]]["samples"]),
        "decontamination": contamination,
        "files": files,
    }
    if cfg.generate.teacher_logprobs:
        tokens = sum(len(r.get("completion_ids") or ()) for r in rows)
        stats["teacher_logprobs"] = {"k": cfg.generate.teacher_logprobs, **logprob_storage(out_dir, files, tokens)}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    card = write_data_card(cfg, stats, [r["num_tokens"] for r in rows], out_dir, command, teacher)
    if cfg.generate.push_to_hub:
        _push(cfg, out_dir)
    return card


def _push(cfg: Config, out_dir: Path) -> None:
    """Upload the shards and the card (README.md) as a hub dataset repository (needs HF_TOKEN and network)."""
    from huggingface_hub import HfApi

    repo = cfg.generate.hub_repo or cfg.generate.dataset_name
    api = HfApi()
    api.create_repo(repo, repo_type="dataset", exist_ok=True)
    ignore = [".work/*", ".data-*"]
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=str(out_dir), ignore_patterns=ignore)

"""`python -m distill.generate [recipe=NAME] [key=value ...]`: a verified long-CoT dataset and its data card.

Loads prompts, samples `n` completions per prompt from the teacher, judges each with the shared verifiers, keeps
correct ones by a policy, filters, and writes a Parquet dataset (chat format) with a data card in `data_cards/`.

Resumable: each chunk of prompts is appended to a journal once verified; killed at any moment and started again
with the same command, the run skips the prompts already in the journal. Every prompt samples with its own seed
(derived from its id), so its samples do not depend on which batch it fell in, and a resumed run writes the same
dataset as an uninterrupted one. Verification of one chunk overlaps the sampling of the next.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from distill.config import Config, ConfigError, EngineConfig, parse_cli, teacher_name
from distill.data import DataError, load_prompts
from distill.engines.base import Request, Sample, Sampler, SamplingConfig, user_prompt
from distill.journal import append_journal, open_work_dir, read_journal, run_fingerprint
from distill.tasks import synthetic_rows
from distill.verifiers.base import Verdict, no_answer
from distill.verifiers.pool import VerifierPool

KEEP_POLICIES = ("all", "first_k", "shortest")
SUMMARY = "Sample from a teacher, keep verified-correct chains of thought, write a dataset and its data card."


def prompt_seed(base: int, prompt_id: str) -> int:
    """A prompt's own sampling seed: independent of batching and order, so resumed runs match."""
    return (base + zlib.crc32(prompt_id.encode())) % (2**31)


def collect_prompts(cfg: Config) -> list[dict]:
    """Every prompt row of every configured set, checked (bad rows raise DataError before any sampling)."""
    gen = cfg.generate
    rows: list[dict] = []
    for name in gen.prompts:
        if name == "synthetic":
            rows += synthetic_rows(gen.synthetic_per_level, gen.synthetic_levels, seed=cfg.seed)
        else:
            rows += load_prompts(name, split=gen.split, subset=gen.subset, fields=gen.fields, limit=gen.limit)
    seen: dict[str, str] = {}
    for row in rows:
        if row["id"] in seen:
            raise DataError(f"prompt id {row['id']!r} appears in both {seen[row['id']]} and {row['source']}")
        seen[row["id"]] = row["source"]
    return rows


def check_generate_config(cfg: Config) -> None:
    gen = cfg.generate
    if gen.keep not in KEEP_POLICIES:
        raise ConfigError(f"key 'generate.keep' expects one of {', '.join(KEEP_POLICIES)}, got {gen.keep!r}")
    if gen.engine.kind not in ("vllm", "openai"):
        raise ConfigError(f"key 'generate.engine.kind' expects vllm or openai, got {gen.engine.kind!r}")
    if gen.engine.kind == "openai" and gen.sampling.prefill_think:
        raise ConfigError(
            "key 'generate.sampling.prefill_think' needs engine.kind=vllm: a server applies its own chat template "
            "(R1 servers open the think block themselves, and their separate reasoning is put back in <think>)"
        )
    if gen.sampling.n < 1 or gen.chunk_size < 1:
        raise ConfigError("keys 'generate.sampling.n' and 'generate.chunk_size' must be >= 1")


def make_sampler(cfg: Config) -> Sampler:
    """The teacher's sampler, as generate.engine says."""
    if cfg.generate.engine.kind == "openai":
        return engine_sampler(cfg, cfg.generate.engine, teacher_name(cfg))
    from distill.models import resolve_model

    revision = None if cfg.generate.teacher else cfg.model.revision
    return engine_sampler(cfg, cfg.generate.engine, resolve_model(teacher_name(cfg), revision))


def engine_sampler(cfg: Config, engine: EngineConfig, model: str) -> Sampler:
    """A sampler of `model` on `engine` (generate.engine, eval.engine): for vllm a resolved path or hub id; for openai
    the served model's name (engine.served_model wins). dtype, seed and trust_remote_code come from cfg.model/cfg."""
    if engine.kind == "openai":
        from distill.engines.openai_server import OpenAISampler

        return OpenAISampler(
            engine.urls,
            engine.served_model or model,
            api_key_env=engine.api_key_env,
            concurrency=engine.concurrency,
            timeout=engine.request_timeout,
            max_retries=engine.max_retries,
        )
    from distill.engines.vllm_offline import VLLMSampler

    return VLLMSampler(
        model,
        dtype=cfg.model.dtype,
        tensor_parallel_size=engine.tensor_parallel_size,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        max_model_len=engine.max_model_len,
        seed=cfg.seed,
        trust_remote_code=cfg.model.trust_remote_code,
    )


# --- sampling and verification, overlapped ----------------------------------------------------------------------


def request_for(prompt: dict, seed: int) -> Request:
    content = user_prompt(prompt["problem"], prompt["task"])
    return Request([{"role": "user", "content": content}], prompt_seed(seed, prompt["id"]))


def stream_samples(
    sampler: Sampler, requests: list[Request], params: SamplingConfig, in_flight: int
) -> Iterator[tuple[int, list[Sample]]]:
    """(request index, samples) as requests finish. vLLM streams natively, refilling its batch as requests finish;
    other engines sample `in_flight` requests per call."""
    if hasattr(sampler, "stream"):
        yield from sampler.stream(requests, params, in_flight)
        return
    for start in range(0, len(requests), in_flight):
        for offset, samples in enumerate(sampler.sample(requests[start : start + in_flight], params)):
            yield start + offset, samples


def _judged(verdict: Verdict, sample: Sample) -> dict:
    """A sample cut off at max_tokens never counts as correct: R1 keeps only finished traces, and the plain-number
    fallback could otherwise credit whatever number the text stopped on."""
    if sample.finish_reason == "length" and verdict.verdict == "correct":
        return no_answer(f"truncated at max_tokens ({verdict.reason})").to_dict()
    return verdict.to_dict()


def _verify(pool: VerifierPool, batch: list[tuple[dict, list[Sample]]]) -> list[dict]:
    """Journal records for finished prompts: every sample with its verdict, and the prompt's pass rate."""
    reference = [{k: v for k, v in p.items() if k not in ("id", "problem", "source", "level")} for p, _ in batch]
    rows = [{**ref, "completion": s.text} for ref, (_, group) in zip(reference, batch, strict=True) for s in group]
    verdicts = iter(pool.map(rows))
    records = []
    for prompt, group in batch:
        judged = [{**asdict(s), **_judged(next(verdicts), s)} for s in group]
        correct = sum(j["verdict"] == "correct" for j in judged)
        records.append({"id": prompt["id"], "pass_rate": correct / len(judged), "samples": judged})
    return records


def _drain(handoff: queue.Queue, first, limit: int) -> tuple[list, bool]:
    """The item just received and whatever else is already waiting (up to limit); True if the end mark came."""
    batch = [first]
    while len(batch) < limit:
        try:
            item = handoff.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


def sample_and_verify(
    cfg: Config, prompts: list[dict], sampler: Sampler, pool: VerifierPool, journal: Path
) -> dict[str, dict]:
    """Journal records for every prompt, sampling only those not journaled yet."""
    gen = cfg.generate
    return sample_verify_journal(prompts, sampler, pool, journal, gen.sampling, gen.chunk_size, "generate")


def sample_verify_journal(
    prompts: list[dict],
    sampler: Sampler,
    pool: VerifierPool,
    journal: Path,
    params: SamplingConfig,
    chunk_size: int,
    desc: str,
) -> dict[str, dict]:
    """Journal records by prompt id (each: id, pass_rate, samples with their verdicts) for every prompt, sampling only
    those not journaled yet; prompts are seeded by params.seed and their id. chunk_size: prompts in flight, and per
    verification batch. desc: the progress bar's label."""
    journaled = read_journal(journal)
    done = {p["id"]: journaled[p["id"]] for p in prompts if p["id"] in journaled}
    todo = [p for p in prompts if p["id"] not in done]
    handoff: queue.Queue = queue.Queue(maxsize=4 * chunk_size)
    failure: list[BaseException] = []
    bar = tqdm(total=len(prompts), initial=len(done), unit="prompt", desc=desc, file=sys.stderr)
    stats = {"tokens": 0, "start": time.perf_counter(), "samples": 0, "correct": 0}

    def verifier() -> None:
        """Verify and journal prompts as they finish, while the engine keeps sampling the others."""
        try:
            finished = False
            while not finished and (item := handoff.get()) is not None:
                batch, finished = _drain(handoff, item, chunk_size)
                records = _verify(pool, batch)
                append_journal(journal, records)
                done.update((r["id"], r) for r in records)
                stats["samples"] += sum(len(r["samples"]) for r in records)
                stats["correct"] += sum(s["verdict"] == "correct" for r in records for s in r["samples"])
                bar.update(len(records))
                seconds = time.perf_counter() - stats["start"]
                bar.set_postfix(
                    tok_s=f"{stats['tokens'] / seconds:.0f}",
                    correct=f"{stats['correct'] / max(stats['samples'], 1):.0%}",
                )
        except BaseException as e:  # surfaced in the main thread below
            failure.append(e)
            while handoff.get() is not None:  # let the producer finish its puts
                pass

    thread = threading.Thread(target=verifier, name="verifier", daemon=True)
    thread.start()
    try:
        requests = [request_for(p, params.seed) for p in todo]
        for index, samples in stream_samples(sampler, requests, params, chunk_size):
            if failure:
                break
            stats["tokens"] += sum(s.num_tokens for s in samples)
            handoff.put((todo[index], samples))
    finally:
        handoff.put(None)
        thread.join()
        bar.close()
    if failure:
        raise failure[0]
    return done


def main(argv: list[str] | None = None) -> int:
    cfg = parse_cli(argv, "distill.generate", SUMMARY, sections=("generate",))
    from distill.dataset import build_dataset, decontaminate

    try:
        check_generate_config(cfg)
        prompts = collect_prompts(cfg)
        prompts, contamination = decontaminate(cfg, prompts)
        out_dir = Path(cfg.output_dir) / "datasets" / cfg.generate.dataset_name
        open_work_dir(out_dir / ".work", run_fingerprint(cfg, prompts))
    except (ConfigError, DataError) as e:
        print(f"distill.generate: error: {e}", file=sys.stderr)
        return 2
    gen = cfg.generate
    sampler = make_sampler(cfg)
    try:
        with VerifierPool(workers=gen.verify_workers, timeout=gen.verify_timeout) as pool:
            records = sample_and_verify(cfg, prompts, sampler, pool.warm_up(), out_dir / ".work" / "journal.jsonl")
    finally:
        sampler.close()
    command = "python -m distill.generate " + " ".join(sys.argv[1:] if argv is None else argv)
    card = build_dataset(cfg, prompts, records, contamination, out_dir, command, teacher=sampler.model)
    print(f"distill.generate: dataset {out_dir}, data card {card}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

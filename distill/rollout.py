"""The rollout loop that generation and evaluation share: sample -> verify -> journal.

Each prompt samples with its own seed (`prompt_seed`: the run's seed and a hash of its id), so its samples do not
depend on which batch it fell in, and a resumed run equals an uninterrupted one. The engine streams finished
prompts while a thread verifies them in the VerifierPool and appends them to the journal, so verification overlaps
sampling; prompts already in the journal are never sampled again.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import zlib
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from distill.config import SamplingConfig
from distill.engines.base import Request, Sample, Sampler, user_prompt
from distill.journal import append_journal, read_journal
from distill.verifiers.judging import judge
from distill.verifiers.pool import VerifierPool


def prompt_seed(base: int, prompt_id: str) -> int:
    """A prompt's own sampling seed: independent of batching and order, so resumed runs match."""
    return (base + zlib.crc32(prompt_id.encode())) % (2**31)


def request_for(prompt: dict, seed: int) -> Request:
    content = user_prompt(prompt["problem"], prompt["task"])
    return Request([{"role": "user", "content": content}], prompt_seed(seed, prompt["id"]))


def verify_finished(pool: VerifierPool, batch: list[tuple[dict, list[Sample]]]) -> list[dict]:
    """Journal records for finished prompts: every sample with its verdict (judging.judge: a sample cut at
    max_tokens is no answer), and the prompt's pass rate."""
    reference = [{k: v for k, v in p.items() if k not in ("id", "problem", "source", "level")} for p, _ in batch]
    rows = [{**ref, "completion": s.text} for ref, (_, group) in zip(reference, batch, strict=True) for s in group]
    cut = [s.finish_reason == "length" for _, group in batch for s in group]
    verdicts = iter(judge(pool, rows, cut))
    records = []
    for prompt, group in batch:
        judged = [{**asdict(s), **next(verdicts).to_dict()} for s in group]
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
                records = verify_finished(pool, batch)
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
        for index, samples in sampler.stream(requests, params, chunk_size):
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

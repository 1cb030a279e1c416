"""End-to-end generated tokens/s of `distill.generate` against `vllm.LLM.generate` alone, same prompts and sampling.

    python benchmarks/generate.py [recipe=smollm2] [rounds=2] [key=value ...]

One vLLM engine serves both measurements (started once and shut down once, neither timed), so the difference is
exactly what the pipeline adds around sampling: prompt loading, decontamination, the verifier pool, verification, the
journal, filters, Parquet and the card.
  baseline = llm.generate on every prompt at once (vLLM's best case: one call, full batching)
  ours     = python -m distill.generate with the same prompts, per-prompt seeds and sampling, timed end to end
Target: ours >= 0.9x baseline (verification overlaps sampling). Run it alone: timings need both cores. This machine's
speed drifts by up to 2x between minutes, so the two are measured in `rounds=2` adjacent pairs and the ratio is the
median of the pairs' ratios.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill import generate  # noqa: E402
from distill.engines.base import Request, user_prompt  # noqa: E402
from distill.recipes import load_config  # noqa: E402
from distill.rollout import prompt_seed  # noqa: E402


class KeepOpen:
    """The running engine, handed to distill.generate with a close() that leaves it running (it is shut down once,
    untimed, after both measurements, as its start was before them)."""

    def __init__(self, sampler):
        self._sampler = sampler
        self.model = sampler.model

    def __getattr__(self, name):
        return getattr(self._sampler, name)

    def close(self) -> None:
        pass


def time_baseline(sampler, requests: list[Request], params) -> tuple[int, float]:
    """Generated tokens and seconds of one llm.generate call on every prompt."""
    start = time.perf_counter()
    samples = sampler.sample(requests, params)
    return sum(s.num_tokens for group in samples for s in group), time.perf_counter() - start


def time_ours(sampler, argv: list[str], dataset_name: str) -> tuple[int, float]:
    """Generated tokens and seconds of `distill.generate` end to end, into a fresh output folder."""
    with tempfile.TemporaryDirectory() as tmp:
        generate.make_sampler = lambda _cfg: KeepOpen(sampler)  # reuse the running engine
        start = time.perf_counter()
        code = generate.main([*argv, f"output_dir={tmp}", f"generate.card_dir={tmp}/cards"])
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"distill.generate failed with exit code {code}")
        journal = Path(tmp) / "datasets" / dataset_name / ".work" / "journal.jsonl"
        records = [json.loads(line) for line in journal.read_text().splitlines()]
    return sum(s["num_tokens"] for r in records for s in r["samples"]), seconds


def main(argv: list[str]) -> None:
    rounds = int(next((a.split("=", 1)[1] for a in argv if a.startswith("rounds=")), 2))
    argv = [a for a in argv if not a.startswith("rounds=")]
    cfg = load_config(argv)
    prompts = generate.collect_prompts(cfg)
    sampler = generate.make_sampler(cfg)
    params = cfg.generate.sampling
    requests = [
        Request(
            [{"role": "user", "content": user_prompt(p["problem"], p["task"])}],
            prompt_seed(params.seed, p["id"]),
        )
        for p in prompts
    ]
    # Warm up on every prompt: the first pass faults in the KV cache's pages and fills the prefix cache, which would
    # otherwise favour whichever measurement comes second.
    sampler.sample(requests, params)
    print(f"{len(prompts)} prompts x n={params.n}, max_tokens={params.max_tokens}, model {cfg.model.name}")
    ratios = []
    for round_ in range(1, rounds + 1):
        base_tokens, base_seconds = time_baseline(sampler, requests, params)
        ours_tokens, ours_seconds = time_ours(sampler, argv, cfg.generate.dataset_name)
        base_rate, ours_rate = base_tokens / base_seconds, ours_tokens / ours_seconds
        ratios.append(ours_rate / base_rate)
        print(
            f"round {round_}: baseline vllm.LLM.generate alone {base_tokens:6d} tokens {base_seconds:6.1f} s "
            f"{base_rate:6.1f} tokens/s | distill.generate end to end {ours_tokens:6d} tokens {ours_seconds:6.1f} s "
            f"{ours_rate:6.1f} tokens/s | ratio {ratios[-1]:.2f}x",
            flush=True,
        )
    sampler.close()
    print(f"ratio ours/baseline, median of {rounds} paired rounds: {statistics.median(ratios):.2f}x  (target >= 0.9x)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""End-to-end generated tokens/s of `distill.generate` against `vllm.LLM.generate` alone, same prompts and sampling.

    python benchmarks/generate.py [recipe=smollm2] [key=value ...]

One vLLM engine serves both measurements (started once, not timed), so the difference is exactly what the pipeline
adds around sampling: prompt loading, decontamination, verification, the journal, filters, Parquet and the card.
  baseline = llm.generate on every prompt at once (vLLM's best case: one call, full batching)
  ours     = python -m distill.generate with the same prompts, per-prompt seeds and sampling, timed end to end
Target: ours >= 0.9x baseline (verification overlaps sampling). Run it alone: timings need both cores.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill import generate  # noqa: E402
from distill.config import load_config  # noqa: E402
from distill.engines.base import Request, user_prompt  # noqa: E402


def main(argv: list[str]) -> None:
    cfg = load_config(argv)
    prompts = generate.collect_prompts(cfg)
    sampler = generate.make_sampler(cfg)
    params = cfg.generate.sampling
    requests = [
        Request(
            [{"role": "user", "content": user_prompt(p["problem"], p["task"])}],
            generate.prompt_seed(params.seed, p["id"]),
        )
        for p in prompts
    ]
    sampler.sample(requests[:2], params)  # warm up the engine once, for both

    start = time.perf_counter()
    samples = sampler.sample(requests, params)
    base_seconds = time.perf_counter() - start
    base_tokens = sum(s.num_tokens for group in samples for s in group)

    with tempfile.TemporaryDirectory() as tmp:
        generate.make_sampler = lambda _cfg: sampler  # reuse the running engine
        start = time.perf_counter()
        code = generate.main([*argv, f"output_dir={tmp}", f"generate.card_dir={tmp}/cards"])
        ours_seconds = time.perf_counter() - start
        journal = Path(tmp) / "datasets" / cfg.generate.dataset_name / ".work" / "journal.jsonl"
        records = [json.loads(line) for line in journal.read_text().splitlines()]
    if code != 0:
        raise SystemExit(f"distill.generate failed with exit code {code}")
    ours_tokens = sum(s["num_tokens"] for r in records for s in r["samples"])

    base_rate, ours_rate = base_tokens / base_seconds, ours_tokens / ours_seconds
    print(f"{len(prompts)} prompts x n={params.n}, max_tokens={params.max_tokens}, model {cfg.model.name}")
    print(
        f"baseline: vllm.LLM.generate alone   {base_tokens:7d} tokens  {base_seconds:7.1f} s  {base_rate:7.1f} tokens/s"
    )
    print(
        f"distill.generate end to end        {ours_tokens:7d} tokens  {ours_seconds:7.1f} s  {ours_rate:7.1f} tokens/s"
    )
    print(f"ratio ours/baseline: {ours_rate / base_rate:.2f}x  (target >= 0.9x)")


if __name__ == "__main__":
    main(sys.argv[1:])

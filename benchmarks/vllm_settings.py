"""Generated tokens/s of raw `vllm.LLM.generate` with the engine settings distill uses against vLLM's defaults, same
model, prompts and sampling.

    python benchmarks/vllm_settings.py [recipe=smollm2] [rounds=1] [key=value ...]   (the recipe's generate section)

  baseline = vllm.LLM(model, seed) with vLLM's defaults, plus the one setting vLLM-CPU cannot start without
             (VLLM_CPU_KVCACHE_SPACE, 2 GiB); on CPU its default thread binding leaves compute on one core
  ours     = the engine distill.engines.vllm_offline.VLLMSampler builds: both cores bound, eager mode (no
             compilation), model.dtype=auto (distill.precision), a batched-token budget that keeps a call in one step
Both sides: one llm.generate call on every prompt, after a warm-up call on all of them; each side in its own process,
one after the other (two engines on 2 cores slow each other). Target: ours >= 1.5x the baseline. Run it alone.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def workload(argv: list[str]):
    """(model folder, chat-rendered prompts, SamplingParams) from the recipe's generate section."""
    from vllm import SamplingParams

    from distill import generate
    from distill.engines.base import user_prompt
    from distill.models import resolve_for_inference
    from distill.recipes import load_config

    cfg = load_config(argv)
    params = cfg.generate.sampling
    model = resolve_for_inference(cfg.generate.teacher or cfg.model.name)
    messages = [
        [{"role": "user", "content": user_prompt(p["problem"], p["task"])}] for p in generate.collect_prompts(cfg)
    ]
    sampling = SamplingParams(
        n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens
    )
    return cfg, model, messages, sampling


def child(side: str, argv: list[str], rounds: int) -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    cfg, model, messages, sampling = workload(argv)
    if side == "baseline":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        from vllm import LLM

        llm = LLM(model=model, seed=cfg.seed)
    else:
        from distill.engines.vllm_offline import VLLMSampler

        llm = VLLMSampler(model, dtype=cfg.model.dtype, max_model_len=cfg.generate.engine.max_model_len).llm
    tokenizer = llm.get_tokenizer()
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    llm.generate(prompts, sampling, use_tqdm=False)  # warm-up: pages of the KV cache, compiled graphs, caches
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        outputs = llm.generate(prompts, sampling, use_tqdm=False)
        seconds = time.perf_counter() - start
        tokens = sum(len(c.token_ids) for out in outputs for c in out.outputs)
        rates.append({"tokens": tokens, "seconds": seconds})
    config = llm.llm_engine.vllm_config
    settings = {
        "dtype": str(config.model_config.dtype).removeprefix("torch."),
        "enforce_eager": config.model_config.enforce_eager,
        "max_num_seqs": config.scheduler_config.max_num_seqs,
        "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "(vLLM default)"),
    }
    print("RESULT " + json.dumps({"runs": rates, "settings": settings, "prompts": len(prompts)}), flush=True)


def run_side(side: str, argv: list[str], rounds: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_CPU_")}  # each side sets its own
    proc = subprocess.run(
        [sys.executable, __file__, "--child", side, str(rounds), *argv], capture_output=True, text=True, env=env
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def main(argv: list[str]) -> None:
    rounds = int(next((a.split("=", 1)[1] for a in argv if a.startswith("rounds=")), 1))
    argv = [a for a in argv if not a.startswith("rounds=")]
    results = {side: run_side(side, argv, rounds) for side in ("baseline", "ours")}
    rate = {}
    for side, name in (("baseline", "vLLM defaults"), ("ours", "distill's engine settings")):
        r = results[side]
        rate[side] = statistics.median(run["tokens"] / run["seconds"] for run in r["runs"])
        best = r["runs"][0]
        print(
            f"{name:26s} {rate[side]:7.1f} tokens/s  ({best['tokens']} tokens in {best['seconds']:.1f} s, "
            f"{r['prompts']} prompts; {r['settings']})"
        )
    print(f"ratio ours/baseline: {rate['ours'] / rate['baseline']:.2f}x  (target >= 1.5x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[4:], int(sys.argv[3]))
    else:
        main(sys.argv[1:])

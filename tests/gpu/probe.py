"""Peak CUDA memory and tokens/s of distill.sft and grpo.train against distill.plan's estimate, at a size where
memory means something: a random model of Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14/2 heads, intermediate
4,864, vocabulary 151,936; random weights, no hub) in bf16.

    python tests/gpu/probe.py [--runs sft-lora,sft-full,grpo-lora] [--tokens 2048]      (scripts/gpu_check.sh runs it)

Each run is its own process (a clean allocator). Peak = torch.cuda.max_memory_reserved() over `trainer.train()`;
the estimate leaves out its "runtime" part (the CUDA context, which the allocator does not see). One JSON line per
run goes to $GPU_CHECK_REPORT.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

SHAPE = dict(
    hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2
)
RUNS = ("sft-lora", "sft-full", "grpo-lora")


def argv_for(run: str, model: Path, data: Path, out: Path, tokens: int) -> tuple[list[str], str]:
    common = ["recipe=smollm2", f"model.name={model}", "model.dtype=bfloat16", f"output_dir={out}"]
    if run.startswith("sft"):
        return [
            *common,
            f"sft.dataset={data}",
            f"sft.method={run.split('-')[1]}",
            "sft.per_device_train_batch_size=4",
            f"sft.max_length={tokens}",
            "sft.max_steps=6",
            "sft.gradient_checkpointing=true",
            "sft.attn_implementation=sdpa",
            "sft.save_steps=1000",
            "sft.merge=false",
        ], "sft"
    return [
        *common,
        "grpo.use_vllm=false",
        "grpo.num_generations=8",
        "grpo.per_device_train_batch_size=8",
        "grpo.max_completion_length=256",
        "grpo.overlong_cache=64",
        "grpo.trainer.generation_kwargs.min_new_tokens=256",
        "grpo.reward_weights={accuracy: 1.0, repetition: 1.0}",
        "grpo.gradient_checkpointing=true",
        "grpo.max_steps=3",
        "grpo.save_steps=1000",
        "grpo.resume=never",
    ], "grpo"


def child(run: str, model: Path, data: Path, tokens: int) -> None:
    import pytest
    from builders import plan_peak, watch_training
    from trl import GRPOTrainer, SFTTrainer

    with tempfile.TemporaryDirectory() as tmp:
        argv, stage = argv_for(run, model, data, Path(tmp), tokens)
        with pytest.MonkeyPatch.context() as patch:
            seen = watch_training(patch, SFTTrainer if stage == "sft" else GRPOTrainer)
            if stage == "sft":
                from distill import sft

                code = sft.main(argv)
            else:
                from grpo import train

                code = train.main(argv)
        planned, runtime = plan_peak(argv, stage, prompt_tokens=64 if stage == "grpo" else None)
    print("RESULT " + json.dumps({
        "run": f"{run} (0.5B shape, {tokens if stage == 'sft' else 320} tokens x batch {4 if stage == 'sft' else 8})",
        "code": code, "peak_reserved": seen.get("peak_reserved"), "planned_gib": planned,
        "planned_runtime_gib": runtime, "tokens": seen.get("tokens"), "seconds": seen.get("seconds"),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--tokens", type=int, default=2048, help="SFT tokens per row")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.model), Path(args.data), args.tokens)
        return
    from builders import longest_row, report, save_dataset, save_model

    with tempfile.TemporaryDirectory() as tmp:
        big = save_model(Path(tmp) / "sft-model", "qwen2", "bfloat16", vocab_size=151936, **SHAPE)
        small_vocab = save_model(
            Path(tmp) / "grpo-model", "qwen2", "bfloat16", **SHAPE
        )  # generation stays in vocabulary
        # Rows of about --tokens tokens, none cut: sft.max_length is the longest (SFT pads each batch to its longest).
        short = longest_row(big, save_dataset(Path(tmp) / "probe-10", rows=1, steps=10))
        per_step = (longest_row(big, save_dataset(Path(tmp) / "probe-20", rows=1, steps=20)) - short) / 10
        data = save_dataset(Path(tmp) / "data", rows=32, steps=max(1, int(10 + (args.tokens - short) / per_step)))
        tokens = longest_row(big, data)
        for run in args.runs.split(","):
            model = big if run.startswith("sft") else small_vocab
            cmd = [sys.executable, __file__, "--child", run, "--model", str(model), "--data", str(data)]
            proc = subprocess.run([*cmd, "--tokens", str(tokens)], capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{run} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            record = json.loads(line[len("RESULT ") :])
            report(record)
            print(json.dumps(record))


if __name__ == "__main__":
    main()

"""bf16 against fp32 on this machine's CPU: what `model.dtype: auto` (distill.precision) should pick here.

    python benchmarks/precision.py [--model smollm2-135m] [--steps 4]      (about 2 minutes on 2 cores)

  matmul    one 2048x576x1536 product (SmolLM2's MLP shape at 2048 tokens), fp32 against bf16
  training  SmolLM2-135M + LoRA r=16 (all linear layers), forward + backward on batch 4 x 256 tokens:
            fp32 weights (baseline), bf16 weights with bf16 autocast (what auto picks where bf16 wins),
            fp32 weights under bf16 autocast (TRL's bf16=True default on CPU)
Each measurement follows a warm-up pass; everything runs in this one process, one after the other. Run it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def matmul_gflops(dtype, repeats: int = 20) -> float:
    import torch

    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 2048 * 576 * 1536 * repeats / (time.perf_counter() - start) / 1e9


def training_tokens_per_s(model_path: str, weights, autocast: bool, steps: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=weights)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    ids = torch.randint(0, model.config.vocab_size, (4, 256))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return ids.numel() * steps / (time.perf_counter() - start)


def main() -> None:
    import torch

    from distill.models import resolve_model
    from distill.precision import auto_dtype, cpu_has_bf16

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(f"matmul 2048x576x1536: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s, ratio bf16/fp32 {bf16 / fp32:.2f}x")
    path = resolve_model(args.model)
    rows = {
        "fp32 weights (baseline)": (torch.float32, False),
        "bf16 weights + autocast": (torch.bfloat16, True),
        "fp32 weights + bf16 autocast": (torch.float32, True),
    }
    rates = {name: training_tokens_per_s(path, w, a, args.steps) for name, (w, a) in rows.items()}
    base = rates["fp32 weights (baseline)"]
    for name, rate in rates.items():
        print(f"training {name:30s} {rate:6.0f} tokens/s  ratio {rate / base:.2f}x")
    print(f"model.dtype=auto picks {auto_dtype()} here (CPU bf16 detected: {cpu_has_bf16()})")


if __name__ == "__main__":
    main()

"""GPU tests (marker `gpu`; skipped without CUDA): the real entry points on tiny random models in bf16 -- distill.sft
with LoRA, QLoRA and full fine-tuning, grpo.train with transformers generation and, where vLLM is installed, vLLM
colocated. Each asserts what TRL's own tests assert: the loss is finite and every trainable parameter changed.
Each also records its peak CUDA memory and the plan's estimate for $GPU_CHECK_REPORT (scripts/gpu_check.sh).

`DISTILL_GPU_TESTS_ON_CPU=1` runs them on the CPU in float32 instead (slow; for checking the tests themselves on
a machine without a GPU)."""

from __future__ import annotations

import importlib.util
import os

import pytest
from builders import cuda, finite, plan_peak, report, save_dataset, save_model, unchanged, watch_training

ON_CPU = os.environ.get("DISTILL_GPU_TESTS_ON_CPU") == "1"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not (ON_CPU or cuda()), reason="needs a CUDA GPU")]
DTYPE = "float32" if ON_CPU else "bfloat16"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("tiny-llama"), "llama", DTYPE)


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2", DTYPE)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return save_dataset(tmp_path_factory.mktemp("sft-data"))


def sft_argv(model, data, out, method: str) -> list[str]:
    return [
        "recipe=smollm2",
        f"model.name={model}",
        f"model.dtype={DTYPE}",
        f"output_dir={out}",
        f"sft.dataset={data}",
        f"sft.method={method}",
        "sft.max_steps=3",
        "sft.per_device_train_batch_size=4",
        "sft.max_length=256",
        "sft.learning_rate=1e-3",
        "sft.warmup_steps=0",
        "sft.save_steps=1000",
        "sft.merge=false",
        "sft.logging_steps=1",
    ]


@pytest.mark.parametrize(
    ("method", "arch"), [("lora", "llama"), ("qlora", "llama"), ("full", "llama"), ("lora", "qwen2")]
)
def test_sft_trains_every_parameter(method, arch, tiny, tiny_qwen2, data, tmp_path, monkeypatch):
    if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed")
    from trl import SFTTrainer

    from distill import sft

    seen = watch_training(monkeypatch, SFTTrainer)
    model = tiny if arch == "llama" else tiny_qwen2
    argv = sft_argv(model, data, tmp_path / "out", method)
    assert sft.main(argv) == 0
    assert finite(seen["losses"]), seen["losses"]
    assert seen["before"], "no trainable parameters"
    assert unchanged(seen) == []
    if cuda():
        planned, runtime = plan_peak(argv, "sft")
        report({"run": f"sft {method} ({arch}, tiny)", "peak_reserved": seen["peak_reserved"], "planned_gib": planned,
                "planned_runtime_gib": runtime, "tokens": seen["tokens"], "seconds": seen["seconds"]})  # fmt: skip


def grpo_argv(model, out, vllm: bool) -> list[str]:
    return [
        "recipe=smollm2",
        f"model.name={model}",
        f"model.dtype={DTYPE}",
        f"output_dir={out}",
        f"grpo.use_vllm={'true' if vllm else 'false'}",
        "grpo.prompts.synthetic_levels=[1]",
        "grpo.prompts.synthetic_per_level=8",
        "grpo.num_generations=4",
        "grpo.per_device_train_batch_size=8",
        "grpo.max_completion_length=16",
        "grpo.overlong_cache=8",
        "grpo.temperature=1.0",
        # A random model earns no accuracy; the repetition penalty differs between completions, so the group
        # advantages are not all zero and the policy gets a gradient.
        "grpo.reward_weights={accuracy: 1.0, repetition: 1.0}",
        "grpo.max_steps=3",
        "grpo.learning_rate=1e-3",
        "grpo.save_steps=1000",
        "grpo.resume=never",
        "grpo.verify.workers=1",
        *(["grpo.vllm_gpu_memory_utilization=0.2", "grpo.trainer.vllm_max_model_length=512"] if vllm else []),
    ]


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_grpo_trains_every_parameter(engine, tiny, tmp_path, monkeypatch):
    if engine == "vllm" and (importlib.util.find_spec("vllm") is None or not cuda()):
        pytest.skip("vLLM colocated needs vllm and CUDA")
    from trl import GRPOTrainer

    from grpo import train

    seen = watch_training(monkeypatch, GRPOTrainer)
    argv = grpo_argv(tiny, tmp_path / "out", engine == "vllm")
    assert train.main(argv) == 0
    assert finite(seen["losses"]), seen["losses"]
    assert unchanged(seen) == []
    if cuda():
        planned, runtime = plan_peak(argv, "grpo", prompt_tokens=64)
        report({"run": f"grpo lora, {engine} generation (tiny)", "peak_reserved": seen["peak_reserved"], "planned_gib": planned,
                "planned_runtime_gib": runtime, "tokens": seen["tokens"], "seconds": seen["seconds"]})  # fmt: skip

"""The command lines of tiny training runs the tests share: a 2-layer random model, a few synthetic prompts, a few
tokens per completion. A test adds or overrides keys after them (the last `key=value` of a key wins)."""

from __future__ import annotations

from pathlib import Path


def grpo_argv(model: Path, out: Path, *extra: str) -> list[str]:
    """grpo.train on 8 level-1 synthetic prompts, 4 completions of 8 tokens each, LoRA r=4, transformers rollouts
    (extra `grpo.use_vllm=true` or a vLLM mode to change that), one verifier worker."""
    return [
        f"model.name={model}",
        f"output_dir={out}",
        "grpo.run_name=tiny",
        "grpo.template=r1",
        "grpo.prompts.synthetic_levels=[1]",
        "grpo.prompts.synthetic_per_level=8",
        "grpo.num_generations=4",
        "grpo.per_device_train_batch_size=4",
        "grpo.gradient_accumulation_steps=1",
        "grpo.max_completion_length=8",
        "grpo.overlong_cache=4",
        "grpo.learning_rate=0.05",
        "grpo.beta=0.01",
        "grpo.lora.r=4",
        "grpo.lora.dropout=0",
        "grpo.verify.workers=1",
        "grpo.use_vllm=false",
        *extra,
    ]

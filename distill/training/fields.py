"""The training fields sft, grpo and kd share, once: the three sections of the schema (distill.config) are these
plus their own. Recipe keys stay flat (`sft.learning_rate`, `grpo.save_steps`): a section inherits the fields, and
redeclares a field only to give it its own default (dataclasses keep the field where the base put it).

Like distill.config this imports nothing of ours: it is part of the schema, which every layer reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoraSection:
    # The adapters' rank (PEFT's LoraConfig.r).
    r: int = 16
    # LoRA's scaling numerator: the update is scaled by alpha / r.
    alpha: int = 32
    # Dropout on the adapters' input during training.
    dropout: float = 0.05
    # `all-linear` is PEFT's shorthand for every linear layer except the output head (QLoRA's choice); or names.
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class QuantSection:
    """QLoRA (method=qlora): bitsandbytes 4-bit base weights, as in the QLoRA paper."""

    # 4-bit data type: nf4 (NormalFloat, QLoRA's) or fp4.
    quant_type: str = "nf4"
    # Quantize the quantization constants too: about 0.4 bits per parameter saved.
    double_quant: bool = True
    # Matmul dtype: auto follows model.dtype's rule (bfloat16 on CUDA and on CPUs with AMX, float32 on other CPUs,
    # where bf16 matmuls are slow; distill.precision), resolved once when the config loads.
    compute_dtype: str = "auto"


@dataclass
class TrainingFields:
    """What every trainer has under the same key: the method, the optimizer's schedule, the run's length, saving and
    resuming. distill.training.trl_args maps these onto TRL's configs in one place."""

    # lora | qlora (4-bit base + LoRA) | full
    method: str = "lora"
    # Start from these weights instead of model.name: a model folder, or a LoRA adapter folder to keep training.
    init_from: str | None = None
    # The output folder's name under <output_dir>/<stage>/ (each stage names a default).
    run_name: str | None = None
    # Peak learning rate of AdamW (TrainingArguments.learning_rate).
    learning_rate: float = 1.0e-4
    # transformers' schedule name: constant, linear, cosine, cosine_with_min_lr (min_lr_rate in
    # trainer.lr_scheduler_kwargs), ...
    lr_scheduler_type: str = "constant"
    # Linear warmup: a fraction of the optimizer steps (< 1) or a number of steps.
    warmup_steps: float = 0.0
    # AdamW's decoupled weight decay.
    weight_decay: float = 0.0
    # Gradients are clipped to this global norm.
    max_grad_norm: float = 1.0
    # Micro-batches per optimizer step.
    gradient_accumulation_steps: int = 1
    # Passes over the data (fractions allowed); max_steps wins when set.
    num_train_epochs: float = 1.0
    # Optimizer steps; -1: num_train_epochs decides.
    max_steps: int = -1
    # Recompute activations in the backward pass: less memory, about a third more compute.
    gradient_checkpointing: bool = False
    # A checkpoint (resumable) every this many optimizer steps.
    save_steps: int = 50
    # None: keep every checkpoint (grpo.compare's budget sweep evaluates them).
    save_total_limit: int | None = 2
    # Also checkpoint when the run has done these fractions of its length -- of its step count, or of its FLOP
    # budget (max_flops) where that ends it first: the budget sweep's points (grpo.compare's compare.sweep).
    save_fractions: list[float] = field(default_factory=list)
    # auto: continue from the last complete checkpoint in the output folder if any; never: start over (its
    # checkpoints are removed); or the path of a checkpoint folder.
    resume: str = "auto"
    # This stage's experiment trackers (TRL's report_to: none, tensorboard, trackio, wandb, mlflow or a list); None:
    # the top-level report_to (distill.config).
    report_to: str | list[str] | None = None
    # Upload the finished run's folder (the model or adapter, its tokenizer and the model card distill-factory
    # writes) to the Hub, after the card is written (TRL's names). Needs HF_TOKEN and network, checked at start.
    push_to_hub: bool = False
    # The Hub repo to push to, e.g. me/qwen-1.5b-distill; None: the run folder's name under the token's account.
    hub_model_id: str | None = None
    # Make the pushed repo private; None: the account's default.
    hub_private_repo: bool | None = None
    lora: LoraSection = field(default_factory=LoraSection)
    quant: QuantSection = field(default_factory=QuantSection)
    # Any other field of the trainer's TRL config (SFTConfig, GRPOConfig, DistillationConfig), passed as is
    # (e.g. neftune_noise_alpha: 5, sync_ref_model: true, top_k: 20).
    trainer: dict[str, Any] = field(default_factory=dict)

"""The one place where the recipe's `sft` section becomes TRL, PEFT and bitsandbytes objects, and the model is loaded.

SFTConfig, LoraConfig and BitsAndBytesConfig do the work; this module only maps our keys onto theirs and picks
device-dependent defaults (bf16 where the device computes it natively, distill.precision; Liger on CUDA).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError

# What load_trainee trains: LoRA on full-precision weights, LoRA on 4-bit weights (bnb_config), every weight.
METHODS = ("lora", "qlora", "full")


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def model_dtype(cfg: Config):
    """model.dtype as a torch dtype (resolved when the config loaded: distill.recipes.resolve)."""
    import torch

    return getattr(torch, _resolved(cfg.model.dtype, "model.dtype"))


def _resolved(dtype: str, key: str) -> str:
    if dtype == "auto":  # a config built by hand rather than by distill.recipes.load_config
        raise ValueError(f"{key}=auto reached a trainer unresolved: load the config with distill.recipes.load_config")
    return dtype


def bnb_config(section):
    """QLoRA's 4-bit NF4 with double quantization; None unless the section's method is qlora. `section` is the
    recipe's sft or grpo section (both carry method, quant and lora)."""
    if section.method != "qlora":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    quant = section.quant
    compute = getattr(torch, _resolved(quant.compute_dtype, "quant.compute_dtype"))
    extra = {}
    if cuda():  # FSDP shards parameters of one dtype: store the 4-bit weights as the compute dtype (harmless alone)
        extra["bnb_4bit_quant_storage"] = compute
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute,
        **extra,
    )


def lora_config(section):
    """LoRA on every linear layer (or the named ones) from the sft or grpo section; None for full fine-tuning."""
    if section.method == "full":
        return None
    from peft import LoraConfig

    lora = section.lora
    targets = lora.target_modules
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        task_type="CAUSAL_LM",
    )


def use_bf16(cfg: Config, section) -> bool:
    """bf16 autocast whenever the weights are bf16 (on CPU too: the trainable LoRA matrices stay fp32, and their
    matmuls then run in bf16 as well), and for QLoRA on CUDA (its compute dtype)."""
    import torch

    return model_dtype(cfg) == torch.bfloat16 or (cuda() and section.method == "qlora")


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None and cuda()


def shared_args(cfg: Config, section, out_dir: Path) -> dict:
    """The TrainingArguments fields the sft and grpo sections share under the same keys: schedule, clipping,
    accumulation, length of training, checkpointing, precision and saving."""
    return dict(
        output_dir=str(out_dir),
        seed=cfg.seed,
        learning_rate=section.learning_rate,
        lr_scheduler_type=section.lr_scheduler,
        warmup_steps=section.warmup_steps,
        weight_decay=section.weight_decay,
        max_grad_norm=section.max_grad_norm,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        num_train_epochs=section.num_epochs,
        max_steps=section.max_steps,
        gradient_checkpointing=section.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if section.gradient_checkpointing else None,
        bf16=use_bf16(cfg, section),
        # transformers refuses bf16 without a GPU unless told the run is on the CPU on purpose.
        use_cpu=use_bf16(cfg, section) and not cuda(),
        save_strategy="steps",
        save_steps=section.save_steps,
        save_total_limit=section.save_total_limit,
        report_to="none",
    )


def sft_args(cfg: Config, out_dir: Path):
    """trl.SFTConfig from the sft section; sft.trainer passes any other field through. Raises ConfigError."""
    from trl import SFTConfig

    sft = cfg.sft
    kwargs = dict(
        **shared_args(cfg, sft, out_dir),
        # Unpacked padding-free rows are not cut by TRL (it refuses a max_length): distill.sft has already left out
        # the rows above it (long_rows=drop; checks.check_sft refuses truncate there).
        max_length=None if sft.padding_free and not sft.packing else sft.max_length,
        packing=sft.packing,
        padding_free=sft.padding_free,
        # Loss on the assistant turn only: the rows are prompt/completion (see distill.training.examples).
        completion_only_loss=True,
        per_device_train_batch_size=sft.per_device_batch_size,
        use_liger_kernel=sft.liger and liger_available(),
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


def disable_cpu_4bit_repacking(model) -> int:
    """bitsandbytes (0.50) on CPUs with AVX512-BF16 repacks 4-bit weights for a fast inference kernel after any forward
    in eval mode without gradients; training then runs through `gemv_4bit`, which has no backward, and the LoRA
    gradients come out silently wrong (~1000x too small, only a UserWarning). Turning the repacking off keeps every
    matmul on the differentiable path. Returns the number of 4-bit layers changed."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def four_bit_unsupported() -> str | None:
    """Why bitsandbytes 4-bit training cannot run on this machine, or None: quantizes one small layer and runs a
    backward pass through it (bitsandbytes builds differ in which devices and ops they support)."""
    try:
        import bitsandbytes as bnb
        import torch

        device = "cuda" if cuda() else "cpu"
        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4").to(device)  # quantizes
        x = torch.randn(2, 64, device=device, requires_grad=True)
        layer(x).sum().backward()
        if x.grad is None or not torch.isfinite(x.grad).all():
            return "bitsandbytes 4-bit layers give no finite gradient here"
    except Exception as e:  # ImportError, missing native library, unsupported device: all mean "cannot"
        first = (str(e).strip().splitlines() or [""])[0]
        return f"bitsandbytes 4-bit does not run here ({type(e).__name__}: {first})"
    return None


def _device_map(quantized: bool):
    """bitsandbytes places weights at load time: one GPU per process, unless DeepSpeed/FSDP shard the model."""
    if not (quantized and cuda()):
        return None
    if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true" or os.environ.get("ACCELERATE_USE_FSDP") == "true":
        return None
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def load_model(cfg: Config, path: str, section, revision: str | None = None):
    """The model to train (section: cfg.sft or cfg.grpo), quantized for QLoRA with the CPU fix and PEFT's k-bit
    preparation."""
    from transformers import AutoModelForCausalLM

    quant = bnb_config(section)
    kwargs = dict(dtype=model_dtype(cfg), trust_remote_code=cfg.model.trust_remote_code, revision=revision)
    if getattr(section, "attn_implementation", None):
        kwargs["attn_implementation"] = section.attn_implementation
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map=_device_map(True))
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        if not cuda():
            disable_cpu_4bit_repacking(model)
        # Norms and embeddings to fp32, base frozen, input grads on for checkpointing: what PEFT expects for k-bit.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=section.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


def trainee_base(cfg: Config, init_from: str | None) -> tuple[str, str | None]:
    """(path, revision) of the weights a run starts from: model.name, the folder `init_from`, or -- when init_from is
    a LoRA adapter -- the adapter's own base (adapter_config.json's base_model_name_or_path), never model.name."""
    from distill.models import adapter_base, is_adapter, resolve_model

    if init_from is None:
        path = resolve_model(cfg.model.name, cfg.model.revision)
        return path, cfg.model.revision if path == cfg.model.name else None  # a hub id not cached yet
    if is_adapter(init_from):
        name, revision = adapter_base(Path(init_from))
        return resolve_model(name, revision), None
    return resolve_model(init_from), None


def load_trainee(cfg: Config, section, name: str):
    """(base path, model, tokenizer, LoraConfig or None) for distill.sft (section cfg.sft) and grpo.train (cfg.grpo):
    one loader, so both start from the same weights for the same settings. An adapter in `section.init_from` is
    loaded on its own base and trained further (it carries the tokenizer and chat template it was trained with)."""
    from transformers import AutoTokenizer

    from distill.models import is_adapter

    init = section.init_from
    adapter = init is not None and is_adapter(init)
    if adapter and section.method == "full":
        raise ConfigError(f"{name}.init_from={init} is a LoRA adapter; {name}.method=full needs a model folder")
    base, revision = trainee_base(cfg, init)
    tokenizer = AutoTokenizer.from_pretrained(
        init if adapter else base, revision=revision, trust_remote_code=cfg.model.trust_remote_code
    )
    model = load_model(cfg, base, section, revision)
    if adapter:
        from peft import PeftModel

        return base, PeftModel.from_pretrained(model, init, is_trainable=True), tokenizer, None
    return base, model, tokenizer, lora_config(section)


def check_four_bit(section, name: str) -> None:
    """qlora needs bitsandbytes 4-bit layers that train on this machine; raises ConfigError (a machine check, so
    at the entry point rather than at parse time: it imports torch and bitsandbytes)."""
    if section.method == "qlora" and (reason := four_bit_unsupported()):
        raise ConfigError(f"{name}.method=qlora: {reason}; use {name}.method=lora")

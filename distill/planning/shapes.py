"""A model's shape from its config.json alone -- no weights, no torch: parameters, linear layers, context, KV cache.

Where the config comes from, first found wins: a local folder (an adapter folder: its base), the Hugging Face cache,
the hub (skipped under HF_HUB_OFFLINE=1), else the copy kept beside the recipes (`recipes/models/<org>--<name>.json`,
the hub's values for every model a recipe names), so planning runs offline and in CI.

Dense decoders only (Llama, Qwen2/2.5/3, Mistral and the like): gated MLP, grouped-query attention, RMSNorm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distill import hub
from distill.errors import ConfigError
from distill.recipes import RECIPES_DIR

MODELS_DIR = RECIPES_DIR / "models"
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
# vLLM leaves max_position_embeddings as it is for these RoPE types (already scaled); others multiply by `factor`
# (vllm/config/model.py, _get_and_verify_max_len).
ROPE_ALREADY_SCALED = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")
REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class Linear:
    name: str  # the module name PEFT matches (q_proj, ..., down_proj)
    d_in: int
    d_out: int


@dataclass(frozen=True)
class ModelShape:
    """What memory and context depend on, read from one config.json."""

    name: str
    source: str  # where the config came from, for the table's notes
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    max_positions: int
    rope_theta: float | None
    rope_scaling: dict | None
    dtype: str  # the checkpoint's torch_dtype
    qkv_bias: bool

    @classmethod
    def from_config(cls, name: str, config: dict, source: str) -> ModelShape:
        config = config.get("text_config") or config  # multimodal wrappers keep the decoder apart
        missing = [k for k in REQUIRED if k not in config]
        if missing:
            raise ConfigError(
                f"model {name}: its config.json ({source}) has no {', '.join(missing)}: not a dense decoder"
            )
        heads = config["num_attention_heads"]
        return cls(
            name=name,
            source=source,
            model_type=config.get("model_type", "?"),
            hidden=config["hidden_size"],
            intermediate=config["intermediate_size"],
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            vocab=config["vocab_size"],
            tied=bool(config.get("tie_word_embeddings", False)),
            max_positions=config.get("max_position_embeddings") or 2048,  # vLLM's default when a config has none
            rope_theta=config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta"),
            rope_scaling=config.get("rope_scaling") or config.get("rope_parameters"),
            dtype=str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"),
            # Qwen2 has biases on q, k and v; Llama-style configs say so in attention_bias.
            qkv_bias=config.get("model_type") == "qwen2" or bool(config.get("attention_bias", False)),
        )

    @property
    def context(self) -> int:
        """The longest sequence (tokens) the model takes: max_position_embeddings with RoPE scaling, as vLLM derives
        its max_model_len (a `factor` multiplies it unless the RoPE type is already scaled, e.g. llama3, yarn)."""
        scaling = self.rope_scaling or {}
        rope_type = scaling.get("rope_type") or scaling.get("type") or "default"
        factor = scaling.get("factor") or 1.0
        if rope_type in ROPE_ALREADY_SCALED or self.model_type.startswith("gemma3"):
            factor = 1.0
        return int(self.max_positions * factor)

    def linears(self) -> list[Linear]:
        """One decoder layer's linear layers, as PEFT's `all-linear` targets them."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return [
            Linear("q_proj", h, q),
            Linear("k_proj", h, kv),
            Linear("v_proj", h, kv),
            Linear("o_proj", q, h),
            Linear("gate_proj", h, i),
            Linear("up_proj", h, i),
            Linear("down_proj", i, h),
        ]

    @property
    def linear_params(self) -> int:
        """Weights of every decoder layer's linear layers (what 4-bit quantization and ZeRO-3 layer gathers see)."""
        return self.layers * sum(lin.d_in * lin.d_out for lin in self.linears())

    @property
    def embedding_params(self) -> int:
        """Input embeddings plus the output head (once if tied)."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        """Every parameter: embeddings and head, linear layers, q/k/v biases, norms (two per layer, one final;
        Qwen3 also normalizes q and k per head)."""
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        norms = 2 * self.hidden + (2 * self.head_dim if self.model_type == "qwen3" else 0)
        return self.embedding_params + self.linear_params + self.layers * (bias + norms) + self.hidden

    def lora_params(self, r: int, targets: list[str]) -> int:
        """LoRA parameters (A: r x d_in, B: d_out x r) on the targeted linear layers of every decoder layer."""
        chosen = [lin for lin in self.linears() if targets == ["all-linear"] or lin.name in targets]
        return self.layers * sum(r * (lin.d_in + lin.d_out) for lin in chosen)

    def kv_bytes_per_token(self, dtype_bytes: int, tensor_parallel: int = 1) -> int:
        """Bytes of K and V cache one token takes on one GPU (KV heads split across tensor-parallel ranks, each rank
        holding at least one)."""
        kv_heads = max(1, self.kv_heads // tensor_parallel)
        return 2 * self.layers * kv_heads * self.head_dim * dtype_bytes


def bundled_config_path(name: str) -> Path:
    """recipes/models/<org>--<name>.json for a hub id, recipes/models/<name>.json for a built-in name."""
    return MODELS_DIR / (name.replace("/", "--") + ".json")


def _from_folder(folder: Path, name: str) -> ModelShape:
    adapter = folder / "adapter_config.json"
    if adapter.is_file() and not (folder / "config.json").is_file():
        base = adapter_base(folder)
        if not base:
            raise ConfigError(f"adapter {folder}: adapter_config.json names no base_model_name_or_path")
        return model_shape(base)
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"model {name}: the folder {folder} has no config.json")
    return ModelShape.from_config(name, json.loads(path.read_text()), str(path))


def adapter_base(folder: str | Path) -> str | None:
    """The base model a LoRA adapter folder was trained on (models.adapter_base), or None for any other folder."""
    from distill.models import adapter_base as base_of
    from distill.models import is_adapter

    return base_of(Path(folder).expanduser())[0] if is_adapter(folder) else None


def _hub_config(name: str, revision: str | None) -> tuple[dict, str] | None:
    """config.json from the Hugging Face cache, else the hub (not under HF_HUB_OFFLINE); None if neither has it."""
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:
        return None
    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # not a valid repo id (HFValidationError): nothing cached under it
        return None
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text()), f"HF cache {cached}"
    if hub.offline():
        return None
    try:
        path = hf_hub_download(name, "config.json", revision=revision, etag_timeout=5)
    except Exception:  # no network, gated, unknown repo: all mean "use the copy beside the recipes"
        return None
    return json.loads(Path(path).read_text()), f"hub {name}"


def model_shape(name: str, revision: str | None = None) -> ModelShape:
    """The shape of a built-in name, local folder (or adapter folder: its base) or hub id; ConfigError (one line)
    when no config.json can be found."""
    from distill.models import BUILTIN_MODELS, cache_dir

    folder = Path(name).expanduser()
    if folder.is_dir():
        return _from_folder(folder, name)
    if name.startswith(("/", "./", "../", "~")):  # meant as a folder (models.resolve_model says the same)
        raise ConfigError(f"model '{name}': no such folder")
    if name in BUILTIN_MODELS:  # the converted folder if it exists; never convert just to plan
        converted = sorted((cache_dir() / "models").glob(f"{name}-*/config.json"))
        if converted:
            return ModelShape.from_config(name, json.loads(converted[-1].read_text()), str(converted[-1]))
    elif "/" in name:
        found = _hub_config(name, revision)
        if found:
            return ModelShape.from_config(name, *found)
    copy = bundled_config_path(name)
    if copy.is_file():
        shown = copy.relative_to(RECIPES_DIR.parent) if copy.is_relative_to(RECIPES_DIR.parent) else copy
        return ModelShape.from_config(name, json.loads(copy.read_text()), str(shown))
    raise ConfigError(
        f"no config.json for model '{name}': not a folder, not cached, the hub not reachable, and no copy at "
        f"{copy} (save the hub's config.json there)"
    )

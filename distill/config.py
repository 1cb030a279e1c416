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
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 42
    # Where a stage writes its outputs; each stage makes its own sub-folder.
    output_dir: str = "outputs"
    # Filled in by load_config with the recipe's name; not meant to be set by hand.
    recipe: str = ""


T = TypeVar("T")


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
    args = [a.__name__ for a in typing.get_args(hint) if a is not type(None)]
    return " or ".join(args) if args else getattr(hint, "__name__", str(hint))


def _merge(schema: type[T], layers: list[tuple[str, Any]], keys: dict[str, Any]) -> T:
    merged = OmegaConf.structured(schema)
    for where, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or "?"
            expected = _type_name(keys[key]) if key in keys else "another type"
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

"""Recipes and `key=value` overrides on the typed schema (distill.config): parse, merge, check, resolve, help.

`python -m distill.X recipe=NAME a.b=1 c=foo`: `recipe=NAME` picks `recipes/NAME.yaml` (or a path to a YAML file);
the other pairs override nested keys. The schema's dataclasses hold every key and its default, so an unknown key, a
wrongly typed value or an unknown recipe fails at once -- before any model is loaded -- with one line that names the
key or recipe and the closest valid ones. OmegaConf does the merging and type conversion; distill.checks judges the
values; `resolve` then turns every `auto` (and every seed left to the run's) into what this machine and run will use,
once, so that config.yaml, manifests, cards and resume checks record the real settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import os
import re
import textwrap
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from distill.checks import check_config
from distill.config import Config
from distill.errors import ConfigError

RECIPES_DIR = Path(os.environ.get("DISTILL_RECIPES", Path(__file__).resolve().parents[1] / "recipes"))
DEFAULT_RECIPE = "smollm2"

T = TypeVar("T")

# Keys that now carry TRL's names (trl.SFTConfig, transformers.TrainingArguments): old name -> new, in any section.
# An old one is refused with one line naming the new one, so a recipe written before does not silently
# fall back to a default.
RENAMED = {
    "per_device_batch_size": "per_device_train_batch_size",
    "lr_scheduler": "lr_scheduler_type",
    "num_epochs": "num_train_epochs",
    "liger": "use_liger_kernel",
}


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


def _check_renamed(key: str, keys: dict[str, Any]) -> None:
    """ConfigError for a key that now carries TRL's name (config.RENAMED), naming the new one."""
    head, _, last = key.rpartition(".")
    if last not in RENAMED:
        return
    new = f"{head}.{RENAMED[last]}" if head else RENAMED[last]
    if new in keys or not head:
        raise ConfigError(f"{key} was renamed: use {new}")


def _check_key(key: str, keys: dict[str, Any], where: str) -> None:
    if key in keys or _is_dict_key(key, keys):
        return
    _check_renamed(key, keys)
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


def _read_recipe(path: Path, keys: dict[str, Any], seen: tuple[Path, ...] = ()) -> dict:
    """The recipe file's tree; a file that starts from another (`base: qwen7b`, a name or a path) is that recipe's
    tree with this file's keys over it."""
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(tree).__name__}")
    base = tree.pop("base", None)
    for key in _flatten(tree):
        _check_key(key, keys, f"in {path}")
    if base is None:
        return tree
    base_path = recipe_path(str(base))
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: 'base: {base}' leads back to itself")
    parent = _read_recipe(base_path, keys, (*seen, path.resolve()))
    return OmegaConf.to_container(OmegaConf.merge(parent, tree))


# What TRL's scripts call a setting, where our name differs (`--model_name_or_path X` in TRL's examples).
TRL_ALIASES = {"model_name_or_path": "model.name", "model_revision": "model.revision"}


def _flag_key(flag: str, keys: dict[str, Any], sections: tuple[str, ...]) -> str:
    """The schema key a TRL-style `--name` means: the key itself, a TRL alias, or the one key of that last name (in
    the entry point's own sections first); ConfigError naming the candidates when that is not one key."""
    name = flag.lstrip("-").replace("-", "_")
    if name == "config":
        return "recipe"
    if name in keys or name in TRL_ALIASES:
        return TRL_ALIASES.get(name, name)
    _check_renamed(name, keys)
    found = [k for k in keys if k.rsplit(".", 1)[-1] == name]
    own = [k for k in found if k.split(".", 1)[0] in sections]
    if len(own) == 1 or len(found) == 1:
        return (own or found)[0]
    if not found:
        raise ConfigError(f"unknown option '{flag}'; closest key: {_closest(name, list(keys))} (as key=value)")
    raise ConfigError(f"'{flag}' is ambiguous here; name the key: {' or '.join(sorted(found))} (as key=value)")


def _as_key_values(argv: list[str], keys: dict[str, Any], sections: tuple[str, ...]) -> list[str]:
    """argv with TRL-style options made `key=value`: `--config FILE` is recipe=FILE, `--learning_rate 1e-5` the
    learning rate of the entry point's own section (sft.learning_rate=1e-5 for distill.sft)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            out.append(arg)
            i += 1
            continue
        flag, sep, value = arg.partition("=")
        if not sep:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"expected a value after '{flag}' (or write it as key=value)")
            value, i = argv[i + 1], i + 1
        out.append(f"{_flag_key(flag, keys, sections)}={value}")
        i += 1
    return out


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


def resolve(cfg: Config) -> Config:
    """Every `auto` and every seed left to the run's, made concrete for this machine and run -- the one place they
    are resolved, so that what config.yaml, manifests, cards and resume checks record is what ran. In place;
    idempotent. model.dtype and quant.compute_dtype: distill.precision's rule on this machine; generate.sampling.seed
    and eval.sampling.seed: `seed` unless set."""
    from distill.precision import resolve_dtype

    cfg.model.dtype = resolve_dtype(cfg.model.dtype)
    for section in (cfg.sft, cfg.grpo, cfg.kd):
        section.quant.compute_dtype = resolve_dtype(section.quant.compute_dtype)
    for sampling in (cfg.generate.sampling, cfg.eval.sampling):
        if sampling.seed is None:
            sampling.seed = cfg.seed
    return cfg


def resolved_summary(cfg: Config) -> str:
    """The resolved settings a stage states in its first line."""
    return f"recipe {cfg.recipe}, model {cfg.model.name} in {cfg.model.dtype}, seed {cfg.seed}"


def load_config(
    argv: list[str],
    schema: type[T] = Config,
    default_recipe: str = DEFAULT_RECIPE,
    resolved: bool = True,
    sections: tuple[str, ...] = (),
) -> T:
    """The schema's defaults, overlaid with the recipe file, overlaid with the `key=value` overrides, checked; and
    with `resolved`, every auto resolved for this machine (`resolve`). distill.plan reads a recipe unresolved: it
    judges the recipe on the hardware the recipe declares, not on this machine. TRL-style `--config FILE` and
    `--name value` are read as key=value (see _as_key_values; `sections`: the entry point's own, for short names)."""
    keys = schema_keys(schema)
    recipe, pairs = _parse_overrides(_as_key_values(list(argv), keys, sections))
    path = recipe_path(recipe or default_recipe)
    layers: list[tuple[str, Any]] = [(f"in {path}", _read_recipe(path, keys))]
    for key, value in pairs:
        _check_key(key, keys, "on the command line")
        if typing.get_origin(keys.get(key)) is list and not value.lstrip().startswith("["):
            value = f"[{value}]"  # benchmarks=math500,gsm8k reads as a list, as users type it
        layers.append((f"in '{key}={value}'", OmegaConf.from_dotlist([f"{key}={value}"])))
    if "recipe" in keys:
        layers.append(("(recipe name)", {"recipe": recipe or default_recipe}))
    cfg = _merge(schema, layers, keys)
    if isinstance(cfg, Config):
        check_config(cfg)
        if resolved:
            resolve(cfg)
    return cfg


@functools.cache
def field_comments(schema: type) -> dict[str, str]:
    """Field name -> the comment lines right above it in the schema's source (distill.config, training.fields),
    joined; a field inherits its base class's comment unless it has its own. A field in a block under one comment
    (no blank line between) gets "see <the block's first key>", whose comment names the others."""
    comments: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        pending: list[str] = []
        group = None  # the commented field that heads the block of fields this one belongs to
        for line in inspect.getsource(cls).splitlines()[1:]:
            text = line.strip()
            if text.startswith("#"):
                pending.append(text.lstrip("#").strip())
            elif match := re.match(r"    (\w+)\s*:", line):  # a field at the class body's indent
                name = match.group(1)
                if pending:
                    comments[name], group = " ".join(pending), name
                elif group is not None and name not in comments:
                    comments[name] = f"see {group}"
                pending = []
            elif not text or text.startswith(('"""', "def ", "@")):  # a blank line, docstring or method ends a block
                pending, group = [], None
    return comments


def key_meanings(schema: type = Config, prefix: str = "") -> dict[str, str]:
    """Every dotted key that has a comment in the schema -> that comment: what --help prints beside each value."""
    meanings: dict[str, str] = {}
    hints = typing.get_type_hints(schema)
    comments = field_comments(schema)
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            meanings.update(key_meanings(hints[f.name], f"{prefix}{f.name}."))
        elif f.name in comments:
            meaning = comments[f.name]
            meanings[prefix + f.name] = f"see {prefix}{meaning[4:]}" if meaning.startswith("see ") else meaning
    return meanings


def _meaning(key: str, meanings: dict[str, str]) -> str | None:
    """The key's meaning; an entry of a dict field (grpo.reward_weights.format) points at the field."""
    if key in meanings:
        return meanings[key]
    parent = key.rpartition(".")[0]
    while parent and parent not in meanings:
        parent = parent.rpartition(".")[0]
    return f"see {parent}" if parent else None


def _help_line(key: str, value: Any, meaning: str | None) -> str:
    """`  key=value  # meaning`, the meaning wrapped at 120 columns under its first line."""
    line = f"  {key}={value!r}"
    if not meaning:
        return line
    width = max(40, 118 - len(line))
    first, *rest = textwrap.wrap(meaning, width) or [""]
    indent = " " * (len(line) + 2)
    return "\n".join([f"{line}  # {first}", *(f"{indent}# {more}" for more in rest)])


def help_text(prog: str, summary: str, sections: tuple[str, ...] = (), argv: list[str] | tuple[str, ...] = ()) -> str:
    """--help: usage, the recipes, and the keys of the given sections with their values in the recipe that `argv`
    names (recipe=X and any overrides; the default recipe without one), each with its meaning from the schema's
    comments (key_meanings)."""
    cfg = load_config(list(argv), resolved=False, sections=sections)
    defaults = _flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
    shown = [k for k in defaults if "." not in k or k.split(".")[0] in ("model", *sections)]
    meanings = key_meanings()
    lines = [
        f"usage: python -m {prog} [recipe=NAME] [key=value ...]",
        "",
        summary,
        "",
        f"recipes ({RECIPES_DIR}): {', '.join(available_recipes())}  (default: {DEFAULT_RECIPE})",
        "",
        f"keys (their values in recipe {cfg.recipe}; the meaning after #):",
        *(_help_line(k, defaults[k], _meaning(k, meanings)) for k in shown),
    ]
    return "\n".join(lines)

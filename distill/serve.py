"""`python -m distill.serve [recipe=NAME] [key=value ...] [--replicas N] [--port 8000] [--stage generate|eval]`

Starts N of vLLM's OpenAI-compatible servers for a recipe's teacher (stage generate) or evaluated model (stage eval)
on this machine, with the recipe's settings: the model (a built-in name is converted once, an adapter merged), its
dtype (`auto` resolved as the offline engine does), `*.engine.tensor_parallel_size` and `*.engine.max_model_len`,
the run's seed, and the API key from `*.engine.api_key_env` when that variable is set. It waits until every server
answers /health, prints the URLs and the command that uses them (`generate.engine.kind=openai
generate.engine.urls=[...]`), and serves until interrupted (Ctrl-C, SIGTERM), then stops them all.
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


def spec_for(cfg: Config, stage: str, reasoning_parser: str | None = None) -> ServerSpec:
    """The servers' settings for a stage's model, from the recipe."""
    from distill.models import resolve_for_inference
    from distill.precision import resolve_dtype

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
    parser.add_argument("--stage", choices=("generate", "eval"), default="generate")
    parser.add_argument("--reasoning-parser", default=None, help="vLLM's reasoning parser (e.g. deepseek_r1)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, rest = _arguments(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.replicas < 1:
            raise UserError(f"--replicas must be >= 1, got {args.replicas}")
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
        print(f"next: python -m distill.{args.stage} recipe={cfg.recipe} {args.stage}.engine.kind=openai "
              f"{args.stage}.engine.urls=[{urls}]", file=sys.stderr)  # fmt: skip
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

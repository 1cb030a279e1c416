"""`python -m distill.cluster {serve,generate,sft,grpo,compare} [recipe=NAME] [key=value ...] [--out FILE] [--time HH:MM:SS]`

Renders a Slurm job script of recipes/slurm/ for a recipe and prints it (or writes --out): `serve` (the teacher's
fleet: one vLLM server per node, an array job), `generate` (the client that waits for the fleet's URLs and samples
through it), `sft` (multi-node `accelerate launch`, one per node), `grpo` (TRL's `trl vllm-serve` beside the
training processes, server mode), `compare` (grpo.compare in one allocation, its training stages started with srun
on every node: compare.launcher=srun). Node, GPU and process counts come from the recipe's `hardware:` section, the
accelerate config from `hardware.sharding`; every key=value given here is passed on to the job's command, so the job
runs the settings the render was asked for. Nothing is submitted: `sbatch` the output.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from distill.config import Config, teacher_name
from distill.engines.serve import ServerSpec, server_command
from distill.errors import UserError
from distill.recipes import RECIPES_DIR, load_config

TEMPLATES = ("serve", "generate", "sft", "grpo", "compare")
SLURM_DIR = RECIPES_DIR / "slurm"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
PYTHON = "python"  # the job's interpreter: the environment the job activates, not this machine's path


def render(template: str, values: dict[str, object]) -> str:
    """`template` with every {{name}} replaced; KeyError names a placeholder without a value."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def _accelerate_config(cfg: Config) -> str:
    name = "fsdp" if cfg.hardware.sharding == "fsdp" else "zero3"
    return str(Path("recipes") / "accelerate" / f"{name}.yaml")


def _common(cfg: Config, overrides: list[str], time: str) -> dict[str, object]:
    hw = cfg.hardware
    out = Path(cfg.output_dir)
    return {"recipe": cfg.recipe, "name": Path(cfg.recipe).stem, "time": time, "log_dir": out / "logs" / "slurm",
            "urls_dir": out / "fleet", "gpus_per_node": hw.gpus_per_node, "nodes": hw.nodes,
            "args": shlex.join([f"recipe={cfg.recipe}", *overrides])}  # fmt: skip


def _serve(cfg: Config, values: dict) -> dict:
    engine = cfg.generate.engine
    spec = ServerSpec(model=teacher_name(cfg), served_name=engine.served_model or teacher_name(cfg),
                      dtype="auto" if cfg.model.dtype == "auto" else cfg.model.dtype,
                      max_model_len=engine.max_model_len, tensor_parallel_size=cfg.hardware.gpus_per_node,
                      seed=cfg.seed, host="0.0.0.0")  # fmt: skip
    command = shlex.join(server_command(spec, "PORT", python=PYTHON, cuda=cfg.hardware.cuda))
    return {"replicas": cfg.hardware.nodes, "last_replica": cfg.hardware.nodes - 1,
            "serve_command": command.replace("--port PORT", '--port "$PORT"')}  # fmt: skip


def _generate(cfg: Config, values: dict) -> dict:
    command = f"{PYTHON} -m distill.generate {values['args']} generate.engine.kind=openai"
    return {"replicas": cfg.hardware.nodes, "client_cpus": 32, "generate_command": command}


def _sft(cfg: Config, values: dict) -> dict:
    hw = cfg.hardware
    launch = (f"accelerate launch --config_file {_accelerate_config(cfg)} --num_machines {hw.nodes} "
              f"--num_processes {hw.nodes * hw.gpus_per_node} --machine_rank $SLURM_NODEID --main_process_ip $MAIN "
              f"--main_process_port 29500 -m distill.sft {values['args']}")  # fmt: skip
    return {
        "accelerate_config": _accelerate_config(cfg),
        "sft_command": "srun --kill-on-bad-exit=1 bash -c " + shlex.quote(launch),
    }


def _grpo(cfg: Config, values: dict) -> dict:
    hw = cfg.hardware
    server = hw.vllm_server_gpus
    if server < 1:
        raise UserError("hardware.vllm_server_gpus: 0; the grpo job puts `trl vllm-serve` on GPUs of its own, set 1+")
    train = hw.processes.get("grpo", hw.gpus_per_node - server)
    if train < 1 or server + train > hw.gpus_per_node:
        raise UserError(f"hardware: {server} server GPU(s) + {train} GRPO process(es) do not fit "
                        f"{hw.gpus_per_node} GPUs per node (hardware.processes.grpo, hardware.vllm_server_gpus)")  # fmt: skip
    serve = shlex.join(["trl", "vllm-serve", "--model", cfg.model.name, "--tensor-parallel-size", str(server)])
    grpo = (f"accelerate launch --config_file {_accelerate_config(cfg)} --num_processes {train} -m grpo.train "
            f"{values['args']} grpo.vllm_mode=server grpo.vllm_server_base_url=http://localhost:8000")  # fmt: skip
    return {"vllm_server_gpus": server, "grpo_processes": train, "gpus_total": server + train,
            "server_devices": ",".join(map(str, range(server))),
            "train_devices": ",".join(map(str, range(server, server + train))),
            "server_command": serve, "grpo_command": grpo}  # fmt: skip


def _compare(cfg: Config, values: dict) -> dict:
    config = cfg.compare.accelerate_config or _accelerate_config(cfg)
    # exec: the comparison is the job's process, so the allocation ends with it
    command = f"exec {PYTHON} -m grpo.compare {values['args']} compare.launcher=srun"
    if not cfg.compare.accelerate_config:
        command += f" compare.accelerate_config={config}"
    return {"accelerate_config": config, "compare_command": command}


_VALUES = {"serve": _serve, "generate": _generate, "sft": _sft, "grpo": _grpo, "compare": _compare}


def render_job(kind: str, cfg: Config, overrides: list[str], time: str = "24:00:00") -> str:
    """The job script of `kind` (one of TEMPLATES) for a loaded recipe and the overrides it was loaded with."""
    values = _common(cfg, overrides, time)
    values.update(_VALUES[kind](cfg, values))
    return render((SLURM_DIR / f"{kind}.sbatch").read_text(), values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.cluster", description=__doc__.split("\n\n")[1])
    parser.add_argument("kind", choices=TEMPLATES)
    parser.add_argument("--out", type=Path, default=None, help="write the script here (default: print it)")
    parser.add_argument("--time", default="24:00:00", help="the job's time limit (Slurm's --time)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(rest)
        script = render_job(args.kind, cfg, [a for a in rest if not a.startswith("recipe=")], args.time)
    except UserError as e:
        print(f"distill.cluster: error: {e}", file=sys.stderr)
        return 2
    if args.out is None:
        print(script, end="")
    else:
        args.out.write_text(script)
        print(f"distill.cluster: wrote {args.out}; submit it with: sbatch {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

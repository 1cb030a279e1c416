"""How grpo.compare starts a stage: the command line compare.launcher gives a training stage (the stage table's
`parallel`: sft, grpo, kd); generate and eval are always `python -m`.

    plain       python -m distill.sft recipe=<settings>
    accelerate  python -m accelerate.commands.launch [--config_file F] --num_processes N [--multi_gpu]
                    --main_process_port 0 [--num_cpu_threads_per_process T] -m distill.sft recipe=<settings>
    srun        srun --nodes=M --ntasks-per-node=1 --kill-on-bad-exit=1 --wait=60 bash -c
                    'MAIN=<first node>; exec python -m accelerate.commands.launch ... --num_machines M
                     --machine_rank "$SLURM_NODEID" --main_process_ip "$MAIN" --main_process_port 29500 -m ...'

`python -m accelerate.commands.launch` is `accelerate launch` run by this interpreter, so the stage imports the same
environment whether or not `accelerate` is on PATH. srun is how open-r1's slurm/train.slurm starts a multi-node run:
one task per node, each an `accelerate launch` that starts that node's processes, node 0 the rendezvous.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from distill.compare_table import STAGE
from distill.config import Config

# The rendezvous port on a cluster's first node (srun); on one machine accelerate picks a free one (port 0), so two
# comparisons on one host do not collide.
SLURM_PORT = 29500
# The first node of the allocation, where rank 0 listens; expanded by the shell on each node.
FIRST_NODE = 'MAIN=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'


def processes(cfg: Config, stage: str) -> int:
    """Training processes in all for `stage` under accelerate or srun: compare.num_processes, else
    hardware.processes[<section>], else one per GPU of hardware (gpus_per_node x nodes)."""
    if cfg.compare.num_processes is not None:
        return cfg.compare.num_processes
    return cfg.hardware.processes.get(STAGE[stage].section, cfg.hardware.gpus)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _accelerate(cfg: Config, total: int, python: str) -> list[str]:
    """`accelerate launch` and the options every machine shares."""
    cmd = [python, "-m", "accelerate.commands.launch"]
    if cfg.compare.accelerate_config:
        cmd += ["--config_file", cfg.compare.accelerate_config]
    else:  # what a config file would say; without them accelerate warns about each default it takes
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no"] + (["--multi_gpu"] if total > 1 else [])
    return cmd + ["--num_processes", str(total)]


def stage_command(cfg: Config, stage: str, settings: Path, python: str = sys.executable) -> list[str]:
    """The command that runs `stage` with its settings file under compare.launcher. python: the interpreter the
    stage runs with (this one; a test may give a stand-in)."""
    module = ["-m", STAGE[stage].module, f"recipe={settings}"]
    launcher = cfg.compare.launcher
    if launcher == "plain" or not STAGE[stage].parallel:
        return [python, *module]
    total = processes(cfg, stage)
    if launcher == "accelerate":
        cmd = [*_accelerate(cfg, total, python), "--num_machines", "1", "--main_process_port", "0"]
        if not _cuda():  # torchrun gives each process one thread: share this machine's cores between them instead
            cmd += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // total))]
        return cmd + module
    nodes = cfg.hardware.nodes
    launch = [*_accelerate(cfg, total, python), "--num_machines", str(nodes)]
    # Each node's task expands its own rank and the first node's name (hence the single quotes around bash -c's).
    per_node = (f'{FIRST_NODE}; exec {shlex.join(launch)} --machine_rank "$SLURM_NODEID" --main_process_ip "$MAIN" '
                f"--main_process_port {SLURM_PORT} {shlex.join(module)}")  # fmt: skip
    # --kill-on-bad-exit: one node's failure ends the step rather than leaving the others waiting at a collective.
    return ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--wait=60",
            "bash", "-c", per_node]  # fmt: skip


def shown(command: list[str]) -> str:
    """The command as a shell line, the interpreter's path shortened to `python` (what the user would type)."""
    line = shlex.join(command)
    return line.replace(shlex.quote(sys.executable), "python")

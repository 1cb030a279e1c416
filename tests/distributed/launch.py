"""Running a stage under the real `accelerate launch` (torchrun inside, gloo between CPU processes) from a test.

On a CPU host `accelerate launch --cpu --num_processes N` starts one process whatever N is (accelerate 1.15), so the
launches here use `--multi_gpu`, which is accelerate's torchrun launcher; distill's TrainingArguments say use_cpu on a
host without CUDA, and accelerate then joins the processes over gloo. Every rank runs `probe_run` (beside this file),
which runs the stage's entry point and writes what the rank saw into PROBE_DIR/rank<R>.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(probe_dir: Path) -> dict:
    """The test process's environment without a rank of its own (the distributed_env fixture or vLLM may have set
    one), the checkout and probe_run importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                           "MASTER_PORT", "LOCAL_WORLD_SIZE")}  # fmt: skip
    probe_dir.mkdir(parents=True, exist_ok=True)
    return {**env, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "HF_HUB_OFFLINE": "1", "PROBE_DIR": str(probe_dir)}


def launch_command(module: str, argv: list[str], processes: int, port: int, machine: tuple[int, int] = (0, 1),
                   launcher: tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """`machine`: (this machine's rank, machines); `processes` counts those of every machine together."""
    rank, machines = machine
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", str(machines), "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
        *launcher, "-m", "probe_run", module, *argv,
    ]  # fmt: skip


def start(module: str, argv: list[str], probe_dir: Path, processes: int = 2, port: int | None = None,
          machine: tuple[int, int] = (0, 1), launcher: tuple[str, ...] = ()) -> subprocess.Popen:  # fmt: skip
    command = launch_command(module, argv, processes, port or free_port(), machine, launcher)
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=launch_env(probe_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a Slurm job step has
    )


def run(module: str, argv: list[str], probe_dir: Path, processes: int = 2, timeout: float = 420) -> str:
    """Launch, wait, assert exit status 0; the launch's stderr."""
    proc = start(module, argv, probe_dir, processes)
    _, err = proc.communicate(timeout=timeout)
    (probe_dir / "launch.stderr").write_text(err)
    assert proc.returncode == 0, failure(err)
    return err


def failure(err: str) -> str:
    """The ranks' tracebacks (torchrun's summary after them names only exit codes)."""
    lines = err.splitlines()
    start = next((i for i, line in enumerate(lines) if "Traceback" in line), max(len(lines) - 60, 0))
    return "\n".join(lines[start : start + 80])


def ranks(probe_dir: Path, processes: int = 2) -> list[dict]:
    """What each rank reported (probe_run), by rank."""
    return [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in range(processes)]

"""An accelerate launch that would run, but not as asked, is refused in one line before any model loads:
`--cpu --num_processes 2` (accelerate starts one process). FSDP on a machine without CUDA (accelerate leaves the model
unsharded there) is refused too: tests/distributed/test_ranks.py, from the environment accelerate's launcher sets."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from launch import ROOT, free_port, launch_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine launches as asked"),
]


def test_a_cpu_launch_of_two_processes_that_starts_one_is_refused(tmp_path):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
               "--main_process_port", str(free_port()), "-m", "distill.sft", f"output_dir={tmp_path}",
               f"sft.dataset={tmp_path / 'none.parquet'}"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=launch_env(tmp_path / "probes"), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("distill.sft: error:")]
    assert len(errors) == 1 and "accelerate launch --cpu starts one process whatever" in errors[0], done.stderr[-3000:]

"""Two accelerate launches that would run, but not as asked, are refused in one line before any model loads:
`--cpu --num_processes 2` (accelerate starts one process) and FSDP on a machine without CUDA (accelerate leaves the
model unsharded there)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from launch import ROOT, free_port, launch_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs both launches as asked"),
]


@pytest.mark.parametrize(
    ("launcher", "message"),
    [
        (["--cpu", "--num_processes", "2"], "accelerate launch --cpu starts one process whatever --num_processes says"),
        (
            [
                "--config_file",
                str(ROOT / "recipes" / "accelerate" / "fsdp.yaml"),
                "--num_processes",
                "2",
                "--mixed_precision",
                "no",
            ],  # fmt: skip
            "FSDP through accelerate needs CUDA GPUs",
        ),
    ],
)
def test_a_launch_that_would_not_run_as_asked_is_refused(tmp_path, launcher, message):
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--main_process_port", str(free_port()),
               "-m", "distill.sft", f"output_dir={tmp_path}", f"sft.dataset={tmp_path / 'none.parquet'}"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=launch_env(tmp_path / "probes"), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("distill.sft: error:")]
    assert errors and all(message in line for line in errors), done.stderr[-3000:]

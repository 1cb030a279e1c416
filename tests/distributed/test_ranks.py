"""What a rank other than 0 leaves alone (no launch: RANK set as torchrun sets it); the launches refused."""

from __future__ import annotations

import pytest
import torch

from distill.cli import write_effective_config
from distill.errors import ConfigError
from distill.recipes import load_config
from distill.training.outputs import SETTINGS_FILE, prepare_run_dir
from distill.training.ranks import check_launch


def test_rank_1_finds_the_checkpoint_rank_0_finds_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "run"
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoint-4" / "trainer_state.json").write_text("{}")
    cfg = load_config(["sft.resume=auto"])
    assert prepare_run_dir(cfg, out, "sft") == out / "checkpoint-4"
    assert not (out / SETTINGS_FILE).exists() and not write_effective_config(cfg, out).exists()
    # resume=never: rank 0 deletes the old checkpoints; rank 1 starts fresh without touching them.
    assert prepare_run_dir(load_config(["sft.resume=never"]), out, "sft") is None
    assert (out / "checkpoint-4").is_dir()
    monkeypatch.setenv("RANK", "0")
    assert prepare_run_dir(load_config(["sft.resume=never"]), out, "sft") is None
    assert not (out / "checkpoint-4").exists() and (out / SETTINGS_FILE).is_file()


def test_accelerates_one_process_cpu_launch_is_recognised(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what its simple launcher sets for --num_processes 2
    with pytest.raises(ConfigError, match="--multi_gpu --num_processes N"):
        check_launch()
    monkeypatch.setenv("RANK", "0")  # torchrun's processes carry a rank: a real launch of several
    check_launch()


@pytest.mark.skipif(torch.cuda.is_available(), reason="FSDP through accelerate runs on CUDA")
def test_fsdp_without_cuda_is_refused(monkeypatch):
    """accelerate's launcher sets ACCELERATE_USE_FSDP=true for recipes/accelerate/fsdp.yaml (utils/launch.py); on
    CPUs accelerate 1.15 would then train an unsharded model per process."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="FSDP through accelerate needs CUDA GPUs"):
        check_launch()

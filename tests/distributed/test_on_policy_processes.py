"""grpo.train and distill.kd under the real `accelerate launch` with 2 processes (torchrun, gloo), generation by
transformers (use_vllm=false): every rank ends with the same weights, each completion is scored once (each rank its
own share), files are written once, and a FLOP budget known to rank 0 alone stops both ranks at the same step."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from launch import ranks, run
from tiny_runs import grpo_argv

pytestmark = pytest.mark.slow


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_grpo_on_two_processes_scores_each_completion_once_and_keeps_the_ranks_equal(tiny_llama, tmp_path):
    steps, per_device, generations = 3, 4, 4
    argv = grpo_argv(
        tiny_llama,
        tmp_path / "out",
        f"grpo.num_generations={generations}",
        f"grpo.per_device_train_batch_size={per_device}",
        f"grpo.max_steps={steps}",
        "grpo.save_steps=100",
    )
    err = run("grpo.train", argv, tmp_path / "probes")
    seen = ranks(tmp_path / "probes")
    assert [r["step"] for r in seen] == [steps, steps]
    assert seen[0]["params_sha256"] == seen[1]["params_sha256"]  # DDP kept the ranks' weights equal
    assert seen[0]["params_sha256"] != seen[0]["params_sha256_begin"]  # and they trained
    # Each step generates per_device x 2 completions (2 prompts x 4); each rank scores its own half, none twice.
    assert [r["scored"] for r in seen] == [steps * per_device] * 2
    out = tmp_path / "out" / "grpo" / "tiny"
    assert [r["step"] for r in _metrics(out)] == list(range(1, steps + 1))
    assert (out / "README.md").is_file() and (out / "adapter_model.safetensors").is_file()
    assert err.count("grpo.train: recipe ") == 1 and err.count("next: python -m distill.eval") == 1


def test_kd_on_two_processes_trains_and_its_flop_budget_stops_both_ranks_at_one_step(tiny_llama, tmp_path):
    """kd's metric history (and so the FLOPs spent) lives on rank 0; the budget's stop is all-reduced, so rank 1
    stops at the same step instead of waiting forever in its next collective."""
    from test_kd import _nudged

    from distill.compute import kd_compute, parameter_count

    teacher = _nudged(tiny_llama, tmp_path / "teacher", scale=0.2)
    params = parameter_count(tiny_llama)
    # A step: 4 completions of 12 tokens (2 per rank) on ~55-token prompts, ~(2 + 2 + 6) x params x 270 FLOPs.
    budget = 1.5 * 10 * params * 270
    argv = [
        f"model.name={tiny_llama}",
        f"kd.teacher={teacher}",
        f"output_dir={tmp_path / 'out'}",
        "kd.run_name=tiny",
        "kd.prompts.sets=[synthetic]",
        "kd.prompts.synthetic_levels=[1]",
        "kd.prompts.synthetic_per_level=8",
        "kd.per_device_train_batch_size=2",
        "kd.gradient_accumulation_steps=1",
        "kd.max_completion_length=12",
        "kd.learning_rate=0.005",
        "kd.lora.r=8",
        "kd.use_vllm=false",
        "kd.max_steps=6",
        "kd.save_steps=100",
        f"kd.max_flops={budget:g}",
    ]
    err = run("distill.kd", argv, tmp_path / "probes")
    out = tmp_path / "out" / "kd" / "tiny"
    records = _metrics(out)
    assert 1 <= len(records) < 6 and all(math.isfinite(r["loss"]) for r in records)
    assert kd_compute(records, params, params, 4).flops >= budget > kd_compute(records[:-1], params, params, 4).flops
    seen = ranks(tmp_path / "probes")
    assert [r["step"] for r in seen] == [len(records)] * 2 and [r["exit"] for r in seen] == [0, 0]
    assert seen[0]["params_sha256"] == seen[1]["params_sha256"] != seen[0]["params_sha256_begin"]
    assert [p.name for p in out.glob("checkpoint-*")] == [f"checkpoint-{len(records)}"]  # the budget's one save
    assert (
        (out / "README.md").is_file() and (out / "loss.png").is_file() and (out / "adapter_model.safetensors").is_file()
    )
    assert err.count("next: python -m distill.eval") == 1

"""distill.sft under the real `accelerate launch` (torchrun, gloo): 2 processes train what 1 process trains with the
same global batch; two "machines" on loopback do too; a SIGTERM to the launcher leaves one checkpoint that resumes
on 2 processes to the uninterrupted result. Each rank's view comes from probe_run (beside this file)."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
from launch import free_port, ranks, run, start
from processes import wait_for

from distill import sft

pytestmark = pytest.mark.slow

STEPS = 8  # two epochs of 16 rows at a global batch of 4
# fp32 throughout. A 2-process step all-reduces two half-batch gradients where 1 process sums one batch: the same
# numbers added in another order, ~1e-7 relative. Adam divides each gradient by its own running RMS, so a weight's
# update is about lr (5e-3) whatever the gradient's size and rounding moves it by far less; measured here: first
# losses equal to 1e-6, adapters after 8 steps within 3e-6 of weights of size ~0.1. 1e-4 is 2% of one step's lr:
# loose enough for another CPU's kernels, tight enough that one step trained on other rows (~5e-3) fails.
ATOL = 1e-4


def _rows(count: int = 16) -> list[dict]:
    """Rows in distill.generate's format (as tests/test_sft.py's): a prompt and a verified <think> answer."""
    rows = []
    for i in range(count):
        a, b = i + 2, 3 * i + 1
        answer = f"<think>\nAdding {a} and {b} gives {a + b}.\n</think>\n\nSo \\boxed{{{a + b}}}."
        messages = [{"role": "user", "content": f"What is {a}+{b}?"}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "id": f"s-{i}", "task": "math", "answer": str(a + b)})
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    from datasets import Dataset

    root = tmp_path_factory.mktemp("sft-processes")
    data = root / "out" / "datasets" / "demo" / "data"
    data.mkdir(parents=True)
    Dataset.from_list(_rows()).to_parquet(str(data / "train-00000-of-00001.parquet"))
    return root


def _argv(root: Path, model: Path, run_name: str, per_device: int, *extra: str) -> list[str]:
    return [
        f"model.name={model}",
        f"output_dir={root / 'out'}",
        "generate.dataset_name=demo",
        f"sft.run_name={run_name}",
        f"sft.max_steps={STEPS}",
        f"sft.per_device_train_batch_size={per_device}",
        "sft.learning_rate=5e-3",
        "sft.warmup_steps=0",
        "sft.lr_scheduler_type=constant",
        "sft.save_steps=100",
        "sft.lora.dropout=0",  # dropout draws per rank: the runs compared here must not draw at all
        *extra,
    ]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _adapter(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


def _close(a: dict, b: dict, atol: float) -> float:
    """The largest difference between two adapters with the same tensors (asserted below it)."""
    assert set(a) == set(b) and a
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, worst
    return worst


@pytest.fixture(scope="module")
def two_processes(workdir, tiny_llama, tmp_path_factory) -> tuple[Path, Path, str]:
    """An 8-step run on 2 processes of 2 rows each: (run folder, probe folder, the launch's stderr)."""
    probes = tmp_path_factory.mktemp("probes-2p")
    err = run("distill.sft", _argv(workdir, tiny_llama, "two", 2), probes)
    return workdir / "out" / "sft" / "two", probes, err


def test_two_processes_train_what_one_process_trains(workdir, tiny_llama, two_processes):
    out, probes, err = two_processes
    assert sft.main(_argv(workdir, tiny_llama, "one", 4)) == 0  # the same global batch on one process
    one, two = _metrics(workdir / "out" / "sft" / "one"), _metrics(out)
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))  # one line per step: rank 0 writes them
    assert math.isclose(two[0]["loss"], one[0]["loss"], rel_tol=1e-5)  # the same 4 rows in the first step
    assert two[-1]["num_tokens"] == one[-1]["num_tokens"]  # TRL counts the tokens of every rank
    _close(_adapter(out), _adapter(workdir / "out" / "sft" / "one"), ATOL)
    seen = ranks(probes)
    assert [r["step"] for r in seen] == [STEPS, STEPS] and seen[0]["params_sha256"] == seen[1]["params_sha256"]
    # Written once, by rank 0: the first line, the next: hint, the card, the loss curve and config.yaml.
    assert err.count("distill.sft: recipe ") == 1 and err.count("next: python -m distill.eval") == 1
    assert (out / "README.md").is_file() and (out / "loss.png").is_file() and (out / "config.yaml").is_file()


def test_two_machines_on_loopback_train_what_two_processes_train(workdir, tiny_llama, two_processes, tmp_path):
    """`--num_machines 2 --machine_rank 0|1`: how a multi-node launch runs, one process per "machine" here."""
    port = free_port()
    argv = _argv(workdir, tiny_llama, "machines", 2)
    procs = [start("distill.sft", argv, tmp_path, 2, port, machine=(rank, 2)) for rank in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=420)
        assert proc.returncode == 0, err[-4000:]
    out = workdir / "out" / "sft" / "machines"
    assert [r["step"] for r in _metrics(out)] == list(range(1, STEPS + 1))
    # The same 2 ranks, rows and reduction as on one machine: the same adapter.
    _close(_adapter(out), _adapter(two_processes[0]), 1e-6)
    assert [r["rank"] for r in ranks(tmp_path)] == [0, 1]


def test_sigterm_to_the_launcher_checkpoints_and_resumes_on_two_processes(workdir, tiny_llama, two_processes, tmp_path):
    """Slurm's preemption sends SIGTERM to the job step's launcher: torchrun passes it to every rank, SaveOnSignal
    agrees on the step with an all-reduce, one checkpoint is saved, and the same command resumes on 2 processes."""
    out = workdir / "out" / "sft" / "stopped"
    argv = _argv(workdir, tiny_llama, "stopped", 2)
    proc = start("distill.sft", argv, tmp_path / "first")
    wait_for(lambda: (out / "metrics.jsonl").is_file() and len(_metrics(out)) >= 2, proc, timeout=420)
    proc.send_signal(signal.SIGTERM)  # to the launcher only, not to its process group
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, err[-3000:]
    checkpoints = list(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1, checkpoints  # one, written by rank 0 with every rank at the same step
    stopped = int(checkpoints[0].name.split("-")[1])
    assert 2 <= stopped < STEPS and "stopped by signal SIGTERM" in err
    assert [r["exit"] for r in ranks(tmp_path / "first")] == [128 + signal.SIGTERM] * 2
    assert {r["step"] for r in ranks(tmp_path / "first")} == {stopped}

    err = run("distill.sft", argv, tmp_path / "second")
    assert f"resuming from {out / f'checkpoint-{stopped}'}" in err
    assert [r["step"] for r in _metrics(out)] == list(range(1, STEPS + 1))  # the steps after it, once each
    _close(_adapter(out), _adapter(two_processes[0]), 1e-5)

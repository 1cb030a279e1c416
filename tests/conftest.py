"""Shared fixtures: no network, tiny random models with a real tokenizer, the benchmark data beside the checkout."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# model.dtype=auto resolves to fp32 on every CI CPU, with or without AMX, so that a test's numbers do not depend on
# the machine (tests/test_precision.py covers the bf16 path itself).
os.environ["DISTILL_CPU_BF16"] = "0"

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from fakes import FakeServer  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark files (MATH-500, GSM8K, HumanEval, ...) in ../shared/data beside the checkout."""
    if not (SHARED_DATA / "math500.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (the shared/ folder beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The embedded SmolLM2-135M-Instruct, converted to a Hugging Face folder in the cache (once per cache)."""
    from distill.models import ModelError, builtin_model_path

    try:
        return builtin_model_path("smollm2-135m")
    except ModelError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def real_tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


def _save_tiny(config, tokenizer, folder: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_shape(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        # head_dim 32: vLLM's CPU attention kernels support only some head sizes (16 is not among them).
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, real_tokenizer) -> Path:
    """A 2-layer, hidden-64 random Llama with SmolLM2's real tokenizer and ChatML template, saved to a folder."""
    from transformers import LlamaConfig

    config = LlamaConfig(**_tiny_shape(real_tokenizer))
    return _save_tiny(config, real_tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory, real_tokenizer) -> Path:
    """A 2-layer, hidden-64 random Qwen2 (the Qwen students' architecture) with a real tokenizer, saved to a folder."""
    from transformers import Qwen2Config

    config = Qwen2Config(**_tiny_shape(real_tokenizer))
    return _save_tiny(config, real_tokenizer, tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture
def distributed_env(monkeypatch):
    """TRL's colocated vLLM writes RANK, WORLD_SIZE, MASTER_ADDR/PORT into os.environ (and vLLM keeps the port open):
    left there, they send later subprocesses' torch.distributed to a port in use. Restored after the test."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    """Starts fake OpenAI-compatible servers on 127.0.0.1 (tests.fakes.FakeServer); all stopped at the end."""
    servers: list[FakeServer] = []

    def start(**options) -> FakeServer:
        servers.append(FakeServer(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()

"""Samplers: one interface (`Sampler.sample` / `Sampler.stream`) over vLLM offline and OpenAI-compatible servers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distill.config import EngineConfig, ModelConfig
    from distill.engines.base import Sampler

ENGINES = ("vllm", "openai")


def make_sampler(
    engine: EngineConfig, model: str, model_cfg: ModelConfig, seed: int, logprobs: int | None = None
) -> Sampler:
    """A sampler of `model` on `engine` (generate.engine, eval.engine): for vllm a resolved path or hub id; for
    openai the served model's name (engine.served_model wins). dtype and trust_remote_code come from model_cfg.
    logprobs: k, to keep the top-k log-probs of every generated token (generate.teacher_logprobs)."""
    if engine.kind == "openai":
        from distill.engines.openai_server import OpenAISampler

        return OpenAISampler(
            engine.urls,
            engine.served_model or model,
            api_key_env=engine.api_key_env,
            concurrency=engine.concurrency,
            timeout=engine.request_timeout,
            max_retries=engine.max_retries,
            logprobs=logprobs,
        )
    from distill.engines.vllm_offline import VLLMSampler

    return VLLMSampler(
        model,
        dtype=model_cfg.dtype,
        tensor_parallel_size=engine.tensor_parallel_size,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        max_model_len=engine.max_model_len,
        seed=seed,
        trust_remote_code=model_cfg.trust_remote_code,
        logprobs=logprobs,
    )

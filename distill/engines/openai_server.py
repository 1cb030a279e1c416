"""OpenAI-compatible servers: one URL or a fleet of them (`vllm serve` on many machines), or an API teacher.

Requests go out asynchronously with bounded concurrency per server, spread over the servers by least load; the
`openai` client retries failed requests with exponential backoff and enforces the request timeout. The API key comes
from an environment variable (vLLM servers started without --api-key accept any key).

Each sample is its own request with its own seed (not `n=` in one request): every server and API supports it, the
load spreads evenly over the fleet, and one prompt's samples do not depend on which server answered first.

A request that loses its connection (refused, reset, the server killed mid-request) asks whether the server still
accepts a TCP connection: if not, the server leaves the fleet for the rest of the call and the request goes to
another one at once; if so (a transient reset, a full listen backlog), it backs off and tries again like a 5xx.
With a seed per sample, the retry on another server of the same model returns what the lost one would have. Only when no server is left does the call fail; what a stage journaled
before that is kept, and its rerun resumes. `dispatched` counts the requests sent to each server and `failed_over`
the requests moved to another one.
Reasoning that a server returns apart from the answer (`reasoning_content` from DeepSeek's API, `reasoning` from
vLLM's reasoning parsers) is put back into a `<think>` block, so verifiers see the same text as from vLLM offline.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from urllib.parse import urlparse

from distill.config import SamplingConfig
from distill.engines.base import Request, Sample, chunked_stream, topk_entries

log = logging.getLogger(__name__)
BACKOFF_SECONDS = 0.5  # the first retry's wait; doubled each time, at most 8 s


async def _accepts_connections(url: str, timeout: float = 2.0) -> bool:
    """Whether the server behind `url` accepts a TCP connection now."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


def _retryable(error) -> bool:
    return error.status_code == 429 or error.status_code >= 500


def _token_id(token: str, url: str) -> int:
    """N from vLLM's "token_id:N"; a server that returns token strings cannot give the ids KD needs."""
    if not token.startswith("token_id:"):
        raise ValueError(
            f"generate.teacher_logprobs needs token ids: {url} returned the token {token!r}; use a vLLM server "
            "(it honours return_tokens_as_token_ids)"
        )
    return int(token.removeprefix("token_id:"))


class FleetDown(ConnectionError):
    """No server of the fleet can be reached."""


class OpenAISampler:
    def __init__(
        self,
        urls: list[str],
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 64,
        timeout: float = 1800.0,
        max_retries: int = 5,
        logprobs: int | None = None,  # k: the top-k log-probs of every generated token, as ids (vLLM servers)
    ):
        if not urls:
            raise ValueError("engine.urls: give at least one server URL (e.g. http://localhost:8000/v1)")
        self.urls, self.model = list(urls), model
        self.api_key = os.environ.get(api_key_env) or "EMPTY"
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.logprobs = logprobs or None
        self.dispatched: Counter = Counter()  # url -> requests sent there (every try)
        self.failed_over = 0  # requests moved to another server after theirs could not be reached

    def sample(self, requests: list[Request], params: SamplingConfig) -> list[list[Sample]]:
        if any(r.prefix for r in requests):  # a chat endpoint renders its own template: no raw continuation
            raise NotImplementedError("OpenAI-compatible servers cannot continue a request's prefix text")
        return asyncio.run(self._sample_all(requests, params))

    async def _sample_all(self, requests: list[Request], params: SamplingConfig) -> list[list[Sample]]:
        from openai import APIConnectionError, APIStatusError, APITimeoutError, AsyncOpenAI

        # Retries are ours (max_retries=0 for the client): a connection error fails over at once (see the module
        # docstring), where the client would retry the dead server with backoff; 5xx, 429 and timeouts back off.
        clients = [
            AsyncOpenAI(base_url=url, api_key=self.api_key, timeout=self.timeout, max_retries=0) for url in self.urls
        ]
        # One shared pool of slots; the server is chosen when a slot frees, not when the task is created (choosing
        # up front would split work evenly, so a slow server would hold its share while a fast one sits idle).
        # While a task holds a slot the other servers hold fewer than concurrency * servers - 1 requests between
        # them, so the least-loaded server has fewer than `concurrency`: the per-server bound holds.
        slots = asyncio.Semaphore(self.concurrency * len(clients))
        in_flight = [0] * len(clients)
        down: set[int] = set()

        async def one(request: Request, index: int) -> Sample:
            async with slots:
                tries = 0
                while True:
                    alive = [i for i in range(len(clients)) if i not in down]
                    if not alive:
                        raise FleetDown(f"no server of {', '.join(self.urls)} can be reached")
                    server = min(alive, key=in_flight.__getitem__)
                    in_flight[server] += 1
                    self.dispatched[self.urls[server]] += 1
                    try:
                        return await self._complete(clients[server], request, params, request.seed + index)
                    except (APITimeoutError, APIStatusError) as e:  # a live server's trouble: back off, try again
                        tries += 1
                        if tries > self.max_retries or (isinstance(e, APIStatusError) and not _retryable(e)):
                            raise
                    except APIConnectionError as e:  # gone, or a transient reset: a new connection tells which
                        if not await _accepts_connections(self.urls[server]):
                            if server not in down:
                                log.warning("server %s cannot be reached (%s): out of the fleet", self.urls[server], e)
                                down.add(server)
                            self.failed_over += 1
                            continue
                        tries += 1
                        if tries > self.max_retries:
                            raise
                    finally:
                        in_flight[server] -= 1
                    await asyncio.sleep(min(BACKOFF_SECONDS * 2 ** (tries - 1), 8.0))

        try:
            flat = await asyncio.gather(*(one(r, i) for r in requests for i in range(params.n)))
        finally:
            for client in clients:
                await client.close()
        return [list(flat[k * params.n : (k + 1) * params.n]) for k in range(len(requests))]

    def _logprob_args(self) -> dict:
        if not self.logprobs:
            return {}
        # vLLM's server gives each token as "token_id:N" with return_tokens_as_token_ids (strings would not map back
        # onto ids); its log-probs are raw unless the server was started with another --logprobs-mode.
        return {"logprobs": True, "top_logprobs": self.logprobs, "extra_body": {"return_tokens_as_token_ids": True}}

    async def _complete(self, client, request: Request, params: SamplingConfig, seed: int) -> Sample:
        response = await client.chat.completions.create(
            **self._logprob_args(),
            model=self.model,
            messages=request.messages,
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=seed,
            stop=params.stop or None,
        )
        choice = response.choices[0]
        message = choice.message
        reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
        text = message.content or ""
        if reasoning:
            text = f"<think>\n{reasoning}\n</think>\n{text}"
        tokens = response.usage.completion_tokens if response.usage else len(text.split())
        if not self.logprobs:
            return Sample(text, tokens, choice.finish_reason or "stop")
        return Sample(text, tokens, choice.finish_reason or "stop", *self._topk(choice))

    def _topk(self, choice) -> tuple[list[int], list[list[int]], list[list[float]]]:
        """(token ids, top-k ids, top-k log-probs) of a choice asked with _logprob_args."""
        content = choice.logprobs.content if choice.logprobs is not None else None
        if not content:
            raise ValueError(f"generate.teacher_logprobs: {self.urls[0]} returned no log-probs for {self.model}")
        ids, top_ids, top_lps = [], [], []
        for position in content:
            ids.append(_token_id(position.token, self.urls[0]))
            entries = [(_token_id(t.token, self.urls[0]), t.logprob, r) for r, t in enumerate(position.top_logprobs)]
            best = topk_entries(entries, self.logprobs)
            top_ids.append(best[0])
            top_lps.append(best[1])
        return ids, top_ids, top_lps

    def stream(self, requests: list[Request], params: SamplingConfig, in_flight: int):
        return chunked_stream(self, requests, params, in_flight)

    def close(self) -> None:
        pass

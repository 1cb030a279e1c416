"""A teacher's log-probs for given token sequences from vLLM's OpenAI-compatible servers (distill.kd's served teacher).

One POST /v1/completions per sequence, its token ids as the prompt, `max_tokens=1` and `prompt_logprobs=k`: vLLM runs
one forward pass over the sequence and returns, for every position, the top-k next-token log-probs and always the
one of the token actually there (its rank may be > k), keyed by token id -- ids, not strings, so they map onto the
student's vocabulary exactly (return_tokens_as_token_ids concerns the sampled tokens' `logprobs` field, not these).
The log-probs are the model's own (vLLM's raw_logprobs, no temperature). This is the request TRL's
VLLMClient.get_sequence_logprobs sends (trl.experimental.server_distillation), to `vllm serve` itself rather than
`trl vllm-serve`, and spread over a fleet.

Requests go to the servers in turn, a bounded number in flight per server; a server that refuses connections is
left out for the rest of the call and its sequences go to the others; 5xx, 429 and timeouts back off and retry.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock

BACKOFF_SECONDS = 0.5  # the first retry's wait; doubled each time, at most 8 s


class TeacherServerError(RuntimeError):
    """A teacher server answered with an error that retrying will not fix, or none can be reached."""


@dataclass
class Scored:
    """One sequence's positions from `start` on: per position the token ids the server returned (top-k and the
    token actually there) and their log-probs (natural log), sorted by log-prob, highest first."""

    ids: list[list[int]]
    logprobs: list[list[float]]


@dataclass
class TeacherClient:
    urls: list[str]
    top_k: int
    served_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 600.0
    max_retries: int = 5
    model: str = ""  # the served name requests use (connect)
    root: str = ""  # what the server loaded: a folder or hub id on the server's machine
    dispatched: dict[str, int] = field(default_factory=dict)  # url -> requests sent there (every try)

    def __post_init__(self) -> None:
        import httpx

        key = os.environ.get(self.api_key_env) or "EMPTY"
        self._http = httpx.Client(timeout=self.timeout, headers={"Authorization": f"Bearer {key}"})
        self._down: set[str] = set()
        self._lock = Lock()
        self._turn = 0

    def connect(self) -> TeacherClient:
        """Ask the first server that answers which model it serves (GET /v1/models)."""
        for url in self.urls:
            try:
                models = self._request("GET", url, "/v1/models")["data"]
            except (TeacherServerError, _Retryable):
                continue
            chosen = next((m for m in models if m["id"] == self.served_model), None) if self.served_model else models[0]
            if chosen is None:
                names = ", ".join(m["id"] for m in models)
                raise TeacherServerError(
                    f"{url} serves {names}, not kd.teacher_server.served_model={self.served_model}"
                )
            self.model, self.root = chosen["id"], chosen.get("root") or chosen["id"]
            return self
        raise TeacherServerError(f"no teacher server of {', '.join(self.urls)} answers GET /v1/models")

    def tokenize(self, text: str) -> list[int]:
        """The server's token ids for `text` (vLLM's /tokenize, special tokens added as its tokenizer does)."""
        body = {"model": self.model, "prompt": text}
        return self._call(lambda url: self._request("POST", url, "/tokenize", body))["tokens"]

    def score(self, sequences: list[list[int]], starts: list[int]) -> list[Scored]:
        """The teacher's top-k log-probs at each position of each sequence from its start on (a position's
        distribution is over the token there, given the ones before it)."""
        workers = max(1, self.concurrency * len(self.urls))
        with ThreadPoolExecutor(min(workers, max(len(sequences), 1))) as pool:
            return list(pool.map(self._score_one, sequences, starts))

    def _score_one(self, sequence: list[int], start: int) -> Scored:
        body = {"model": self.model, "prompt": sequence, "max_tokens": 1, "temperature": 1.0,
                "prompt_logprobs": self.top_k}  # fmt: skip
        choice = self._call(lambda url: self._request("POST", url, "/v1/completions", body))["choices"][0]
        positions = choice["prompt_logprobs"][start:]
        if len(positions) != len(sequence) - start:
            raise TeacherServerError(
                f"the teacher server returned {len(positions)} positions for {len(sequence) - start}"
            )
        scored = Scored([], [])
        for entries in positions:
            ranked = sorted(((int(i), _finite(e["logprob"])) for i, e in (entries or {}).items()), key=lambda x: -x[1])
            scored.ids.append([i for i, _ in ranked])
            scored.logprobs.append([lp for _, lp in ranked])
        return scored

    def _call(self, send):
        """send(url) on the next server up, failing over and retrying as the module docstring says."""
        import httpx

        tries = 0
        while True:
            with self._lock:
                alive = [u for u in self.urls if u not in self._down]
                if not alive:
                    raise TeacherServerError(f"no teacher server of {', '.join(self.urls)} can be reached")
                url, self._turn = alive[self._turn % len(alive)], self._turn + 1
                self.dispatched[url] = self.dispatched.get(url, 0) + 1
            try:
                return send(url)
            except httpx.ConnectError:
                with self._lock:
                    self._down.add(url)
                continue
            except (httpx.TimeoutException, httpx.RemoteProtocolError, _Retryable) as e:
                tries += 1
                if tries > self.max_retries:
                    raise TeacherServerError(f"{url}: {e} (after {self.max_retries} retries)") from e
            time.sleep(min(BACKOFF_SECONDS * 2 ** (tries - 1), 8.0))

    def _request(self, method: str, url: str, path: str, body: dict | None = None) -> dict:
        import httpx

        base = url.rstrip("/").removesuffix("/v1")
        try:
            response = self._http.request(method, base + path, json=body)
        except httpx.ConnectError as e:
            if method == "GET":  # connect() tries the next server itself
                raise TeacherServerError(f"{url}: {e}") from e
            raise
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            raise TeacherServerError(f"{base + path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def close(self) -> None:
        self._http.close()


class _Retryable(Exception):
    pass


def _finite(logprob: float) -> float:
    return -math.inf if logprob is None or math.isnan(logprob) else float(logprob)

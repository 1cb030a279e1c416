"""OpenAISampler against fake OpenAI-compatible servers on 127.0.0.1: order, seeds, auth, concurrency, retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from distill.engines.base import Request, SamplingConfig
from distill.engines.openai_server import OpenAISampler


class FakeServer:
    """`POST /v1/chat/completions` answering "<last user message>|seed=<seed>", recording what it received.

    delay: seconds each answer takes (so concurrent requests overlap); fail_first: how many requests get a 500;
    reasoning / finish_reason: put into every answer.
    """

    def __init__(self, *, delay: float = 0.0, fail_first: int = 0, reasoning: str | None = None, finish_reason="stop"):
        self.delay, self.failures_left, self.reasoning, self.finish_reason = delay, fail_first, reasoning, finish_reason
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def answer(self, body: dict) -> tuple[int, dict]:
        with self.lock:
            self.bodies.append(body)
            fail = self.failures_left > 0
            self.failures_left -= fail
        if fail:
            return 500, {"error": {"message": "try again", "type": "server_error"}}
        prompt = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        content = f"{prompt}|seed={body['seed']}"
        message = {"role": "assistant", "content": content}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        return 200, {
            "id": f"chatcmpl-{len(self.bodies)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": {"prompt_tokens": 3, "completion_tokens": len(content.split()), "total_tokens": 9},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server.lock:
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                try:
                    time.sleep(server.delay)
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    status, payload = server.answer(body)
                finally:
                    with server.lock:
                        server.active -= 1
                with server.lock:
                    server.statuses.append(status)
                self._send(status, payload)

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

        return Handler


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(**options) -> FakeServer:
        servers.append(FakeServer(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def requests(count: int) -> list[Request]:
    return [Request([{"role": "user", "content": f"problem {i}"}], seed=100 * i) for i in range(count)]


def sampler(*servers: FakeServer, **options) -> OpenAISampler:
    options = {"model": "teacher", "concurrency": 4, "timeout": 10.0, "max_retries": 0, **options}
    return OpenAISampler([s.url for s in servers], **options)


def test_samples_come_back_in_request_order_with_n_each_and_distinct_seeds(fake_server):
    server = fake_server(delay=0.01)
    params = SamplingConfig(n=3, temperature=0.7, top_p=0.9, max_tokens=64)
    results = sampler(server).sample(requests(5), params)
    assert [[s.text for s in group] for group in results] == [
        [f"problem {i}|seed={100 * i + k}" for k in range(3)] for i in range(5)
    ]
    assert all(s.finish_reason == "stop" and s.num_tokens == 2 for group in results for s in group)
    body = server.bodies[0]
    assert (body["model"], body["n"], body["temperature"], body["top_p"], body["max_tokens"]) == (
        "teacher",
        1,
        0.7,
        0.9,
        64,
    )
    assert len({b["seed"] for b in server.bodies}) == 15


def test_the_api_key_comes_from_the_environment_variable(fake_server, monkeypatch):
    server = fake_server()
    monkeypatch.setenv("DISTILL_TEST_KEY", "sk-test-123")
    sampler(server, api_key_env="DISTILL_TEST_KEY").sample(requests(1), SamplingConfig(n=1))
    monkeypatch.delenv("DISTILL_TEST_KEY")
    sampler(server, api_key_env="DISTILL_TEST_KEY").sample(requests(1), SamplingConfig(n=1))
    # Without the variable: a placeholder, which vLLM servers started without --api-key accept.
    assert [h["authorization"] for h in server.headers] == ["Bearer sk-test-123", "Bearer EMPTY"]


def test_concurrency_is_bounded_per_server(fake_server):
    server = fake_server(delay=0.05)
    results = sampler(server, concurrency=2).sample(requests(6), SamplingConfig(n=2))
    assert sum(len(group) for group in results) == len(server.bodies) == 12
    assert server.max_active == 2  # bounded, and the bound is used


def test_two_servers_share_the_load_each_within_its_bound(fake_server):
    servers = [fake_server(delay=0.05), fake_server(delay=0.05)]
    results = sampler(*servers, concurrency=2).sample(requests(8), SamplingConfig(n=2))
    assert [s.text for s in results[7]] == ["problem 7|seed=700", "problem 7|seed=701"]
    assert all(len(s.bodies) > 0 and s.max_active <= 2 for s in servers)
    assert sum(len(s.bodies) for s in servers) == 16


def test_a_failed_request_is_retried(fake_server):
    server = fake_server(fail_first=1)
    start = time.perf_counter()
    results = sampler(server, max_retries=2).sample(requests(1), SamplingConfig(n=1))
    assert time.perf_counter() - start < 5  # the client's first backoff is about 0.5 s
    assert server.statuses == [500, 200]
    assert results[0][0].text == "problem 0|seed=0"


def test_without_retries_the_failure_is_raised(fake_server):
    import openai

    server = fake_server(fail_first=1)
    with pytest.raises(openai.InternalServerError):
        sampler(server, max_retries=0).sample(requests(1), SamplingConfig(n=1))


def test_reasoning_content_goes_back_into_a_think_block(fake_server):
    server = fake_server(reasoning="2 + 2 is 4.")
    [[sample]] = sampler(server).sample(requests(1), SamplingConfig(n=1))
    assert sample.text == "<think>\n2 + 2 is 4.\n</think>\nproblem 0|seed=0"


def test_finish_reason_length_is_carried_through(fake_server):
    server = fake_server(finish_reason="length")
    results = sampler(server).sample(requests(2), SamplingConfig(n=2))
    assert [s.finish_reason for group in results for s in group] == ["length"] * 4


def test_no_urls_is_an_error():
    with pytest.raises(ValueError, match="engine.urls"):
        OpenAISampler([], "teacher")

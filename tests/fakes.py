"""A deterministic fake teacher for pipeline tests: no model, same interface as the real samplers."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from distill.config import SamplingConfig
from distill.engines.base import Request, Sample, chunked_stream


class FakeSampler:
    """Answers "What is <expr>?" prompts: right with probability `skill`, with a think block, seeded per request.

    Each request's samples depend only on its seed (like vLLM's per-request seeds), never on the batch.
    `fail_after` raises after that many calls (a crash); `delay` sleeps per call (time to kill a process).
    """

    model = "fake-teacher"

    def __init__(self, skill: float = 0.5, fail_after: int | None = None, delay: float = 0.0):
        self.skill, self.fail_after, self.delay = skill, fail_after, delay
        self.calls = 0
        self.prompts_seen: list[str] = []

    def sample(self, requests: list[Request], params: SamplingConfig) -> list[list[Sample]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("teacher crashed")
        self.calls += 1
        time.sleep(self.delay)
        return [self._samples(r, params) for r in requests]

    def _samples(self, request: Request, params: SamplingConfig) -> list[Sample]:
        text = request.messages[-1]["content"]
        self.prompts_seen.append(text)
        match = re.search(r"What is (.+?)\?", text)
        truth = eval(match.group(1)) if match else 0  # the synthetic arithmetic levels
        rng = random.Random(request.seed)
        out = []
        for _ in range(params.n):
            answer = truth if rng.random() < self.skill else truth + rng.randint(1, 3)
            steps = " ".join(["Let me compute step by step."] * rng.randint(1, 4))
            body = f"<think>\n{steps} I get {answer}.\n</think>\nThe answer is \\boxed{{{answer}}}."
            out.append(Sample(body, len(body.split()), "stop"))
        return out

    def stream(self, requests: list[Request], params: SamplingConfig, in_flight: int):
        return chunked_stream(self, requests, params, in_flight)

    def close(self) -> None:
        pass


class ScriptedSampler:
    """Returns scripted completions: `script` maps a problem's text to its samples, as (text, finish_reason) pairs.

    The problem is the user turn without its R1 instruction (the last line). `fail_after` raises after that many calls.
    """

    model = "scripted-model"

    def __init__(self, script: dict[str, list[tuple[str, str]]], fail_after: int | None = None):
        self.script, self.fail_after = script, fail_after
        self.calls = 0
        self.problems_seen: list[str] = []

    def sample(self, requests: list[Request], params: SamplingConfig) -> list[list[Sample]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("model crashed")
        self.calls += 1
        out = []
        for request in requests:
            problem = request.messages[-1]["content"].rsplit("\n", 1)[0]
            self.problems_seen.append(problem)
            scripted = self.script[problem]
            assert len(scripted) == params.n, f"scripted {len(scripted)} samples, asked for {params.n}"
            out.append([Sample(text, len(text.split()), reason) for text, reason in scripted])
        return out

    def stream(self, requests: list[Request], params: SamplingConfig, in_flight: int):
        return chunked_stream(self, requests, params, in_flight)

    def close(self) -> None:
        pass


class FakeServer:
    """`POST /v1/chat/completions` answering "<last user message>|seed=<seed>" (or `reply(body)`), recording what it
    received.

    delay: seconds each answer takes (so concurrent requests overlap); fail_first: how many requests get a 500;
    reasoning / finish_reason: put into every answer.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        fail_first: int = 0,
        reasoning: str | None = None,
        finish_reason="stop",
        reply: Callable[[dict], str] | None = None,
    ):
        self.delay, self.failures_left, self.reasoning, self.finish_reason = delay, fail_first, reasoning, finish_reason
        self.reply = reply
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
        content = self.reply(body) if self.reply else f"{prompt}|seed={body['seed']}"
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

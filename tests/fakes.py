"""A deterministic fake teacher for pipeline tests: no model, same interface as the real samplers."""

from __future__ import annotations

import random
import re
import time

from distill.engines.base import Request, Sample, SamplingConfig


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

    def close(self) -> None:
        pass

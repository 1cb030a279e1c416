"""The sampler interface every engine implements, and the R1 prompt template."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from distill.config import SamplingConfig

# DeepSeek-R1's evaluation instruction for math; no system prompt (R1 puts every instruction in the user turn).
R1_MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
R1_CODE_INSTRUCTION = "Write your solution in Python in a single ```python code block after your reasoning."


@dataclass(frozen=True)
class Request:
    """One prompt: chat messages (user turn(s), no assistant reply) and its own sampling seed; `prefix`: assistant
    text already written, which the sample continues (raw text after the chat template and any prefill: vLLM only,
    distill.budget's forced answers)."""

    messages: list[dict]
    seed: int
    prefix: str = ""


@dataclass(frozen=True)
class Sample:
    text: str  # the completion as generated (with "<think>\n" put back in front when it was prefilled)
    num_tokens: int  # generated tokens
    finish_reason: str  # "stop" or "length" (truncated)
    # With generate.teacher_logprobs=k: the completion's token ids (a prefilled "<think>\n" first), and for each of
    # them the teacher's k most likely ids at that position, most likely first, with their raw log-probs (natural log,
    # the model's distribution at temperature 1). A prefilled token, which the teacher did not generate, has [] for
    # both. Log-probs are rounded to 4 decimals (float16 in the dataset keeps about 3 digits).
    token_ids: list[int] | None = None
    topk_ids: list[list[int]] | None = None
    topk_logprobs: list[list[float]] | None = None


class Sampler(Protocol):
    model: str  # what produced the samples, for provenance (path, hub id or served model name)

    def sample(self, requests: list[Request], params: SamplingConfig) -> list[list[Sample]]:
        """`params.n` samples for each request, in request order."""
        ...

    def stream(
        self, requests: list[Request], params: SamplingConfig, in_flight: int
    ) -> Iterator[tuple[int, list[Sample]]]:
        """(request index, samples) as requests finish, at most `in_flight` requests in the engine at once. vLLM
        refills its batch as each finishes; engines without that sample in chunks (`chunked_stream`)."""
        ...

    def close(self) -> None: ...


def chunked_stream(
    sampler: Sampler, requests: list[Request], params: SamplingConfig, in_flight: int
) -> Iterator[tuple[int, list[Sample]]]:
    """Sampler.stream for engines that sample a list at a time: `in_flight` requests per call."""
    for start in range(0, len(requests), in_flight):
        for offset, samples in enumerate(sampler.sample(requests[start : start + in_flight], params)):
            yield start + offset, samples


def topk_entries(entries: list[tuple[int, float, int]], k: int) -> tuple[list[int], list[float]]:
    """The k best (id, log-prob) of one position's (id, log-prob, rank) entries, most likely first: engines add the
    sampled token to the top k when it is not among them."""
    best = sorted(entries, key=lambda e: (e[2], -e[1]))[:k]
    return [e[0] for e in best], [round(e[1], 4) for e in best]


def user_prompt(problem: str, task: str) -> str:
    instruction = R1_CODE_INSTRUCTION if task == "code" else R1_MATH_INSTRUCTION
    return f"{problem}\n{instruction}"

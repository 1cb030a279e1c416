"""Accuracy against a reasoning budget (eval.budgets): s1's budget forcing (Muennighoff et al. 2025) in distill.eval.

For each budget B (thinking tokens) and each sample, in two passes of the same engine:

1. thinking: the eval prompt (with `<think>\\n` prefilled when eval.sampling.prefill_think) sampled with
   max_tokens=B and a stop at `</think>` -- the reasoning is cut at B tokens, or ends earlier where the model closes
   its thinking itself;
2. answer: the same prompt continued from that reasoning, then `\\n</think>\\n\\n` and the nudge of the task
   (NUDGES: "Final answer: \\boxed{" for math, a python block for code), sampled with at most
   eval.budget_answer_tokens tokens.

Whether the thinking was cut or ended on its own, the answer is asked for the same way, so every point of the curve
measures one thing: what the model can answer after at most B tokens of reasoning. The sample judged is the whole
text (reasoning, the forced close and nudge, the answer), by the same verifiers as the evaluation; the forced answer
is judged on what it wrote within its answer tokens (one cut before its \\boxed{} closes has no answer), not marked
truncated. Each sample records thinking_tokens, answer_tokens and cut (the budget ended the thinking).

Each budget samples and journals apart (<run>/.work/<benchmark>@budget<B>/), with the evaluation's seeds, so a rerun
resumes. results.json gets `budget_curve`: per benchmark, one row per budget (pass@1 with its standard error, mean
thinking and answer tokens, the share cut at the budget). vLLM only: the answer pass continues raw text after the
model's chat template, which a server's chat endpoint cannot do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from distill.config import SamplingConfig
from distill.engines.base import Request, Sample, Sampler, chunked_stream
from distill.journal import open_work_dir, read_journal
from distill.rollout import sample_verify_journal

CLOSE = "\n</think>\n\n"
NUDGES = {"math": "Final answer: \\boxed{", "code": "```python\n"}


@dataclass(frozen=True)
class BudgetSample(Sample):
    thinking_tokens: int = 0  # generated before the cut (at most the budget)
    answer_tokens: int = 0  # generated after the nudge (at most eval.budget_answer_tokens)
    cut: bool = False  # the budget ended the thinking (it had not closed it itself)


class BudgetForcing:
    """A Sampler over another one (vLLM): samples `params.n` reasonings of at most `budget` tokens per request, then
    one forced answer after each (module docstring). `task`: the benchmark's task, which picks the nudge."""

    def __init__(self, inner: Sampler, budget: int, answer_tokens: int, task: str) -> None:
        self.inner, self.budget, self.answer_tokens = inner, budget, answer_tokens
        self.nudge = NUDGES.get(task, NUDGES["math"])
        self.model = inner.model

    def sample(self, requests: list[Request], params: SamplingConfig) -> list[list[Sample]]:
        thinking = replace(params, max_tokens=self.budget, stop=[*params.stop, "</think>"])
        reasonings = self.inner.sample(requests, thinking)
        # The answer continues after the reasoning as written; the prefilled "<think>\n" is in its text already.
        answer = replace(params, n=1, max_tokens=self.answer_tokens, prefill_think=False, stop=list(params.stop))
        follow = [
            Request(r.messages, (r.seed + 7919 * (j + 1)) % 2**31, prefix=self._prefix(s))
            for r, group in zip(requests, reasonings, strict=True)
            for j, s in enumerate(group)
        ]
        answers = iter(self.inner.sample(follow, answer))
        return [[self._joined(s, next(answers)[0]) for s in group] for group in reasonings]

    def stream(
        self, requests: list[Request], params: SamplingConfig, in_flight: int
    ) -> Iterator[tuple[int, list[Sample]]]:
        return chunked_stream(self, requests, params, in_flight)

    def close(self) -> None:  # the inner sampler belongs to the evaluation's engines
        pass

    def _prefix(self, reasoning: Sample) -> str:
        return reasoning.text + CLOSE + self.nudge

    def _joined(self, reasoning: Sample, answer: Sample) -> BudgetSample:
        return BudgetSample(
            text=self._prefix(reasoning) + answer.text,
            num_tokens=reasoning.num_tokens + answer.num_tokens,
            finish_reason="stop",  # the cut is the experiment; an unfinished answer simply has none
            thinking_tokens=reasoning.num_tokens,
            answer_tokens=answer.num_tokens,
            cut=reasoning.finish_reason == "length",
        )


def budget_records(
    prompts: list[dict],
    budget: int,
    answer_tokens: int,
    started: Callable[[], tuple],
    work: Path,
    fingerprint: dict,
    params: SamplingConfig,
    chunk: int,
    label: str,
) -> dict[str, dict]:
    """Journal records (distill.rollout's) of one benchmark at one budget, sampling only the prompts not journaled in
    `work` yet; `started()` gives the evaluation's (sampler, verifier pool) on first need."""
    open_work_dir(work, {**fingerprint, "budget": budget, "answer_tokens": answer_tokens, "nudges": NUDGES},
                  other_name="eval.run_name")  # fmt: skip
    journal = work / "journal.jsonl"
    done = read_journal(journal)
    if all(p["id"] in done for p in prompts):
        return done
    sampler, pool = started()
    forcing = BudgetForcing(sampler, budget, answer_tokens, prompts[0]["task"])
    return sample_verify_journal(prompts, forcing, pool, journal, params, chunk, f"{label} @{budget} tokens")


def curve_row(budget: int, problems: list[list[dict]], metrics: dict) -> dict:
    """One point of a benchmark's curve: summarize()'s metrics of the budget's samples, and its token counts."""
    everything = [s for samples in problems for s in samples]
    return {
        "budget": budget,
        "pass@1": metrics["pass@1"],
        "pass@1_stderr": metrics["pass@1_stderr"],
        "cons@k": metrics["cons@k"],
        "mean_thinking_tokens": sum(s["thinking_tokens"] for s in everything) / len(everything),
        "mean_answer_tokens": sum(s["answer_tokens"] for s in everything) / len(everything),
        "cut_share": sum(s["cut"] for s in everything) / len(everything),
    }


def markdown_curve(results: dict) -> str:
    """The results.md section of the budget curve ("" without one)."""
    curve = results.get("budget_curve")
    if not curve:
        return ""
    lines = [
        "",
        "## Accuracy against the reasoning budget",
        "",
        "| benchmark | budget (thinking tokens) | pass@1 ± stderr | mean thinking tokens | cut at the budget |",
        "|---|---|---|---|---|",
    ]
    for name, rows in curve.items():
        for row in rows:
            stderr = "" if row["pass@1_stderr"] is None else f" ± {100 * row['pass@1_stderr']:.1f}"
            lines.append(
                f"| {name} | {row['budget']} | {100 * row['pass@1']:.1f}{stderr} | "
                f"{row['mean_thinking_tokens']:.0f} | {100 * row['cut_share']:.1f}% |"
            )
    lines += [
        "",
        "Budget forcing (s1): the reasoning is cut at the budget, closed with </think> and a final-answer nudge, and "
        "the answer sampled with at most eval.budget_answer_tokens tokens (distill/budget.py).",
    ]
    return "\n".join(lines) + "\n"

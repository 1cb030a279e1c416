"""eval.budgets (distill/budget.py): the reasoning is cut at each budget, closed, and a short answer is forced after
it; results.json carries the accuracy-against-budget curve."""

from __future__ import annotations

import json

import pytest

from distill import eval as evaluation
from distill.budget import CLOSE, NUDGES, BudgetForcing
from distill.config import SamplingConfig
from distill.engines.base import Request, Sample
from distill.errors import ConfigError
from distill.recipes import load_config


class ScriptedSampler:
    """The Sampler interface with scripted completions: the reasoning pass gets `reasonings` in turn, the answer pass
    "42}" of 2 tokens; every call is kept (requests and params)."""

    model = "scripted"

    def __init__(self, reasonings: list[Sample]) -> None:
        self.reasonings = iter(reasonings)
        self.calls: list[tuple[list[Request], SamplingConfig]] = []

    def sample(self, requests, params):
        self.calls.append((requests, params))
        if len(self.calls) == 1:
            return [[next(self.reasonings) for _ in range(params.n)] for _ in requests]
        return [[Sample("42}", 2, "length")] for _ in requests]


def test_the_answer_is_forced_after_the_reasoning_whether_the_budget_cut_it_or_not():
    cut = Sample("<think>\nadd the tens", 8, "length")  # the budget ended it
    closed = Sample("<think>\n3+4=7", 5, "stop")  # stopped at </think> within the budget
    inner = ScriptedSampler([cut, closed])
    params = SamplingConfig(n=2, max_tokens=4096, seed=3, stop=["<|im_end|>"], prefill_think=True)
    [group] = BudgetForcing(inner, budget=8, answer_tokens=6, task="math").sample([Request([], 11)], params)

    (reason_requests, reason_params), (answer_requests, answer_params) = inner.calls
    assert (reason_params.max_tokens, reason_params.n, reason_params.stop) == (8, 2, ["<|im_end|>", "</think>"])
    assert reason_params.prefill_think and reason_requests == [Request([], 11)]
    assert (answer_params.max_tokens, answer_params.n, answer_params.prefill_think) == (6, 1, False)
    assert answer_params.stop == ["<|im_end|>"]
    nudge = CLOSE + NUDGES["math"]
    assert [r.prefix for r in answer_requests] == [cut.text + nudge, closed.text + nudge]
    assert len({r.seed for r in answer_requests}) == 2  # each forced answer samples on its own seed

    assert [s.text for s in group] == [cut.text + nudge + "42}", closed.text + nudge + "42}"]
    assert [(s.thinking_tokens, s.answer_tokens, s.num_tokens, s.cut) for s in group] == [
        (8, 2, 10, True),
        (5, 2, 7, False),
    ]
    assert {s.finish_reason for s in group} == {"stop"}  # the answer is judged on what it wrote, not as truncated


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval.budgets=[0,64]"], "key 'eval.budgets' must be >= 1, got 0"),
        (["eval.budget_answer_tokens=0"], "key 'eval.budget_answer_tokens' must be >= 1, got 0"),
        (["eval.budgets=[64]", "eval.engine.kind=openai"], "key 'eval.budgets' needs eval.engine.kind=vllm"),
    ],
)
def test_bad_budget_keys_fail_in_one_line(argv, message):
    from distill.checks import check_eval

    with pytest.raises(ConfigError) as error:
        check_eval(load_config(["eval.prompts.sets=[synthetic]", *argv]))
    assert message in str(error.value) and "\n" not in str(error.value)


def _journal(out, name: str) -> list[dict]:
    lines = (out / ".work" / name / "journal.jsonl").read_text().splitlines()
    return [s for line in lines for s in json.loads(line)["samples"]]


@pytest.mark.slow
def test_vllm_cuts_the_reasoning_at_each_budget_and_forces_the_answer_after_it(tmp_path, tiny_llama, monkeypatch):
    pytest.importorskip("vllm")
    argv = [f"model={tiny_llama}", "benchmarks=synthetic", "eval.prompts.synthetic_levels=[3]",
            "eval.prompts.synthetic_per_level=3", "samples=2", "eval.sampling.max_tokens=16",
            "eval.sampling.prefill_think=true", "eval.budgets=[4,12]", "eval.budget_answer_tokens=5",
            "eval.verify.workers=1", "eval.bootstrap=10", f"output_dir={tmp_path}"]  # fmt: skip
    assert evaluation.main(argv) == 0
    out = tmp_path / "eval" / tiny_llama.name
    results = json.loads((out / "results.json").read_text())
    rows = results["budget_curve"]["synthetic"]
    assert [r["budget"] for r in rows] == [4, 12]
    for row in rows:
        assert 0 <= row["pass@1"] <= 1 and 0 < row["mean_thinking_tokens"] <= row["budget"]
        assert 0 < row["mean_answer_tokens"] <= 5
    assert "| synthetic | 4 |" in (out / "results.md").read_text()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    short, long = _journal(out, "synthetic_budget4"), _journal(out, "synthetic_budget12")
    assert len(short) == len(long) == 2 * results["benchmarks"]["synthetic"]["problems"]
    for budget, samples in ((4, short), (12, long)):
        for s in samples:
            thinking, nudge, answer = s["text"].partition(CLOSE + NUDGES["math"])
            assert nudge and thinking.startswith("<think>\n")  # the forced close and nudge right after the reasoning
            assert s["cut"] == (s["thinking_tokens"] == budget)  # a random policy never closes its thinking itself
            assert s["thinking_tokens"] <= budget and s["answer_tokens"] <= 5
            assert s["num_tokens"] == s["thinking_tokens"] + s["answer_tokens"]
            assert len(tokenizer(answer, add_special_tokens=False).input_ids) <= 5 + 1  # re-tokenized: about as many
    # The same seeds: each reasoning of budget 4 is where the one of budget 12 was cut at 4 tokens.
    assert all(b["text"].startswith(a["text"].partition(CLOSE)[0]) for a, b in zip(short, long, strict=True))
    assert sum(a["cut"] for a in short) > 0
    # A rerun resumes from the journals: nothing is sampled again.
    monkeypatch.setattr(evaluation, "make_sampler", lambda *a: pytest.fail("sampled again"))
    assert evaluation.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["budget_curve"] == results["budget_curve"]

"""grpo.prompts: prompt selection by pass rate, templates, training rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.errors import ConfigError
from distill.recipes import load_config
from grpo.prompts import collect_prompts, filter_by_pass_rate, render_prompt, training_rows

# --- prompts ------------------------------------------------------------------------------------------------------


@pytest.fixture
def generate_folder(tmp_path) -> Path:
    """A folder as distill.generate writes it: verified rows in data/*.parquet and every prompt in the journal."""
    from datasets import Dataset

    from distill.engines.base import user_prompt

    folder = tmp_path / "datasets" / "demo"
    (folder / "data").mkdir(parents=True)
    (folder / ".work").mkdir()
    rates = {"synthetic-L1-0": 0.25, "synthetic-L1-1": 1.0, "synthetic-L1-2": 0.0, "synthetic-L1-3": 0.75}
    rows = [
        {
            "messages": [
                {"role": "user", "content": user_prompt(f"What is {i} + 1?", "math")},
                {"role": "assistant", "content": f"<think>ok</think> \\boxed{{{i + 1}}}"},
            ],
            "id": pid,
            "task": "math",
            "answer": str(i + 1),
            "source": "synthetic",
            "pass_rate": rate,
        }
        for i, (pid, rate) in enumerate(rates.items())
        if rate > 0  # a dataset holds only prompts with a correct sample
    ]
    Dataset.from_list(rows).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    journal = "".join(json.dumps({"id": pid, "pass_rate": r, "samples": []}) + "\n" for pid, r in rates.items())
    (folder / ".work" / "journal.jsonl").write_text(journal)
    return folder


def test_prompts_from_a_generate_dataset_keep_strictly_between_pass_rates(generate_folder):
    cfg = load_config([f"grpo.prompts.sets=[{generate_folder}]", "grpo.min_pass_rate=0", "grpo.max_pass_rate=1"])
    prompts = collect_prompts(cfg)
    assert {p["id"] for p in prompts} == {"synthetic-L1-0", "synthetic-L1-3"}
    assert prompts[0]["problem"] == "What is 0 + 1?" and prompts[0]["fallback_last_number"] is True


def test_pass_rates_from_a_journal_select_builtin_prompts(generate_folder):
    argv = [
        "grpo.prompts.synthetic_levels=[1]",
        "grpo.prompts.synthetic_per_level=6",
        f"grpo.pass_rates={generate_folder}",
    ]
    everything = collect_prompts(load_config(argv))
    assert len(everything) == 6
    hard = collect_prompts(load_config([*argv, "grpo.max_pass_rate=0.5"]))
    assert [p["id"] for p in hard] == ["synthetic-L1-0", "synthetic-L1-2"]  # 0.25 and the never-solved 0.0
    with pytest.raises(ConfigError, match="need pass rates"):
        filter_by_pass_rate([{"id": "a"}], 0.0, None)


def test_templates_and_training_rows():
    row = {"id": "x", "problem": "What is 2 + 2?", "task": "math", "answer": 4, "fallback_last_number": True}
    chat = render_prompt(row, "r1")
    assert chat == [
        {
            "role": "user",
            "content": "What is 2 + 2?\nPlease reason step by step, and put your final answer within \\boxed{}.",
        }
    ]
    plain = render_prompt(row, "r1_zero")
    assert plain.startswith("A conversation between User and Assistant.") and plain.endswith("Assistant:")
    assert "What is 2 + 2?" in render_prompt(row, "r1_zero_chat")[0]["content"]
    code = {"id": "c", "problem": "Echo.", "task": "code", "io": [{"input": "a", "output": "a"}]}
    math_row, code_row = training_rows([row, code], "r1")
    assert math_row["answer"] == "4" and code_row["answer"] is None
    assert json.loads(code_row["io"]) == code["io"]  # JSON text: one Arrow type for every row

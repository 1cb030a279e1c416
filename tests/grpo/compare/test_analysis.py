"""grpo.compare.analysis (pure functions of the report's rows) and what the report renders from them: no files, no
processes -- rows built here, as grpo.compare.run builds them from the stages' outputs."""

from __future__ import annotations

import pytest

from distill.compute import Compute, estimate, grpo_compute
from distill.prompt_sets import DataError
from grpo.compare.analysis import paired_statistics, sweep_leaders, sweep_levels
from grpo.compare.report import paired_table, power_statement, statement, sweep_table, table


def test_compute_adds_stages_and_estimates_flops():
    teacher = estimate(1000, 7, 0, 0, 10.0)
    student = estimate(0, 0, 500, 2, 5.0)
    total = teacher + student
    assert teacher.flops == 2 * 7 * 1000 and student.flops == 6 * 2 * 500
    assert total == Compute(1000, 500, 14000 + 6000, 15.0)
    metrics = [{"mean_length": 10.0, "num_tokens": 300}, {"mean_length": 20.0, "num_tokens": 700}]
    rl = grpo_compute(metrics, params=3, completions_per_step=4)
    assert (rl.generated_tokens, rl.trained_tokens) == (120, 700)
    assert rl.flops == 2 * 3 * 120 + 6 * 3 * 700


def _row(label: str, solved: list[int], flops: float, problems: int = 80) -> dict:
    """An arm that solved the problems numbered in `solved` (one sample each) out of `problems`."""
    scores = {f"p{i:03d}": float(i in solved) for i in range(problems)}
    p = sum(scores.values()) / problems
    bench = {"samples": 1, "pass@1": p, "pass@1_stderr": 0.05, "cons@k": p}
    compute = {"generated_tokens": 0, "trained_tokens": 0, "flops": flops, "wall_s": 60.0}
    return {
        "label": label,
        "results": {"benchmarks": {"gsm8k": bench}},
        "problem_scores": {"gsm8k": scores},
        "compute": compute,
    }


def test_the_statement_says_beats_only_where_the_paired_interval_excludes_zero():
    rows = {"distill": _row("(b)", list(range(40)), 10.0), "rl": _row("(c)", list(range(30)), 10.0)}
    stats = paired_statistics(rows, resamples=2000, seed=0)
    assert [(s["a"], s["b"]) for s in stats] == [("distill", "rl")]
    assert stats[0]["difference"] == pytest.approx(10 / 80)
    assert statement(rows, stats)[0].startswith("- gsm8k: (b) beats (c) by 12.5 points pass@1 (95% CI")
    # Two problems apart, in both directions: a gap of 0 that this eval could not have resolved below ~6 points.
    rows["rl"] = _row("(c)", [*range(38), 60, 61], 20.0)
    stats = paired_statistics(rows, resamples=2000, seed=0)
    lines = statement(rows, stats)
    assert "+0.0 points" in lines[0] and "not resolved" in lines[0]
    mdd = stats[0]["min_detectable"]
    assert 0.04 < mdd < 0.08
    assert f"resolves a true gap of {100 * mdd:.1f} points 80% of the time" in lines[0]
    assert "2.00x the FLOPs" in lines[-1]
    assert "| (b) | 50.0 ± 5.0 | 50.0 |" in table(rows)
    assert "| (b) − (c) | gsm8k | 80 | +0.0 |" in paired_table(rows, stats)
    assert f"is {100 * mdd:.1f} to {100 * mdd:.1f} points" in power_statement(stats)[0]


def test_the_sweep_table_says_who_leads_at_each_share_of_the_runs():
    rows = {"distill": _row("(b)", list(range(40)), 10.0), "rl": _row("(c)", list(range(30)), 10.0)}
    for arm, solved in (("distill", range(10)), ("rl", range(12))):
        rows[f"{arm}@0.5"] = {**_row("x", list(solved), 5.0), "sweep_of": arm, "fraction": 0.5, "step": 3}
    leaders = sweep_leaders(rows, resamples=2000, seed=0, confidence=0.95)
    assert [(e["fraction"], e["ranking"]) for e in leaders] == [(0.5, ["rl", "distill"]), (1.0, ["distill", "rl"])]
    lines = sweep_table(rows, leaders).splitlines()
    assert lines[2].startswith("| 50% | gsm8k | 12.5 ± 5.0 (5.00e0 FLOPs) | 15.0 ± 5.0 (5.00e0 FLOPs) | (c) by 2.5")
    assert lines[2].endswith(": not resolved |")  # 2 problems apart
    assert "| (b) by 12.5 (" in lines[3] and "not resolved" not in lines[3]  # 10 problems, all one way
    assert [s["a"] for s in paired_statistics(rows, 100, 0)] == ["distill"]  # the sweep points are not arms
    rows["rl@0.5"] = {**rows["distill@0.5"], "sweep_of": "rl"}  # level with (b) at half their runs
    tie = sweep_table(rows, sweep_leaders(rows, resamples=200, seed=0, confidence=0.95)).splitlines()[2]
    assert tie.endswith("| (b) = (c) by 0.0 (0.0 to 0.0): not resolved |")


def test_a_sweep_on_fewer_problems_meets_the_final_models_on_those_problems():
    # the final models on 80 problems, their checkpoints on the first 40 (compare.context_problems): the sweep's 100%
    # line and the curve's last point score the final models on those 40, not on all 80
    rows = {"distill": _row("(b)", [*range(10), *range(40, 80)], 10.0), "rl": _row("(c)", list(range(20)), 10.0)}
    for arm in ("distill", "rl"):
        rows[f"{arm}@0.5"] = {**_row("x", list(range(5)), 5.0, problems=40), "sweep_of": arm, "fraction": 0.5}
    final = sweep_levels(rows)[1.0]
    assert final["distill"]["results"]["benchmarks"]["gsm8k"]["pass@1"] == pytest.approx(10 / 40)
    assert final["rl"]["results"]["benchmarks"]["gsm8k"]["pass@1"] == pytest.approx(20 / 40)
    assert rows["distill"]["results"]["benchmarks"]["gsm8k"]["pass@1"] == pytest.approx(50 / 80)  # Table 6's own
    leaders = sweep_leaders(rows, resamples=500, seed=0, confidence=0.95)
    assert leaders[-1]["ranking"] == ["rl", "distill"] and leaders[-1]["paired"]["problems"] == 40


def test_arms_are_paired_on_the_problems_both_saw_and_never_on_different_ones():
    # a context row (compare.context_problems) saw the first 60 of the 80 problems: the pair rests on those 60
    rows = {"distill": _row("(b)", [1, 2, 70], 10.0), "base": _row("(a)", [1], 10.0, problems=60)}
    (stats,) = paired_statistics(rows, resamples=100, seed=0)
    assert (stats["a"], stats["b"], stats["problems"]) == ("distill", "base", 60)
    assert stats["difference"] == pytest.approx(1 / 60)  # problem 70 is not in the pair
    rows["rl"] = _row("(c)", [1, 2, 3], 10.0)
    lines = power_statement(paired_statistics(rows, resamples=100, seed=0))
    assert [line.split(";")[0] for line in lines] == [
        "- gsm8k: 1 pair on 80 problems",
        "- gsm8k: 2 pairs on 60 problems",
    ]
    rows["distill"]["results"]["benchmarks"]["gsm8k"]["problems"] = 80
    rows["base"]["results"]["benchmarks"]["gsm8k"]["problems"] = 60
    assert "| (a) | 1.7 ± 5.0 (60 problems) |" in table(rows) and "| (b) | 3.8 ± 5.0 |" in table(rows)
    del rows["rl"]
    shifted = _row("(a)", [1], 10.0, problems=60)
    shifted["problem_scores"]["gsm8k"] = {f"p{i + 30:03d}": 0.0 for i in range(60)}
    with pytest.raises(DataError, match=r"gsm8k: arms '\(b\)' and '\(a\)' were not evaluated on the same problems"):
        paired_statistics({"distill": rows["distill"], "base": shifted}, resamples=100, seed=0)


def _with_curve(row: dict, points: list[tuple[int, float]]) -> dict:
    """`row` with a budget curve on gsm8k as distill.eval writes it (eval.budgets): (budget, pass@1) points."""
    curve = [{"budget": b, "pass@1": p, "pass@1_stderr": 0.04, "cons@k": p, "mean_thinking_tokens": b / 2,
              "mean_answer_tokens": 9.0, "cut_share": 0.5} for b, p in points]  # fmt: skip
    return {**row, "results": {**row["results"], "budget_curve": {"gsm8k": curve}}}


def test_the_report_has_the_okd_row_its_compute_and_a_budget_table_only_with_curves(tmp_path):
    """Arm f gets its row, its pair against arm b and a sentence on its FLOPs; the accuracy-against-budget table
    (arms x budgets) and its plot appear when the arms' results carry budget_curve, and not otherwise."""
    from distill.compare_table import LABELS
    from distill.recipes import load_config
    from grpo.compare.report import write_report

    cfg = load_config([f"output_dir={tmp_path}", "compare.bootstrap=500"])
    rows = {"base": _row(LABELS["base"], list(range(20)), 0.0), "distill": _row(LABELS["distill"], list(range(40)), 10.0),
            "okd": _row(LABELS["okd"], list(range(44)), 11.0)}  # fmt: skip
    plain = write_report(cfg, rows, tmp_path / "plain")
    text = (plain / "table.md").read_text()
    assert f"| {LABELS['okd']} | 55.0 ± 5.0 | 55.0 |" in text and "| (f) − (b) | gsm8k | 80 | +5.0 |" in text
    assert "- Offline KD spent 1.10x the FLOPs of distillation" in text
    assert "Offline KD (f) counts as SFT" in text
    assert "thinking budget" not in text and not (plain / "accuracy_vs_budget.png").exists()

    curves = {"base": [(128, 0.1), (512, 0.2)], "distill": [(128, 0.3), (512, 0.45)], "okd": [(512, 0.5)]}
    rows = {arm: _with_curve(row, curves[arm]) for arm, row in rows.items()}
    folder = write_report(cfg, rows, tmp_path / "budgets")
    text = (folder / "table.md").read_text()
    assert "## Accuracy against the thinking budget" in text
    assert "| arm | benchmark | 128 tokens | 512 tokens | no forcing |" in text
    assert "| (b) | gsm8k | 30.0 ± 4.0 | 45.0 ± 4.0 | 50.0 ± 5.0 |" in text
    assert "| (f) | gsm8k | – | 50.0 ± 4.0 | 55.0 ± 5.0 |" in text  # a budget its evaluation did not run
    assert "![accuracy against the thinking budget](accuracy_vs_budget.png)" in text
    assert (folder / "accuracy_vs_budget.png").stat().st_size > 1000

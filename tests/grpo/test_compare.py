"""grpo.compare on a tiny model and tiny budgets: every arm runs its real stages (distill.generate, distill.sft,
grpo.train, distill.eval as processes); the teacher and the evaluated models answer through a fake OpenAI server
whose skill depends on the model asked, so the report has something definite to say."""

from __future__ import annotations

import json
import random
import re
import sys

import pytest

from distill.compute import Compute, estimate, grpo_compute, parameter_count
from distill.prompt_sets import DataError
from grpo.report import (
    paired_statistics,
    paired_table,
    power_statement,
    statement,
    sweep_leaders,
    sweep_levels,
    sweep_table,
    table,
)

# Served model name (a path) -> probability of a right answer. The extremes are certain and the draw is seeded by the
# request's seed and the matched key (not the tmp path), so the ordering the test asserts does not depend on luck.
SKILL = (("the-teacher", 1.0), ("sft/distill", 1.0), ("grpo/", 0.5), ("", 0.0))


def answer_by_skill(body: dict) -> str:
    """The fake server's reply to a synthetic "What is X?" problem: right with the asking model's skill."""
    prompt = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    match = re.search(r"What is (.+?)\?", prompt)
    truth = eval(match.group(1)) if match else 0  # the synthetic arithmetic levels
    key, skill = next((key, p) for key, p in SKILL if key in body["model"])
    rng = random.Random(f"{body['seed']}-{key}")
    answer = truth if rng.random() < skill else truth + rng.randint(1, 3)
    return f"<think>\nLet me compute step by step. I get {answer}.\n</think>\nThe answer is \\boxed{{{answer}}}."


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


def test_bad_arms_stop_before_any_stage(tmp_path, capsys):
    from grpo import compare

    assert compare.main([f"output_dir={tmp_path}", "compare.arms=[base,sft]"]) == 2
    assert "compare.arms" in capsys.readouterr().err
    assert not (tmp_path / "compare").exists()


@pytest.mark.slow
def test_comparison_on_a_tiny_model_writes_every_arm(tiny_llama, tmp_path, fake_server, capsys):
    from grpo import compare

    server = fake_server(reply=answer_by_skill)
    out = tmp_path / "out"
    argv = [
        f"model.name={tiny_llama}",
        f"output_dir={out}",
        "generate.prompts.sets=[synthetic]",
        "generate.prompts.synthetic_per_level=6",
        "generate.prompts.synthetic_levels=[1]",
        "generate.sampling.n=2",
        "generate.sampling.max_tokens=64",
        "generate.filters.decontaminate=[]",
        f"generate.teacher={tiny_llama}",
        "generate.engine.kind=openai",
        "generate.engine.served_model=the-teacher",
        f"generate.engine.urls=[{server.url}]",
        "generate.verify.workers=1",
        "sft.max_steps=2",
        "sft.per_device_batch_size=2",
        "sft.max_length=128",
        "sft.lora.r=4",
        "grpo.num_generations=2",
        "grpo.per_device_train_batch_size=2",
        "grpo.gradient_accumulation_steps=1",
        "grpo.max_completion_length=8",
        "grpo.overlong_cache=4",
        "compare.grpo_max_steps=2",
        "grpo.lora.r=4",
        "grpo.lora.dropout=0",
        "grpo.use_vllm=false",
        "grpo.verify.workers=1",
        "eval.prompts.sets=[synthetic]",
        "eval.prompts.synthetic_per_level=10",
        "eval.prompts.synthetic_levels=[2]",  # level 1 has few distinct problems: most are the training ones
        "eval.sampling.n=4",
        "eval.sampling.max_tokens=64",
        "eval.engine.kind=openai",
        f"eval.engine.urls=[{server.url}]",
        "eval.verify.workers=1",
        "compare.match_budget=true",
        "compare.arms=[base,distill,rl,distill_rl]",
        "compare.teacher_from=given",
        "compare.sweep=[]",
        "compare.min_detectable=null",  # the eval as given below, all rows in one stage
        "compare.context_problems=null",
    ]
    capsys.readouterr()
    assert compare.main(argv) == 0
    root = out / "compare" / "smollm2"
    # It ends by printing the table, its reading, and where the report and the plots are.
    printed = capsys.readouterr().out
    assert "| (c) RL: GRPO on the student |" in printed and "## What the numbers show" in printed
    assert f"report: {root / 'report' / 'table.md'}" in printed and "![" not in printed
    assert str(root / "report" / "accuracy_vs_compute.png") in printed
    report = json.loads((root / "report" / "compare.json").read_text())["arms"]
    assert list(report) == ["base", "distill", "rl", "distill_rl"]

    # Compute: nothing for the student as is; distillation = the teacher's sampling + SFT; RL capped by that budget.
    assert report["base"]["compute"]["flops"] == 0
    distill = report["distill"]["compute"]
    params = parameter_count(tiny_llama)
    journal = root / "datasets" / "teacher" / ".work" / "journal.jsonl"
    sampled = sum(s["num_tokens"] for line in journal.read_text().splitlines() for s in json.loads(line)["samples"])
    assert distill["generated_tokens"] == sampled > 0 and distill["trained_tokens"] > 0
    assert distill["flops"] == pytest.approx(2 * params * sampled + 6 * params * distill["trained_tokens"])
    rl_steps = len(report["rl"]["grpo_metrics"])
    assert 1 <= rl_steps <= 2
    rl_before_last = grpo_compute(report["rl"]["grpo_metrics"][:-1], params, 2).flops
    assert rl_before_last < distill["flops"]  # it stopped at the first step that reached the budget, or at max_steps
    assert report["distill_rl"]["compute"]["flops"] > distill["flops"]

    # The evaluation sees each arm's own model: the fake server is skilled for the distilled one only.
    scores = {arm: row["results"]["benchmarks"]["synthetic"]["pass@1"] for arm, row in report.items()}
    assert scores["distill"] > scores["rl"] > scores["base"]
    text = (root / "report" / "table.md").read_text()
    for arm in report:
        assert compare.LABELS[arm] in text
    assert any(line.startswith("- synthetic: (b)") and " beats (a) " in line for line in text.splitlines())
    paired = json.loads((root / "report" / "compare.json").read_text())["paired"]
    distill_vs_base = next(s for s in paired if (s["a"], s["b"]) == ("distill", "base"))
    assert distill_vs_base["ci"][0] > 0 and distill_vs_base["problems"] == len(
        report["base"]["problem_scores"]["synthetic"]
    )
    for image in ("accuracy_vs_compute.png", "grpo_response_length.png"):
        assert (root / "report" / image).stat().st_size > 1000

    # Started again, every finished stage is taken from the ledger: nothing is rerun, the report is rewritten.
    ledger = json.loads((root / "stages.json").read_text())
    assert set(ledger) == {"generate", "sft", "grpo_rl", "grpo_distill_rl", "eval"}  # one evaluation stage for all
    (root / "report" / "table.md").unlink()
    assert compare.main(argv) == 0
    assert json.loads((root / "stages.json").read_text()) == ledger
    assert (root / "report" / "table.md").is_file()


@pytest.mark.slow
def test_r1_order_makes_the_teacher_by_rl_then_distills_it_on_policy(tiny_llama, tmp_path, fake_server, capsys):
    """compare.teacher_from=rl: R1-Zero GRPO makes the teacher first; the kd arm (distill.kd) learns from that
    teacher, not from the student it started as; the teacher is evaluated and its cost reported as row (t)."""
    from distill.compute import kd_compute, parameter_count
    from grpo import compare

    server = fake_server(reply=answer_by_skill)
    out = tmp_path / "out"
    argv = [
        f"model.name={tiny_llama}",
        f"output_dir={out}",
        "compare.arms=[base,kd]",
        "compare.teacher_from=rl",
        "compare.teacher_max_steps=2",
        "compare.kd_max_steps=2",
        "compare.match_budget=false",
        "compare.sweep=[0.5]",
        "compare.min_detectable=null",
        "compare.context_problems=4",
        "generate.prompts.sets=[synthetic]",
        "generate.prompts.synthetic_per_level=6",
        "generate.prompts.synthetic_levels=[1]",
        "grpo.prompts.synthetic_levels=[1]",
        "grpo.prompts.synthetic_per_level=4",
        "grpo.num_generations=2",
        "grpo.per_device_train_batch_size=2",
        "grpo.gradient_accumulation_steps=1",
        "grpo.max_completion_length=8",
        "grpo.overlong_cache=4",
        "grpo.lora.r=4",
        "grpo.lora.dropout=0",
        "grpo.use_vllm=false",
        "grpo.verify.workers=1",
        "kd.per_device_train_batch_size=2",
        "kd.gradient_accumulation_steps=1",
        "kd.max_completion_length=8",
        "kd.lora.r=4",
        "kd.use_vllm=false",
        "eval.prompts.sets=[synthetic]",
        "eval.prompts.synthetic_per_level=10",
        "eval.prompts.synthetic_levels=[2]",
        "eval.sampling.n=2",
        "eval.sampling.max_tokens=32",
        "eval.engine.kind=openai",
        f"eval.engine.urls=[{server.url}]",
        "eval.verify.workers=1",
    ]
    assert compare.main(argv) == 0
    root = out / "compare" / "smollm2"
    ledger = json.loads((root / "stages.json").read_text())
    # One evaluation stage for the arm the question is about, one for its context on the first 4 problems.
    assert list(ledger) == ["grpo_teacher", "kd", "eval", "eval_context"]
    assert f"eval.models=[kd={root}/kd/kd]" in ledger["eval"]["command"]
    context = ledger["eval_context"]["command"]
    assert "eval.models=[base=" in context and f"kd@0.5={root}/kd/kd/checkpoint-1" in context
    assert "grpo.target=teacher" in ledger["grpo_teacher"]["command"]
    teacher = root / "grpo" / "teacher"
    assert f"kd.teacher={teacher}" in ledger["kd"]["command"]
    assert (teacher / "adapter_config.json").is_file()

    report = json.loads((root / "report" / "compare.json").read_text())
    arms = report["arms"]
    assert list(arms) == ["base", "kd", "teacher", "kd@0.5"]
    # The sweep: kd halfway (step 1 of 2), evaluated from its checkpoint, its compute that of the first step only.
    half = arms["kd@0.5"]
    assert (half["sweep_of"], half["step"]) == ("kd", 1) and half["model"].endswith("kd/kd/checkpoint-1")
    params = parameter_count(tiny_llama)
    kd_metrics = [json.loads(line) for line in (root / "kd" / "kd" / "metrics.jsonl").read_text().splitlines()]
    assert len(kd_metrics) == 2
    assert arms["kd"]["compute"]["flops"] == pytest.approx(kd_compute(kd_metrics, params, params, 2).flops)
    assert half["compute"]["flops"] == pytest.approx(kd_compute(kd_metrics[:1], params, params, 2).flops)
    assert [(e["fraction"], e["ranking"]) for e in report["sweep"]] == [(0.5, ["kd"]), (1.0, ["kd"])]
    assert arms["kd"]["compute"]["scored_tokens"] == kd_metrics[-1]["num_tokens"] > 0
    assert arms["teacher"]["compute"]["flops"] > 0 and len(arms["teacher"]["grpo_metrics"]) == 2
    assert {(s["a"], s["b"], s["problems"]) for s in report["paired"]} == {("kd", "base", 4), ("teacher", "base", 4)}
    seen = {arm: len(row["problem_scores"]["synthetic"]) for arm, row in arms.items()}
    assert seen == {"base": 4, "kd": seen["kd"], "teacher": 4, "kd@0.5": 4} and seen["kd"] > 4
    text = (root / "report" / "table.md").read_text()
    assert "| (t) the teacher: R1-Zero GRPO on the model, before any arm |" in text
    assert "teacher-scored tokens" in text and "- Making the teacher (R1-Zero GRPO, row (t)) cost" in text
    assert "## Along each run (the budget sweep)" in text and "| 50% | synthetic |" in text
    assert "'loss'" in (root / "logs" / "kd.stdout").read_text()  # TRL's step lines, kept out of the comparison's
    assert "kd@0.5" not in text.split("## What the numbers show")[0]  # Table 6 holds the arms' final models only


def test_kd_without_a_teacher_other_than_the_student_is_refused(tmp_path, capsys):
    from grpo import compare

    assert compare.main([f"output_dir={tmp_path}", "compare.arms=[base,kd]", "compare.teacher_from=given"]) == 2
    assert "compare.teacher_from=rl (R1's order)" in capsys.readouterr().err


def test_a_failed_stage_names_its_own_error(tmp_path, capsys):
    """A stage's one-line error comes back in the comparison's error, not just the stage's name."""
    from grpo import compare

    script = tmp_path / "stage.py"
    script.write_text(
        "import sys\nsys.stderr.write('progress 50%\\r')\nsys.stderr.write('x: error: key foo is bad\\n')\nsys.exit(2)\n"
    )
    code, error = compare._run_stage([sys.executable, str(script)])
    assert (code, error) == (2, "key foo is bad")
    assert "progress 50%" in capsys.readouterr().err  # passed through as it came


def test_an_eval_sized_by_the_difference_to_resolve():
    """compare.min_detectable: one sample per problem and as many held-out problems as a paired comparison needs to
    resolve that many points 80% of the time -- (2.80 x planning_sd / difference)^2 -- drawn from levels that have
    them, and refused where they run out."""
    from distill.errors import ConfigError
    from distill.eval_sets import held_out_synthetic
    from distill.recipes import load_config
    from grpo.compare import Comparison
    from grpo.sizing import sized_eval

    argv = ["eval.prompts.sets=[synthetic]", "eval.prompts.synthetic_levels=[3]", "compare.min_detectable=10",
            "compare.planning_sd=0.5"]  # fmt: skip
    cfg = load_config(argv)
    overrides = sized_eval(cfg)
    assert overrides[:2] == ["eval.sampling.n=1", "eval.prompts.limit=197"]
    per_level = int(overrides[2].split("=")[1])
    assert len(held_out_synthetic(load_config([*argv, overrides[2]]))) >= 197
    assert len(held_out_synthetic(load_config([*argv, f"eval.prompts.synthetic_per_level={per_level // 2}"]))) < 197
    assert Comparison(cfg, []).common[-3:] == overrides  # every stage's command carries them, after the user's

    # Level 1 has 81 distinct problems, most of them drawn for training: 5 points (785 problems) cannot be had there.
    with pytest.raises(ConfigError, match=r"compare.min_detectable.*needs 785 held-out problems"):
        sized_eval(load_config([*argv[:1], "eval.prompts.synthetic_levels=[1]", "compare.min_detectable=5", argv[3]]))

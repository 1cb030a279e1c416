"""grpo.compare on a tiny model and tiny budgets: every arm runs its real stages (distill.generate, distill.sft,
grpo.train, distill.kd, distill.eval as processes, each loading its settings file); the teacher and the evaluated
models answer through a fake OpenAI server whose skill depends on the model asked, so the report has something
definite to say."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest
import yaml

from distill.compare_table import LABELS
from distill.compute import grpo_compute, parameter_count

# Served model name (a path) -> probability of a right answer. The extremes are certain and the draw is seeded by the
# request's seed and the matched key (not the tmp path), so the ordering the test asserts does not depend on luck.
SKILL = (("the-teacher", 1.0), ("sft/distill", 1.0), ("sft/okd", 1.0), ("grpo/", 0.5), ("", 0.0))


def answer_by_skill(body: dict) -> str:
    """The fake server's reply to a synthetic "What is X?" problem: right with the asking model's skill."""
    prompt = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    match = re.search(r"What is (.+?)\?", prompt)
    truth = eval(match.group(1)) if match else 0  # the synthetic arithmetic levels
    key, skill = next((key, p) for key, p in SKILL if key in body["model"])
    rng = random.Random(f"{body['seed']}-{key}")
    answer = truth if rng.random() < skill else truth + rng.randint(1, 3)
    return f"<think>\nLet me compute step by step. I get {answer}.\n</think>\nThe answer is \\boxed{{{answer}}}."


def test_bad_arms_stop_before_any_stage(tmp_path, capsys):
    from grpo import compare

    assert compare.main([f"output_dir={tmp_path}", "compare.arms=[base,sft]"]) == 2
    assert "compare.arms" in capsys.readouterr().err
    assert not (tmp_path / "compare").exists()


@pytest.mark.parametrize("with_topk", [False, True])
def test_okd_added_to_a_run_whose_dataset_has_no_topk_stops_before_any_stage(tmp_path, capsys, with_topk):
    """A finished generate stage (in the ledger) wrote its dataset without the teacher's top-k: adding the okd arm
    would train the other arms and then stop at arm f's dataset check. It stops first, in one line, naming the
    dataset; the ledger is left as it was. With the columns there, the run goes on (construction passes)."""
    import pandas as pd

    from distill.recipes import load_config
    from grpo import compare
    from grpo.compare.run import Comparison

    root = tmp_path / "compare" / "smollm2"
    data = root / "datasets" / "teacher" / "data"
    data.mkdir(parents=True)
    row = {"messages": [[{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]]}
    if with_topk:
        row |= {"completion_ids": [[17]], "topk_ids": [[[17, 3]]], "topk_logprobs": [[[-0.1, -2.5]]]}
    pd.DataFrame(row).to_parquet(data / "train-00000-of-00001.parquet")
    ledger = json.dumps({"generate": {"command": "-m distill.generate", "wall_s": 1.0}})
    (root / "stages.json").write_text(ledger)
    argv = [f"output_dir={tmp_path}", "compare.arms=[base,distill,okd]", "compare.teacher_from=given",
            "generate.teacher=smollm2-135m"]  # fmt: skip
    if with_topk:
        assert Comparison(load_config(argv)).ledger == json.loads(ledger)
        return
    assert compare.main(argv) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error.startswith("grpo.compare: error: compare.arms has okd") and str(root / "datasets" / "teacher") in error
    assert "no completion_ids, topk_ids, topk_logprobs column" in error
    assert (root / "stages.json").read_text() == ledger


@pytest.mark.slow
def test_comparison_on_a_tiny_model_writes_every_arm(tiny_llama, tmp_path, fake_server, capsys, monkeypatch):
    from grpo import compare

    server = fake_server(reply=answer_by_skill)
    monkeypatch.chdir(tmp_path)  # a relative output_dir, as make demo's: paths built on it must not nest it twice
    out = Path("out")
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
        "sft.per_device_train_batch_size=2",
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
    captured = capsys.readouterr()
    printed = captured.out
    # Beside each training stage's bar, a line per logging step (grpo.compare.progress).
    assert "grpo.compare: [sft] step 2/2  loss " in captured.err
    step = r"grpo\.compare: \[grpo_rl\] step 1/2  reward \S+  accuracy \S+  length \d+  tokens/s \S+\n"
    assert re.search(step, captured.err)
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
        assert LABELS[arm] in text
    assert any(line.startswith("- synthetic: (b)") and " beats (a) " in line for line in text.splitlines())
    paired = json.loads((root / "report" / "compare.json").read_text())["paired"]
    distill_vs_base = next(s for s in paired if (s["a"], s["b"]) == ("distill", "base"))
    assert distill_vs_base["ci"][0] > 0 and distill_vs_base["problems"] == len(
        report["base"]["problem_scores"]["synthetic"]
    )
    for image in ("accuracy_vs_compute.png", "grpo_response_length.png"):
        assert (root / "report" / image).stat().st_size > 1000
    # The teacher's data card lies under the comparison's root, and the distilled model's card names it.
    card = root / "data_cards" / "teacher.md"
    assert card.is_file() and f"Data card: `{card}`" in (root / "sft" / "distill" / "README.md").read_text()

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
    # Each stage ran `python -m <module> recipe=<root>/stages/<name>.yaml`: its resolved settings, kept beside it.
    settings = {name: yaml.safe_load((root / "stages" / f"{name}.yaml").read_text()) for name in ledger}
    assert all(ledger[name]["command"].endswith(f"recipe={root}/stages/{name}.yaml") for name in ledger)
    # The student as is is evaluated with the arms, on all their problems; the teacher and the sweep on 4.
    assert settings["eval"]["eval"]["models"][0].startswith("base=")
    assert settings["eval"]["eval"]["models"][1:] == [f"kd={root}/kd/kd"]
    context = settings["eval_context"]["eval"]
    assert context["models"][0].startswith("teacher=") and f"kd@0.5={root}/kd/kd/checkpoint-1" in context["models"]
    assert context["prompts"]["limit"] == 4 and settings["eval"]["eval"]["prompts"]["limit"] is None
    assert settings["grpo_teacher"]["grpo"]["target"] == "teacher"
    teacher = root / "grpo" / "teacher"
    assert settings["kd"]["kd"]["teacher"] == str(teacher)
    assert settings["kd"]["kd"]["prompts"] == settings["kd"]["generate"]["prompts"]  # the teacher's prompts, whole
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
    seen = {arm: len(row["problem_scores"]["synthetic"]) for arm, row in arms.items()}
    assert seen == {"base": seen["kd"], "kd": seen["kd"], "teacher": 4, "kd@0.5": 4} and seen["kd"] > 4
    # kd against the student as is on all the arms' problems; the teacher against it on the context's 4
    pairs = {(s["a"], s["b"], s["problems"]) for s in report["paired"]}
    assert pairs == {("kd", "base", seen["kd"]), ("teacher", "base", 4)}
    text = (root / "report" / "table.md").read_text()
    assert "| (t) the teacher: R1-Zero GRPO on the model, before any arm |" in text
    assert "teacher-scored tokens" in text and "- Making the teacher (R1-Zero GRPO, row (t)) cost" in text
    assert "## Along each run (the budget sweep)" in text and "| 50% | synthetic |" in text
    assert "'loss'" in (root / "logs" / "kd.stdout").read_text()  # TRL's step lines, kept out of the comparison's
    assert "kd@0.5" not in text.split("## What the numbers show")[0]  # Table 6 holds the arms' final models only


def topk_reply(tokenizer):
    """What a vLLM server adds to answer_by_skill's reply when asked for log-probs with token ids: each token of the
    reply as "token_id:N" with a made-up top-k (the token itself most likely), as distill.engines.openai_server
    reads them."""

    def top(i: int, k: int) -> list[dict]:  # the sampled token at -0.1 nats, the rest far below: a tail mass > 0
        vocab = len(tokenizer)
        return [{"token": f"token_id:{(i + r) % vocab}", "logprob": -0.1 if r == 0 else -5.0 - r, "bytes": None}
                for r in range(k)]  # fmt: skip

    def logprobs(body: dict, content: str) -> dict:
        ids = tokenizer.encode(content, add_special_tokens=False)
        return {"content": [{"token": f"token_id:{i}", "logprob": -0.1, "bytes": None,
                             "top_logprobs": top(i, body["top_logprobs"])} for i in ids]}  # fmt: skip

    return logprobs


@pytest.mark.slow
def test_offline_kd_arm_trains_on_the_distill_arms_samples_and_the_teachers_topk(tiny_llama, tmp_path, fake_server):
    """compare.arms with okd: the one generate stage asks the teacher for its top-20 log-probs; arm f's SFT (kd_weight
    = compare.offline_kd_weight, its KL logged) and arm b's (cross-entropy only) read that one dataset; arm f's row
    and compute (the teacher's sampling + its own SFT) are in the report."""
    from transformers import AutoTokenizer

    from distill.compute import parameter_count
    from grpo import compare

    server = fake_server(reply=answer_by_skill)
    with_topk = topk_reply(AutoTokenizer.from_pretrained(tiny_llama))
    plain_answer = server.answer

    def answer(body: dict):
        status, payload = plain_answer(body)
        if status == 200 and body.get("logprobs"):
            payload["choices"][0]["logprobs"] = with_topk(body, payload["choices"][0]["message"]["content"])
        return status, payload

    server.answer = answer
    out = tmp_path / "out"
    argv = [f"model.name={tiny_llama}", f"output_dir={out}", "compare.arms=[base,distill,okd]",
            "compare.teacher_from=given", "compare.match_budget=false", "compare.sweep=[]",
            "compare.min_detectable=null", "compare.context_problems=null", "compare.offline_kd_weight=0.6",
            "generate.prompts.sets=[synthetic]", "generate.prompts.synthetic_per_level=6",
            "generate.prompts.synthetic_levels=[1]", "generate.sampling.n=2", "generate.sampling.max_tokens=64",
            "generate.filters.decontaminate=[]", f"generate.teacher={tiny_llama}", "generate.engine.kind=openai",
            "generate.engine.served_model=the-teacher", f"generate.engine.urls=[{server.url}]",
            "generate.verify.workers=1", "sft.max_steps=2", "sft.per_device_train_batch_size=2", "sft.max_length=128",
            "sft.lora.r=4", "eval.prompts.sets=[synthetic]", "eval.prompts.synthetic_per_level=10",
            "eval.prompts.synthetic_levels=[2]", "eval.sampling.n=2", "eval.sampling.max_tokens=64",
            "eval.engine.kind=openai", f"eval.engine.urls=[{server.url}]", "eval.verify.workers=1"]  # fmt: skip
    assert compare.main(argv) == 0
    root = out / "compare" / "smollm2"
    teacher_bodies = [b for b in server.bodies if b["model"] == "the-teacher"]
    assert teacher_bodies and all(b["top_logprobs"] == 20 for b in teacher_bodies)  # one pass, top-k kept
    assert not any(b.get("logprobs") for b in server.bodies if b["model"] != "the-teacher")  # not at eval
    ledger = json.loads((root / "stages.json").read_text())
    assert list(ledger) == ["generate", "sft", "sft_okd", "eval"]
    settings = {name: yaml.safe_load((root / "stages" / f"{name}.yaml").read_text()) for name in ledger}
    assert settings["generate"]["generate"]["teacher_logprobs"] == 20
    dataset = str(root / "datasets" / "teacher")
    assert settings["sft_okd"]["sft"]["dataset"] == settings["sft"]["sft"]["dataset"] == dataset
    assert (settings["sft_okd"]["sft"]["kd_weight"], settings["sft"]["sft"]["kd_weight"]) == (0.6, 0.0)
    okd_metrics = [json.loads(line) for line in (root / "sft" / "okd" / "metrics.jsonl").read_text().splitlines()]
    assert len(okd_metrics) == 2 and all(m["kd_kl"] > 0 for m in okd_metrics)  # it trained on the stored top-k
    assert "kd_kl" not in (root / "sft" / "distill" / "metrics.jsonl").read_text()

    report = json.loads((root / "report" / "compare.json").read_text())
    arms = report["arms"]
    assert list(arms) == ["base", "distill", "okd"] and arms["okd"]["model"] == str(root / "sft" / "okd" / "merged")
    params = parameter_count(tiny_llama)
    okd, distill = arms["okd"]["compute"], arms["distill"]["compute"]
    assert okd["generated_tokens"] == distill["generated_tokens"] > 0  # one teacher pass, counted in both arms
    assert okd["trained_tokens"] == okd_metrics[-1]["num_tokens"] > 0
    assert okd["flops"] == pytest.approx(2 * params * okd["generated_tokens"] + 6 * params * okd["trained_tokens"])
    assert arms["okd"]["results"]["benchmarks"]["synthetic"]["pass@1"] == 1.0  # its own model was evaluated
    assert {(s["a"], s["b"]) for s in report["paired"]} >= {("okd", "distill"), ("okd", "base")}
    text = (root / "report" / "table.md").read_text()
    assert f"| {LABELS['okd']} |" in text and "- Offline KD spent " in text


def test_kd_without_a_teacher_other_than_the_student_is_refused(tmp_path, capsys):
    from grpo import compare

    assert compare.main([f"output_dir={tmp_path}", "compare.arms=[base,kd]", "compare.teacher_from=given"]) == 2
    assert "compare.teacher_from=rl (R1's order)" in capsys.readouterr().err


def test_a_failed_stage_names_its_own_error(tmp_path, capsys):
    """A stage's one-line error comes back in the comparison's error, not just the stage's name."""
    from grpo.compare import run

    script = tmp_path / "stage.py"
    script.write_text(
        "import sys\nsys.stderr.write('progress 50%\\r')\nsys.stderr.write('x: error: key foo is bad\\n')\nsys.exit(2)\n"
    )
    code, error = run._run_stage([sys.executable, str(script)])
    assert (code, error) == (2, "key foo is bad")
    assert "progress 50%" in capsys.readouterr().err  # passed through as it came


def test_a_stages_library_chatter_goes_to_its_log_not_the_terminal(tmp_path, capsys):
    from grpo.compare import run

    script = tmp_path / "stage.py"
    script.write_text(
        "import sys\nw = sys.stderr.write\n"
        "w('Loading safetensors checkpoint shards: 100% Completed | 1/1\\n')\nw('eval: 10%|#\\r')\nw('eval: 100%|##\\n')\n"
        "w('Loading weights:  50%|#\\rLoading weights: 100%|##\\n')\nw('Triton not available\\n')\n"
        "w('distill.eval: 3 problems\\n')\nw('next: python -m distill.sft ...\\n')\n"
    )
    with (tmp_path / "hidden").open("wb") as hidden:
        code, _ = run._run_stage([sys.executable, str(script)], hidden=hidden)
    shown = capsys.readouterr().err
    assert code == 0 and shown == "eval: 10%|#\reval: 100%|##\ndistill.eval: 3 problems\n"
    kept = (tmp_path / "hidden").read_text()
    assert kept.count("Loading") == 3 and "Triton" in kept and kept.endswith("next: python -m distill.sft ...\n")

"""distill.eval also writes its numbers in lighteval's results layout: results/<model>/results_<time>.json with
config_general, and results keyed `suite|task|0` with lighteval's metric names, read back as a script reading
open-r1's lighteval results would."""

from __future__ import annotations

import json

import pytest
from fakes import ScriptedSampler
from test_eval import EXPECTED, _argv, _use, gsm8k_five, model_folder  # noqa: F401 (fixtures)

from distill import eval as evaluation
from distill.lighteval_results import lighteval_results, task_key


def test_an_evaluation_leaves_lighteval_results_with_the_same_numbers(monkeypatch, tmp_path, request):
    _, script = request.getfixturevalue("gsm8k_five")  # test_eval's fixtures: its scripted GSM8K run
    _use(monkeypatch, ScriptedSampler(script))
    assert evaluation.main(_argv(tmp_path, request.getfixturevalue("model_folder"))) == 0
    out = tmp_path / "out" / "eval" / "model-x"
    ours = json.loads((out / "results.json").read_text())["benchmarks"]["gsm8k"]
    [path] = (out / "results").glob("*/results_*.json")
    assert path.parent.name == "model-x"  # the model's name, not this machine's path to it
    lighteval = json.loads(path.read_text())
    assert {"config_general", "results", "versions", "config_tasks", "summary_tasks"} <= set(lighteval)
    task = lighteval["results"]["lighteval|gsm8k|0"]  # the key open-r1's lighteval runs write
    assert task["pass@k:k=1&n=4"] == pytest.approx(EXPECTED["pass@1"])
    assert task["pass@k:k=1&n=4_stderr"] == ours["pass@1_stderr"]
    assert task["maj@k:k=4&n=4"] == pytest.approx(EXPECTED["cons@k"])
    assert task["pass@k:k=4&n=4"] == pytest.approx(EXPECTED["pass@k"]["4"])
    assert lighteval["results"]["all"]["pass@1"] == pytest.approx(EXPECTED["pass@1"])
    general = lighteval["config_general"]
    assert general["model_name"] == "model-x" and general["generation_parameters"]["temperature"] == 0.6
    assert "distill-factory" in general["evaluator"]


def test_benchmarks_lighteval_lacks_go_under_our_suite_and_code_has_no_vote():
    scores = {"problems": 2, "samples": 1, "pass@1": 0.5, "pass@1_stderr": None, "cons@k": None,
              "pass@k": {"1": 0.5}, "truncated": 0.0}  # fmt: skip
    results = {
        "model": "org/model",
        "benchmarks": {"humaneval": scores, "math500": {**scores, "cons@k": 0.5}},
        "manifest": {"model": {"hub_id": "org/model", "revision": "main"}, "datasets": {}, "seed": 1,
                     "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 64}},
    }  # fmt: skip
    made = lighteval_results(results)
    assert task_key("humaneval") == "distill|humaneval|0" and task_key("math500") == "lighteval|math_500|0"
    assert made["results"]["distill|humaneval|0"] == {"pass@k:k=1&n=1": 0.5, "pass@k:k=1&n=1_stderr": None}
    assert made["results"]["lighteval|math_500|0"]["maj@k:k=1&n=1"] == 0.5
    assert made["config_general"]["model_name"] == "org/model" and made["config_general"]["model_sha"] == "main"

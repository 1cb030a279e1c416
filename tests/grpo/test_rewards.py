"""grpo.rewards: the shared verifiers as TRL reward functions, shaping, weights, skipped error verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from reward_doubles import BROKEN, EOS, GAMED, HONEST, InlinePool, ScriptedPool, call_reward

from grpo import rewards

# --- rewards -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "ids", "expected"),
    [
        (HONEST, [5, EOS], 1.0),
        ("<think>3 plus 4 is 8</think> \\boxed{8}", [5, EOS], 0.0),
        # cut at max_completion_length (4 tokens, no EOS): no credit, even for the right number
        (HONEST, [5, 5, 5, 5], 0.0),
        # conversational completions, as TRL passes them for chat prompts
        ([{"role": "assistant", "content": HONEST}], [5, EOS], 1.0),
        # hedging: two different boxed answers earn nothing (the shared math verifier's policy)
        ("<think>hmm</think> \\boxed{7} or \\boxed{8}", [5, EOS], 0.0),
    ],
)
def test_accuracy_reward_runs_the_shared_verifier(completion, ids, expected):
    accuracy = rewards.accuracy_reward(InlinePool(), max_length=4, eos_ids={EOS})
    scores, _ = call_reward(accuracy, [completion], [ids])
    assert accuracy.__name__ == "accuracy" and scores == [expected]


@pytest.mark.parametrize(
    ("verdict", "ids", "expected", "error_share"),
    [
        ("correct", [5, EOS], 1.0, 0.0),
        ("wrong", [5, EOS], 0.0, 0.0),
        ("no_answer", [5, EOS], 0.0, 0.0),
        ("timeout", [5, EOS], 0.0, 0.0),  # the policy's program or answer ran too long: its fault, no credit
        ("error", [5, EOS], None, 1.0),  # the verifier or the sandbox failed: not the policy's fault, TRL skips it
        ("error", [5, 5, 5, 5], 0.0, 0.0),  # cut at max_completion_length: no credit whatever the verifier did
    ],
)
def test_accuracy_reward_per_verdict(verdict, ids, expected, error_share):
    accuracy = rewards.accuracy_reward(ScriptedPool({HONEST: verdict}), max_length=4, eos_ids={EOS})
    scores, metrics = call_reward(accuracy, [HONEST], [ids])
    assert scores == [expected]
    assert metrics["verifier_error_share"] == error_share


def test_every_reward_function_skips_a_completion_whose_verifier_failed():
    """One None among numbers counts as 0 in TRL's nansum: every function must return None for it, not accuracy alone."""
    weights = {"accuracy": 1.0, "format": 0.5, "language": 0.1, "overlong": 0.25, "repetition": 0.1}
    funcs, _ = rewards.build_reward_funcs(
        weights, ScriptedPool({BROKEN: "error"}), max_completion_length=8, eos_ids={EOS}
    )
    completions = [HONEST, BROKEN, GAMED]  # one list for every function of the batch, as TRL passes it
    metrics: dict[str, float] = {}
    columns = {"task": ["math"] * 3, "answer": ["7"] * 3, "log_metric": metrics.__setitem__}
    table = {
        f.__name__: f(prompts=["q"] * 3, completions=completions, completion_ids=[[5, EOS]] * 3, **columns)
        for f in funcs
    }
    assert list(table) == ["accuracy", "format", "language", "overlong", "repetition", "reflection"]
    assert table["accuracy"] == [1.0, None, 0.0]
    assert all(scores[1] is None for scores in table.values()), table
    assert all(scores[0] is not None and scores[2] is not None for scores in table.values()), table
    assert metrics == {"verifier_error_share": pytest.approx(1 / 3), "format_gaming": 0.5}  # of the 2 scored
    # The next batch (another list) starts clean: a completion is skipped only in the batch whose verifier failed.
    assert funcs[1](completions=[BROKEN], completion_ids=[[5, EOS]]) == [1.0]


def test_accuracy_reward_passes_reference_fields_per_row():
    accuracy = rewards.accuracy_reward(InlinePool(), max_length=64, eos_ids={EOS})
    plain = ["The sum is 7", "The sum is 7"]
    scores, _ = call_reward(accuracy, plain, fallback_last_number=[True, False])
    assert scores == [1.0, 0.0]  # the plain-number fallback only where the row asks for it


def test_shaping_rewards_and_weights_come_from_the_recipe_keys():
    funcs, weights = rewards.build_reward_funcs(
        {"accuracy": 1.0, "format": 0.5, "overlong": 0.25},
        InlinePool(),
        max_completion_length=8,
        eos_ids={EOS},
        overlong_cache=4,
    )
    names = [f.__name__ for f in funcs]
    assert names == ["accuracy", "format", "overlong", "reflection"]
    assert weights == [1.0, 0.5, 0.25, 0.0]  # reflection is a monitor
    by_name = dict(zip(names, funcs, strict=True))
    assert call_reward(by_name["format"], [HONEST, "no tags"])[0] == [1.0, 0.0]
    overlong = by_name["overlong"](completions=["a", "b", "c"], completion_ids=[[1] * 4, [1] * 6, [1] * 8])
    assert overlong == [0.0, -0.5, -1.0]  # DAPO: linear over the last 4 tokens before 8
    with pytest.raises(ValueError, match="unknown reward component"):
        rewards.build_reward_funcs({"acuracy": 1.0}, InlinePool(), max_completion_length=8, eos_ids={EOS})


def _trl_rewards_per_func(funcs, completions, answers):
    """TRL 1.16's own GRPOTrainer._calculate_rewards (None -> NaN) on our reward functions, without a trainer."""
    from types import SimpleNamespace

    from accelerate.state import AcceleratorState, PartialState
    from trl import GRPOTrainer

    # One CPU process: TRL's gather and its accelerate logger need the state. Made anew: accelerate keeps it per
    # process, and an earlier test's trainer (vLLM colocated sets RANK and WORLD_SIZE) may have left a distributed one.
    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState()
    fake = SimpleNamespace(
        accelerator=SimpleNamespace(device="cpu", is_main_process=True),
        args=SimpleNamespace(report_to=[]),
        state=SimpleNamespace(global_step=0),
        reward_funcs=funcs,
        reward_processing_classes=[None] * len(funcs),
        reward_func_names=[f.__name__ for f in funcs],
        environments=None,
        _log_completion_extra=lambda *a, **k: None,
        _log_metric=lambda name, value: None,
    )
    inputs = [
        {"prompt": "q", "completion": c, "task": "math", "answer": a} for c, a in zip(completions, answers, strict=True)
    ]
    ids = [[5, EOS]] * len(completions)
    return GRPOTrainer._calculate_rewards.__wrapped__(fake, inputs, ["q"] * len(completions), completions, ids)


def _trl_scores(rewards_per_func, weights, num_generations):
    """TRL 1.16's _generate_and_score_completions from rewards_per_func to advantages (sum_then_normalize, group
    scaling), line for line: test_trl_still_combines_rewards_as_mirrored checks the lines are still TRL's."""
    import torch
    from trl.trainer.utils import nanstd

    unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * torch.tensor(weights).unsqueeze(0)).nansum(dim=1)
    rewards[unscorable_mask] = torch.nan
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
    std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped_rewards
    advantages = advantages / (std_rewards + 1e-4)
    advantages = torch.nan_to_num(advantages, nan=0.0)
    return rewards, advantages


TRL_LINES = (
    "output_reward_func = [reward if reward is not None else torch.nan for reward in output_reward_func]",
    "unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)",
    "rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)",
    "rewards[unscorable_mask] = torch.nan",
    "mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)",
    "std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)",
    "advantages = torch.nan_to_num(advantages, nan=0.0)",
)


def test_trl_still_combines_rewards_as_mirrored():
    import importlib.util

    source = Path(importlib.util.find_spec("trl.trainer.grpo_trainer").origin).read_text()
    assert [line for line in TRL_LINES if line not in source] == []


def test_a_failed_verifier_moves_nothing_even_when_a_whole_group_fails(caplog):
    """Two groups of 4 through TRL's own None -> NaN and its combination: a completion whose verifier failed is out of
    its group's baseline with advantage 0, and a group where every verifier failed gives 0 advantages, not NaN."""
    import torch

    weights = {"accuracy": 1.0, "format": 0.5}
    pool = ScriptedPool({BROKEN: "error", "The sum is \\boxed{7}": "error"})
    funcs, scale = rewards.build_reward_funcs(weights, pool, max_completion_length=64, eos_ids={EOS})
    group = [HONEST, BROKEN, "\\boxed{8}", "\\boxed{8}"]  # correct, verifier failed, wrong, wrong
    failed = [BROKEN, BROKEN, "The sum is \\boxed{7}", BROKEN]  # every verifier failed
    with caplog.at_level("WARNING"):
        per_func = _trl_rewards_per_func(funcs, group + failed, ["7"] * 8)
    assert "All reward functions returned None" in caplog.text  # TRL's own warning for such a completion
    assert torch.isnan(per_func[1]).all() and torch.isnan(per_func[4:]).all()
    assert not torch.isnan(per_func[[0, 2, 3]]).any()

    rewards_, advantages = _trl_scores(per_func, scale, num_generations=4)
    assert torch.isfinite(advantages).all()
    assert advantages[1] == 0 and (advantages[4:] == 0).all()
    # The baseline is the mean of the three scored completions, not of four with the failed one counted as wrong.
    scored = rewards_[[0, 2, 3]]
    assert torch.allclose(advantages[[0, 2, 3]], (scored - scored.mean()) / (scored.std() + 1e-4))
    assert advantages[0] > 0 > advantages[2]
    assert torch.isfinite(torch.nanmean(rewards_))  # TRL's logged reward: the failed rows are left out


@pytest.mark.parametrize(
    ("text", "reflects"),
    [
        ("7. Wait, let me re-check: 3 + 4 = 7.", True),
        ("We should re-evaluate the sum.", True),
        ("Hmm, that's not right.", True),
        ("We await the result: 7.", False),
        ("3 + 4 = 7", False),
    ],
)
def test_reflection_phrases(text, reflects):
    assert rewards.has_reflection(text) is reflects
    assert rewards.reflection(completions=[text]) == [float(reflects)]

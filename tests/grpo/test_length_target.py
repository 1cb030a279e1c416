"""L1's length-target reward (grpo.length_target): its values at and around the target, with right and wrong answers;
the target in the prompt; targets per seed; bad keys; a tiny grpo.train run whose monitor logs target and achieved."""

from __future__ import annotations

import json

import pytest
from reward_doubles import BROKEN, EOS, HONEST, InlinePool, ScriptedPool, call_reward
from stderr import after_first_line
from tiny_runs import grpo_argv

from distill.recipes import load_config
from distill.training.prompts import training_rows
from grpo import rewards
from grpo.length_target import add_length_targets, draw_target, length_target_reward, with_instruction
from grpo.monitor import LENGTH_TARGET_FIELDS, record_from_logs

ALPHA = 0.0003  # L1's


def _ids(n: int) -> list[int]:
    """A finished completion of n tokens (the last one EOS, so accuracy does not count it as truncated)."""
    return [5] * (n - 1) + [EOS]


# --- the reward's values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "generated", "expected"),
    [
        (1000, 1000, 0.0),  # at the target: no penalty
        (1000, 999, -ALPHA),  # one token short
        (1000, 1001, -ALPHA),  # one token over: the same
        (1000, 900, -100 * ALPHA),
        (1000, 1100, -100 * ALPHA),
        (100, 4000, -3900 * ALPHA),  # L1's range end to end: -1.17
        (1, 1, 0.0),
    ],
)
def test_reward_is_minus_alpha_times_the_distance_to_the_target(target, generated, expected):
    reward = length_target_reward(ALPHA)
    [value] = reward(completions=["x"], completion_ids=[_ids(generated)], length_target=[target])
    assert value == pytest.approx(expected, abs=1e-12)


def _total(weights: dict[str, float], pool, completions, lengths, targets, answers) -> list[float]:
    """The weighted sum TRL makes of build_reward_funcs' functions (grpo.rewards: the mirrored lines)."""
    funcs, scale = rewards.build_reward_funcs(weights, pool, max_completion_length=5000, eos_ids={EOS})
    columns = {"task": ["math"] * len(completions), "answer": answers, "length_target": targets}
    ids = [_ids(n) for n in lengths]
    per_func = [f(completions=completions, completion_ids=ids, **columns) for f in funcs]
    return [sum(w * (r or 0.0) for w, r in zip(scale, rs, strict=True)) for rs in zip(*per_func, strict=True)]


@pytest.mark.parametrize("k", [0, 1, 250])
def test_lcpo_exact_with_right_and_wrong_answers(k):
    """accuracy 1 + length_target 1 (format 0) is L1's r = 1[correct] - alpha |n_target - n_y|, on both sides."""
    weights = {"accuracy": 1.0, "format": 0.0, "length_target": 1.0}
    lengths = [500, 500 + k, 500 - k, 500, 500 + k, 500 - k]
    answers = ["7"] * 3 + ["8"] * 3  # HONEST answers 7: right, then wrong
    totals = _total(weights, InlinePool(), [HONEST] * 6, lengths, [500] * 6, answers)
    expected = [1.0, 1 - ALPHA * k, 1 - ALPHA * k, 0.0, -ALPHA * k, -ALPHA * k]
    assert totals == pytest.approx(expected, abs=1e-12)


def test_length_target_is_built_only_when_weighted_and_with_the_recipes_alpha():
    funcs, scale = rewards.build_reward_funcs(
        {"accuracy": 1.0, "length_target": 2.0}, InlinePool(), max_completion_length=64, eos_ids={EOS}, length_alpha=0.5
    )
    by_name = dict(zip([f.__name__ for f in funcs], funcs, strict=True))
    assert scale[list(by_name).index("length_target")] == 2.0
    assert by_name["length_target"](completions=["a"], completion_ids=[_ids(4)], length_target=[6]) == [-1.0]
    off, _ = rewards.build_reward_funcs({"accuracy": 1.0}, InlinePool(), max_completion_length=64, eos_ids={EOS})
    assert "length_target" not in [f.__name__ for f in off]


def test_a_completion_whose_verifier_failed_gets_none():
    funcs, _ = rewards.build_reward_funcs(
        {"accuracy": 1.0, "length_target": 1.0},
        ScriptedPool({BROKEN: "error"}),
        max_completion_length=64,
        eos_ids={EOS},
    )
    by_name = {f.__name__: f for f in funcs}
    completions = [HONEST, BROKEN]
    call_reward(by_name["accuracy"], completions, length_target=[2, 2])  # records the skip, as TRL calls it first
    scores, _ = call_reward(by_name["length_target"], completions, ids=[_ids(4), _ids(4)], length_target=[2, 2])
    assert scores == [pytest.approx(-2 * ALPHA), None]


def test_the_reward_logs_target_achieved_and_their_distance():
    metrics: dict[str, float] = {}
    length_target_reward(ALPHA)(
        completions=["a", "b"],
        completion_ids=[_ids(10), _ids(40)],
        length_target=[20, 20],
        log_metric=metrics.__setitem__,
    )
    assert metrics == {"length_target/target": 20, "length_target/achieved": 25, "length_target/abs_error": 15}
    record = record_from_logs(3, {"reward": 0.0, **metrics}, ["accuracy"], 2)
    assert {f: record[f] for f in LENGTH_TARGET_FIELDS} == {
        "target_length": 20,
        "achieved_length": 25,
        "length_error": 15,
    }
    assert all(record_from_logs(3, {"reward": 0.0}, ["accuracy"], 2)[f] is None for f in LENGTH_TARGET_FIELDS)


# --- targets and prompts -------------------------------------------------------------------------------------------


def test_targets_are_reproducible_per_seed_within_range_and_independent_of_the_other_prompts():
    ids = [f"p{i}" for i in range(300)]
    first = [draw_target(7, i, 100, 4000) for i in ids]
    assert first == [draw_target(7, i, 100, 4000) for i in ids]  # same seed, same targets (a resumed run's too)
    assert all(100 <= t <= 4000 for t in first) and len(set(first)) > 250  # spread over the range
    assert first != [draw_target(8, i, 100, 4000) for i in ids]  # another seed, other targets
    assert {draw_target(1, "p", 5, 7) for _ in range(3)} <= {5, 6, 7}
    assert set(draw_target(s, "p", 5, 7) for s in range(60)) == {5, 6, 7}  # both ends reachable
    rows = [{"id": i, "prompt": [{"role": "user", "content": "q"}]} for i in ids]
    forward = {r["id"]: r["length_target"] for r in add_length_targets(rows, 7, 100, 4000, "Think for {n} tokens.")}
    backward = {r["id"]: r["length_target"] for r in add_length_targets(rows[::-1][:50], 7, 100, 4000, "{n}")}
    assert all(forward[i] == t for i, t in backward.items())  # order and the other prompts do not matter


@pytest.mark.parametrize("template", ["r1", "r1_zero", "r1_zero_chat"])
def test_the_target_is_asked_for_at_the_end_of_the_user_turn(template):
    prompt = {"id": "a", "task": "math", "problem": "What is 3 + 4?", "answer": "7"}
    [row] = add_length_targets(training_rows([prompt], template), 3, 10, 20, "Think for {n} tokens.")
    n = row["length_target"]
    asked = f"\\boxed{{}}. Think for {n} tokens."  # after R1's instruction, as L1 appends it after its own
    if template == "r1_zero":
        assert row["prompt"].endswith(f"{asked} Assistant:")
    else:
        assert row["prompt"][-1]["role"] == "user" and row["prompt"][-1]["content"].endswith(asked)
    assert 10 <= n <= 20


def test_with_instruction_touches_only_the_last_user_turn():
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a"},
              {"role": "user", "content": "u2"}]  # fmt: skip
    assert [m["content"] for m in with_instruction(prompt, "X")] == ["s", "u1", "a", "u2 X"]
    with pytest.raises(ValueError, match="Assistant:"):
        with_instruction("no closing", "X")


def test_grpo_train_dataset_carries_the_targets_only_when_on(tiny_llama):
    from grpo.train import build_dataset

    base = [f"model.name={tiny_llama}", "grpo.prompts.synthetic_levels=[1]", "grpo.prompts.synthetic_per_level=6"]
    on = [*base, "grpo.reward_weights.length_target=1", "grpo.length_target.range=[50,60]",
          "grpo.length_target.instruction=Use {n} tokens."]  # fmt: skip
    dataset, _ = build_dataset(load_config(on))
    for row in dataset:
        assert 50 <= row["length_target"] <= 60
        assert row["prompt"][-1]["content"].endswith(f" Use {row['length_target']} tokens.")
    again, _ = build_dataset(load_config(on))
    assert again["length_target"] == dataset["length_target"]
    plain, _ = build_dataset(
        load_config([*base, "grpo.reward_weights.length_target=0", "grpo.length_target.range=[50,60]"])
    )
    assert "length_target" not in plain.column_names and "tokens." not in plain[0]["prompt"][-1]["content"]


# --- bad keys ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["grpo.reward_weights.length_target=1"], "needs grpo.length_target.range=[min,max]"),
        (["grpo.length_target.range=[10,20]"], "'grpo.length_target.range' is set but grpo.reward_weights.length_target"),
        (["grpo.reward_weights.length_target=1", "grpo.length_target.range=[20,10]"], "1 <= min <= max"),
        (["grpo.reward_weights.length_target=1", "grpo.length_target.range=[0,10]"], "1 <= min <= max"),
        (["grpo.reward_weights.length_target=1", "grpo.length_target.range=[10]"], "needs grpo.length_target.range"),
        (["grpo.reward_weights.length_target=1", "grpo.length_target.range=[10,9000]", "grpo.max_completion_length=512"],
         "more than grpo.max_completion_length (512)"),
        (["grpo.reward_weights.length_target=1", "grpo.length_target.range=[10,20]", "grpo.length_target.alpha=0"],
         "'grpo.length_target.alpha' must be > 0"),
        (["grpo.reward_weights.length_target=1", "grpo.length_target.range=[10,20]",
          "grpo.length_target.instruction=Think briefly."], "must hold {n}"),
        (["grpo.reward_weights.length_target=1", "grpo.length_target.range=[10,20]",
          "grpo.length_target.instruction=Think {n} {tokens}"], "no other braces"),
        (["grpo.reward_weights.length_target=-1", "grpo.length_target.range=[10,20]"],
         "'grpo.reward_weights.length_target' must be >= 0"),
    ],
)  # fmt: skip
def test_bad_keys_are_refused_in_one_line(argv, expected, tmp_path, capsys, monkeypatch):
    from grpo import train

    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("training started"))
    assert train.main([f"output_dir={tmp_path}", *argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in after_first_line(err).splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("grpo.train: error: ") and expected in lines[0], lines[0]


def test_off_at_weight_zero_with_a_range_and_on_with_both():
    from distill.checks import check_grpo

    check_grpo(load_config(["grpo.reward_weights.length_target=0", "grpo.length_target.range=[10,20]"]))
    check_grpo(load_config(["grpo.reward_weights.length_target=1", "grpo.length_target.range=[10,10]"]))


# --- a tiny run ----------------------------------------------------------------------------------------------------


def test_a_tiny_grpo_run_logs_target_against_achieved(tiny_llama, tmp_path):
    from grpo import train

    alpha = 0.01
    argv = grpo_argv(
        tiny_llama,
        tmp_path / "out",
        "grpo.reward_weights.length_target=1",
        "grpo.length_target.range=[2,8]",
        f"grpo.length_target.alpha={alpha}",
        "grpo.max_steps=2",
    )
    assert train.main(argv) == 0
    run = tmp_path / "out" / "grpo" / "tiny"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert 2 <= r["target_length"] <= 8 and 1 <= r["achieved_length"] <= 8  # max_completion_length=8
        # The mean of |t - n| is at least |mean t - mean n|, and the reward's mean is -alpha times it.
        assert r["length_error"] >= abs(r["target_length"] - r["achieved_length"]) - 1e-6
        assert r["achieved_length"] == pytest.approx(r["mean_length"])  # the tokens TRL counts
        assert r["rewards"]["length_target"] == pytest.approx(-alpha * r["length_error"], abs=1e-6)
    assert (run / "plots" / "length_target.png").stat().st_size > 1000
    config = (run / "config.yaml").read_text()
    assert "length_target:" in config and "- 2\n" in config

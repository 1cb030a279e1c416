"""kd.padding_free (distill.training.packing.PackedHiddenStatesMixin): the student's and teacher's hidden states from
the packed forward equal TRL's padded ones at every position the KD loss reads, gradients through them too, and a
real distill.kd run trains through the packed path."""

from __future__ import annotations

import json
import math

import pytest
import torch
from trl import DistillationTrainer

from distill.training import packing

PROMPTS = [5, 9, 3, 7]  # real prompt tokens per row, left-padded to 9
COMPLETIONS = [6, 2, 4, 1]  # real completion tokens per row, right-padded to 6


def uneven_batch(pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, completion_mask): left-padded prompts then right-padded completions."""
    g = torch.Generator().manual_seed(0)
    width_p, width_c = max(PROMPTS), max(COMPLETIONS)
    ids = torch.full((len(PROMPTS), width_p + width_c), pad_id)
    mask = torch.zeros_like(ids)
    for row, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS, strict=True)):
        real = slice(width_p - p, width_p + c)
        ids[row, real] = torch.randint(10, 1000, (p + c,), generator=g)
        mask[row, real] = 1
    return ids, mask, mask[:, width_p:]


def student(path):
    """The tiny model with LoRA (random A and B: B=0 would zero A's gradients)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    lora = LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False)
    return get_peft_model(model, lora).eval()


def bare_trainer():
    """Just what _get_last_hidden_state reads on a text model."""
    trainer = object.__new__(packing.padding_free(DistillationTrainer))
    trainer._is_vlm, trainer.model_kwarg_keys = False, set()
    return trainer


@pytest.mark.parametrize("one_row", [False, True])  # sdpa's groups no wider than the batch; flash's single row
def test_packed_hidden_states_and_their_gradients_equal_the_padded_ones(
    tiny_llama, real_tokenizer, one_row, monkeypatch
):
    if one_row:
        monkeypatch.setattr(packing, "packs_without_limit", lambda model: True)
    model, trainer = student(tiny_llama), bare_trainer()
    ids, mask, completion_mask = uneven_batch(real_tokenizer.pad_token_id)
    keep = completion_mask.bool()  # the positions the KD loss reads (TRL's loss_mask)
    weights = torch.randn(64, generator=torch.Generator().manual_seed(1))
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def states_and_grads(method):
        model.zero_grad()
        hidden = method(trainer, model, ids, mask, completion_mask.size(1))
        (hidden[keep] @ weights).sum().backward()  # a loss of the read positions only, as KD's
        return hidden.detach(), {n: p.grad.clone() for n, p in lora.items()}

    packed_states, packed_grads = states_and_grads(type(trainer)._get_last_hidden_state)
    padded_states, padded_grads = states_and_grads(DistillationTrainer._get_last_hidden_state)
    assert packed_states.shape == padded_states.shape == (*keep.shape, 64)
    torch.testing.assert_close(packed_states[keep], padded_states[keep], atol=1e-5, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in padded_grads.values())
    for name, grad in padded_grads.items():
        # fp32 sums over other shapes and orders: held to 1e-4 of the matrix's largest gradient, not of each element
        # (an element that nearly cancels keeps the absolute rounding of the large terms it sums).
        assert (packed_grads[name] - grad).abs().max() <= 1e-4 * grad.abs().max(), name


def test_kd_trains_padding_free(tiny_llama, tiny_qwen2, tmp_path, monkeypatch):
    """distill.kd (padding_free is the default) packs the student's and the teacher's forwards and logs finite
    losses."""
    from distill import kd

    calls = []
    pack = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *args: calls.append(args[0].shape) or pack(*args))
    argv = [
        f"model.name={tiny_llama}", f"kd.teacher={tiny_qwen2}", f"output_dir={tmp_path / 'out'}", "kd.run_name=tiny",
        "kd.prompts.sets=[synthetic]", "kd.prompts.synthetic_levels=[1]", "kd.prompts.synthetic_per_level=4",
        "kd.per_device_train_batch_size=4", "kd.gradient_accumulation_steps=1", "kd.max_completion_length=8",
        "kd.lora.r=4", "kd.use_vllm=false", "kd.max_steps=2", "kd.padding_free=true",
    ]  # fmt: skip
    assert kd.main(argv) == 0
    assert len(calls) >= 4  # two steps, each a student and a teacher forward
    lines = (tmp_path / "out" / "kd" / "tiny" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert len(records) == 2 and all(math.isfinite(r["loss"]) for r in records)

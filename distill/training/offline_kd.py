"""Offline distillation from the teacher's stored top-k log-probs (generate.teacher_logprobs -> sft.kd_weight).

distill.generate keeps, at every token the teacher generated, its k most likely next tokens and their raw log-probs
(the teacher's own distribution at temperature 1). Here the student trains on those same token ids -- so that
position t of the student's sequence is position t of the teacher's -- with the loss

    (1 - kd_weight) * CE(sampled token) + kd_weight * KL(teacher || student) over k + 1 outcomes,

the k stored tokens and one bucket for the rest of the vocabulary (`topk_kl`). Tokens the teacher did not generate
(a prefilled `<think>\\n`, an end-of-turn token appended after a stop string) have no stored top-k: their KD term is
the cross-entropy, the KL to a teacher certain of that token, so they are trained under any weight.

The rows are tokenized here (prompt by the student's chat template, completion = the stored ids), and TRL's
SFTTrainer takes them as already processed; `OfflineKDTrainer` only adds the top-k tensors to its batches and the
KD term to its loss, so LoRA, QLoRA, full fine-tuning, padding-free batches and resume are TRL's as for plain SFT.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from trl import SFTTrainer

from distill.prompt_sets import DataError

KD_COLUMNS = ("completion_ids", "topk_ids", "topk_logprobs")  # written by distill.generate (dataset_writer)
BATCH_FIELDS = ("topk_start", "topk_ids", "topk_logprobs")  # per prepared row, turned into tensors by TopKCollator


def check_kd_columns(columns: list[str], name: str, weight: float) -> None:
    """Raise DataError unless the dataset holds the teacher's ids and top-k."""
    missing = [c for c in KD_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"sft.kd_weight={weight} needs the teacher's top-k log-probs, but dataset {name} has no {', '.join(missing)}"
            " column: write it with python -m distill.generate generate.teacher_logprobs=20 (or set sft.kd_weight=0)"
        )


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def check_same_tokenizer(dataset, tokenizer, weight: float, rows: int = 4) -> None:
    """Raise DataError unless the student's tokenizer decodes the stored ids back to the stored completions: the
    ids (and the top-k) are the teacher's, and mean something else in another vocabulary."""
    for index in range(min(rows, len(dataset))):
        row = dataset[index]
        ids = row["completion_ids"]
        completion = row["completion"]  # conversational ([{role, content}]) or plain text
        text = completion if isinstance(completion, str) else "".join(m["content"] for m in completion)
        if ids and max(ids) >= len(tokenizer):
            raise DataError(
                f"sft.kd_weight={weight}: row {index} holds token id {max(ids)}, beyond the student's vocabulary of "
                f"{len(tokenizer)}: offline KD needs the teacher's tokenizer (or set sft.kd_weight=0)"
            )
        decoded = _squash(tokenizer.decode(ids, skip_special_tokens=True))[:2000]
        # A ratio, not equality: servers may return the reasoning apart (put back in <think> tags by the engine),
        # and special tokens are skipped; another vocabulary decodes to unrelated text (ratios near 0).
        if difflib.SequenceMatcher(None, decoded, _squash(text)[:2000], autojunk=False).ratio() < 0.8:
            raise DataError(
                f"sft.kd_weight={weight}: the student's tokenizer decodes row {index}'s completion_ids to "
                f"{decoded[:40]!r}, not its completion {_squash(text)[:40]!r}: offline KD needs the teacher's tokenizer "
                "(or set sft.kd_weight=0)"
            )


def kd_rows(dataset, tokenizer, chat_template: str | None, eos_token: str | None, max_length: int | None):
    """(tokenized rows, rows dropped as longer than max_length): input_ids = the prompt in the student's chat template
    + the teacher's completion ids (+ the end-of-turn token when the teacher stopped on a stop string), with
    completion_mask and each row's top-k from `topk_start` on. The prompt/completion columns stay for the template
    check (TRL skips its own tokenization when input_ids is there)."""
    stop = tokenizer.convert_tokens_to_ids(eos_token) if eos_token else tokenizer.eos_token_id
    stops = {tokenizer.eos_token_id, stop}

    def build(row: dict) -> dict:
        text = tokenizer.apply_chat_template(
            row["prompt"], tokenize=False, add_generation_prompt=True, chat_template=chat_template
        )
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        completion = list(row["completion_ids"])
        tail = [] if completion and completion[-1] in stops else [stop]
        first = next((i for i, top in enumerate(row["topk_ids"]) if top), len(completion))
        return {
            "input_ids": prompt + completion + tail,
            "completion_mask": [0] * len(prompt) + [1] * (len(completion) + len(tail)),
            "topk_start": len(prompt) + first,
            "topk_ids": row["topk_ids"][first:],
            "topk_logprobs": row["topk_logprobs"][first:],
        }

    rows = dataset.map(build, remove_columns=["completion_ids"], desc="teacher ids and top-k")
    if max_length is None:
        return rows, 0
    kept = rows.filter(lambda ids: len(ids) <= max_length, input_columns="input_ids")
    return kept, len(rows) - len(kept)


@dataclass
class TopKCollator:
    """TRL's collator for input_ids/labels, plus the stored top-k as tensors laid out like input_ids: topk_ids and
    topk_logprobs [rows, length, k], topk_valid [rows, length] -- at the position of the token they predict."""

    base: Any
    padding_free: bool

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.base([{k: v for k, v in e.items() if k not in BATCH_FIELDS} for e in examples])
        rows, length = batch["input_ids"].shape
        k = max((len(e["topk_ids"][0]) for e in examples if e["topk_ids"]), default=1)
        ids = torch.zeros(rows, length, k, dtype=torch.long)
        logprobs = torch.full((rows, length, k), float("-inf"))
        valid = torch.zeros(rows, length, dtype=torch.bool)
        offset = 0
        for i, example in enumerate(examples):
            row, start = (0, offset) if self.padding_free else (i, 0)
            size = len(example["input_ids"])  # after TRL's truncation, if any
            count = min(len(example["topk_ids"]), size - example["topk_start"])
            if count > 0:
                at = slice(start + example["topk_start"], start + example["topk_start"] + count)
                ids[row, at] = torch.tensor(example["topk_ids"][:count], dtype=torch.long)
                logprobs[row, at] = torch.tensor(example["topk_logprobs"][:count], dtype=torch.float32)
                valid[row, at] = True
            offset += size
        return {**batch, "topk_ids": ids, "topk_logprobs": logprobs, "topk_valid": valid}


def topk_kl(student_logprobs: torch.Tensor, ids: torch.Tensor, teacher_logprobs: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per position over k + 1 outcomes: the teacher's k stored tokens and the rest of the
    vocabulary as one bucket. student_logprobs [N, V] (log-softmax over the whole vocabulary), ids and
    teacher_logprobs [N, k] (raw log-probs; -inf pads a missing entry). Returns [N], in nats.

    Why the tail bucket, not the top k renormalized: the stored log-probs are normalized over the whole vocabulary, so
    the teacher's mass beyond its top k is known (1 - sum), and this is the exact KL between the two distributions
    coarsened to k + 1 outcomes -- never above the full KL, and zero exactly when the student gives each of the k
    tokens and the rest what the teacher gives them. Renormalizing the teacher over its k tokens instead would ask
    the student to put zero mass on the rest of the vocabulary: a sharper distribution than the teacher's, most of
    all on the high-entropy tokens of reasoning, where the top 20 can hold well under all of the mass."""
    q_top = student_logprobs.gather(-1, ids)
    p_top = teacher_logprobs.float().exp()
    p_tail = (1 - p_top.sum(-1)).clamp(min=0)  # float16 rounding can push the sum a little above 1
    # The student's mass outside the teacher's k ids, from its logits rather than 1 - sum(exp): exact when tiny.
    # With the whole support among the k ids the student's tail is empty (log ~ dtype min) while the teacher's stored
    # mass may still leave 1e-7 of rounding: floored at the log of the smallest normal float, that product stays ~1e-5
    # instead of 1e31 (it exploded on a CPU whose summation rounded below 1).
    lowest = torch.finfo(student_logprobs.dtype)
    q_tail = student_logprobs.scatter(-1, ids, lowest.min).logsumexp(-1).clamp(min=math.log(lowest.tiny))
    top = torch.xlogy(p_top, p_top) - p_top * q_top
    tail = torch.xlogy(p_tail, p_tail) - p_tail * q_tail
    return top.sum(-1) + tail


def token_losses(logits, labels, topk_ids, topk_logprobs, topk_valid, kd_weight: float):
    """(loss per trained token [N], cross-entropy [N], KL where the teacher's top-k is stored [M]). Position t's
    logits predict token t + 1, whose label and top-k sit at t + 1."""
    trained = labels[:, 1:] != -100
    logq = torch.log_softmax(logits[:, :-1][trained].float(), -1)
    ce = -logq.gather(-1, labels[:, 1:][trained][:, None]).squeeze(-1)
    stored = topk_valid[:, 1:][trained]
    kl = topk_kl(logq[stored], topk_ids[:, 1:][trained][stored], topk_logprobs[:, 1:][trained][stored])
    kd = ce.clone()
    kd[stored] = kl  # no stored top-k: the teacher is taken as certain of the token (its KL is the CE)
    return (1 - kd_weight) * ce + kd_weight * kd, ce, kl


class OfflineKDTrainer(SFTTrainer):
    """TRL's SFTTrainer with the KD term of `token_losses`; batches carry the stored top-k (TopKCollator)."""

    def __init__(self, *args, kd_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.kd_weight = kd_weight
        self.data_collator = TopKCollator(self.data_collator, getattr(self.data_collator, "padding_free", False))

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()  # TRL keeps the model's inputs; the top-k must reach the collator
        self._signature_columns += [c for c in BATCH_FIELDS if c not in self._signature_columns]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        topk = {key: inputs.pop(key) for key in ("topk_ids", "topk_logprobs", "topk_valid")}
        labels = inputs.pop("labels")
        outputs = model(**inputs, use_cache=False)
        per_token, ce, kl = token_losses(outputs.logits, labels, **topk, kd_weight=self.kd_weight)
        # As TRL's own loss: a sum over the accumulated batch's trained tokens (num_items_in_batch), so gradient
        # accumulation and several processes weigh every token alike.
        count = per_token.numel() if num_items_in_batch is None else num_items_in_batch
        loss = per_token.sum() / torch.as_tensor(count).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        self._log_kd(mode, inputs, ce, kl)
        return (loss, outputs) if return_outputs else loss

    def _log_kd(self, mode: str, inputs: dict, ce: torch.Tensor, kl: torch.Tensor) -> None:
        """kd_kl (mean KL to the teacher's top-k, nats per token) and ce beside TRL's loss; num_tokens as TRL counts."""
        gather = self.accelerator.gather_for_metrics
        for name, values in (("ce", ce), ("kd_kl", kl)):
            count = gather(torch.tensor([values.numel()], device=values.device)).sum()
            total = gather(values.detach().sum()[None]).sum()
            self._metrics[mode][name].append((total / count).item() if count > 0 else 0.0)
        if mode == "train":
            mask = inputs.get("attention_mask")
            tokens = int(mask.sum()) if mask is not None else inputs["position_ids"].size(1)
            self._total_train_tokens += int(gather(torch.tensor([tokens], device=ce.device)).sum())
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

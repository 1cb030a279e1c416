"""distill.kd with the teacher on vLLM servers (kd.teacher_server): TRL's DistillationTrainer, with the teacher's
forward pass replaced by the servers' top-k prompt log-probs (distill.engines.teacher_logprobs).

What the truncation does to the loss. A server returns, per position, the teacher's k most likely tokens and the
token actually sampled, not its whole distribution. The divergence is computed on a coarser outcome space: each
returned token is its own outcome and all other tokens form one "tail" bucket, whose probability is one minus the
returned tokens' (the student's tail from its own full softmax, the teacher's from what the server returned) -- as
TRL's ServerDistillationTrainer does with loss_add_tail, but for any kd.beta and k (TRL's server path takes beta > 0
only with k = 1). Why this and not renormalising the teacher over its top-k: merging outcomes can only lower a KL
divergence or a generalized JSD (the data-processing inequality), so the bucketed loss is a lower bound of the full
one that rises monotonically with k (the supports are nested) and equals it at k = vocabulary; renormalising instead
can report 0 for a student far from the teacher (k = 1: both renormalised distributions are a point mass). For the
reverse KL (beta = 1) the gap is exact: p_s(tail) * KL(p_s(.|tail) || p_t(.|tail)) -- what the student does inside
the teacher's tail is invisible to the loss; only the tail's total mass is pushed toward the teacher's.
tests/test_kd_served.py checks all three statements against a local teacher.

Temperature. vLLM's prompt log-probs are the teacher's own (temperature 1), and a top-k cannot be re-tempered
exactly (the tempered normaliser needs the whole tail), so this loss compares the two models' untempered
distributions; kd.temperature still sets how the student samples. TRL's local path divides both by it instead.

The student's logits are formed chunk by chunk under activation checkpointing, so, as in TRL's local path, the
(batch, tokens, vocabulary) tensor is never held for the backward pass.
"""

from __future__ import annotations

import math

import torch
from trl import DistillationTrainer

from distill.engines.teacher_logprobs import TeacherClient
from distill.errors import ConfigError

TAIL_FLOOR = -1e-7  # log of the largest mass the returned tokens may hold: a tail of at least ~1e-7, never log(0)
CHUNK_TOKENS = 1024  # completion tokens whose vocabulary-wide logits exist at once
SCALED_LOGITS = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling", "final_logit_softcapping")


def with_tail(logprobs: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., S) log-probs of S outcomes (invalid slots ignored) -> (..., S + 1) with the rest's mass appended."""
    logprobs = logprobs.masked_fill(~valid, -math.inf)
    kept = torch.logsumexp(logprobs, dim=-1, keepdim=True).clamp(max=TAIL_FLOOR)
    tail = torch.log(-torch.expm1(kept))
    return torch.cat([logprobs, tail], -1), torch.cat([valid, torch.ones_like(valid[..., :1])], -1)


def bucketed_divergence(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-row generalized JSD (TRL's: beta 0 forward KL(t || s), 1 reverse KL(s || t), else beta KL(t || m) +
    (1 - beta) KL(s || m), m = (1 - beta) s + beta t) over the S given outcomes plus the tail bucket.
    student, teacher: (N, S) log-probs at the same token ids; valid: (N, S) which slots hold a token."""
    s, full = with_tail(student, valid)
    t, _ = with_tail(teacher, valid)
    s, t = s.masked_fill(~full, 0.0), t.masked_fill(~full, 0.0)  # finite everywhere: no 0 * inf in the backward
    if beta == 0:
        terms = t.exp() * (t - s)
    elif beta == 1:
        terms = s.exp() * (s - t)
    else:
        m = torch.logaddexp(s + math.log(1 - beta), t + math.log(beta))
        terms = beta * t.exp() * (t - m) + (1 - beta) * s.exp() * (s - m)
    return terms.masked_fill(~full, 0.0).sum(-1)


def pack(scored, length: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Scored sequences -> (ids, logprobs), each (B, length, width); missing slots id 0 and log-prob -inf."""
    ids = torch.zeros(len(scored), length, width, dtype=torch.long)
    logprobs = torch.full((len(scored), length, width), -math.inf)
    for row, one in enumerate(scored):
        for pos, (i, lp) in enumerate(zip(one.ids, one.logprobs, strict=True)):
            ids[row, pos, : len(i)] = torch.tensor(i[:width], dtype=torch.long)
            logprobs[row, pos, : len(lp)] = torch.tensor(lp[:width])
    return ids.to(device), logprobs.to(device)


def connect_teacher(section, tokenizer, prompt) -> TeacherClient:
    """The client of kd.teacher_server (`section`), connected, its tokenizer checked against the student's on a
    training prompt: the loss indexes the student's distribution by the teacher's token ids. Raises ConfigError."""
    from distill.engines.teacher_logprobs import TeacherServerError

    client = TeacherClient(section.urls, section.top_k, section.served_model, section.api_key_env,
                           section.concurrency, section.request_timeout, section.max_retries)  # fmt: skip
    try:
        client.connect()
        text = prompt if isinstance(prompt, str) else tokenizer.apply_chat_template(prompt, tokenize=False)
        text += " 0123456789 <think>\n</think>"  # digits and the reasoning tags: where tokenizers often differ
        theirs, ours = client.tokenize(text), tokenizer(text)["input_ids"]
    except TeacherServerError as e:
        raise ConfigError(f"kd.teacher_server.urls: {e}") from e
    if theirs != ours:
        at = next(
            (i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), min(len(theirs), len(ours))
        )
        raise ConfigError(
            f"kd.teacher_server: the served teacher {client.root} tokenizes a training prompt differently from the "
            f"student from token {at} on; on-policy distillation needs one vocabulary (TRL's GOLD aligns two)"
        )
    return client


class ServedTeacherTrainer(DistillationTrainer):
    """DistillationTrainer whose teacher answers over HTTP: scored once per generation batch (all its micro-batches
    in one round of requests), the scores travel with the batch, the loss is `bucketed_divergence`."""

    def __init__(self, *args, client: TeacherClient, **kwargs):
        super().__init__(*args, teacher_model=None, **kwargs)
        self.client = client
        config = self.accelerator.unwrap_model(self.model).config.get_text_config()
        scaled = [name for name in SCALED_LOGITS if getattr(config, name, None) not in (None, 1.0)]
        if scaled:
            raise ConfigError(
                f"kd.teacher_server: the student scales its logits ({', '.join(scaled)}), which the served-teacher "
                "loss does not apply; use a local teacher (kd.teacher_server.urls=[])"
            )

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        prompt, completion = output["prompt_ids"], output["completion_ids"]
        keep_prompt, keep_completion = output["prompt_mask"].bool(), output["completion_mask"].bool()
        sequences, starts = [], []
        for p, pm, c, cm in zip(prompt, keep_prompt, completion, keep_completion, strict=True):
            starts.append(int(pm.sum()))
            sequences.append(p[pm].tolist() + c[cm].tolist())  # left-padded prompt, right-padded completion
        scored = self.client.score(sequences, starts)
        width = self.client.top_k + 1  # the top-k and the sampled token where it is not among them
        ids, logprobs = pack(scored, completion.size(1), width, completion.device)
        vocab = self.accelerator.unwrap_model(self.model).get_output_embeddings().weight.size(0)
        if int(ids.max()) >= vocab:
            raise ConfigError(f"kd.teacher_server: the teacher returned token id {int(ids.max())}, beyond the "
                              f"student's vocabulary of {vocab}: serve a teacher with the student's tokenizer")  # fmt: skip
        output["teacher_ids"], output["teacher_logprobs"] = ids, logprobs
        returned = torch.logsumexp(logprobs, -1)[keep_completion].exp()
        tail = torch.stack([(1 - returned).clamp(min=0).sum(), returned.new_tensor(returned.numel())])
        tail = self.accelerator.gather(tail[None]).sum(0)  # every rank's tokens, as the base's metrics are
        self._metrics["train" if self.model.training else "eval"]["teacher/tail_mass"].append(
            float(tail[0] / tail[1].clamp(min=1))
        )
        return output

    def _compute_loss(self, unwrapped_student, inputs, num_items_in_batch):
        from torch.utils.checkpoint import checkpoint

        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        mask = (
            inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
        )
        valid = mask.bool()
        hidden = self._get_last_hidden_state(unwrapped_student, input_ids, attention_mask, mask.size(1))[valid]
        ids, teacher = inputs["teacher_ids"][valid], inputs["teacher_logprobs"][valid]
        head = unwrapped_student.get_output_embeddings()
        divergence, entropy = [], []
        for at in range(0, hidden.size(0), CHUNK_TOKENS):
            part = slice(at, at + CHUNK_TOKENS)
            d, e = checkpoint(_chunk, hidden[part], head.weight, head.bias, ids[part], teacher[part], self.beta,
                              use_reentrant=False)  # fmt: skip
            divergence.append(d)
            entropy.append(e)
        n_valid = valid.sum()
        total = torch.cat(divergence).sum() if divergence else hidden.sum() * 0.0
        denominator = n_valid.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        entropy_sum = torch.cat(entropy).sum() if entropy else total.detach() * 0.0
        return total / denominator, entropy_sum.detach(), n_valid


def _chunk(hidden, weight, bias, ids, teacher, beta):
    logprobs = torch.nn.functional.linear(hidden, weight.to(hidden.dtype), bias).float().log_softmax(-1)
    student = logprobs.gather(-1, ids)
    divergence = bucketed_divergence(student, teacher, teacher > -math.inf, beta)
    entropy = -(logprobs.exp() * logprobs).sum(-1).detach()
    return divergence, entropy

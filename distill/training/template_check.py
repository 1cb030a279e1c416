"""Pre-flight check: the training target of a real example holds the `<think>` reasoning and the EOS token.

Many chat templates rewrite assistant turns: DeepSeek-R1-Distill's keeps only what follows `</think>`
(`content.split('</think>')[-1]`), Qwen3's drops reasoning from earlier turns. Trained through such a template, a
student learns to answer without thinking -- and the loss looks healthy. Likewise a template that ends assistant turns
with a token other than the tokenizer's EOS (a base model's `<|endoftext|>` under a ChatML template) teaches a model
that never stops. So before training, one example goes through the trainer's own preparation (the same tokenizer,
template, `eos_token` and masks as the training rows) and the tokens that carry loss are decoded and checked.
"""

from __future__ import annotations

import re

from distill.errors import UserError

THINK_CLOSE = "</think>"


class TemplateError(UserError, ValueError):
    """The training target would lose the reasoning or the EOS token; the message is one line meant for the user."""


def _squash(text: str) -> str:
    """Whitespace-insensitive form: templates and tokenizers may trim or re-space around special tokens."""
    return re.sub(r"\s+", " ", text).strip()


def reasoning_of(completion: str) -> str | None:
    """The text inside the last `<think>...</think>` block (a prefilled `<think>` may be in the prompt instead)."""
    if THINK_CLOSE not in completion:
        return None
    before = completion.rsplit(THINK_CLOSE, 1)[0]
    return before.rsplit("<think>", 1)[-1].strip() or None


def _text_of(completion) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role") == "assistant")


def pick_example(dataset, scan: int = 256) -> tuple[int, str | None]:
    """Index and reasoning of the shortest of the first `scan` rows with a reasoning block (the shortest, so that
    max_length does not cut its end); the first row and None when none has one."""
    best = None
    for i in range(min(scan, len(dataset))):
        text = _text_of(dataset[i]["completion"])
        reasoning = reasoning_of(text)
        if reasoning and (best is None or len(text) < best[2]):
            best = (i, reasoning, len(text))
    return (best[0], best[1]) if best else (0, None)


def _trained_tokens(trainer, row: dict) -> tuple[list[int], int]:
    """Label ids (tokens with loss) and the full length of one row, prepared exactly as the training rows are."""
    from datasets import Dataset

    # The trainer's own preparation (TRL >= 1.16, a private method): same template, tokenizer, eos_token, masks and
    # truncation as the training data -- only packing is off, so that the row stays whole.
    prepared = trainer._prepare_dataset(
        Dataset.from_list([row]), trainer.processing_class, trainer.args, False, None, "template check"
    )
    if len(prepared) == 0:  # TRL drops rows whose labels are all masked
        return [], 0
    labels = prepared[0]["labels"]
    return [t for t in labels if t != -100], len(prepared[0]["input_ids"])


def check_training_target(trainer, dataset) -> str:
    """Raise TemplateError unless the labels of one real example hold its reasoning and the EOS token; returns a
    one-line summary of what was checked."""
    tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
    index, reasoning = pick_example(dataset)
    trained, length = _trained_tokens(trainer, dataset[index])
    max_length = trainer.args.max_length
    if not trained:
        raise TemplateError(f"example {index} has no tokens with loss: the chat template renders no assistant turn")
    text = tokenizer.decode(trained, skip_special_tokens=False)
    eos = tokenizer.eos_token
    if reasoning is not None and _squash(reasoning) not in _squash(text):
        raise TemplateError(
            f"the chat template drops the <think> reasoning from the training target (example {index} trains on "
            f"{_squash(text)[:80]!r}); R1-style templates such as DeepSeek-R1-Distill's strip it from assistant "
            "turns: train with a template that keeps it (sft.chat_template_path=FILE.jinja)"
        )
    if reasoning is not None and THINK_CLOSE not in text:
        raise TemplateError(f"the training target of example {index} lacks {THINK_CLOSE}: the template rewrites it")
    if tokenizer.eos_token_id not in trained:
        if max_length is not None and length >= max_length:
            raise TemplateError(
                f"example {index}, the shortest with reasoning, fills sft.max_length={max_length} tokens: its end and "
                f"EOS {eos!r} are cut off; raise sft.max_length"
            )
        specials = [t for t in trained if t in tokenizer.all_special_ids]
        ends_with = tokenizer.convert_ids_to_tokens(specials[-1]) if specials else None
        hint = f"sft.eos_token={ends_with}" if ends_with else "a template that ends assistant turns with it"
        raise TemplateError(
            f"the EOS token {eos!r} is not in the training target (assistant turns end with {ends_with!r}): the "
            f"model would never learn to stop; set {hint}"
        )
    what = "reasoning and EOS" if reasoning is not None else "EOS (no row has a <think> block)"
    return f"template check: example {index} trains on its {what} {eos!r} ({len(trained)} of {length} tokens)"

"""Tokens through GRPO's log-prob forwards, padded (TRL) against packed (grpo.padding_free), on the smollm2 recipe's
own batches: counts, not timings.

    python benchmarks/padding_free.py [--batches 4] [--recipe smollm2]      (~8 minutes on 2 shared cores: sampling)

The recipe's prompts (its prompt set and template, in the model's chat template) are sampled as grpo.train would:
per_device_train_batch_size rows of num_generations completions per prompt, at the recipe's temperature and
max_completion_length, by transformers' generate on the recipe's model. For each batch, TRL's padded forward sees
rows x (longest prompt + longest completion) tokens, completions cut at their first EOS as TRL's completion mask
does; the packed one sees the real tokens only, in the groups distill.training.packing runs under sdpa/eager (each
no wider than the padded batch) or in one row under flash attention. The attention score entries (sum of squared
row lengths) are given too: sdpa computes them all, masked or not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sampled_lengths(cfg, batches: int) -> list[tuple[list[int], list[int]]]:
    """Per batch: (prompt tokens, completion tokens up to and with the first EOS) of each row."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.models import resolve_model
    from grpo.prompts import collect_prompts, template_name, training_rows

    g = cfg.grpo
    path = resolve_model(cfg.model.name, cfg.model.revision)  # a built-in name, a hub id or a folder
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    rows = training_rows(collect_prompts(cfg), template_name(cfg))
    per_batch = g.per_device_train_batch_size // g.num_generations
    torch.manual_seed(cfg.seed)
    out = []
    for b in range(batches):
        prompts = [r["prompt"] for r in rows[b * per_batch : (b + 1) * per_batch]]
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        encoded = tokenizer([t for t in texts for _ in range(g.num_generations)], return_tensors="pt",
                            padding=True, padding_side="left", add_special_tokens=False)  # fmt: skip
        with torch.no_grad():
            generated = model.generate(**encoded, do_sample=True, temperature=g.temperature, top_p=g.top_p,
                                       max_new_tokens=g.max_completion_length, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        completions = generated[:, encoded["input_ids"].size(1) :]
        eos = completions == tokenizer.eos_token_id
        lengths = torch.where(
            eos.any(1), eos.int().argmax(1) + 1, torch.full_like(eos[:, 0], completions.size(1), dtype=torch.long)
        )
        out.append((encoded["attention_mask"].sum(1).tolist(), lengths.tolist()))
    return out


def counts(prompts: list[int], completions: list[int]) -> dict[str, int]:
    from distill.training.packing import row_groups

    width = max(prompts) + max(completions)
    real = [p + c for p, c in zip(prompts, completions, strict=True)]
    groups = row_groups(real, len(real), width)
    grouped = [sum(real[a:b]) for a, b in groups]
    return {
        "padded_tokens": len(real) * width,
        "packed_tokens": sum(real),
        "sdpa_forwards": len(groups),
        "padded_scores": len(real) * width**2,
        "sdpa_scores": sum(n * n for n in grouped),
        "flash_scores": sum(n * (n + 1) // 2 for n in real),
    }


def main(argv: list[str] | None = None) -> int:
    from distill.recipes import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--recipe", default="smollm2")
    args = parser.parse_args(argv)
    cfg = load_config([f"recipe={args.recipe}"])
    total: dict[str, int] = {}
    for i, (prompts, completions) in enumerate(sampled_lengths(cfg, args.batches)):
        c = counts(prompts, completions)
        total = {k: total.get(k, 0) + v for k, v in c.items()}
        print(f"batch {i}: prompts {prompts}, completions {completions}: padded {c['padded_tokens']} tokens, "
              f"packed {c['packed_tokens']} ({1 - c['packed_tokens'] / c['padded_tokens']:.0%} padding removed), "
              f"{c['sdpa_forwards']} sdpa forwards")  # fmt: skip
    print(f"all {args.batches} batches: padded {total['padded_tokens']} tokens, packed {total['packed_tokens']}: "
          f"{1 - total['packed_tokens'] / total['padded_tokens']:.1%} of the padded tokens were padding; attention "
          f"scores padded {total['padded_scores']}, packed sdpa {total['sdpa_scores']} "
          f"({total['sdpa_scores'] / total['padded_scores']:.2f}x), flash (causal, real) {total['flash_scores']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

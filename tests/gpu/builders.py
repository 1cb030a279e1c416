"""Tiny random models with a tokenizer made on the spot (no hub, no model wheel), distill.generate-format data, and
a watch on TRL's `train()` that records what the GPU tests assert and what scripts/gpu_check.sh reports."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

# ChatML, as Qwen's and SmolLM2's templates: the assistant turn (reasoning included) ends with <|im_end|>, the EOS.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "What is 12+7? Please reason step by step, and put your final answer within \\boxed{}.",
    "<think>\nStep 1: add the units and carry. Step 2: add the tens. So the sum is 19.\n</think>\n\n\\boxed{19}",
    "A conversation between User and Assistant. The assistant first thinks about the reasoning process.",
] * 20


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def device_label() -> str:
    """The GPU's name and memory, or cpu."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    props = torch.cuda.get_device_properties(0)
    return f"{props.name} ({props.total_memory / 1024**3:.0f} GiB)"


def save_tokenizer(folder: Path, vocab: int = 512) -> Path:
    """A byte-level BPE tokenizer trained on CORPUS, ChatML template, EOS <|im_end|>, pad <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return folder


def save_model(folder: Path, arch: str = "llama", dtype: str = "bfloat16", **shape) -> Path:
    """A random decoder (llama or qwen2) saved with the tokenizer; `shape` overrides the tiny default (hidden 64,
    2 layers, head_dim 32 -- FlashAttention and vLLM's kernels take it)."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    save_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[arch]
    dims = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    vocab = max(shape.pop("vocab_size", 0), len(tokenizer))
    config = config_class(
        **{**dims, **shape},
        vocab_size=vocab,
        max_position_embeddings=4096,
        tie_word_embeddings=arch == "llama",
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return folder


def save_dataset(folder: Path, rows: int = 16, steps: int = 3) -> Path:
    """distill.generate-format rows: one user turn, an assistant turn with <think> reasoning and a boxed answer."""
    from datasets import Dataset

    data = []
    for i in range(rows):
        reasoning = " ".join(f"Step {k}: add the units and carry." for k in range(1, steps + 1))
        data.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {i}+7? Please reason step by step."},
                    {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n\\boxed{{{i + 7}}}"},
                ],
                "id": f"gpu-{i}",
                "task": "math",
                "answer": str(i + 7),
            }
        )
    (folder / "data").mkdir(parents=True, exist_ok=True)
    Dataset.from_list(data).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def longest_row(tokenizer_dir: Path, data: Path) -> int:
    """Tokens of the dataset's longest row with the chat template applied (what SFT pads a batch to)."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = load_dataset("parquet", data_files=[str(p) for p in (data / "data").glob("*.parquet")], split="train")
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    return max(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)


def watch_training(monkeypatch, trainer_class) -> dict:
    """Wraps `trainer_class.train`: records the trainable parameters before and after, the logged losses, TRL's
    token count, seconds, and the CUDA allocator's peak (reserved and allocated bytes) over training."""
    import torch

    seen: dict = {}
    original = trainer_class.train

    def train(self, *args, **kwargs):
        before = {n: p.detach().float().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        output = original(self, *args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            seen["peak_reserved"] = torch.cuda.max_memory_reserved()
            seen["peak_allocated"] = torch.cuda.max_memory_allocated()
        seen["seconds"] = time.perf_counter() - start
        seen["before"] = before
        seen["after"] = {n: p.detach().float().cpu() for n, p in self.model.named_parameters() if p.requires_grad}
        history = self.state.log_history
        seen["losses"] = [h["loss"] for h in history if "loss" in h]
        seen["tokens"] = max((h.get("num_tokens", 0) for h in history), default=0)
        return output

    monkeypatch.setattr(trainer_class, "train", train)
    return seen


def unchanged(seen: dict) -> list[str]:
    """Trainable parameters that training left exactly as they were."""
    import torch

    return [n for n, p in seen["before"].items() if torch.equal(p, seen["after"][n])]


def finite(losses: list[float]) -> bool:
    return bool(losses) and all(math.isfinite(x) for x in losses)


def report(record: dict) -> None:
    """Appends one JSON line to $GPU_CHECK_REPORT (scripts/gpu_check.sh prints them as a table)."""
    path = os.environ.get("GPU_CHECK_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def plan_peak(argv: list[str], stage: str, prompt_tokens: int | None = None) -> tuple[float, float]:
    """distill.plan's (peak, CUDA runtime part) in GiB for these settings on this machine's GPU."""
    from distill.planning import plan, runtime_hardware
    from distill.recipes import load_config

    cfg = load_config(argv)
    hardware, _ = runtime_hardware(cfg)
    (result,) = plan(cfg, (stage,), prompt_tokens=prompt_tokens, hardware=hardware)
    peak = next(r.gib for r in result.rows if r.part.startswith("peak"))
    runtime = sum(r.gib for r in result.rows if r.part.startswith("runtime"))
    return peak, runtime

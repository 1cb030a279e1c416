"""Padding-free forwards for TRL 1.16's on-policy trainers (grpo.padding_free, kd.padding_free).

TRL scores an on-policy batch as one padded tensor: prompts left-padded and completions right-padded to the longest,
so a batch of short and long rows pays for the longest everywhere. Here each row's real tokens (attention_mask == 1:
its prompt without pads, its completion up to the mask's end) are laid end to end in one row, position ids
restarting at 0 per sequence and attention_mask None. transformers (5.x, masking_utils.create_causal_mask) then finds
the sequences from the position ids (`find_packed_sequence_indices`: a new sequence wherever the position does not
grow by 1) for every attention kind, sdpa and eager on CPU included: the causal mask is ANDed with "same sequence", so
no token sees another row's. Flash-attention kinds read the same position ids as varlen boundaries, but only in a
batch of one row (modeling_flash_attention_utils._is_packed_sequence), hence one row per forward here. TRL's SFT
padding_free (sft.padding_free) rests on the same two paths.

Rows per forward (`row_groups`): sdpa and eager compute the whole (tokens x tokens) score matrix under a dense mask,
so a row of B sequences of length L would cost B^2 L^2 where the padded batch costs B L^2. Under them, consecutive
rows are grouped as long as their tokens fit in the padded width, which keeps the attention cost at most the padded
one while the linear layers and the LM head see no pad token. Flash and flex attention skip the masked blocks: one
row holds the whole chunk.

Positions: TRL's padded forward gives a left-padded prompt positions counted from its pads; here each sequence starts
at 0, as in generation (vLLM, transformers' generate). Rotary attention depends on position differences only, so the
two agree to rounding (tests/grpo/test_packed_logps.py, tests/test_kd_packed.py); with absolute position embeddings
they would differ, and the packed positions are the ones generation used.
"""

from __future__ import annotations

import torch
from accelerate.utils import is_peft_model
from trl.extras.profiling import profiling_decorator

# Inputs these passes do not pack: TRL's padded pass handles them (vision-language batches).
MULTIMODAL = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


def multimodal(inputs: dict) -> bool:
    return any(inputs.get(key) is not None for key in MULTIMODAL)


def row_groups(lengths: list[int], max_rows: int, max_tokens: int | None) -> list[tuple[int, int]]:
    """Consecutive [start, end) row ranges, each of at most max_rows rows and (None: any number of) max_tokens tokens
    in all; a row longer than max_tokens gets a range of its own."""
    groups, start, tokens = [], 0, 0
    for i, length in enumerate(lengths):
        full = i - start >= max_rows or (max_tokens is not None and tokens + length > max_tokens)
        if i > start and full:
            groups.append((start, i))
            start, tokens = i, 0
        tokens += length
    if lengths:
        groups.append((start, len(lengths)))
    return groups


def packs_without_limit(model) -> bool:
    """Whether one row may hold a whole chunk: attention kinds that skip the blocks the mask leaves out."""
    implementation = str(getattr(getattr(model, "config", None), "_attn_implementation", None) or "")
    return "flash" in implementation or "flex" in implementation


def forward_groups(model, attention_mask: torch.Tensor, max_rows: int | None = None) -> list[tuple[int, int]]:
    """The row ranges of `attention_mask` ([rows, width]) that go through `model` one packed row at a time."""
    max_tokens = None if packs_without_limit(model) else attention_mask.size(1)
    lengths = attention_mask.sum(dim=1).tolist()
    return row_groups(lengths, max_rows or attention_mask.size(0), max_tokens)


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int) -> dict[str, torch.Tensor]:
    """One row of the real tokens of every row: input_ids and position_ids [1, tokens], and labels [1, tokens] (the
    token where it is in the last logits_to_keep columns, else -100) for TRL's fused LM head."""
    keep = attention_mask.bool()
    positions = keep.long().cumsum(dim=1) - 1
    completion = torch.zeros_like(keep)
    completion[:, -logits_to_keep:] = True
    labels = input_ids.masked_fill(~completion, -100)
    return {
        "input_ids": input_ids[keep].unsqueeze(0),
        "position_ids": positions[keep].unsqueeze(0),
        "labels": labels[keep].unsqueeze(0),
    }


def unpad_back(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-token values of a packed row ([tokens, ...]) at their places in the padded [rows, width, ...] layout, zeros
    at pads. masked_scatter keeps the autograd graph."""
    keep = attention_mask.bool().reshape(*attention_mask.shape, *([1] * (values.dim() - 1)))
    padded = values.new_zeros(*attention_mask.shape, *values.shape[1:])
    return padded.masked_scatter(keep, values)


def unpack_next_token(per_token: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    """The fused head's [1, tokens - 1] next-token values back in the padded [rows, logits_to_keep] layout (zeros at
    pads). Value i scores packed token i + 1; the first token of the row has none (a prompt token, never scored)."""
    values = torch.cat([per_token.new_zeros(1), per_token[0]])
    return unpad_back(values, attention_mask)[:, -logits_to_keep:]


class PackedHiddenStatesMixin:
    """Put first in the bases of a trl.DistillationTrainer subclass (our ServedTeacherTrainer too): the student's and
    the local teacher's forwards, both `_get_last_hidden_state`, run padding-free (module docstring). The hidden
    states come back in TRL's [rows, logits_to_keep, hidden] layout, zeros where TRL had pads' states (the loss
    masks both out), so TRL's chunked divergence and ours run unchanged."""

    @profiling_decorator  # as TRL's: the pass keeps its name and its timing in TRL's profiling metrics
    def _get_last_hidden_state(self, unwrapped_model, input_ids, attention_mask, logits_to_keep, **others):
        if multimodal(others) or self._is_vlm:
            return super()._get_last_hidden_state(unwrapped_model, input_ids, attention_mask, logits_to_keep, **others)
        model = unwrapped_model.base_model.model if is_peft_model(unwrapped_model) else unwrapped_model
        states = []
        for start, end in forward_groups(model, attention_mask):
            mask = attention_mask[start:end]
            inputs = pack(input_ids[start:end], mask, logits_to_keep)
            hidden = model.base_model(
                input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=False
            ).last_hidden_state
            # As TRL's: the state at each position predicts the next token, the last one predicts none.
            states.append(unpad_back(hidden[0], mask)[:, :-1][:, -logits_to_keep:])
        return torch.cat(states)


def padding_free(trainer_class: type) -> type:
    """`trainer_class` (trl.DistillationTrainer or a subclass) with padding-free forwards, named Packed<name>."""
    name = f"Packed{trainer_class.__name__}"
    return type(name, (PackedHiddenStatesMixin, trainer_class), {"__doc__": f"{trainer_class.__name__}, padding-free."})

"""Padding-free log-prob passes for TRL 1.16's GRPOTrainer (grpo.padding_free=true).

TRL scores a batch as one padded tensor: prompts left-padded and completions right-padded to the longest, so a batch
of short and long rows pays for the longest everywhere (and for all its pads in every layer). Every log-prob pass of
GRPO -- the old policy's and the reference's in `_generate_and_score_completions`, the policy's in `_compute_loss` --
goes through one method, `_get_per_token_logps_and_entropies`; `PackedLogpsMixin` overrides it:

- each row's real tokens (attention_mask == 1: its prompt without pads, its completion up to the mask's end) are laid
  end to end in one row, position_ids restarting at 0 per sequence and attention_mask None;
- transformers (5.x, masking_utils.create_causal_mask) then finds the sequences from the position ids
  (`find_packed_sequence_indices`: a new sequence wherever the position does not grow by 1) for every attention kind,
  sdpa and eager on CPU included: the causal mask is ANDed with "same sequence", so no token sees another row's.
  Flash-attention kinds read the same position ids as varlen boundaries, but only in a batch of one row
  (modeling_flash_attention_utils._is_packed_sequence), hence one row per forward here. This is what TRL's SFT
  padding_free (sft.padding_free) relies on too;
- TRL's fused LM head (`fused_lm_head=True`, labels -100 outside the completion) gives the temperature-scaled
  log-probs and entropies of the completion tokens, which are scattered back into TRL's padded [rows, completion
  width] layout, zeros where the completion mask is 0, as TRL's own pass leaves them. Loss, importance sampling,
  KL and metrics downstream are TRL's, unchanged. The scatter (masked_scatter) keeps the autograd graph.

One row per forward: the rows of each chunk (TRL's `batch_size`, at most) are cut into consecutive groups whose
tokens fit in the padded width of the batch, except for flash and flex attention, which skip the masked blocks.
sdpa and eager compute the whole (tokens x tokens) score matrix under a dense mask; a row of B sequences of
length L would cost B^2 L^2 where the padded batch costs B L^2, so groups no wider than the padded batch keep the
attention cost at most the padded one while the linear layers and the LM head see no pad token.

Positions: TRL's padded forward gives a left-padded prompt positions counted from its pads; here each sequence
starts at 0, as in generation (vLLM, transformers' generate). Rotary attention depends on position differences
only, so the two agree to rounding (tests/grpo/test_packed_logps.py); models with absolute position embeddings
would differ, and for them the packed positions are the ones generation used.

Multimodal batches (pixel values, token type ids) go to TRL's padded pass unchanged.
"""

from __future__ import annotations

import torch
from trl import GRPOTrainer
from trl.extras.profiling import profiling_decorator

from grpo.dynamic_sampling import DynamicSamplingGRPOTrainer

# Inputs this pass does not pack: TRL's own pass handles them.
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


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int) -> dict[str, torch.Tensor]:
    """One row of the real tokens of every row, for model(**inputs, fused_lm_head=True): input_ids and position_ids
    [1, tokens], labels [1, tokens] (the token where it is in the last logits_to_keep columns, else -100)."""
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


def unpack(per_token: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    """The fused head's [1, tokens - 1] next-token values back in the padded [rows, logits_to_keep] layout (zeros at
    pads). Value i scores packed token i + 1; the first token of the row has none (a prompt token, never scored)."""
    keep = attention_mask.bool()
    values = torch.cat([per_token.new_zeros(1), per_token[0]])
    padded = per_token.new_zeros(keep.shape).masked_scatter(keep, values)
    return padded[:, -logits_to_keep:]


def packs_without_limit(model) -> bool:
    """Whether one row may hold a whole chunk: attention kinds that skip the blocks the mask leaves out."""
    implementation = str(getattr(getattr(model, "config", None), "_attn_implementation", None) or "")
    return "flash" in implementation or "flex" in implementation


class PackedLogpsMixin:
    """Put first in the bases of a GRPOTrainer subclass: its log-prob passes run padding-free (module docstring)."""

    @profiling_decorator  # as TRL's: the pass keeps its name and its timing in TRL's profiling metrics
    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
        compute_aux_loss=False, **multimodal,
    ):  # fmt: skip
        if any(multimodal.get(key) is not None for key in MULTIMODAL):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **multimodal,
            )  # fmt: skip
        unwrapped = self.accelerator.unwrap_model(model)
        max_tokens = None if packs_without_limit(unwrapped) else input_ids.size(1)
        lengths = attention_mask.sum(dim=1).tolist()
        all_logps, all_entropies, all_aux = [], [], []
        for start, end in row_groups(lengths, batch_size or input_ids.size(0), max_tokens):
            mask = attention_mask[start:end]
            inputs = pack(input_ids[start:end], mask, logits_to_keep)
            extra = {"output_router_logits": True} if compute_aux_loss else {}
            with self.accelerator.autocast():
                outputs = model(**inputs, **extra, fused_lm_head=True)
            all_logps.append(unpack(outputs.log_probs, mask, logits_to_keep))
            if compute_entropy:
                all_entropies.append(unpack(outputs.entropy, mask, logits_to_keep))
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        logps = torch.cat(all_logps)
        entropies = torch.cat(all_entropies) if compute_entropy else None
        aux_loss = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss


class PackedGRPOTrainer(PackedLogpsMixin, GRPOTrainer):
    """TRL's GRPOTrainer with padding-free log-prob passes."""


class PackedDynamicSamplingGRPOTrainer(PackedLogpsMixin, DynamicSamplingGRPOTrainer):
    """grpo.dynamic_sampling's trainer with padding-free log-prob passes."""


def trainer_class(padding_free: bool, dynamic_sampling: bool) -> type:
    """The GRPOTrainer (sub)class grpo.train builds for grpo.padding_free and grpo.dynamic_sampling."""
    if dynamic_sampling:
        return PackedDynamicSamplingGRPOTrainer if padding_free else DynamicSamplingGRPOTrainer
    return PackedGRPOTrainer if padding_free else GRPOTrainer

"""Padding-free log-prob passes for TRL 1.16's GRPOTrainer (grpo.padding_free=true).

Every log-prob pass of GRPO -- the old policy's and the reference's in `_generate_and_score_completions`, the
policy's in `_compute_loss` -- goes through one method, `_get_per_token_logps_and_entropies`; `PackedLogpsMixin`
overrides it. Each row's real tokens go end to end in one row, position ids restarting per sequence, no attention
mask (distill.training.packing says why every attention kind keeps the sequences apart, and how rows are grouped per
forward); TRL's fused LM head (`fused_lm_head=True`, labels -100 outside the completion) gives the temperature-scaled
log-probs and entropies of the completion tokens, which are scattered back into TRL's padded [rows, completion width]
layout, zeros where the completion mask is 0, as TRL's own pass leaves them. Loss, importance sampling, KL and
metrics downstream are TRL's, unchanged. Multimodal batches go to TRL's padded pass.
"""

from __future__ import annotations

import torch
from trl import GRPOTrainer
from trl.extras.profiling import profiling_decorator

from distill.training.packing import forward_groups, multimodal, pack, unpack_next_token
from grpo.dynamic_sampling import DynamicSamplingGRPOTrainer


class PackedLogpsMixin:
    """Put first in the bases of a GRPOTrainer subclass: its log-prob passes run padding-free (module docstring)."""

    @profiling_decorator  # as TRL's: the pass keeps its name and its timing in TRL's profiling metrics
    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
        compute_aux_loss=False, **others,
    ):  # fmt: skip
        if multimodal(others):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **others,
            )  # fmt: skip
        groups = forward_groups(self.accelerator.unwrap_model(model), attention_mask, batch_size)
        all_logps, all_entropies, all_aux = [], [], []
        for start, end in groups:
            mask = attention_mask[start:end]
            inputs = pack(input_ids[start:end], mask, logits_to_keep)
            extra = {"output_router_logits": True} if compute_aux_loss else {}
            with self.accelerator.autocast():
                outputs = model(**inputs, **extra, fused_lm_head=True)
            all_logps.append(unpack_next_token(outputs.log_probs, mask, logits_to_keep))
            if compute_entropy:
                all_entropies.append(unpack_next_token(outputs.entropy, mask, logits_to_keep))
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

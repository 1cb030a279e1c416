"""DAPO's dynamic sampling on TRL 1.16's GRPOTrainer (grpo.dynamic_sampling=true).

A group whose G completions all earn the same reward has zero advantage: it costs a full rollout and teaches nothing.
DAPO (Yu et al. 2025, section 3.2; verl's `algorithm.filter_groups`) drops such groups and samples further prompts
until the batch is full of groups whose answers differ in correctness. Here, in TRL's terms:

- TRL generates once per generation batch (`_generate_and_score_completions`: per_device_train_batch_size x
  steps_per_generation rows per process), then shuffles it and slices it over the accumulation steps. This class
  overrides that one method: it scores the batch as TRL does, keeps the groups whose accuracy reward has a nonzero
  std (DAPO's filter, verl's `filter_groups.metric=acc`; grpo.dynamic_sampling_metric=reward: the weighted total,
  shaping included) by TRL's own test, `isclose(std, 0)` (a group whose completions are all unscorable counts as
  zero-variance), and while the batch is short, generates another round of a full generation batch of prompts and
  keeps its informative groups, until the rows TRL expects are filled. Surplus informative groups of the last round
  are left out.
- The extra prompts are drawn from the training dataset, without replacement within a round, by a generator seeded
  from (seed, global step, accumulation micro-step, round): the draw holds no state, so a run resumed from a
  checkpoint draws what the uninterrupted run drew.
- At the cap (grpo.dynamic_sampling_max_rounds extra rounds) the rest of the batch is topped up with the first
  round's zero-variance groups, their advantages set to 0 (they add no policy-gradient term; the KL term, if beta > 0,
  still applies), so the batch keeps the size TRL expects; the first time this happens a warning is logged, and
  every step counts it (`dynamic_sampling/filled_groups`). verl raises at its cap instead; SkyRL stops training.
- Metrics per generation batch, in TRL's log (grpo.monitor keeps them in metrics.jsonl): extra_rounds,
  dropped_groups (zero-variance groups sampled and left out), filled_groups, effective_share (share of the batch's
  rows from groups with reward variance). TRL's own reward metrics average over every round sampled, and its
  num_tokens counts every round's tokens: generated tokens are the honest axis, since this samples more.

Text-only policies: the rows of several rounds are re-padded and concatenated, which this does for the tensors of a
text rollout (prompt/completion ids and masks, log-probs, importance ratios, tool mask) and refuses for others.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

log = logging.getLogger("grpo.dynamic_sampling")

# How each tensor of TRL's rollout dict is padded when rows of several rounds are joined: side and pad value
# (None: the tokenizer's pad id). advantages are per row; num_items_in_batch is recomputed.
PADDING = {
    "prompt_ids": ("left", None),
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", None),
    "completion_mask": ("right", 0),
    "tool_mask": ("right", 1),
    "old_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 0.0),
}
METRIC = "dynamic_sampling/"


def zero_variance_groups(rewards_per_func: torch.Tensor, weights: torch.Tensor, group: int) -> torch.Tensor:
    """Per group of `group` consecutive rows (all processes' rows, as TRL gathers them): True where the weighted
    reward has no spread -- the std TRL's advantages divide by is 0, or no completion of the group was scorable."""
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    std = nanstd(rewards.view(-1, group), dim=1)
    return torch.isclose(std, torch.zeros_like(std)) | torch.isnan(std)


def join_rows(parts: list[tuple[dict, torch.Tensor]], pad_id: int) -> dict:
    """One rollout dict from the rows `index` of each part's dict, re-padded to the widest part."""
    joined = {}
    for key in parts[0][0]:
        if key == "num_items_in_batch":
            continue
        if key != "advantages" and key not in PADDING:
            raise NotImplementedError(f"grpo.dynamic_sampling supports text-only rollouts; TRL produced {key!r}")
        tensors = [out[key][index] for out, index in parts]
        if key in PADDING:
            side, value = PADDING[key]
            width = max(t.shape[1] for t in tensors)
            pads = [(width - t.shape[1], 0) if side == "left" else (0, width - t.shape[1]) for t in tensors]
            value = pad_id if value is None else value
            tensors = [torch.nn.functional.pad(t, pad, value=value) for t, pad in zip(tensors, pads, strict=True)]
        joined[key] = torch.cat(tensors)
    return joined


class DynamicSamplingGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that drops zero-variance groups before the loss and refills the batch (module docstring)."""

    def __init__(self, *args, max_rounds: int, metric: str = "accuracy", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_rounds = max_rounds
        self.filter_columns, self.filter_weights = self._filter(metric)
        self._last_rewards: torch.Tensor | None = None
        self._warned_cap = False

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Kept so that the groups can be judged by the rewards TRL gathered from every process.
        self._last_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._last_rewards

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        rows, group = len(inputs), self.num_generations
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        taken = [0] * world  # informative rows each process has so far (every process computes all: same masks)
        parts: list[tuple[dict, torch.Tensor]] = []
        first: tuple[dict, torch.Tensor] | None = None  # round 0 and its zero-variance mask per global row
        zero_groups = rounds = 0
        while rounds <= self.max_rounds and min(taken) < rows:
            batch = inputs if rounds == 0 else self._extra_prompts(rounds, rows)
            out = super()._generate_and_score_completions(batch)
            rewards = self._last_rewards[:, self.filter_columns]
            zero = zero_variance_groups(rewards, self.filter_weights, group)
            zero_groups += int(zero.sum())
            zero_rows = zero.repeat_interleave(group).view(world, rows)  # [process, local row]
            if first is None:
                first = out, zero_rows[rank]
            for process in range(world):
                keep = (~zero_rows[process]).nonzero().flatten()[: rows - taken[process]]
                taken[process] += len(keep)
                if process == rank and len(keep):
                    parts.append((out, keep.to(out["advantages"].device)))
            rounds += 1
        filled = rows * world - sum(taken)
        if filled:
            out, zero_rows = first
            fill = zero_rows.nonzero().flatten()[: rows - taken[rank]].to(out["advantages"].device)
            parts.append(({**out, "advantages": torch.zeros_like(out["advantages"])}, fill))
            self._warn_cap(filled / group, rows * world / group)
        batch = join_rows(parts, self._tokenizer.pad_token_id)
        mask = batch["completion_mask"] * batch.get("tool_mask", 1)
        batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        metrics = self._metrics["train"]
        metrics[METRIC + "extra_rounds"].append(rounds - 1)
        metrics[METRIC + "dropped_groups"].append(zero_groups - filled / group)
        metrics[METRIC + "filled_groups"].append(filled / group)
        metrics[METRIC + "effective_share"].append(1 - filled / (rows * world))
        return batch

    def _filter(self, metric: str) -> tuple[list[int], torch.Tensor]:
        """The reward columns and weights a group must vary in: the accuracy reward alone, or the weighted total."""
        if metric == "reward":
            return list(range(len(self.reward_func_names))), self.reward_weights
        if "accuracy" not in self.reward_func_names:
            raise ValueError(
                f"grpo.dynamic_sampling_metric=accuracy needs the accuracy reward; rewards: {self.reward_func_names}"
            )
        return [self.reward_func_names.index("accuracy")], torch.ones(1)

    def _extra_prompts(self, round_: int, rows: int) -> list[dict]:
        """This process's rows of round `round_`: a generation batch of prompts drawn by a generator seeded from the
        run's seed, the step, the accumulation micro-step and the round, each repeated G times (RepeatSampler's
        layout), so every process draws the same batch and a resumed run draws what the uninterrupted one did."""
        dataset, group = self.train_dataset, self.num_generations
        if not hasattr(dataset, "__getitem__"):
            raise NotImplementedError("grpo.dynamic_sampling needs an indexable training dataset")
        micro = self._step % self.current_gradient_accumulation_steps
        seed = np.random.SeedSequence([self.args.seed, self.state.global_step, micro, round_])
        unique = rows * self.accelerator.num_processes // group
        picked = np.random.default_rng(seed).choice(len(dataset), size=unique, replace=len(dataset) < unique)
        layout = np.repeat(picked, group)[self.accelerator.process_index * rows :][:rows]
        return [dataset[int(i)] for i in layout]

    def _warn_cap(self, filled: float, groups: float) -> None:
        if not self._warned_cap:
            log.warning(
                "dynamic sampling: after %d extra rounds only %g of %g groups vary in their filter's reward; the "
                "rest of the batch is zero-variance groups with advantage 0 (counted each step as "
                "dynamic_sampling/filled_groups; raise grpo.dynamic_sampling_max_rounds or filter prompts by pass rate)",
                self.max_rounds,
                groups - filled,
                groups,
            )
            self._warned_cap = True

"""The GRPO policy: which weights it starts from and how it loads (distill.training.trainee, shared with sft and kd).
Its trl.GRPOConfig is built with the other trainers' configs, in distill.training.trl_args."""

from __future__ import annotations

from distill.config import Config
from distill.training.trainee import load_trainee, trainee_base


def policy_path(cfg: Config) -> str:
    """The weights the policy starts from: model.name (teacher, or student as is), grpo.init_from, or the base of the
    adapter in grpo.init_from (training.trainee.trainee_base)."""
    return trainee_base(cfg, cfg.grpo.init_from)[0]


def load_policy(cfg: Config):
    """(model, tokenizer, LoraConfig or None). An adapter in grpo.init_from (distill.sft's output) is loaded on its own
    base and trained further; TRL then keeps a frozen copy of it as the reference for the KL term."""
    _, model, tokenizer, peft_config = load_trainee(cfg, cfg.grpo, "grpo")
    return model, tokenizer, peft_config

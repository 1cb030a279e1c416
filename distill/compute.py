"""Compute in one unit for every stage, so distillation and RL can be set side by side (and budgets matched).

FLOPs follow the usual dense-transformer estimate (Kaplan et al. 2020): 2·N per token of a forward pass -- every
generated token, every token a teacher scores -- and 6·N per token of a forward and backward pass -- every trained
token -- with N the parameters of the model doing the work (the teacher for its generation and scoring, the student
for training and its own rollouts). LoRA leaves the estimate as is: the backward pass still runs through the whole
frozen model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

from transformers import TrainerCallback

from distill.training.ranks import agreed


@dataclass
class Compute:
    generated_tokens: int = 0  # tokens sampled (teacher generation, GRPO rollouts)
    trained_tokens: int = 0  # prompt + completion tokens through a forward and backward pass
    flops: float = 0.0
    wall_s: float = 0.0
    scored_tokens: int = 0  # tokens a teacher scored with a forward pass only (on-policy distillation)

    def __add__(self, other: Compute) -> Compute:
        """Two stages in sequence (a teacher's generation, then training on its output)."""
        return Compute(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def to_dict(self) -> dict:
        return asdict(self)


def estimate(generated: int, generation_params: int, trained: int, training_params: int, wall_s: float) -> Compute:
    flops = 2.0 * generation_params * generated + 6.0 * training_params * trained
    return Compute(int(generated), int(trained), flops, wall_s)


def parameter_count(model_dir: str | Path) -> int:
    """Parameters of a model folder, read from its safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    from distill.models import ModelError

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:  # a FLOP budget or sweep asked for the count: one line, as for any other model that cannot serve
        raise ModelError(f"{model_dir}: no *.safetensors files to count parameters from (grpo/kd.max_flops, the sweep)")
    total = 0
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118 (not a dict)
    return total


def generation_compute(journal: Path, params: int, wall_s: float = 0.0) -> Compute:
    """The teacher's sampling recorded in a distill.generate journal: every sample, kept or rejected."""
    tokens = 0
    for line in journal.read_text().splitlines():
        if line.strip():
            tokens += sum(s["num_tokens"] for s in json.loads(line)["samples"])
    return estimate(tokens, params, 0, 0, wall_s)


def _last_value(metrics: list[dict], key: str) -> float:
    values = [m[key] for m in metrics if m.get(key) is not None]
    return values[-1] if values else 0.0


def sft_compute(metrics: list[dict], params: int, wall_s: float = 0.0) -> Compute:
    """distill.sft's metrics.jsonl: TRL's running num_tokens counts the non-padding tokens trained on."""
    return estimate(0, 0, _last_value(metrics, "num_tokens"), params, wall_s)


def grpo_generated_tokens(metrics: list[dict], completions_per_step: int) -> int:
    # grpo.dynamic_sampling's extra rounds each generate another batch of completions (extra_rounds in the record).
    return int(
        sum((m.get("mean_length") or 0.0) * completions_per_step * (1 + (m.get("extra_rounds") or 0)) for m in metrics)
    )


def grpo_compute(metrics: list[dict], params: int, completions_per_step: int, wall_s: float = 0.0) -> Compute:
    """grpo.train's metrics.jsonl: rollouts (mean length x completions per step) and the tokens trained on."""
    generated = grpo_generated_tokens(metrics, completions_per_step)
    return estimate(generated, params, _last_value(metrics, "num_tokens"), params, wall_s)


def kd_compute(
    metrics: list[dict], student_params: int, teacher_params: int, completions_per_step: int, wall_s: float = 0.0
) -> Compute:
    """distill.kd's metrics.jsonl: the student's own samples (2·N_student per generated token), the teacher's forward
    pass over every trained token (2·N_teacher: it scores each token the student saw), and the student's forward and
    backward pass over them (6·N_student)."""
    generated = grpo_generated_tokens(metrics, completions_per_step)
    trained = int(_last_value(metrics, "num_tokens"))
    flops = 2.0 * student_params * generated + (2.0 * teacher_params + 6.0 * student_params) * trained
    return Compute(generated, trained, flops, wall_s, scored_tokens=trained)


class FlopBudget(TrainerCallback):
    """Stops training once `spent()` (estimated FLOPs so far) reaches `max_flops` (grpo.max_flops, kd.max_flops): how
    grpo.compare gives RL and on-policy distillation the budget SFT distillation spent. `spent` reads a metrics
    callback's history, so this callback must come after that one in the callback list."""

    def __init__(self, spent, max_flops: float) -> None:
        self.spent = spent
        self.max_flops = max_flops

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The metric history behind `spent` lives on rank 0 only: every rank stops at the step rank 0 decides.
        if agreed([self.spent() >= self.max_flops], args.device)[0]:
            control.should_training_stop = True
            control.should_save = True


class SaveAtFractions(TrainerCallback):
    """Checkpoints a run at fractions of its length (sft/grpo/kd.save_fractions, grpo.compare's budget sweep): a
    fraction f is reached at f of the run's steps, or -- with a FLOP budget -- once `spent()` reaches f of it, whichever
    comes first; both bound the run, and the one that binds ends it at 1. Writes fraction -> step into
    <output_dir>/save_fractions.json, so the sweep knows which checkpoint stands for which fraction."""

    FILE = "save_fractions.json"

    def __init__(self, fractions: list[float], spent=None, budget: float | None = None) -> None:
        self.fractions = sorted(fractions)
        self.spent = spent
        self.budget = budget
        self.saved: dict[str, int] = {}

    def _reached(self, fraction: float, state) -> bool:
        if state.max_steps > 0 and state.global_step >= fraction * state.max_steps:
            return True
        return self.budget is not None and self.spent() >= fraction * self.budget

    def on_train_begin(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / self.FILE
        self.saved = json.loads(path.read_text()) if path.is_file() else {}  # a resumed run keeps its earlier marks

    def on_log(self, args, state, control, logs=None, **kwargs):
        open_ = [f for f in self.fractions if str(f) not in self.saved]
        # As in FlopBudget: rank 0 alone knows the FLOPs spent; every rank saves at the step it decides.
        reached = agreed([self._reached(f, state) for f in open_], args.device)
        due = [f for f, yes in zip(open_, reached, strict=True) if yes]
        if not due:
            return
        control.should_save = True
        self.saved.update({str(f): state.global_step for f in due})
        if state.is_world_process_zero:
            (Path(args.output_dir) / self.FILE).write_text(json.dumps(self.saved, indent=1) + "\n")

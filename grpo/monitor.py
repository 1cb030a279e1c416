"""What GRPO training does, every step: a metrics JSONL, warnings, and PNG plots at the end.

One JSON line per logged step (`logging_steps=1`) with the fields in FIELDS, read from TRL 1.16's log keys (the
`_metrics` of trl/trainer/grpo_trainer.py; a key TRL does not log in a run -- kl when beta=0 -- is written as null):

    reward            reward                        weighted sum of the components, mean over the step's completions
    rewards           rewards/<name>/mean           per component (accuracy, format, ... and the reflection monitor)
    accuracy          rewards/accuracy/mean         share of verified-correct completions
    mean_length       completions/mean_length       tokens per completion: R1's "average length per response"
    reflection_share  rewards/reflection/mean       share of completions with a reflection phrase (aha moments)
    truncation_rate   completions/clipped_ratio     share cut at max_completion_length
    kl                kl                            mean per-token k3 KL to the reference model
    clip_ratio        clip_ratio/region_mean        share of tokens whose ratio was clipped (low or high)
    format_gaming     format_gaming                 share gaming the format reward (grpo.rewards.is_format_gaming)
    verifier_error_share
                      verifier_error_share          share of completions with an `error` verdict (the verifier or its
                                                    sandbox failed): unscored, TRL leaves them out (grpo.rewards)
    verifier_errors   verifier_error_share x completions per step: how many of the step's completions were left out
    num_tokens        num_tokens                    prompt + completion tokens through the policy so far (trained)
    tokens_per_s      (mean_length x completions per step) / step_time: generated tokens per second of a step
    extra_rounds, dropped_groups, filled_groups, effective_share
                      dynamic_sampling/*            grpo.dynamic_sampling's counts (grpo.dynamic_sampling; null
                                                    without it). With it, TRL's reward, length and error metrics
                                                    average over every round sampled, and a step's completions are
                                                    completions per step x (1 + extra_rounds)
    target_length, achieved_length, length_error
                      length_target/*               grpo.reward_weights.length_target only (grpo.length_target; null
                                                    without it): mean target, mean generated tokens and mean
                                                    |target - generated| of the step's completions

With report_to set (distill.trackers), every tracker gets TRL's keys above -- under train/ in TensorBoard:
train/reward, train/rewards/<name>/mean (accuracy, reflection, ...), train/format_gaming,
train/verifier_error_share, train/completions/mean_length, train/length_target/{target,achieved,abs_error} -- and the monitor's own (tracker_keys): tokens_per_s,
verifier_errors, one 0/1 series per warning (monitor/warning/<check>) and the warnings' text (monitor/warnings, on the
steps that have one).

Warnings (logged and kept in the line's `warnings`): reward hacking -- format reward rising while accuracy falls over
the last `window` steps; a collapse of the mean length below a fraction of its early value; a large share of
completions gaming the format reward; a step whose share of `error` verdicts passes ERROR_SHARE (once when it crosses,
again only after a step back at or below it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from transformers import TrainerCallback

log = logging.getLogger("grpo.monitor")

# A step with more than this share of `error` verdicts (the verifier or its sandbox failed, not the policy) is warned
# about: those completions teach nothing, and a broken sandbox shows up here first.
ERROR_SHARE = 0.05

# Our field -> TRL 1.16's log key.
FIELDS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "accuracy": "rewards/accuracy/mean",
    "format": "rewards/format/mean",
    "mean_length": "completions/mean_length",
    "reflection_share": "rewards/reflection/mean",
    "truncation_rate": "completions/clipped_ratio",
    "kl": "kl",
    "clip_ratio": "clip_ratio/region_mean",
    "clip_ratio_low": "clip_ratio/low_mean",
    "clip_ratio_high": "clip_ratio/high_mean",
    "entropy": "entropy",
    "format_gaming": "format_gaming",
    "verifier_error_share": "verifier_error_share",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "step_time": "step_time",
    "num_tokens": "num_tokens",
    # vLLM rollouts only: |vLLM's log-prob - the trainer's| per token; large values mean the engine's weights are stale.
    "sampling_logp_diff": "sampling/sampling_logp_difference/mean",
}
# grpo.dynamic_sampling only (grpo.dynamic_sampling; null in a run without it), per generation batch: extra rounds
# sampled, zero-variance groups left out, zero-variance groups kept at the round cap (advantage 0), and the share of
# the batch's rows from groups with reward variance.
DYNAMIC_SAMPLING_FIELDS = {
    "extra_rounds": "dynamic_sampling/extra_rounds",
    "dropped_groups": "dynamic_sampling/dropped_groups",
    "filled_groups": "dynamic_sampling/filled_groups",
    "effective_share": "dynamic_sampling/effective_share",
}
# grpo.reward_weights.length_target only (grpo.length_target; null without it): L1's target against what was
# generated, in tokens, means over the step's completions.
LENGTH_TARGET_FIELDS = {
    "target_length": "length_target/target",
    "achieved_length": "length_target/achieved",
    "length_error": "length_target/abs_error",
}
RECORD_KEYS = (
    "step",
    *FIELDS,
    *DYNAMIC_SAMPLING_FIELDS,
    *LENGTH_TARGET_FIELDS,
    "rewards",
    "tokens_per_s",
    "verifier_errors",
    "warnings",
)
# The detector's checks (Detector methods), each a 0/1 series monitor/warning/<name> in the trackers.
WARNINGS = ("reward_hacking", "length_collapse", "format_gaming", "verifier_errors")


@dataclass
class Detector:
    """Warnings from the metric history (oldest first). window: logged steps compared (two halves); min_change:
    the rise in format reward and the fall in accuracy that together flag reward hacking; collapse_fraction: mean
    length below this share of its first-window mean; gaming_share: share of format-gaming completions in a step;
    error_share: share of `error` verdicts in a step above which the verifier is warned about."""

    window: int = 10
    min_change: float = 0.1
    collapse_fraction: float = 0.5
    gaming_share: float = 0.5
    error_share: float = ERROR_SHARE

    def check(self, history: list[dict]) -> list[str]:
        return list(self.fired(history).values())

    def fired(self, history: list[dict]) -> dict[str, str]:
        """The checks (WARNINGS) that warn at the history's last step -> their warning."""
        found = {name: getattr(self, name)(history) for name in WARNINGS}
        return {name: warning for name, warning in found.items() if warning}

    def reward_hacking(self, history: list[dict]) -> str | None:
        rows = [r for r in history if r.get("format") is not None and r.get("accuracy") is not None][-self.window :]
        if len(rows) < max(self.window, 2):
            return None
        half = len(rows) // 2
        fmt = fmean(r["format"] for r in rows[:half]), fmean(r["format"] for r in rows[-half:])
        acc = fmean(r["accuracy"] for r in rows[:half]), fmean(r["accuracy"] for r in rows[-half:])
        if fmt[1] - fmt[0] >= self.min_change and acc[0] - acc[1] >= self.min_change:
            return (
                f"reward hacking? format reward rose {fmt[0]:.2f} -> {fmt[1]:.2f} while accuracy fell "
                f"{acc[0]:.2f} -> {acc[1]:.2f} over steps {rows[0]['step']}-{rows[-1]['step']}"
            )
        return None

    def length_collapse(self, history: list[dict]) -> str | None:
        lengths = [r["mean_length"] for r in history if r.get("mean_length") is not None]
        if len(lengths) < 2 * self.window:
            return None
        early, late = fmean(lengths[: self.window]), fmean(lengths[-self.window :])
        if late < self.collapse_fraction * early:
            return f"response length collapsed: mean {late:.1f} tokens over the last {self.window} steps, {early:.1f} at first"
        return None

    def format_gaming(self, history: list[dict]) -> str | None:
        share = history[-1].get("format_gaming") if history else None
        if share is not None and share >= self.gaming_share:
            return f"{share:.0%} of completions game the format reward (perfect format, wrong answer, no reasoning)"
        return None

    def verifier_errors(self, history: list[dict]) -> str | None:
        """When the step's error share passes error_share and the step before (if any) was at or below it."""
        shares = [r.get("verifier_error_share") for r in history[-2:]]
        if not shares or shares[-1] is None or shares[-1] <= self.error_share:
            return None
        if len(shares) == 2 and shares[0] is not None and shares[0] > self.error_share:
            return None  # still above: warned when it crossed
        errors = history[-1].get("verifier_errors")
        count = f" ({errors} completions)" if errors is not None else ""
        return (
            f"{shares[-1]:.0%} of verdicts are `error`{count}, above {self.error_share:.0%}: the verifier or its "
            "sandbox is failing; those completions are left out of the update"
        )


def record_from_logs(step: int, logs: dict, components: list[str], completions_per_step: int) -> dict:
    """One JSONL record from a Trainer log dict (TRL's keys)."""
    fields = {**FIELDS, **DYNAMIC_SAMPLING_FIELDS, **LENGTH_TARGET_FIELDS}
    record: dict = {"step": step, **{field: logs.get(key) for field, key in fields.items()}}
    record["rewards"] = {name: logs.get(f"rewards/{name}/mean") for name in components}
    # Dynamic sampling generates whole extra generation batches: they count as completions of the step.
    generated = completions_per_step * (1 + (record["extra_rounds"] or 0))
    length, seconds = record["mean_length"], record["step_time"]
    record["tokens_per_s"] = round(length * generated / seconds, 2) if length and seconds else None
    # TRL logs the mean of the generation batches' shares; the batches are the same size, so share x completions.
    share = record["verifier_error_share"]
    record["verifier_errors"] = round(share * generated) if share is not None else None
    return record


def tracker_keys(record: dict, fired: dict[str, str]) -> dict:
    """What the monitor adds to the step's Trainer logs for the trackers: the numbers TRL does not log (tokens/s,
    verifier errors as a count), a 0/1 per warning check, and the warnings' text on the steps that have one."""
    keys = {f"monitor/{name}": record[name] for name in ("tokens_per_s", "verifier_errors") if record[name] is not None}
    keys |= {f"monitor/warning/{name}": float(name in fired) for name in WARNINGS}
    if fired:
        keys["monitor/warnings"] = "\n".join(fired.values())
    return keys


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


class GRPOMonitor(TrainerCallback):
    """Writes `metrics.jsonl` (one line per logged step) and, at the end of training, PNG plots in `plots/`; adds
    its own keys to the step's logs for the trackers (tracker_keys)."""

    adds_to_logs = True  # run ahead of the trackers' callbacks (distill.trackers.log_first)

    def __init__(self, out_dir: Path, components: list[str], completions_per_step: int, detector: Detector) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.plots = Path(out_dir) / "plots"
        self.components = components
        self.completions_per_step = completions_per_step
        self.detector = detector
        self.history: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run repeats the steps after its checkpoint: drop their old lines (a fresh run drops all).
        self.history = [r for r in read_metrics(self.path) if r["step"] <= state.global_step]
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs:  # the end-of-training summary has no reward
            return
        record = record_from_logs(state.global_step, logs, self.components, self.completions_per_step)
        self.history.append(record)
        fired = self.detector.fired(self.history)
        record["warnings"] = list(fired.values())
        for warning in record["warnings"]:
            log.warning("step %d: %s", state.global_step, warning)
        logs.update(tracker_keys(record, fired))
        if state.is_world_process_zero:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plot_metrics(self.history, self.plots)


PLOTS = {  # file -> (title, y label, [(label, field or rewards.<name>)])
    "reward_components.png": ("Reward per component", "mean reward", [("total (weighted)", "reward")]),
    "accuracy.png": ("Accuracy (verified correct)", "share of completions", [("accuracy", "accuracy")]),
    "response_length.png": ("Average length per response", "tokens", [("mean length", "mean_length")]),
    "reflection_share.png": (
        "Completions with reflection phrases",
        "share of completions",
        [("reflection", "reflection_share")],
    ),
    "length_target.png": (  # written only when the run had length targets (grpo.length_target)
        "Achieved against target length (L1)",
        "tokens per completion",
        [
            ("target (mean)", "target_length"),
            ("achieved (mean)", "achieved_length"),
            ("|target - achieved|", "length_error"),
        ],
    ),
    "kl_clip_truncation.png": (
        "KL, clipping and truncation",
        "value",
        [("KL", "kl"), ("clip ratio", "clip_ratio"), ("truncation rate", "truncation_rate")],
    ),
}


def _series(history: list[dict], field: str) -> tuple[list[int], list[float]]:
    pairs = [
        (r["step"], (r.get("rewards") or {}).get(field[8:]) if field.startswith("rewards.") else r.get(field))
        for r in history
    ]
    pairs = [(s, v) for s, v in pairs if v is not None]
    return [s for s, _ in pairs], [v for _, v in pairs]


def plot_metrics(history: list[dict], folder: Path) -> list[Path]:
    """One PNG per entry of PLOTS (reward components get a line each; length_target.png only for a run with length
    targets); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    # Reflection is a monitor with its own plot, not a reward.
    components = sorted({name for r in history for name in (r.get("rewards") or {})} - {"reflection"})
    written = []
    for name, (title, ylabel, lines) in PLOTS.items():
        if name == "reward_components.png":
            lines = lines + [(c, f"rewards.{c}") for c in components]
        if name == "length_target.png" and not _series(history, "target_length")[0]:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for label, field in lines:
            steps, values = _series(history, field)
            ax.plot(steps, values, label=label, marker="." if len(steps) < 60 else "")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        written.append(folder / name)
    return written

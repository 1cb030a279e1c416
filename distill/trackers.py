"""Experiment trackers -- TRL's `report_to`: which trackers a stage reports to, the TrainingArguments fields that say
so, and the evaluation's results sent to the same trackers.

The training stages (sft, grpo, kd) report through transformers' own integrations (TensorBoardCallback,
TrackioCallback, WandbCallback, MLflowCallback), so every key the Trainer logs reaches every tracker TRL supports.
Our callbacks that add keys to a step's logs (grpo.monitor's warnings and tokens/s, MetricsLog's tokens/s) are moved
ahead of those integrations (`log_first`): the Trainer hands all callbacks one logs dict, in order, and puts the
user's callbacks after the trackers'. distill.eval has no Trainer: `log_results` writes its metrics itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from distill.config import Config
from distill.errors import ConfigError

# tracker -> (the module transformers' integration imports, the extra of pyproject.toml that installs it). `all`
# (transformers: every tracker installed here) is left out on purpose: what a run reports to should not depend on
# what the machine happens to have.
TRACKERS = {
    "tensorboard": ("tensorboard", "trackers"),
    "trackio": ("trackio", "trackers"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}
STAGES = ("sft", "grpo", "kd", "eval")


def tracker_names(value: str | list[str] | None, key: str) -> list[str]:
    """`report_to` as written -- none, a name, "a,b", or a list -- as a list of trackers ([] for none); ConfigError
    names an unknown one."""
    items = [] if value is None else value.split(",") if isinstance(value, str) else list(value)
    names = [str(item).strip() for item in items if str(item).strip()]
    for name in names:
        if name != "none" and name not in TRACKERS:
            raise ConfigError(
                f"key '{key}': unknown tracker '{name}'; expected none or any of {', '.join(TRACKERS)} (a list for several)"
            )
    if "none" in names and len(names) > 1:
        raise ConfigError(f"key '{key}': 'none' together with {', '.join(n for n in names if n != 'none')}")
    return [name for name in names if name != "none"]


def stage_trackers(cfg: Config, stage: str) -> tuple[str, list[str]]:
    """(the key that decides, its trackers) for a stage (sft, grpo, kd, eval): `<stage>.report_to`, or the top-level
    `report_to` where the stage leaves it None."""
    own = getattr(cfg, stage).report_to
    key = "report_to" if own is None else f"{stage}.report_to"
    return key, tracker_names(cfg.report_to if own is None else own, key)


def check_names(cfg: Config) -> None:
    """Every report_to key names known trackers (distill.checks calls this when a config is parsed)."""
    tracker_names(cfg.report_to, "report_to")
    for stage in STAGES:
        stage_trackers(cfg, stage)


def missing(cfg: Config, stage: str) -> str | None:
    """One line naming the key, the tracker that is not installed and how to install it; None when all are."""
    key, names = stage_trackers(cfg, stage)
    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            return f"{key}={name} needs the {module} package: pip install -e '.[{extra}]' (or pip install {module})"
    return None


def require(cfg: Config, stage: str) -> list[str]:
    """The stage's trackers; ConfigError (missing's line) when one is not installed."""
    if problem := missing(cfg, stage):
        raise ConfigError(problem)
    return stage_trackers(cfg, stage)[1]


def run_name(stage: str, out_dir: Path) -> str:
    """The run's name in trackio, wandb and mlflow: the stage and its output folder's name (grpo-teacher-smollm2)."""
    return f"{stage}-{Path(out_dir).name}"


def tracker_args(cfg: Config, stage: str, out_dir: Path) -> dict:
    """TrainingArguments' tracker fields: report_to, run_name and project (trackio's). wandb and mlflow take the
    project from their environment only (WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME), so it is set there unless the user
    already has."""
    names = require(cfg, stage)
    if "wandb" in names:
        os.environ.setdefault("WANDB_PROJECT", cfg.project)
    if "mlflow" in names:
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", cfg.project)
    return dict(report_to=names or "none", run_name=run_name(stage, out_dir), project=cfg.project)


def log_first(trainer) -> None:
    """Move the callbacks that add keys to a step's logs (those with `adds_to_logs`) ahead of the trackers'."""
    callbacks = trainer.callback_handler.callbacks
    adding = [c for c in callbacks if getattr(c, "adds_to_logs", False)]
    for callback in reversed(adding):
        callbacks.remove(callback)
        callbacks.insert(0, callback)


# --- the evaluation's results --------------------------------------------------------------------------------------


def eval_metrics(results: dict) -> dict[str, float]:
    """results.json's numbers per benchmark as tracker keys: eval/<benchmark>/pass@1, pass@1_stderr, cons@k,
    pass@<k> (the largest k), mean_tokens, truncated (accuracies and shares as fractions)."""
    metrics = {}
    for bench, m in results["benchmarks"].items():
        largest = max(m["pass@k"], key=int) if m.get("pass@k") else None
        values = {
            "pass@1": m["pass@1"],
            "pass@1_stderr": m.get("pass@1_stderr"),
            "cons@k": m.get("cons@k"),
            **({f"pass@{largest}": m["pass@k"][largest]} if largest else {}),
            "mean_tokens": m.get("mean_tokens"),
            "truncated": m.get("truncated"),
        }
        metrics.update({f"eval/{bench}/{name}": float(v) for name, v in values.items() if v is not None})
    return metrics


def model_step(model: str) -> int:
    """The training step a model was saved at (a checkpoint-N folder, as compare.sweep evaluates), else 0."""
    match = re.search(r"checkpoint-(\d+)/?$", str(model))
    return int(match.group(1)) if match else 0


def _tensorboard(out_dir: Path, name: str, project: str, metrics: dict, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    # The eval's own folder (not the model's run folder, which may be a hub id, read-only, or another stage's):
    # `tensorboard --logdir <output_dir>` shows it beside the training runs. Its events are this run's results only,
    # as results.json is: a rerun replaces them.
    folder = out_dir / "runs"
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()
    writer = SummaryWriter(log_dir=str(folder))
    for key, value in metrics.items():
        writer.add_scalar(key, value, step)
    writer.close()


def _trackio(out_dir: Path, name: str, project: str, metrics: dict, step: int) -> None:
    import trackio

    trackio.init(project=project, name=name)
    trackio.log(metrics, step=step)
    trackio.finish()


def _wandb(out_dir: Path, name: str, project: str, metrics: dict, step: int) -> None:
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", project), name=name, job_type="eval")
    run.log(metrics, step=step)
    run.finish()


def _mlflow(out_dir: Path, name: str, project: str, metrics: dict, step: int) -> None:
    import mlflow

    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", project))
    with mlflow.start_run(run_name=name):
        # MLflow's metric names allow no '@'.
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items()}, step=step)


WRITERS = {"tensorboard": _tensorboard, "trackio": _trackio, "wandb": _wandb, "mlflow": _mlflow}


def log_results(cfg: Config, out_dir: Path, results: dict) -> list[str]:
    """Send an evaluation's results to the trackers eval.report_to (or report_to) names, as run `eval-<folder>` at
    the model's training step; returns the trackers written to."""
    names = require(cfg, "eval")
    metrics = eval_metrics(results)
    for name in names:
        WRITERS[name](Path(out_dir), run_name("eval", out_dir), cfg.project, metrics, model_step(results["model"]))
    return names

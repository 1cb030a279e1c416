"""distill.eval's results also in lighteval's results layout, the one open-r1's evaluations leave and the scripts
around them read: `<eval folder>/results/<model>/results_<timestamp>.json` holding `config_general`, `results`
({"<suite>|<task>|<few-shot>": {metric: value, metric_stderr: value}, "all": ...}), `versions`, `config_tasks`
and the summaries.

The benchmarks lighteval also defines keep its task names (`lighteval|math_500|0`, `lighteval|aime24|0`, ...), so
a script that looks up open-r1's keys finds ours; pass@1 over k samples is lighteval's `pass@k:k=1&n=k`. The problems
are the same; the prompt and the judge are distill-factory's (R1's instruction as the only user turn, the shared
verifiers), which `config_general` states -- compare numbers across the two tools with that in mind. Other
benchmarks (humaneval, mbpp, synthetic, files) go under the suite `distill`.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

# Our benchmark name -> lighteval's task name, for the benchmarks both define on the same problems.
LIGHTEVAL_TASKS = {"math500": "math_500", "aime24": "aime24", "aime25": "aime25", "gsm8k": "gsm8k"}


def task_key(benchmark: str) -> str:
    """`suite|task|few-shot`, as lighteval keys its results (zero-shot, as R1 evaluates)."""
    if benchmark in LIGHTEVAL_TASKS:
        return f"lighteval|{LIGHTEVAL_TASKS[benchmark]}|0"
    return f"distill|{benchmark}|0"


def task_metrics(scores: dict) -> dict[str, float | None]:
    """One benchmark's metrics under lighteval's names: pass@k:k=1&n=N (pass@1 over N samples) with its standard
    error, pass@k at the largest k computed, and cons@k (maj@k:k=N&n=N) where it was computed."""
    n = scores["samples"]
    metrics = {f"pass@k:k=1&n={n}": scores["pass@1"], f"pass@k:k=1&n={n}_stderr": scores["pass@1_stderr"]}
    k = max(scores["pass@k"], key=int)
    if int(k) > 1:
        metrics[f"pass@k:k={k}&n={n}"] = scores["pass@k"][k]
    if scores.get("cons@k") is not None:
        metrics[f"maj@k:k={n}&n={n}"] = scores["cons@k"]
    return metrics


def model_name(results: dict) -> str:
    """The model's name as lighteval records it: a hub id or built-in name (distill.model_ids), else the folder's
    name -- never a path of this machine."""
    from distill.model_ids import hub_reference

    name = hub_reference(results["model"])[0]
    return Path(name.rstrip("/")).name if Path(name).expanduser().is_dir() else name


def lighteval_results(results: dict) -> dict:
    """The results.json distill.eval writes, in lighteval's results format."""
    manifest, benchmarks = results["manifest"], results["benchmarks"]
    per_task = {task_key(name): task_metrics(scores) for name, scores in benchmarks.items()}
    pass1 = [scores["pass@1"] for scores in benchmarks.values()]
    sampling = manifest["sampling"]
    return {
        "config_general": {
            "lighteval_sha": None,
            "evaluator": "distill-factory distill.eval (R1's prompt, the shared verifiers; not lighteval's prompt)",
            "model_name": model_name(results),
            "model_sha": manifest["model"].get("revision") or manifest["model"].get("sha256"),
            "model_dtype": manifest["model"].get("dtype"),
            "max_samples": manifest.get("limit"),
            "total_evaluation_time_secondes": str(manifest.get("wall_s")),
            "generation_parameters": {
                "temperature": sampling["temperature"],
                "top_p": sampling["top_p"],
                "max_new_tokens": sampling["max_tokens"],
                "seed": manifest["seed"],
            },
            "command": manifest.get("command"),
        },
        "results": {**per_task, "all": {"pass@1": sum(pass1) / len(pass1)} if pass1 else {}},
        "versions": dict.fromkeys(per_task, 0),
        "config_tasks": {
            key.rsplit("|", 1)[0]: {"name": name, "num_samples": [scores["samples"]], "dataset": dataset}
            for (name, scores), key, dataset in zip(
                benchmarks.items(), per_task, (manifest["datasets"].get(n) for n in benchmarks), strict=True
            )
        },
        "summary_tasks": {
            key: {"num_problems": scores["problems"], "truncated": scores["truncated"]}
            for key, scores in zip(per_task, benchmarks.values(), strict=True)
        },
        "summary_general": {"num_problems": sum(s["problems"] for s in benchmarks.values())},
    }


def write_lighteval_results(out_dir: Path, results: dict) -> Path:
    """<out_dir>/results/<model>/results_<timestamp>.json (lighteval's file name: the ISO time, ':' as '-')."""
    stamp = datetime.datetime.now().isoformat().replace(":", "-")
    path = out_dir / "results" / model_name(results) / f"results_{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lighteval_results(results), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

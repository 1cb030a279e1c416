"""Verifier speed on real data, against math-verify called serially in one process.

    python benchmarks/verifiers.py [--data ../shared/data] [--workers 2] [--limit N]

Math: the 500 MATH-500 reference solutions as completions against their `answer` field.
  baseline  = math_verify.verify(parse("$gold$"), parse(solution)) serially, in this process
  ours      = distill.verify's VerifierPool (time-bounded worker processes), in input order
Code: the 164 HumanEval and 427 MBPP canonical solutions, each a sandboxed run (target: >= 20 verdicts/s).
Prints verdicts/s, p50/p99 latency (ms) and the ratio ours/baseline. Run it alone: timings need both cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill.verifiers.pool import VerifierPool, settle  # noqa: E402


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def math_rows(data: Path) -> list[dict]:
    return [{"task": "math", "completion": r["solution"], "answer": r["answer"]} for r in _read(data / "math500.jsonl")]


def code_rows(data: Path) -> list[dict]:
    rows = []
    for r in _read(data / "humaneval.jsonl"):
        program = r["prompt"] + r["canonical_solution"]
        tests = r["test"] + f"\ncheck({r['entry_point']})\n"
        rows.append({"task": "code", "completion": f"```python\n{program}\n```", "tests": tests})
    for r in _read(data / "mbpp_sanitized.jsonl"):
        tests = "\n".join(r["test_imports"] + r["test_list"]) + "\n"
        rows.append({"task": "code", "completion": f"```python\n{r['code']}\n```", "tests": tests})
    return rows


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
    code = ours(rows, args.workers)
    print(f"\nHumanEval + MBPP canonical solutions ({len(rows)} rows, sandboxed)")
    print(_line(f"distill VerifierPool, {args.workers} threads", code) + f"   {code['counts']}")
    print(f"target >= 20 verdicts/s: {'met' if code['rate'] >= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()

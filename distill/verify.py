"""`python -m distill.verify INPUT.jsonl [--output OUT.jsonl] [--workers N] [--timeout SECONDS]`

Judges each row of a JSONL file with its task's verifier and writes the row back, in input order, with `reward`,
`verdict` and `reason` added (to stdout without --output). A row is `{"task": "math"|"code", "completion": ...,
"answer": ...}` for math, or with `tests` (Python source with assertions) or `io` (a list of {"input", "output"})
for code. Every line is checked before any verdict, so a malformed line stops the run with its line number and
field; --output is written to a temporary file and renamed when complete, so it is never left half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tqdm import tqdm

from distill.errors import UserError
from distill.verifiers import sandbox
from distill.verifiers.base import VERDICTS
from distill.verifiers.pool import VerifierPool
from distill.verifiers.registry import TASKS
from distill.verifiers.rows import RowError, check_completion, check_reference


class InputError(UserError, ValueError):
    """A malformed input line; the message names the file, the line and the field."""


def _lines(path: str) -> Iterator[tuple[int, str]]:
    with open(sys.stdin.fileno() if path == "-" else path, "rb", closefd=path != "-") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{number}: not UTF-8 text (byte {e.start + 1} of the line)") from None
            if line.strip():
                yield number, line


def read_rows(path: str) -> Iterator[dict]:
    """The file's rows, each checked; raises InputError at the first bad line."""
    for number, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        try:
            check_completion(row)
            check_reference(row)
        except RowError as e:
            raise InputError(f"{path}:{number}: {e}") from None
        yield row


@contextmanager
def atomic_output(path: str | None) -> Iterator[IO[str]]:
    """stdout, or a temporary file beside `path` that replaces it only once everything is written."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(input_path: str, output: str | None, workers: int | None, timeout: float) -> Counter:
    if input_path == "-":  # stdin can be read once: keep it to check, then verify
        rows_list = list(read_rows(input_path))
        total, rows = len(rows_list), iter(rows_list)
    else:
        total = sum(1 for _ in read_rows(input_path))  # check every line before any verdict
        rows = read_rows(input_path)
    counts: Counter = Counter()
    code_rows = 0
    start = time.perf_counter()
    with atomic_output(output) as out, VerifierPool(workers=workers, timeout=timeout) as pool:
        bar = tqdm(total=total, unit="verdict", desc="verify", file=sys.stderr, disable=None)
        for row, verdict in pool.judge(rows):
            counts[verdict.verdict] += 1
            code_rows += row.get("task") == "code"
            out.write(json_line({**row, **verdict.to_dict()}))
            bar.update()
        bar.close()
    isolation = sandbox.isolation() if code_rows else None
    print(summary_line(counts, pool.timeouts, time.perf_counter() - start, isolation), file=sys.stderr)
    return counts


def json_line(obj: dict) -> str:
    """One JSONL line, UTF-8 where it can be; a row holding a lone surrogate (valid JSON, not valid Unicode) is
    written with escapes instead, as it came in, rather than ending the run."""
    text = json.dumps(obj, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj)
    return text + "\n"


def summary_line(counts: Counter, timeouts: Counter, elapsed: float, isolation: str | None = None) -> str:
    """The run's one line on stderr: rows by verdict, the pool's timeouts (VerifierPool.timeouts), the sandbox and
    memory-cap layers that ran the code rows (sandbox.isolation(); None without code rows) and the rate."""
    total = sum(counts.values())
    verdicts = ", ".join(f"{v} {counts[v]}" for v in VERDICTS)
    hit = ", ".join(f"{k} {timeouts[k]}" for k in ("cpu", "wall", "retried", "recovered"))
    rate = total / elapsed if elapsed else 0.0
    layers = f"; sandbox {isolation}" if isolation else ""
    return f"verify: {total} rows: {verdicts}; timeouts: {hit}{layers}; {rate:.1f} verdicts/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.verify", description=__doc__.split("\n\n")[1])
    parser.add_argument("input", help="JSONL rows to judge ('-' for stdin)")
    parser.add_argument("--output", "-o", help="where to write the judged rows (default: stdout)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    bound = "; ".join(f"{task}: {c.time_bound}" for task, c in TASKS.items())
    parser.add_argument("--timeout", type=float, default=5.0, help=f"seconds per verdict (default: 5); {bound}")
    args = parser.parse_args(argv)
    bad = (f"--workers must be >= 1, got {args.workers}" if args.workers is not None and args.workers < 1
           else f"--timeout must be > 0 seconds, got {args.timeout:g}" if not args.timeout > 0 else None)  # fmt: skip
    if bad:
        print(f"distill.verify: error: {bad}", file=sys.stderr)
        return 2
    try:
        run(args.input, args.output, args.workers, args.timeout)
    except (InputError, OSError) as e:
        print(f"distill.verify: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

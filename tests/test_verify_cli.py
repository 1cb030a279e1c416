"""`python -m distill.verify`: order, added fields, summary, bad input, atomic output, time bound."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from distill.verifiers import sandbox
from distill.verify import main, summary_line

MATH_ROWS = [
    {"id": "a", "task": "math", "completion": "<think>6*7</think> \\boxed{42}", "answer": "42"},
    {"id": "b", "task": "math", "completion": "<think>half</think> \\boxed{0.5}", "answer": "\\frac{1}{2}"},
    {"id": "c", "task": "math", "completion": "<think>guess</think> \\boxed{41}", "answer": "42"},
    {"id": "d", "task": "math", "completion": "<think>never closed \\boxed{42}", "answer": "42"},
    {
        "id": "e",
        "task": "code",
        "completion": "```python\nprint(int(input()) * 2)\n```",
        "io": [{"input": "21\n", "output": "42\n"}],
    },
    {"id": "f", "task": "code", "completion": "```python\ndef f():\n    return 1\n```", "tests": "assert f() == 2"},
]
EXPECTED = ["correct", "correct", "wrong", "no_answer", "correct", "wrong"]


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_rows_come_back_in_order_with_verdicts(tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl", MATH_ROWS * 5)
    out = tmp_path / "out.jsonl"
    assert main([str(src), "--output", str(out), "--workers", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in MATH_ROWS] * 5
    assert [r["verdict"] for r in rows] == EXPECTED * 5
    assert all(r["reward"] == (1.0 if r["verdict"] == "correct" else 0.0) and r["reason"] for r in rows)
    assert rows[0]["completion"] == MATH_ROWS[0]["completion"]  # the row itself is kept
    err = capsys.readouterr().err
    assert "30 rows: correct 15, wrong 10, no_answer 5, timeout 0, error 0" in err and "verdicts/s" in err
    assert "timeouts: cpu 0, wall 0, retried 0, recovered 0" in err


def test_summary_line_counts_the_pools_timeouts():
    counts = Counter(correct=3, timeout=1)
    timeouts = Counter(cpu=1, wall=2, retried=2, recovered=1)  # one row over its CPU bound, one judged on retry
    assert summary_line(counts, timeouts, 2.0) == (
        "verify: 4 rows: correct 3, wrong 0, no_answer 0, timeout 1, error 0; "
        "timeouts: cpu 1, wall 2, retried 2, recovered 1; 2.0 verdicts/s"
    )
    assert "; sandbox bwrap+cgroup1; " in summary_line(counts, timeouts, 2.0, "bwrap+cgroup1")


def test_summary_line_names_the_sandbox_layers_of_code_rows(tmp_path, capsys):
    code = {"task": "code", "completion": "```python\ndef f(): return 1\n```", "tests": "assert f() == 1"}
    src = _write(tmp_path / "code.jsonl", [code])
    assert main([str(src), "--output", str(tmp_path / "out.jsonl"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "correct 1" in err and f"; sandbox {sandbox.isolation()}; " in err
    assert sandbox.isolation().split("+")[1] in ("cgroup2", "cgroup1", "rlimit")


def test_stdout_when_no_output_is_given(tmp_path):
    src = _write(tmp_path / "in.jsonl", MATH_ROWS[:2])
    proc = subprocess.run(
        [sys.executable, "-m", "distill.verify", str(src), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["verdict"] for line in proc.stdout.splitlines()] == ["correct", "correct"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "in.jsonl:3: not valid JSON"),
        ('["a list"]', "in.jsonl:3: expected a JSON object"),
        ('{"task": "math", "completion": "x"}', "in.jsonl:3: field 'answer'"),
        ('{"task": "math", "answer": "1"}', "in.jsonl:3: field 'completion'"),
    ],
)
def test_malformed_line_stops_before_any_output(tmp_path, capsys, bad_line, message):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps(MATH_ROWS[0]), json.dumps(MATH_ROWS[1]), bad_line, json.dumps(MATH_ROWS[2])]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    assert main([str(src), "--output", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert out.read_text() == "previous results\n"  # nothing lost, nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_pathological_row_times_out_and_the_rest_still_verify(tmp_path, capsys):
    tower = "2^{" * 12 + "2" + "}" * 12
    rows = [
        {"task": "math", "completion": f"\\boxed{{{tower}}}", "answer": f"{tower}+1"},
        *MATH_ROWS[:2],
    ]
    src = _write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert main([str(src), "--output", str(out), "--workers", "2", "--timeout", "1"]) == 0
    verdicts = [json.loads(line)["verdict"] for line in out.read_text().splitlines()]
    assert verdicts[0] in ("timeout", "wrong") and verdicts[1:] == ["correct", "correct"]
    if verdicts[0] == "timeout":
        assert "timeouts: cpu 1" in capsys.readouterr().err


def test_a_lone_surrogate_is_that_rows_error_and_every_other_row_is_written(tmp_path):
    src = tmp_path / "in.jsonl"
    good = json.dumps(MATH_ROWS[0])
    bad = {"completion": '{"id": "s", "task": "math", "completion": "\\\\boxed{42} \\ud800", "answer": "42"}',
           "answer": '{"id": "t", "task": "math", "completion": "\\\\boxed{42}", "answer": "4\\udfff2"}'}  # fmt: skip
    src.write_text("\n".join([good, bad["completion"], bad["answer"], good]) + "\n")
    out = tmp_path / "out.jsonl"
    assert main([str(src), "--output", str(out), "--workers", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["correct", "error", "error", "correct"]
    assert "field 'completion'" in rows[1]["reason"] and "field 'answer'" in rows[2]["reason"]
    assert rows[1]["completion"].endswith("\ud800")  # written back as it came in


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (DATA / "humaneval.jsonl").exists(), reason="HumanEval data absent")
def test_rows_straight_from_humaneval_take_the_helpers_from_their_prompt(tmp_path):
    """HumanEval/38 tests `decode_cyclic` through the prompt's `encode_cyclic`: an identity pair must not pass."""
    raw = {
        json.loads(line)["task_id"]: json.loads(line) for line in (DATA / "humaneval.jsonl").read_text().splitlines()
    }
    rows = []
    for task, cheat in (
        ("HumanEval/38", "def encode_cyclic(s):\n    return s\ndef decode_cyclic(s):\n    return s\n"),
        ("HumanEval/50", "def encode_shift(s):\n    return s\ndef decode_shift(s):\n    return s\n"),
    ):
        r = raw[task]
        honest = r["prompt"] + r["canonical_solution"]
        for program in (cheat, honest):
            rows.append({"task": "code", "completion": f"```python\n{program}```", "prompt": r["prompt"],
                         "tests": r["test"] + f"\ncheck({r['entry_point']})\n", "entry_point": r["entry_point"]})  # fmt: skip
    src = _write(tmp_path / "he.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert main([str(src), "--output", str(out), "--workers", "1"]) == 0
    verdicts = [json.loads(line)["verdict"] for line in out.read_text().splitlines()]
    assert verdicts == ["wrong", "correct", "wrong", "correct"]
    assert [json.loads(line)["tests"] for line in out.read_text().splitlines()] == [r["tests"] for r in rows]

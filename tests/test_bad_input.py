"""Bad input to every entry point: one line naming the file, line or key and what was expected; exit 2; no
traceback; nothing already written is lost; no model is loaded."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from stderr import after_first_line

from distill import eval as evaluation
from distill import generate, sft, verify
from grpo import compare
from grpo import train as grpo_train

FAST_GENERATE = [
    "generate.filters.decontaminate=[]",
    "generate.prompts.synthetic_per_level=1",
    "generate.prompts.synthetic_levels=[1]",
]
ENTRY_POINTS = {
    "distill.generate": generate.main,
    "distill.sft": sft.main,
    "grpo.train": grpo_train.main,
    "distill.eval": evaluation.main,
    "grpo.compare": compare.main,
}


def one_error_line(capsys, prog: str, expected: str) -> str:
    """The error is one line; before it only the stage's first line (its resolved settings) may have been printed."""
    err = capsys.readouterr().err
    lines = [line for line in after_first_line(err).splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model or engine load fails the test: bad input must be caught before."""

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(generate, "make_sampler", loaded)
    monkeypatch.setattr(evaluation, "make_sampler", loaded)
    monkeypatch.setattr(sft, "load_student", loaded)
    monkeypatch.setattr(grpo_train, "train", loaded)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("prog", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_output_dir_that_cannot_be_a_folder(prog, where, tmp_path, capsys, no_model_loads):
    blocker = _write(tmp_path / "blocker", "keep me")
    out = blocker if where == "a file" else blocker / "sub"
    assert ENTRY_POINTS[prog]([f"output_dir={out}", *FAST_GENERATE]) == 2
    one_error_line(capsys, prog, f"{blocker} is a file")
    assert blocker.read_text() == "keep me"


def test_a_read_only_output_dir(tmp_path, capsys, monkeypatch, no_model_loads):
    def read_only(self, data):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_bytes", read_only)
    assert generate.main([f"output_dir={tmp_path}", *FAST_GENERATE]) == 2
    one_error_line(capsys, "distill.generate", "Read-only file system")


@pytest.mark.parametrize(
    ("prog", "argv", "expected"),
    [
        (
            "distill.generate",
            ["generate.prompts.synthetic_levels=[9]"],
            "key 'generate.prompts.synthetic_levels' expects levels",
        ),
        ("distill.generate", ["generate.teacher=/nonexistent"], "model '/nonexistent': no such folder"),
        ("distill.generate", ["model.name=/nonexistent/model"], "pass generate.teacher=... instead"),
        ("distill.generate", ["generate.sampling.n=0"], "key 'generate.sampling.n' must be >= 1"),
        ("distill.generate", ["generate.verify.timeout=-1"], "key 'generate.verify.timeout' must be > 0"),
        ("grpo.train", ["grpo.reward_weights.acuracy=1"], "key 'grpo.reward_weights.acuracy' expects one of accuracy"),
        ("grpo.train", ["grpo.top_p=0"], "key 'grpo.top_p' must be in (0, 1]"),
        ("distill.eval", ["eval.prompts.synthetic_levels=[0]"], "key 'eval.prompts.synthetic_levels'"),
        ("grpo.compare", ["compare.arms=[base,sft]"], "key 'compare.arms'"),
        ("distill.sft", ["sft.method=lorra"], "key 'sft.method' expects one of lora, qlora, full"),
    ],
)
def test_bad_settings_fail_at_parse_time(prog, argv, expected, tmp_path, capsys, no_model_loads):
    assert ENTRY_POINTS[prog]([f"output_dir={tmp_path / 'out'}", *FAST_GENERATE, *argv]) == 2
    one_error_line(capsys, prog, expected)  # no_model_loads: it failed before any model was touched


def test_a_typo_does_not_poison_the_output_folder(tmp_path, capsys, no_model_loads):
    out = tmp_path / "out"
    assert generate.main([f"output_dir={out}", *FAST_GENERATE, "generate.teacher=/nonexistent"]) == 2
    capsys.readouterr()
    assert not list(out.glob("datasets/*/.work/run.json"))


def test_an_eval_of_an_empty_folder(tmp_path, capsys, no_model_loads):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [
        f"output_dir={tmp_path / 'out'}",
        f"model={empty}",
        "benchmarks=synthetic",
        "eval.prompts.synthetic_per_level=1",
    ]
    assert evaluation.main(argv) == 2
    one_error_line(capsys, "distill.eval", "no config.json")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty: no rows to train on"),
        ('{"messages": "hello"}\n', ":1: field 'messages': expected a list of {role, content} objects"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', ":1: no assistant turn with content"),
        (
            '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n',
            ":2: not valid JSON",
        ),  # fmt: skip
        ("[1, 2]\n", ":1: expected a JSON object, got list"),
    ],
)
def test_bad_sft_files_name_the_file_and_line(content, expected, tmp_path, capsys, no_model_loads):
    data = _write(tmp_path / "rows.jsonl", content)
    assert sft.main([f"output_dir={tmp_path / 'out'}", f"sft.dataset={data}"]) == 2
    one_error_line(capsys, "distill.sft", f"{data}{expected}" if expected.startswith(":") else expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workers", "-2"], "--workers must be >= 1, got -2"),
        (["--timeout", "-1"], "--timeout must be > 0 seconds, got -1"),
        (["--timeout", "0"], "--timeout must be > 0 seconds, got 0"),
    ],
)
def test_verify_refuses_bad_numbers(args, expected, tmp_path, capsys):
    rows = _write(tmp_path / "in.jsonl", json.dumps({"task": "math", "completion": "\\boxed{1}", "answer": "1"}))
    assert verify.main([str(rows), *args]) == 2
    one_error_line(capsys, "distill.verify", expected)


def test_verify_names_a_line_that_is_not_utf8(tmp_path, capsys):
    good = json.dumps({"task": "math", "completion": "\\boxed{1}", "answer": "1"}).encode()
    rows = _write(tmp_path / "in.jsonl", good + b"\n" + b'{"task": "math", "completion": "\xff\xfe"}\n')
    out = tmp_path / "out.jsonl"
    assert verify.main([str(rows), "--output", str(out)]) == 2
    one_error_line(capsys, "distill.verify", f"{rows}:2: not UTF-8 text")
    assert not out.exists()  # nothing half-written


def test_every_entry_point_runs_the_plan_before_it_loads_a_model(tmp_path, capsys, no_model_loads):
    """A GPU recipe whose vLLM context exceeds the model's: one line per problem, naming the key, before any load."""
    argv = [f"output_dir={tmp_path / 'out'}", "recipe=qwen7b", "eval.engine.max_model_len=34816"]
    assert evaluation.main([*argv, "model=smollm2-135m", "benchmarks=synthetic"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "eval.engine.max_model_len" in err
    assert all(line.startswith("distill.eval: error: ") for line in err.splitlines() if line.strip())

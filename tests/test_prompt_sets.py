"""distill.prompt_sets: built-in sets from the shared data folder, local files, hub ids (offline), and the row checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.prompt_sets import BUILTIN_PROMPTS, DataError, builtin_license, data_folder, load_prompts
from distill.verifiers.rows import check_reference

COUNTS = {
    "gsm8k": 1319,
    "math500": 500,
    "math_train": 7472,
    "aime": 975,
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
    "humaneval": 164,
    "mbpp": 427,
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def raw_rows(folder: Path, file: str) -> list[dict]:
    return [json.loads(line) for line in (folder / file).read_text(encoding="utf-8").splitlines()]


# --- built-in sets from the shared data folder ---


def test_every_builtin_is_counted():
    assert set(COUNTS) == set(BUILTIN_PROMPTS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_builtin_loads_locally(shared_data, name):
    rows = load_prompts(name, data_dir=shared_data)
    assert len(rows) == COUNTS[name]
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        check_reference(row)
        assert row["source"] == name and row["task"] == BUILTIN_PROMPTS[name].task
        assert isinstance(row["id"], str) and row["problem"].strip()
    assert load_prompts(name, data_dir=shared_data, limit=3) == rows[:3]
    assert builtin_license(name)


def test_gsm8k_rows(shared_data):
    row = load_prompts("gsm8k", data_dir=shared_data, limit=1)[0]
    assert row["id"] == "gsm8k-test-0" and row["answer"] == "18" and row["fallback_last_number"] is True
    assert row["problem"].startswith("Janet’s ducks") and row["solution"].endswith("#### 18")
    assert "question" not in row


def test_math_rows_keep_their_extras(shared_data):
    row = load_prompts("math500", data_dir=shared_data, limit=1)[0]
    assert row["id"] == "test/precalculus/807.json" and row["level"] == 2 and row["subject"] == "Precalculus"
    assert load_prompts("aime24", data_dir=shared_data)[0]["id"] == "2024-AIME-I-1"
    assert load_prompts("amc23", data_dir=shared_data)[0]["id"] == "2023-AMC-12A-1"


def test_code_rows(shared_data):
    human = load_prompts("humaneval", data_dir=shared_data, limit=1)[0]
    assert human["id"] == "HumanEval/0" and human["tests"].rstrip().endswith("check(has_close_elements)")
    assert human["problem"].startswith("Complete the following Python function:\n```python\nfrom typing import List")
    assert human["problem"].endswith('"""\n```')
    mbpp = load_prompts("mbpp", data_dir=shared_data, limit=1)[0]
    first_assert = raw_rows(shared_data, "mbpp_sanitized.jsonl")[0]["test_list"][0]
    assert mbpp["id"] == "mbpp-2" and first_assert in mbpp["problem"] and first_assert in mbpp["tests"]
    assert mbpp["problem"].startswith("Write a function to find the shared elements")


def test_humaneval_canonical_solutions_verify(shared_data):
    from distill.verifiers.registry import verify_row

    raw = raw_rows(shared_data, "humaneval.jsonl")[:3]
    for source, row in zip(raw, load_prompts("humaneval", data_dir=shared_data, limit=3), strict=True):
        completion = "```python\n" + source["prompt"] + source["canonical_solution"] + "\n```"
        verdict = verify_row({**row, "completion": completion})
        assert verdict.verdict == "correct" and verdict.reward == 1.0, (row["id"], verdict)


def test_humaneval_rows_carry_the_prompts_helpers(shared_data):
    """The tests define the prompt's helpers themselves, so a program's redefinition of them is never used."""
    rows = {r["id"]: r for r in load_prompts("humaneval", data_dir=shared_data)}
    assert rows["HumanEval/38"]["tests"].startswith("def encode_cyclic(s: str):")
    assert "def poly(xs: list, x: float):" in rows["HumanEval/32"]["tests"]
    assert "def find_zero" not in rows["HumanEval/32"]["tests"] and rows["HumanEval/32"]["entry_point"] == "find_zero"
    assert rows["HumanEval/0"]["tests"].startswith("from typing import List\n")


def test_data_folder_from_environment(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILL_DATA", str(shared_data))
    assert data_folder() == shared_data
    assert len(load_prompts("aime24")) == 30
    assert data_folder(tmp_path) == tmp_path


# --- hub alternatives, with datasets.load_dataset faked (no network) ---


@pytest.fixture
def fake_hub(monkeypatch):
    import datasets

    calls = []

    def install(rows: list[dict]):
        def fake_load(path, name=None, split=None, **kwargs):
            calls.append((path, name, split))
            return datasets.Dataset.from_list(rows)

        monkeypatch.setattr(datasets, "load_dataset", fake_load)
        return calls

    return install


def test_gsm8k_from_hub_when_no_local_file(fake_hub, tmp_path):
    calls = fake_hub([{"question": "How many?", "answer": "2 + 2 = <<2+2=4>>4\n#### 1,234"}])
    rows = load_prompts("gsm8k", data_dir=tmp_path)
    assert calls == [("openai/gsm8k", "main", "test")]
    assert rows[0]["id"] == "gsm8k-test-0" and rows[0]["answer"] == "1234" and rows[0]["problem"] == "How many?"


def test_amc23_from_hub_keeps_2023_with_url_ids(fake_hub, tmp_path):
    url = "https://artofproblemsolving.com/wiki/index.php/{}_AMC_12A_Problems/Problem_{}"
    fake_hub(
        [
            {"id": 0, "problem": "p0", "answer": 3.0, "url": url.format(2022, 1)},
            {"id": 1, "problem": "p1", "answer": 27.0, "url": url.format(2023, 1)},
        ]
    )
    rows = load_prompts("amc23", data_dir=tmp_path)
    assert [(row["id"], row["answer"]) for row in rows] == [("2023-AMC-12A-1", "27")]


def test_contest_ids_from_urls_match_the_local_files(shared_data, fake_hub, tmp_path):
    # The hub sets number their rows and store answers as "025" (AIME) or 25.0 (AMC).
    for name, stored in (("aime24", lambda a: f"{int(a):03d}"), ("amc23", float)):
        local = raw_rows(shared_data, BUILTIN_PROMPTS[name].file)
        fake_hub([{**row, "id": i + 60, "answer": stored(row["answer"])} for i, row in enumerate(local)])
        hub = load_prompts(name, data_dir=tmp_path)
        assert [(r["id"], r["answer"]) for r in hub] == [(r["id"], r["answer"]) for r in local]


def test_code_sets_from_hub(fake_hub, tmp_path, shared_data):
    calls = fake_hub(raw_rows(shared_data, "humaneval.jsonl")[:2])
    assert load_prompts("humaneval", data_dir=tmp_path) == load_prompts("humaneval", data_dir=shared_data, limit=2)
    mbpp = [
        {k: v for k, v in row.items() if k not in ("entry_point", "split")}
        for row in raw_rows(shared_data, "mbpp_sanitized.jsonl")[:2]
    ]
    fake_hub(mbpp)
    rows = load_prompts("mbpp", data_dir=tmp_path)
    assert calls[-1] == ("google-research-datasets/mbpp", "sanitized", "prompt+test+validation+train")
    assert [r["tests"] for r in rows] == [r["tests"] for r in load_prompts("mbpp", data_dir=shared_data, limit=2)]


def test_hub_id_with_fields_and_task(fake_hub):
    calls = fake_hub([{"q": "What is 1 + 1?", "a": 2}, {"q": "What is 2 + 2?", "a": 4}])
    rows = load_prompts("someone/arith", subset="easy", split="train", fields={"problem": "q", "answer": "a"})
    assert calls == [("someone/arith", "easy", "train")]
    assert rows[1] == {
        "id": "someone/arith-1",
        "problem": "What is 2 + 2?",
        "answer": "4",
        "source": "someone/arith",
        "task": "math",
    }


# --- the hub itself, offline ---


def test_hub_offline_is_one_clear_line():
    with pytest.raises(DataError, match="cannot reach the Hugging Face hub") as info:
        load_prompts("distill-tests/no-such-dataset")
    assert "\n" not in str(info.value)
    assert "distill-tests/no-such-dataset" in str(info.value)


def test_builtin_without_file_and_hub_offline(tmp_path):
    with pytest.raises(DataError, match=r"built-in set 'math500': no local file .*math500.jsonl.*cannot reach"):
        load_prompts("math500", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"'math_train' needs its local file .*math_train.jsonl.*no hub alternative"):
        load_prompts("math_train", data_dir=tmp_path)


# --- local files ---


def test_jsonl_with_field_mapping_and_limit(tmp_path):
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [{"uid": i, "question": f"What is {i} + 1?", "final": i + 1, "level": 1} for i in range(5)],
    )
    rows = load_prompts(str(path), fields={"id": "uid", "problem": "question", "answer": "final"}, limit=3)
    assert rows == [
        {
            "level": 1,
            "id": str(i),
            "problem": f"What is {i} + 1?",
            "answer": str(i + 1),
            "source": "prompts",
            "task": "math",
        }
        for i in range(3)
    ]


def test_parquet_and_json_array(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"name": "double", "text": "Write double(x).", "tests": "assert double(2) == 4", "task": "code"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "code.parquet")
    got = load_prompts(str(tmp_path / "code.parquet"), fields={"id": "name", "problem": "text"})
    assert got == [
        {
            "task": "code",
            "tests": "assert double(2) == 4",
            "id": "double",
            "problem": "Write double(x).",
            "source": "code",
        }
    ]
    io = [{"id": "echo", "problem": "Echo the input.", "io": [{"input": "a\n", "output": "a\n"}]}]
    (tmp_path / "io.json").write_text(json.dumps(io, indent=2))
    assert load_prompts(str(tmp_path / "io.json"))[0]["task"] == "code"


def test_task_argument_and_missing_task(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "problem": "Say hi.", "answer": "hi", "tests": "pass"}])
    with pytest.raises(DataError, match=r"p.jsonl:1: field 'task'.*pass task="):
        load_prompts(str(path))
    assert load_prompts(str(path), task="math")[0]["task"] == "math"


def test_synthetic_spreads_a_limit_over_levels():
    rows = load_prompts("synthetic", limit=10)
    assert len(rows) == 10 and sorted({row["level"] for row in rows}) == [1, 2, 3, 4, 5]
    assert len(load_prompts("synthetic")) == 40


# --- bad input: one line naming the place and the field ---


def test_bad_json_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": "a", "problem": "p", "answer": "1"}\n\n{"id": "b", "problem": \n')
    with pytest.raises(DataError, match=r"^prompts.jsonl:3: invalid JSON"):
        load_prompts(str(path))


def test_bad_json_array(tmp_path):
    (tmp_path / "p.json").write_text('[\n {"id": "a"},\n {"id": }\n]')
    with pytest.raises(DataError, match=r"^p.json:3: invalid JSON"):
        load_prompts(str(tmp_path / "p.json"))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "b", "problem": "p", "task": "math"}, r"prompts.jsonl:2: field 'answer': expected a non-empty string"),
        ({"id": "b", "problem": "p", "answer": " ", "task": "math"}, r"prompts.jsonl:2: field 'answer'"),
        (
            {"id": "b", "problem": 7, "answer": "1"},
            r"prompts.jsonl:2: field 'problem': expected a non-empty string, got 7",
        ),
        ({"id": ["b"], "problem": "p", "answer": "1"}, r"prompts.jsonl:2: field 'id': expected a non-empty string"),
        ({"problem": "p", "answer": "1"}, r"prompts.jsonl:2: field 'id': expected a non-empty string, got None"),
        ({"id": "b", "problem": "p", "tests": ["assert 1"]}, r"prompts.jsonl:2: field 'tests': expected Python source"),
        ({"id": "b", "problem": "p", "task": "poetry", "answer": "1"}, r"prompts.jsonl:2: field 'task'"),
        ({"id": "b", "problem": "p", "io": [{"input": 1}]}, r"prompts.jsonl:2: field 'io\[0\]'"),
        (["not", "an", "object"], r"prompts.jsonl:2: expected a JSON object, got list"),
    ],
)
def test_bad_rows(tmp_path, row, message):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "problem": "p", "answer": "1"}, row])
    with pytest.raises(DataError, match=message):
        load_prompts(str(path))


def test_duplicate_ids_name_both_lines(tmp_path):
    rows = [{"id": f"r{i}", "problem": "p", "answer": "1"} for i in range(4)] + [
        {"id": "r1", "problem": "q", "answer": "2"}
    ]
    path = write_jsonl(tmp_path / "prompts.jsonl", rows)
    with pytest.raises(DataError, match=r"^prompts.jsonl:5: field 'id': duplicate id 'r1', first at prompts.jsonl:2$"):
        load_prompts(str(path))


def test_missing_mapped_column(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "problem": "p", "answer": "1"}])
    with pytest.raises(DataError, match=r"prompts.jsonl:1: column 'final' \(mapped to field 'answer'\) is missing"):
        load_prompts(str(path), fields={"answer": "final"})


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DataError, match=r"unknown prompt set 'math5000'.*humaneval.*did you mean 'math500'\?$"):
        load_prompts("math5000")
    with pytest.raises(DataError, match=r"did you mean 'aime24'"):
        load_prompts("aime_24")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"prompt file not found: .*nothing\.jsonl"):
        load_prompts(str(tmp_path / "nothing.jsonl"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"notes.txt: not a prompt file"):
        load_prompts(str(tmp_path / "notes.txt"))


def test_empty_set_and_bad_limit(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="'empty' has no rows"):
        load_prompts(str(tmp_path / "empty.jsonl"))
    with pytest.raises(DataError, match="limit must be a positive"):
        load_prompts("gsm8k", limit=0)


def test_licenses():
    assert builtin_license("mbpp").startswith("CC-BY-4.0")
    assert builtin_license("gsm8k").startswith("MIT")
    assert builtin_license("someone/else") is None

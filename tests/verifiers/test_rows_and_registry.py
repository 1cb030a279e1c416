import json

import pytest

from distill.verifiers.registry import SHAPING, VERIFIERS, verify_row
from distill.verifiers.rows import RowError, check_completion, check_reference


def test_registry_names_every_verifier_and_reward():
    assert set(VERIFIERS) == {"math", "code"}
    assert set(SHAPING) == {"format", "language", "overlong", "repetition"}


def test_verify_row_dispatches_on_task_and_accepts_numeric_answers():
    assert verify_row({"task": "math", "completion": "so \\boxed{12}", "answer": 12, "id": "x"}).verdict == "correct"
    assert verify_row({"task": "math", "completion": "so \\boxed{13}", "answer": "12"}).verdict == "wrong"
    with pytest.raises(KeyError, match="unknown task 'poetry'"):
        verify_row({"task": "poetry", "completion": ""})


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"task": "maths", "answer": "1"}, "field 'task': expected one of math, code, got 'maths'"),
        ({"answer": "1"}, "field 'task'"),
        ({"task": "math"}, "field 'answer'"),
        ({"task": "math", "answer": "  "}, "field 'answer'"),
        ({"task": "math", "answer": True}, "field 'answer'"),
        ({"task": "code"}, "exactly one of them"),
        ({"task": "code", "tests": "assert 1", "io": [{"input": "", "output": ""}]}, "exactly one of them"),
        ({"task": "code", "tests": ["assert 1"]}, "field 'tests'"),
        ({"task": "code", "io": []}, "field 'io'"),
        ({"task": "code", "io": [{"input": "1"}]}, "field 'io[0]'"),
    ],
)
def test_bad_reference_fields_are_named(row, message):
    with pytest.raises(RowError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_reference(row)


def test_good_rows_pass_the_checks():
    check_reference({"task": "math", "answer": "\\frac{1}{2}"})
    check_reference({"task": "math", "answer": 7})
    check_reference({"task": "code", "tests": "assert f() == 1"})
    check_reference({"task": "code", "io": [{"input": "1\n", "output": "2"}]})
    check_completion({"completion": ""})
    with pytest.raises(RowError, match="field 'completion'"):
        check_completion({"completion": None})


def test_reference_columns_give_one_type_per_column():
    from distill.verifiers.registry import REFERENCE_FIELDS, reference, reference_columns

    io = [{"input": "1", "output": "2"}]
    columns = reference_columns({"answer": 7, "io": io, "id": "x"})
    assert set(columns) == set(REFERENCE_FIELDS)
    assert columns["answer"] == "7" and columns["io"] == json.dumps(io) and columns["tests"] is None
    assert reference(columns) == {"answer": "7", "io": io}  # and back, io decoded

import re

import pytest

from distill.tasks import LEVELS, synthetic_rows
from distill.verifiers.registry import verify_row


def test_rows_are_reproducible_and_levels_independent():
    assert synthetic_rows(5, seed=3) == synthetic_rows(5, seed=3)
    assert synthetic_rows(5, seed=3) != synthetic_rows(5, seed=4)
    only_two = synthetic_rows(5, levels=[2], seed=3)
    assert only_two == [r for r in synthetic_rows(5, seed=3) if r["level"] == 2]


def test_every_level_has_unique_ids_and_a_true_integer_answer():
    rows = synthetic_rows(50, seed=0)
    assert len({r["id"] for r in rows}) == len(rows) == 50 * len(LEVELS)
    for row in rows:
        expression = re.fullmatch(r"What is (.+)\?", row["problem"])
        if expression:  # arithmetic levels: the answer is the expression's value
            assert eval(expression.group(1)) == int(row["answer"]), row
        assert row["task"] == "math" and row["fallback_last_number"] is True


def test_answers_verify_through_the_shared_registry():
    for row in synthetic_rows(3, seed=1):
        stated = {**row, "completion": f"The result is {row['answer']}."}
        boxed = {**row, "completion": f"So \\boxed{{{int(row['answer']) + 1}}}, i.e. {row['answer']}"}
        assert verify_row(stated).verdict == "correct"
        assert verify_row(boxed).verdict == "wrong"  # a boxed answer takes precedence over the fallback


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="level 9 does not exist"):
        synthetic_rows(1, levels=[9])

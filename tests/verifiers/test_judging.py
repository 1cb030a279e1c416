"""judging.judge: the one function rollouts and GRPO rewards call, so a truncation or time rule lands in both."""

from __future__ import annotations

import pytest

from distill.verifiers.judging import TRUNCATED, cut_at_length, judge
from distill.verifiers.pool import VerifierPool
from distill.verifiers.registry import TASKS, verify_row

ROWS = [
    {"task": "math", "completion": "\\boxed{4}", "answer": "4"},
    {"task": "math", "completion": "\\boxed{4}", "answer": "4"},
    {"task": "math", "completion": "\\boxed{5}", "answer": "4"},
]


@pytest.mark.parametrize(
    "ids, expected",
    [
        ([5, 6, 7, 8], True),  # as long as allowed, no end token
        ([5, 6, 7, 2], False),  # ended by EOS at the limit
        ([5, 6], False),  # shorter than the limit
        (None, False),  # unknown
    ],
)
def test_cut_at_length(ids, expected):
    assert cut_at_length(ids, max_length=4, eos_ids={2}) is expected


def test_a_cut_completion_is_no_answer_and_is_never_run():
    seen = []

    class Recording(VerifierPool):
        def map(self, rows, window=None):
            seen.extend(rows)
            return [verify_row(r) for r in rows]

    pool = Recording.__new__(Recording)
    verdicts = judge(pool, ROWS, [False, True, False])
    assert [v.verdict for v in verdicts] == ["correct", "no_answer", "wrong"]
    assert verdicts[1] == TRUNCATED and len(seen) == 2
    with pytest.raises(ValueError):
        judge(pool, ROWS, [False])


def test_the_time_bound_is_the_pools_and_means_one_thing_per_task():
    assert all(c.time_bound for c in TASKS.values())
    row = {"task": "code", "completion": "```python\nwhile True: pass\n```", "io": [{"input": "", "output": ""}],
           "timeout": 1e9}  # fmt: skip
    v = verify_row(row, time_bound=0.5)  # the row's own `timeout` is ignored
    assert v.verdict == "timeout" and "0.5s" in v.reason, v

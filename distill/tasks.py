"""Built-in synthetic math tasks with exact integer answers, in difficulty levels, seeded and reproducible.

They exist so the whole pipeline has a real, non-zero pass rate offline with the embedded 135M model, which solves
one-step arithmetic often and multi-step word problems rarely: rejection sampling keeps something, and GRPO sees
groups with mixed rewards (a learning signal) at the lower levels.

    level 1  a + b, one digit                     level 4  (a + b) * c, or a * b - c
    level 2  a + b or a - b, two digits           level 5  two-step word problems
    level 3  a * b with one- and two-digit numbers, or a + b + c

Rows ask the verifier for the plain-number fallback (`fallback_last_number`), because a small instruct model often
states the result ("2 + 3 = 5") without the `\\boxed{}` it was asked for; a boxed answer still takes precedence.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Problem = tuple[str, int]

_NAMES = ("Sam", "Mia", "Leo", "Ava", "Noah", "Zoe", "Ben", "Lily")
_THINGS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells")


def _level1(rng: random.Random) -> Problem:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"What is {a} + {b}?", a + b


def _level2(rng: random.Random) -> Problem:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if rng.random() < 0.5:
        return f"What is {a} + {b}?", a + b
    a, b = max(a, b), min(a, b)
    return f"What is {a} - {b}?", a - b


def _level3(rng: random.Random) -> Problem:
    if rng.random() < 0.5:
        a, b = rng.randint(2, 9), rng.randint(11, 30)
        return f"What is {a} * {b}?", a * b
    a, b, c = (rng.randint(10, 60) for _ in range(3))
    return f"What is {a} + {b} + {c}?", a + b + c


def _level4(rng: random.Random) -> Problem:
    a, b, c = rng.randint(2, 15), rng.randint(2, 15), rng.randint(2, 9)
    if rng.random() < 0.5:
        return f"What is ({a} + {b}) * {c}?", (a + b) * c
    return f"What is {a} * {c} - {b}?", a * c - b


def _level5(rng: random.Random) -> Problem:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a, b = rng.randint(5, 40), rng.randint(2, 30)
    c = rng.randint(1, a + b - 1)
    text = (
        f"{name} has {a} {thing}. {name} gets {b} more and then gives away {c}. How many {thing} does {name} have now?"
    )
    return text, a + b - c


LEVELS: dict[int, Callable[[random.Random], Problem]] = {1: _level1, 2: _level2, 3: _level3, 4: _level4, 5: _level5}


def synthetic_rows(per_level: int, levels: list[int] | tuple[int, ...] = (1, 2, 3, 4, 5), seed: int = 0) -> list[dict]:
    """`per_level` problems of each level, in the prompt-row format: id, problem, answer, task, source, level.

    The same (per_level, levels, seed) gives the same rows; each level has its own random stream, so adding a level
    leaves the others unchanged.
    """
    rows = []
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"synthetic level {level} does not exist; levels are {sorted(LEVELS)}")
        rng = random.Random(f"{seed}-{level}")
        for i in range(per_level):
            problem, answer = LEVELS[level](rng)
            rows.append(
                {
                    "id": f"synthetic-L{level}-{i}",
                    "problem": problem,
                    "answer": str(answer),
                    "task": "math",
                    "source": "synthetic",
                    "level": level,
                    "fallback_last_number": True,
                }
            )
    return rows

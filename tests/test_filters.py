"""Dataset filters: duplicates within a prompt, benchmark decontamination, R1's readability filters, the counts."""

from __future__ import annotations

import json

import pytest

from distill.filters import (
    Decontaminator,
    apply_filters,
    exact_duplicates,
    near_duplicates,
    normalize,
    readability_problem,
)

# 60 distinct words, so every shingle is distinct and the Jaccard arithmetic below is exact.
WORDS = [f"w{i}" for i in range(60)]
TEXT = " ".join(WORDS)


def sample(prompt_id: str, completion: str, problem: str = "What is 2 + 2?") -> dict:
    return {"prompt_id": prompt_id, "problem": problem, "completion": completion}


def edited(position: int, words: list[str] = WORDS) -> str:
    return " ".join("changed" if i == position else w for i, w in enumerate(words))


# --- duplicates -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completions", "expected"),
    [
        ([("p1", "The answer is 4."), ("p1", "The answer is 4.")], [1]),
        # Whitespace does not make a different completion.
        ([("p1", "The answer\nis 4."), ("p1", "  The answer is   4. ")], [1]),
        # The same text for another prompt answers a different problem: kept.
        ([("p1", "The answer is 4."), ("p2", "The answer is 4.")], []),
        ([("p1", "a"), ("p2", "a"), ("p1", "b"), ("p1", "a"), ("p2", "a")], [3, 4]),
        # Case is content (x vs X), not whitespace.
        ([("p1", "Let x = 1."), ("p1", "Let X = 1.")], []),
    ],
)
def test_exact_duplicates(completions, expected):
    assert exact_duplicates([sample(p, c) for p, c in completions]) == expected


@pytest.mark.parametrize(
    ("second", "threshold", "shingle", "is_near_dup"),
    [
        (TEXT, 0.9, 5, True),
        # Last word changed: 1 of 56 shingles differs, J = 55/57 = 0.965.
        (edited(59), 0.9, 5, True),
        # Middle word changed: 5 shingles differ, J = 51/61 = 0.836 -- a near dup at 0.8, not at 0.9 ...
        (edited(30), 0.9, 5, False),
        (edited(30), 0.8, 5, True),
        # ... or with 3-word shingles: J = 55/61 = 0.902.
        (edited(30), 0.9, 3, True),
        # A different text of the same length shares nothing.
        (" ".join(f"v{i}" for i in range(60)), 0.9, 5, False),
        (" ".join(f"v{i}" for i in range(60)), 0.0, 5, True),
    ],
)
def test_near_duplicates_by_threshold(second, threshold, shingle, is_near_dup):
    samples = [sample("p1", TEXT), sample("p1", second)]
    assert near_duplicates(samples, threshold=threshold, shingle=shingle) == ([1] if is_near_dup else [])


def test_one_word_edit_of_a_long_completion_is_a_near_duplicate_at_the_defaults():
    words = [f"w{i}" for i in range(600)]
    samples = [sample("p1", " ".join(words)), sample("p1", edited(300, words))]
    assert near_duplicates(samples) == [1]


def test_near_duplicates_compare_only_within_a_prompt_and_only_with_kept_samples():
    def window(start: int) -> str:  # 20 words; neighbouring windows share 19 of 21 words, J = 0.905
        return " ".join(WORDS[start : start + 20])

    samples = [sample("p1", window(0)), sample("p2", window(1)), sample("p1", window(1)), sample("p1", window(2))]
    # window(2) is near window(1) only (J(window(0), window(2)) = 18/22), and window(1) was dropped: kept.
    assert near_duplicates(samples, threshold=0.9, shingle=1) == [2]
    # Short texts (fewer words than a shingle) are compared whole.
    assert near_duplicates([sample("p1", "x = 4"), sample("p1", "x = 4"), sample("p1", "x = 5")]) == [1]


# --- decontamination ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def math500(shared_data) -> list[str]:
    with open(shared_data / "math500.jsonl") as f:
        return [json.loads(line)["problem"] for line in f]


def test_normalize():
    assert normalize("  What's   $f(x)$,\nREALLY? ") == "what s f x really"


def test_decontamination_finds_a_math500_problem_copied_with_other_casing_and_punctuation(math500):
    checker = Decontaminator({"gsm8k": ["Natalia sold clips to 48 of her friends in April."], "math500": math500})
    original = next(p for p in math500 if p.startswith("The proper divisors of 12"))
    copied = "Solve this one: " + original.upper().replace("$", "").replace(",", " ,").replace("?", "!") + " Thanks"
    assert checker.match(copied) == "math500"
    assert checker.match(original) == "math500"
    unrelated = "Tom has 3 apples and buys 5 more at the market. How many apples does Tom have now in total?"
    assert checker.match(unrelated) is None


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("one two three four five six seven eight", "a"),  # one shared 8-gram suffices
        ("zero one two three four five six seven eight nine", "a"),
        ("one two three four five six seven nine", None),  # 7 shared words are not an 8-gram
        ("Short ONE!", "b"),  # shorter than n: compared whole, after normalization
        ("short one more", None),
        ("", None),
    ],
)
def test_decontamination_rules(problem, expected):
    checker = Decontaminator({"a": ["One two three four five six seven eight."], "b": ["short, one"]}, n=8)
    assert checker.match(problem) == expected


def test_decontamination_reports_the_first_benchmark_in_the_order_given():
    text = "alpha beta gamma delta epsilon zeta eta theta"
    checker = Decontaminator({"first": ["iota kappa lambda mu nu xi omicron pi"], "second": [text]}, n=8)
    assert checker.match(text + " iota kappa lambda mu nu xi omicron pi") == "first"


# --- readability ----------------------------------------------------------------------------------------------------

# A 5000-char paragraph without repeated 10-grams (a wall of text, not runaway repetition).
WALL = " ".join(f"term{i}" for i in range(900))[:5000].strip()
ENGLISH = "Let me add the two numbers carefully and then check the result once more before answering."


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        (f"<think>\n{ENGLISH}\n</think>\nThe answer is 4.", None),
        # 16 English words and 4 Chinese ideographs in the reasoning: 80% English.
        (f"<think>\n{ENGLISH} 我们检查\n</think>\nThe answer is 4.", "mixed languages: 80% en"),
        # Only the reasoning counts for the language share.
        (f"<think>\n{ENGLISH}\n</think>\n答案是四", None),
        (f"<think>\nA first idea.\n\n{WALL}\n\n</think>\nDone.", f"paragraph of {len(WALL)} chars"),
        ("\n\n".join([" ".join(f"term{i}" for i in range(j, j + 300)) for j in (0, 300, 600)]), None),
        ("Let me check again. " * 200, "runaway repetition: 99% of 10-grams repeated"),
    ],
)
def test_readability_problem(completion, reason):
    assert len(WALL) == 5000
    assert readability_problem(completion) == reason


def test_readability_thresholds_are_settings():
    mixed = f"{ENGLISH} 我们检查"
    assert readability_problem(mixed, min_language_share=0.8) is None
    assert readability_problem("x " * 3000, max_repeated_share=1.0, max_paragraph_chars=10_000) is None
    assert readability_problem("我们检查一下这个答案", language="zh") is None


# --- all together ---------------------------------------------------------------------------------------------------


def test_apply_filters_counts_each_sample_once_and_keeps_the_order(math500):
    contaminated = math500[0].upper()
    samples = [
        sample("p1", f"<think>\n{ENGLISH}\n</think>\n4"),  # kept
        sample("p1", f"<think>\n{ENGLISH}\n</think>\n4"),  # exact duplicate
        sample("p1", TEXT),  # kept
        sample("p1", edited(59)),  # near duplicate
        sample("p2", f"<think>\n{ENGLISH}\n</think>\n4"),  # kept: another prompt
        sample("p3", "Let me check again. " * 200, problem=contaminated),  # contaminated first, though also unreadable
        sample("p2", f"{ENGLISH} 我们检查"),  # mixed language
        sample("p2", "Let me check again. " * 200),  # repetition
        sample("p2", "Let me check again. " * 200),  # exact duplicate before repetition
        sample("p4", WALL),  # long paragraph
    ]
    checker = Decontaminator({"math500": math500, "aime24": ["Find the number of triangles"]})
    kept, removed = apply_filters(samples, decontaminator=checker, readability={})
    assert kept == [samples[0], samples[2], samples[4]]
    assert removed == {
        "contaminated:math500": 1,
        "contaminated:aime24": 0,
        "exact_duplicate": 2,
        "near_duplicate": 1,
        "readability:mixed_language": 1,
        "readability:repetition": 1,
        "readability:long_paragraph": 1,
    }
    assert len(kept) + sum(removed.values()) == len(samples)


READABILITY_ZERO = {"readability:mixed_language": 0, "readability:long_paragraph": 0}


@pytest.mark.parametrize(
    ("options", "expected_removed", "kept"),
    [
        ({}, {"exact_duplicate": 1, "near_duplicate": 1}, [0, 3, 4]),
        ({"dedup": False}, {}, [0, 1, 2, 3, 4]),
        ({"near_dup_threshold": None}, {"exact_duplicate": 1}, [0, 2, 3, 4]),
        # Every enabled filter has a count, zeros included.
        (
            {"readability": {"max_repeated_share": 0.5}},
            {"exact_duplicate": 1, "near_duplicate": 1, "readability:repetition": 1, **READABILITY_ZERO},
            [0, 3],
        ),
        (
            {"dedup": False, "readability": {"max_repeated_share": 1.0}},
            {"readability:repetition": 0, **READABILITY_ZERO},
            [0, 1, 2, 3, 4],
        ),
    ],
)
def test_apply_filters_options(options, expected_removed, kept):
    samples = [sample("p1", TEXT), sample("p1", TEXT), sample("p1", edited(59)), sample("p2", TEXT)]
    samples.append(sample("p2", "Let me check again. " * 200))
    result, removed = apply_filters(samples, **options)
    assert removed == expected_removed
    assert [next(i for i, s in enumerate(samples) if s is r) for r in result] == kept  # the same dicts, in order
    assert len(result) + sum(removed.values()) == len(samples)

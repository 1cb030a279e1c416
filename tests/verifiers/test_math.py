"""The math verifier: its policy line by line, equivalences, gaps in plain math-verify, MATH-500, and bad inputs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from distill.verifiers.math import answer_key, extract_boxed_answers, last_number, verify_math

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MATH500 = DATA / "math500.jsonl"


def boxed(answer: str) -> str:
    return f"Putting it together, the answer is $\\boxed{{{answer}}}$."


# --- the policy, line by line -------------------------------------------------------------------------------------

# (case id, completion, gold, verdict, text the reason must contain)
POLICY = [
    # Think block: only the text after the last </think> counts.
    ("think-then-answer", "<think>try 4... no, 5</think>So $\\boxed{5}$.", "5", "correct", ""),
    ("boxed-only-in-think", "<think>so $\\boxed{5}$</think> The answer is five.", "5", "no_answer", "no \\boxed"),
    ("unclosed-think", "<think>so the answer is $\\boxed{5}$ but let me che", "5", "no_answer", "unclosed <think>"),
    ("think-box-differs", "<think>maybe $\\boxed{4}$</think>Final: $\\boxed{5}$", "5", "correct", ""),
    ("prefill-lone-close", "we get 5.</think>The answer is $\\boxed{5}$.", "5", "correct", ""),
    ("prefill-box-before-close", "so $\\boxed{5}$.</think>The answer is 5.", "5", "no_answer", "no \\boxed"),
    ("last-close-counts", "<think>a</think>$\\boxed{4}$<think>b</think>$\\boxed{5}$", "5", "correct", ""),
    ("no-think-whole-text", "Some work. $\\boxed{5}$", "5", "correct", ""),
    # The final answer is the content of the last box, braces matched.
    ("nested-braces", boxed("\\frac{\\sqrt{3}}{2}"), "\\frac{\\sqrt3}{2}", "correct", ""),
    ("fbox", "so $\\fbox{5}$", "5", "correct", ""),
    ("boxed-no-braces", "so $\\boxed 5$", "5", "correct", ""),
    ("box-in-box", boxed("\\boxed{5}"), "5", "correct", ""),
    ("truncated-box", "The answer is $\\boxed{\\frac{1}{", "\\frac12", "no_answer", "unclosed \\boxed"),
    ("box-then-truncated-box", "First $\\boxed{5}$, so finally $\\boxed{\\frac{5", "5", "no_answer", "unclosed"),
    ("empty-box", "The answer is $\\boxed{}$.", "5", "no_answer", "empty"),
    ("empty-box-ignored", "Format: \\boxed{}. The answer is $\\boxed{5}$.", "5", "correct", ""),
    ("no-box", "The answer is 5.", "5", "no_answer", "no \\boxed"),
    ("wrong", boxed("7"), "8", "wrong", "boxed 7 ≠ gold 8"),
    # Hedging: two different boxed answers get no credit, even if one of them is right.
    ("hedged-last-right", "It is $\\boxed{2}$ or maybe $\\boxed{3}$.", "3", "wrong", "hedged: 2 different"),
    ("hedged-first-right", "It is $\\boxed{2}$ or maybe $\\boxed{3}$.", "2", "wrong", "hedged"),
    ("hedged-many", " ".join(f"\\boxed{{{i}}}" for i in range(100)), "5", "wrong", "hedged: 100 different"),
    ("same-box-twice", "So $\\boxed{2}$. Check: yes, $\\boxed{2}$.", "2", "correct", ""),
    ("same-answer-two-forms", "So $\\boxed{\\frac{1}{2}}$, i.e. $\\boxed{0.5}$.", "\\frac12", "correct", ""),
    (
        "mixed-number-and-fraction",
        "$\\boxed{15\\frac{39}{40}}$ or $\\boxed{\\frac{639}{40}}$",
        "\\frac{639}{40}",
        "correct",
        "",
    ),
    # The items of a list, set or tuple gold may be boxed one by one (this replaced "box a multi-part answer as one":
    # R1-style outputs box each root); the boxes must make the gold exactly, one box per item.
    ("parts-boxed-separately", "The roots are $\\boxed{2}$ and $\\boxed{3}$.", "2, 3", "correct", "together"),
    ("parts-any-order", "The roots are $\\boxed{3}$ and $\\boxed{2}$.", "2, 3", "correct", "together"),
    ("r1-roots", "Thus: \\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", "-2, 1", "correct", ""),
    (
        "pairs-boxed-separately",
        "$$\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$$",
        "(2, 2), (6, 2)",
        "correct",
        "",
    ),
    ("set-boxed-separately", "\\boxed{1}, \\boxed{2}, \\boxed{3}", "\\{1, 2, 3\\}", "correct", ""),
    ("tuple-in-order", "So $a = \\boxed{2}$ and $b = \\boxed{3}$.", "(2, 3)", "correct", ""),
    ("tuple-out-of-order", "So $b = \\boxed{3}$ and $a = \\boxed{2}$.", "(2, 3)", "wrong", "hedged"),
    ("plus-minus-roots", "$x = \\boxed{1+\\sqrt{2}}$ or $x = \\boxed{1-\\sqrt{2}}$", "1 \\pm \\sqrt{2}", "correct", ""),
    ("parts-boxed-together", "The roots are $\\boxed{2, 3}$.", "2, 3", "correct", ""),
    ("parts-one-wrong", "The roots are $\\boxed{2}$ and $\\boxed{4}$.", "2, 3", "wrong", "hedged"),
    ("parts-too-many", "The roots are $\\boxed{2}$, $\\boxed{3}$ and $\\boxed{4}$.", "2, 3", "wrong", "hedged"),
    ("parts-too-few", "The roots are $\\boxed{1}$ and $\\boxed{2}$.", "1, 2, 3", "wrong", "hedged"),
    ("candidates-for-one-value", "It is $\\boxed{(2, 2)}$ or $\\boxed{(6, 2)}$.", "(2, 2)", "wrong", "hedged"),
    ("hedge-inside-one-box", boxed("2 \\text{ or } 3"), "2", "wrong", ""),
    ("list-inside-one-box", boxed("2, 3"), "2", "wrong", ""),
    ("thousands-gold-is-one-number", "$\\boxed{1}$ and $\\boxed{000}$", "1,000", "wrong", "hedged"),
    # Minerva's format: "The final answer is $X$" after every box (or with none) is the final answer, alone.
    (
        "minerva",
        "$\\boxed{200}$, $\\boxed{255}$. Final Answer: The final answer is $10,455$. I hope",
        "10455",
        "correct",
        "",
    ),
    ("minerva-then-box", "The final answer is $4$. No: $\\boxed{5}$.", "4", "wrong", "boxed 5"),
    ("minerva-no-dollars", "The final answer is 5.", "5", "no_answer", "no \\boxed"),
]


@pytest.mark.parametrize(
    ("completion", "gold", "verdict", "reason"), [c[1:] for c in POLICY], ids=[c[0] for c in POLICY]
)
def test_policy(completion, gold, verdict, reason):
    result = verify_math(completion, gold)
    assert result.verdict == verdict, result
    assert reason in result.reason
    assert result.reward == (1.0 if verdict == "correct" else 0.0)


# (case id, completion, gold, fallback_last_number, verdict)
FALLBACK = [
    ("off", "She pays 1,234 dollars in total.", "1234", False, "no_answer"),
    ("on-commas", "She pays 1,234 dollars in total.", "1234", True, "correct"),
    ("on-decimal-money", "It costs $18.00 in all.", "18", True, "correct"),
    ("on-negative", "The change is -7 degrees.", "-7", True, "correct"),
    ("on-binary-minus", "We compute 12-5 = 7. The answer is 7", "7", True, "correct"),
    ("on-last-not-first", "First 3, then 4, finally 9.", "3", True, "wrong"),
    ("on-box-wins", "The answer is $\\boxed{5}$, not 7", "7", True, "wrong"),
    ("on-no-number", "I do not know.", "7", True, "no_answer"),
    ("on-after-think-only", "<think>it is 7</think>I am not sure.", "7", True, "no_answer"),
    ("on-truncated-box", "The answer is $\\boxed{7", "7", True, "no_answer"),
]


@pytest.mark.parametrize(
    ("completion", "gold", "fallback", "verdict"), [c[1:] for c in FALLBACK], ids=[c[0] for c in FALLBACK]
)
def test_last_number_fallback(completion, gold, fallback, verdict):
    assert verify_math(completion, gold, fallback_last_number=fallback).verdict == verdict


def test_row_fields_are_absorbed_and_the_row_can_ask_for_the_fallback():
    row = {"id": "gsm8k/1", "problem": "?", "task": "math", "completion": "So 42 apples.", "answer": "42"}
    assert verify_math(**row).verdict == "no_answer"
    assert verify_math(**row, fallback_last_number=True).verdict == "correct"


def test_empty_gold_is_an_error_not_a_reward():
    assert verify_math(boxed("5"), "  ").verdict == "error"


# --- equivalence ----------------------------------------------------------------------------------------------------

# (gold, boxed prediction, equivalent?)
EQUIVALENCE = [
    # fractions and decimals
    ("\\frac{1}{2}", "0.5", True),
    ("0.5", "\\dfrac{1}{2}", True),
    ("\\frac12", "1/2", True),
    ("\\frac{1}{2}", "\\tfrac{2}{4}", True),
    ("\\frac{1}{2}", "0.52", False),
    ("\\frac{7}{2}", "3\\frac{1}{2}", True),
    ("25", "025", True),
    ("10", "10.0", True),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True),
    # radicals
    ("\\sqrt{18}", "3\\sqrt{2}", True),
    ("\\sqrt{18}", "3\\sqrt{3}", False),
    ("2\\sqrt2", "\\sqrt{8}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True),
    # polynomial identities
    ("(x+1)^2", "x^2+2x+1", True),
    ("(x+1)^2", "x^2+2x+2", False),
    # \dfrac, \left/\right, spacing
    ("\\frac{1}{2}", "\\left(\\dfrac{1}{2}\\right)", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("\\frac{1}{2}", "\\frac{1}{2}\\!", True),
    ("12", "1\\,2", False),
    # units and \text{}
    ("5", "5\\text{ cm}", True),
    ("5", "5 \\mbox{ inches}", True),
    ("5", "5\\text{ cm}^2", True),
    ("5", "6\\text{ cm}", False),
    ("\\text{Devon}", "\\text{Devon}", True),
    ("\\text{even}", "\\text{odd}", False),
    # thousands separators, but a parenthesised pair stays a tuple
    ("1000", "1,000", True),
    ("1,000", "1000", True),
    ("1000", "1{,}000", True),
    ("1000000", "1,000,000", True),
    ("(1,2)", "(1,2)", True),
    ("(1,2)", "12", False),
    # x = 3 against 3
    ("3", "x = 3", True),
    ("3", "x = 4", False),
    ("x=3", "3", True),
    ("y = 2x+1", "2x+1", True),
    # degrees, percent, dollars
    ("30", "30^\\circ", True),
    ("30^\\circ", "30", True),
    ("30", "30^{\\circ}", True),
    ("50", "50\\%", True),
    ("50\\%", "50", True),
    ("0.125", "12.5\\%", False),  # a percent is its number as written (issue 21): 12.5, not 0.125
    ("12.5", "13.5\\%", False),
    ("5", "\\$5", True),
    ("\\$18.90", "18.9", True),
    ("5", "\\$6", False),
    # intervals: which ends are open matters
    ("(0,1]", "(0,1]", True),
    ("(0,1]", "[0,1]", False),
    ("[0,1)", "[0,1]", False),
    ("(-\\infty,0)\\cup(1,\\infty)", "(1,\\infty)\\cup(-\\infty,0)", True),
    # tuples: order matters
    ("(1,2)", "(2,1)", False),
    ("(1,2,3)", "(1,3,2)", False),
    ("(1,2,3)", "\\left(1, 2, 3\\right)", True),
    # sets: order does not
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\{1,2\\}", "\\{2,3\\}", False),
    ("1, 2, 3", "3, 2, 1", True),
    ("\\pm 2", "2, -2", True),
    # matrices
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}", False),
    # multiple-choice letters
    ("\\text{(B)}", "B", True),
    ("\\text{(B)}", "(B)", True),
    ("B", "\\text{(B)}", True),
    ("B", "\\textbf{(B)}", True),
    ("\\text{(B)}", "C", False),
    ("\\text{(B)}", "\\text{(C)}", False),
    # other
    ("\\pi", "\\pi", True),
    ("12\\pi", "12 \\pi", True),
    ("120", "5!", True),
    ("10", "\\binom{5}{2}", True),
    ("\\infty", "\\infty", True),
]


@pytest.mark.parametrize(("gold", "pred", "equivalent"), EQUIVALENCE, ids=[f"{g} vs {p}" for g, p, _ in EQUIVALENCE])
def test_equivalence(gold, pred, equivalent):
    assert verify_math(boxed(pred), gold).verdict == ("correct" if equivalent else "wrong")


# (case id, gold, boxed prediction, verdict): false positives removed (issue 11), with the nearby cases that stay right.
# A comma then a space separates list items; a comma between groups of three digits (no space) is a thousands
# separator, on either side; a plain number never matches a list. Only a name may stand left of a dropped `=`.
FALSE_POSITIVES = [
    ("comma-list-as-number", "32349", "32, 349", "wrong"),
    ("list-gold-2100", "-2, 100", "-2100", "wrong"),
    ("list-gold-3125", "3, 125", "3125", "wrong"),
    ("list-gold-10100", "10, 100", "10100", "wrong"),
    ("list-gold-thousands-pred", "3, 125", "3,125", "wrong"),
    ("list-pred-for-number-gold", "10100", "10, 100", "wrong"),
    ("assigned-list-as-number", "32349", "x = 32, 349", "wrong"),
    ("thousands-comma", "32349", "32,349", "correct"),
    ("thousands-comma-gold", "1,000", "1000", "correct"),
    ("thousands-math-style", "32349", "32,\\! 349", "correct"),
    ("thousands-si-space", "1000", "1 000", "correct"),
    ("two-digits-spaced", "12", "1 2", "wrong"),
    ("false-equation", "5", "2+2=5", "wrong"),
    ("equation-chain", "5", "1=2=3=4=5", "wrong"),
    ("assignment-chain", "5", "x = 4 = 5", "wrong"),
    ("expression-equals", "5", "2x = 5", "wrong"),
    ("name-text", "5", "\\text{area} = 5", "correct"),
    ("name-subscript", "5", "a_n = 5", "correct"),
    ("name-greek", "\\frac{\\pi}{2}", "\\theta = \\frac{\\pi}{2}", "correct"),
    ("name-function", "x^2+1", "f(x) = x^2 + 1", "correct"),
    ("name-tuple", "(5, 8)", "(x, y) = (5, 8)", "correct"),
]


@pytest.mark.parametrize(
    ("gold", "pred", "verdict"), [c[1:] for c in FALSE_POSITIVES], ids=[c[0] for c in FALSE_POSITIVES]
)
def test_false_positives(gold, pred, verdict):
    assert verify_math(boxed(pred), gold).verdict == verdict


# --- where plain math-verify is wrong -------------------------------------------------------------------------------

# (case id, completion, gold, our verdict). Plain math-verify (the recommended `verify(parse("$gold$"), parse(text))`,
# or `parse(gold)` for a gold stored as bare LaTeX) gets each of these wrong; test_plain_math_verify_gets_these_wrong
# shows that, so if a math-verify upgrade fixes one, the workaround here may be dropped.
BEYOND = [
    ("hedging-rewarded", "It is $\\boxed{2}$. Or maybe the answer is $\\boxed{3}$.", "3", "wrong"),
    ("box-in-unclosed-think", "<think>so the answer is $\\boxed{5}$ hmm", "5", "no_answer"),
    ("box-only-in-think", "<think>so $\\boxed{5}$</think> I am not sure.", "5", "no_answer"),
    ("thin-space-thousands", boxed("1\\,000"), "1000", "correct"),
    ("frac-shorthand-command", boxed("\\frac\\pi2"), "\\frac{\\pi}{2}", "correct"),
    ("trailing-period-in-box", "so $\\boxed{5.}$", "5", "correct"),
    ("choice-with-value", boxed("\\textbf{(C) } 12"), "\\text{(C)}", "correct"),
    ("fbox", "The answer is \\fbox{5}", "5", "correct"),
    ("decimal-percent", boxed("12.5\\%"), "12.5", "correct"),
    ("decimal-percent-gold", boxed("12.5"), "12.5\\%", "correct"),
]
# (case id, completion, bare LaTeX gold as a dataset stores it, our verdict)
BEYOND_BARE_GOLD = [
    ("bare-gold-unparsed", boxed("3\\sqrt{2}"), "\\sqrt{18}", "correct"),
    ("bare-gold-braced-comma", boxed("1"), "1{,}000", "wrong"),
    ("bare-gold-list-read-as-decimal", boxed("2.4"), "2,4", "wrong"),
    ("bare-gold-tuple-unparsed", boxed("(1,2)"), "(1,2)", "correct"),
]


@pytest.mark.parametrize(
    ("completion", "gold", "verdict"),
    [c[1:] for c in BEYOND + BEYOND_BARE_GOLD],
    ids=[c[0] for c in BEYOND + BEYOND_BARE_GOLD],
)
def test_beyond_math_verify(completion, gold, verdict):
    assert verify_math(completion, gold).verdict == verdict


@pytest.mark.parametrize(
    ("completion", "gold", "verdict", "wrap"),
    [(*c[1:], True) for c in BEYOND] + [(*c[1:], False) for c in BEYOND_BARE_GOLD],
    ids=[c[0] for c in BEYOND + BEYOND_BARE_GOLD],
)
def test_plain_math_verify_gets_these_wrong(completion, gold, verdict, wrap):
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    plain = verify(
        parse(f"${gold}$" if wrap else gold, parsing_timeout=None),
        parse(completion, parsing_timeout=None),
        timeout_seconds=None,
    )
    assert plain != (verdict == "correct")


# --- one reading per answer, and right answers kept (issue 21) ------------------------------------------------------

# (case id, gold, boxed prediction, verdict). Rows named `keep-...` guard against an over-eager fix; every other row
# was judged the other way before issue 21.
ONE_READING = [
    # Percent: a % (or `percent`, `pct`) is the number as written, in the gold as in the prediction. So `50\%` is 50,
    # never 0.5: a model unsure between the two cannot win both by writing the percent.
    ("percent-pred-not-decimal-gold", "0.5", "50\\%", "wrong"),
    ("percent-gold-not-decimal-pred", "50\\%", "0.5", "wrong"),
    ("percent-gold-not-fraction-pred", "50\\%", "\\frac{1}{2}", "wrong"),
    ("keep-percent-pred-number-gold", "50", "50\\%", "correct"),
    ("keep-percent-gold-number-pred", "50\\%", "50", "correct"),
    ("keep-percent-word", "50", "50 percent", "correct"),
    # Text after the answer is dropped only when it is a unit; text with another number or a hedging word is a
    # second candidate, wrong whichever candidate is the gold.
    ("or-in-text-first", "3", "3\\text{ (or 5)}", "wrong"),
    ("keep-or-in-text-second", "5", "3\\text{ (or 5)}", "wrong"),
    ("or-between-units-first", "5", "5\\text{ cm or }6\\text{ cm}", "wrong"),
    ("keep-or-between-units-second", "6", "5\\text{ cm or }6\\text{ cm}", "wrong"),
    ("number-in-unit-text", "3", "3\\text{ cm (5 cm)}", "wrong"),
    ("number-in-text", "3", "3\\text{ (5)}", "wrong"),
    ("hedge-word-in-text", "4", "4 \\text{ (maybe 5)}", "wrong"),
    ("keep-or-between-tuples", "(2, 3)", "(2, 3) \\text{ or } (3, 2)", "wrong"),
    ("keep-unit-text", "5", "5\\text{ cm}", "correct"),
    ("keep-unit-words", "4", "4\\text{ square units}^2", "correct"),
    ("keep-or-joins-roots", "3, 5", "x = 3 \\text{ or } x = 5", "correct"),
    # A chain in one box is the gold when every member is (a name may lead): a false chain stays wrong.
    ("chain-binomial", "10", "\\binom{5}{2} = 10", "correct"),
    ("chain-log", "3", "\\log_2 8 = 3", "correct"),
    ("chain-euler", "-1", "e^{i\\pi} = -1", "correct"),
    ("chain-after-name", "5", "x = \\frac{10}{2} = 5", "correct"),
    ("chain-function-value", "5", "f(2) = 5", "correct"),
    ("chain-angle-name", "30", "\\angle ABC = 30^\\circ", "correct"),
    ("keep-false-chain-last-right", "11", "\\binom{5}{2} = 11", "wrong"),
    ("keep-false-chain-first-right", "10", "\\binom{5}{2} = 11", "wrong"),
    ("keep-false-sum", "5", "2+2=5", "wrong"),
    ("keep-name-then-false-chain", "5", "x = 4 = 5", "wrong"),
    # Scientific notation is an exact number; two decimals agree to 6 places *and* 6 significant digits.
    ("e-notation-times-ten", "3.54\\times10^{-7}", "3.54e-07", "correct"),
    ("e-notation-decimal", "0.000000354", "3.54e-07", "correct"),
    ("e-notation-gold", "3.54e-07", "3.54 \\cdot 10^{-7}", "correct"),
    ("e-notation-million", "1000000", "1e6", "correct"),
    ("e-notation-padded", "0.2", "2e-01", "correct"),
    ("tiny-decimals-differ", "0.000000354", "0.0000005", "wrong"),
    ("keep-tiny-e-notation-differs", "3.54\\times10^{-7}", "5e-07", "wrong"),
    ("keep-e-is-euler", "0.2", "2e-1", "wrong"),  # 2e - 1 in LaTeX
    ("keep-rounded-third", "\\frac{1}{3}", "0.333333", "correct"),
    ("keep-too-rough-third", "\\frac{1}{3}", "0.33", "wrong"),
    ("keep-decimal-comma-after-zero", "0,111", "0.111", "correct"),
    ("zero-group-is-no-thousands", "0,111", "111", "wrong"),
    # Degrees inside a trig argument are degrees (elsewhere the sign is a unit and dropped).
    ("degrees-in-trig", "\\cos x", "\\sin(90^{\\circ}-x)", "correct"),
    ("degrees-in-trig-value", "\\frac{1}{2}", "\\sin 30^\\circ", "correct"),
    ("degrees-in-trig-left-right", "\\frac{\\sqrt3}{2}", "\\cos\\left(30^{\\circ}\\right)", "correct"),
    ("degrees-in-trig-gold", "\\sin 30^\\circ", "\\frac12", "correct"),
    ("keep-radians-in-trig", "\\cos x", "\\sin(90 - x)", "wrong"),
    ("keep-degrees-alone", "30", "30^\\circ", "correct"),
    # A multiple-choice gold with its option's text: the letter decides (or the text alone); a wrong letter loses.
    ("choice-letter", "(D) Alina", "D", "correct"),
    ("choice-letter-parens", "(D) Alina", "(D)", "correct"),
    ("choice-text-only", "(D) Alina", "Alina", "correct"),
    ("choice-letter-dot-text", "(D) Alina", "D. Alina", "correct"),
    ("choice-bare-gold-letter", "C Cecile", "C", "correct"),
    ("choice-bare-gold-text", "C Cecile", "Cecile", "correct"),
    ("choice-value", "\\textbf{(C) } 12", "12", "correct"),
    ("keep-choice-after-name", "\\text{(C)}", "x = \\text{(C)}", "correct"),
    ("keep-choice-or-hedge", "\\text{(C)}", "\\text{(C)}\\text{ or }7", "wrong"),
    ("keep-choice-full", "(D) Alina", "\\text{(D) Alina}", "correct"),
    ("keep-choice-wrong-letter-right-text", "(D) Alina", "\\text{(C) Alina}", "wrong"),
    ("keep-choice-wrong-letter", "C Cecile", "D", "wrong"),
    ("keep-choice-right-letter-wrong-text", "(D) Alina", "(D) Bob", "wrong"),
    ("keep-choice-wrong-letter-value", "\\textbf{(C) } 12", "(B) 12", "wrong"),
    ("keep-choice-two-letters-gold", "B and C", "B", "wrong"),
    # Plain-text math, as prediction or gold, against its LaTeX form.
    ("plain-pi-over-2", "\\frac{\\pi}{2}", "pi/2", "correct"),
    ("plain-exp", "e^{16}", "exp(16)", "correct"),
    ("plain-times-pi", "-2\\pi", "-2*pi", "correct"),
    ("keep-plain-sqrt", "\\frac{\\sqrt{2}}{2}", "sqrt(2)/2", "correct"),
    ("plain-gold-pi", "pi/2", "\\frac{\\pi}{2}", "correct"),
    ("plain-gold-exp", "exp(16)", "e^{16}", "correct"),
    ("plain-gold-times-pi", "-2*pi", "-2\\pi", "correct"),
    ("keep-plain-differs", "\\frac{\\pi}{2}", "pi/3", "wrong"),
    # A mixed number: a whole number, a space, a proper fraction.
    ("mixed-slash", "\\frac{3}{2}", "1 1/2", "correct"),
    ("mixed-negative", "-\\frac{3}{2}", "-1 1/2", "correct"),
    ("mixed-gold", "1 1/2", "1.5", "correct"),
    ("keep-mixed-frac", "\\frac{3}{2}", "1\\frac{1}{2}", "correct"),
    ("keep-mixed-differs", "\\frac{3}{2}", "1 1/3", "wrong"),
    # Units without \text.
    ("bare-unit-squared", "10", "10 cm^2", "correct"),
    ("keep-bare-unit-square-word", "10", "10 square feet", "correct"),
    ("bare-unit-square-metres", "10", "10 m^2", "correct"),
    ("bare-unit-superscript", "10", "10 cm²", "correct"),
    ("keep-bare-unit-wrong-number", "10", "11 cm^2", "wrong"),
    ("keep-unit-mathrm-tilde", "10", "10 \\mathrm{~cm}^{2}", "correct"),
    ("keep-variable-not-unit", "2", "2 x", "wrong"),
    ("imaginary-not-unit", "5", "2+3\\mathrm{i}", "wrong"),
    ("upright-imaginary-unit", "2+3i", "2+3\\text{i}", "correct"),
]


@pytest.mark.parametrize(("gold", "pred", "verdict"), [c[1:] for c in ONE_READING], ids=[c[0] for c in ONE_READING])
def test_one_reading_per_answer(gold, pred, verdict):
    assert verify_math(boxed(pred), gold).verdict == verdict


# The two golds a percent could stand for, and predictions a hedging model might write for either.
PERCENT_GOLDS = ("50", "0.5")
PERCENT_PREDICTIONS = ["50\\%", "50 \\%", "50%", "50 percent", "\\text{50\\%}", "50", "0.5", "\\frac{1}{2}", "5e1"]


@pytest.mark.parametrize("pred", PERCENT_PREDICTIONS)
def test_no_prediction_matches_both_percent_readings(pred):
    credited = [gold for gold in PERCENT_GOLDS if verify_math(boxed(pred), gold).verdict == "correct"]
    assert len(credited) <= 1, credited


# --- helpers --------------------------------------------------------------------------------------------------------

EXTRACT = [
    ("none", "no box here", []),
    ("order", "\\boxed{1} then \\fbox{2} then \\boxed 3", ["1", "2", "3"]),
    ("nested", "\\boxed{\\frac{1}{\\sqrt{2}}}", ["\\frac{1}{\\sqrt{2}}"]),
    ("escaped-braces", "\\boxed{\\{1,2\\}}", ["\\{1,2\\}"]),
    ("space-before-brace", "\\boxed {5}", ["5"]),
    ("empty", "\\boxed{} and \\boxed{ }", ["", ""]),
    ("unclosed-last", "\\boxed{1} then \\boxed{2", None),
    ("not-a-box-command", "\\boxedfoo{1}", []),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in EXTRACT], ids=[c[0] for c in EXTRACT])
def test_extract_boxed_answers(text, expected):
    assert extract_boxed_answers(text) == expected


ANSWER_KEYS = [
    ("fraction", boxed("\\dfrac{1}{2}"), "1/2"),
    ("decimal", boxed("0.5"), "1/2"),
    ("slash", boxed("1/2"), "1/2"),
    ("thousands", boxed("1,000"), "1000"),
    ("assignment", boxed("x = 3"), "3"),
    ("units", boxed("5\\text{ cm}"), "5"),
    ("choice", boxed("\\textbf{(B)}"), "B"),
    ("spacing", boxed("\\left( 1, 2 \\right)"), "(1,2)"),
    ("two-answers", "$\\boxed{2}$ and $\\boxed{3}$", "2,3"),
    ("no-answer", "I give up.", None),
    ("unclosed-think", "<think>$\\boxed{5}$", None),
    ("after-think", "<think>$\\boxed{4}$</think>$\\boxed{5}$", "5"),
]


@pytest.mark.parametrize(("completion", "key"), [c[1:] for c in ANSWER_KEYS], ids=[c[0] for c in ANSWER_KEYS])
def test_answer_key(completion, key):
    assert answer_key(completion) == key


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{" + "(" * 20_000 + "3" + ")" * 20_000 + "}",
        "\\boxed{" + "\\frac{1}{" * 12_000 + "1" + "}" * 12_000 + "}",
    ],
    ids=["20000-parens", "12000-nested-fracs"],
)
@pytest.mark.timeout(
    60
)  # answer_key runs in the eval's own process, with no pool to bound it (these took 14.6 s and 62 s)
def test_answer_key_is_bounded(completion):
    assert answer_key(completion) is None  # too long to canonicalize: no vote


@pytest.mark.timeout(60)
def test_answer_key_of_long_answers_near_the_cap_still_votes():
    nest = "\\frac{1}{" * 180 + "1" + "}" * 180  # just under MAX_KEY_CHARS
    assert answer_key(boxed(nest)) is not None and answer_key(boxed("(" * 900 + "3" + ")" * 900)) == "3"


def test_answer_key_fallback():
    assert answer_key("The total is 1,234.") is None
    assert answer_key("The total is 1,234.", fallback_last_number=True) == "1234"


def test_last_number():
    assert last_number("a 1,234,567.5 b") == "1234567.5"
    assert last_number("from 3-5 pages") == "5"
    assert last_number("x2 and none") is None


# --- MATH-500 -------------------------------------------------------------------------------------------------------

# Reference solutions that do not verify against their own answer because the dataset is wrong: none so far.
MATH500_DATASET_ERRORS: dict[str, str] = {}
# Mutated solutions still judged correct because the mutant happens to be equivalent: none so far.
MATH500_EQUIVALENT_MUTANTS: dict[str, str] = {}


@pytest.fixture(scope="module")
def math500() -> list[dict]:
    if not MATH500.is_file():
        pytest.skip(f"MATH-500 not found at {MATH500} (the shared/data folder beside the checkout)")
    return [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]


def replace_boxes(solution: str, new: str) -> str:
    """The solution with the content of every \\boxed{...} replaced by new."""
    out, pos = [], 0
    for m in re.finditer(r"\\boxed\s*\{", solution):
        if m.start() < pos:
            continue
        depth, i = 0, m.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(solution[i], 0)
            if depth == 0:
                break
            i += 1
        out += [solution[pos : m.end()], new]
        pos = i
    return "".join(out) + solution[pos:]


def test_math500_reference_solutions_verify(math500):
    assert len(math500) == 500
    failures = {
        row["id"]: verify_math(row["solution"], row["answer"])
        for row in math500
        if row["id"] not in MATH500_DATASET_ERRORS
    }
    failures = {k: v for k, v in failures.items() if v.verdict != "correct"}
    assert not failures, failures


def test_math500_mutated_solutions_fail(math500):
    failures = {}
    for i, row in enumerate(math500):
        gold = row["answer"]
        if re.fullmatch(r"-?\d+", gold):
            mutant = str(int(gold) + 1)
        else:  # the next row's answer with a different key
            j = (i + 1) % len(math500)
            while answer_key(boxed(math500[j]["answer"])) == answer_key(boxed(gold)):
                j = (j + 1) % len(math500)
            mutant = math500[j]["answer"]
        result = verify_math(replace_boxes(row["solution"], mutant), gold)
        if result.verdict != "wrong" and row["id"] not in MATH500_EQUIVALENT_MUTANTS:
            failures[row["id"]] = (gold, mutant, result)
    assert len(failures) <= 5, failures  # a very high share; the allow-list above names the known exceptions
    assert not failures, failures


@pytest.mark.timeout(120)  # against catastrophic slowdowns only; speed is measured in benchmarks/verifiers.py
def test_math500_reference_solutions_are_all_correct(math500):
    assert all(verify_math(row["solution"], row["answer"]).verdict == "correct" for row in math500)


# --- pathological inputs through the pool ---------------------------------------------------------------------------

TIMEOUT = 2.0
NEST = "\\frac{" * 200 + "1" + "}{2}" * 200
PATHOLOGICAL = [
    ("deep-nesting", f"$\\boxed{{{NEST}}}$", "1"),
    ("deep-nesting-gold", "$\\boxed{1}$", NEST),
    ("power-tower", "$\\boxed{2^{2^{2^{2^{2^{2}}}}}}$", "1"),
    ("power-tower-gold", "$\\boxed{3}$", "2^{2^{2^{2^{2^{2}}}}}"),
    ("power-tower-vs-float", "$\\boxed{9^{9^{9^{9}}}}$", "1.5"),
    ("thousands-of-digits", f"$\\boxed{{{'9' * 5000}}}$", "9" * 4999 + "8"),
    ("long-decimal", f"$\\boxed{{0.{'3' * 5000}7}}$", "\\frac{1}{4}"),
    ("huge-factorial", "$\\boxed{1000000!}$", "2"),
    ("huger-factorial", "$\\boxed{(10^{10})!}$", "1"),
    ("deep-braces", "$\\boxed{" + "{" * 5000 + "5" + "}" * 5000 + "1}$", "5"),
    ("many-boxes", " ".join(f"\\boxed{{{i}^{{{i}}}}}" for i in range(2000)), "5"),
    ("megabyte-of-text", "x " * 500_000 + "\\boxed{6}", "5"),
]


@pytest.fixture(scope="module")
def pool():
    from distill.verifiers.pool import VerifierPool

    with VerifierPool(workers=2, timeout=TIMEOUT) as verifier_pool:
        yield verifier_pool.warm_up()


def test_warm_up_starts_every_worker_before_any_row():
    import psutil

    from distill.verifiers.pool import VerifierPool

    def processes() -> set[int]:
        return {p.pid for p in psutil.Process().children(recursive=True)}

    before = processes()
    with VerifierPool(workers=2, timeout=TIMEOUT) as fresh:
        assert len(processes() - before) == 0  # the pool starts its workers lazily...
        fresh.warm_up()
        assert len(processes() - before) >= 2  # ...and warm_up starts them all now, not during sampling


@pytest.mark.parametrize(("completion", "gold"), [c[1:] for c in PATHOLOGICAL], ids=[c[0] for c in PATHOLOGICAL])
@pytest.mark.timeout(120)
def test_pathological_inputs_come_back_bounded_through_the_pool(pool, completion, gold):
    (result,) = pool.map([{"task": "math", "completion": completion, "answer": gold}])
    assert result.verdict in {"timeout", "wrong"}, result
    assert result.reward == 0.0
    # The pool keeps working: a normal row right after is still judged correct.
    (after,) = pool.map([{"task": "math", "completion": boxed("\\frac{1}{2}"), "answer": "0.5"}])
    assert after.verdict == "correct", after


def test_pool_keeps_order_with_pathological_rows_mixed_in(pool):
    rows = []
    for i, (_, completion, gold) in enumerate(PATHOLOGICAL[:4]):
        rows += [{"task": "math", "completion": completion, "answer": gold}]
        rows += [{"task": "math", "completion": boxed(str(i)), "answer": str(i)}]
    results = list(pool.map(rows))
    assert [r.verdict == "correct" for r in results] == [False, True] * 4

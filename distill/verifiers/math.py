"""Math answer verification: the reward for rejection sampling, evaluation and GRPO.

Policy (followed exactly; each line has a test in tests/verifiers/test_math.py):

* Think block. Where a completion opens a `<think>` block, the answer is looked for only after the closing
  `</think>`; a `<think>` never closed has no answer; a completion without any think block is judged whole
  (`base.answer_part`; a lone `</think>`, as in a prefilled template, counts as a closed block).
* Final answer. The content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5` without braces) of the
  answer part, with nested braces matched. A `\\boxed{` that never closes (truncated output) is no answer, and so
  is a completion whose only boxes are empty (`\\boxed{}`). Minerva's `The final answer is $X$`, after every box
  (or with none), is the final answer alone.
* Several boxes. Boxes that all hold the same answer (in any equivalent forms) are that answer. Boxes that together
  make a list, set or tuple gold, one box per item, are correct: in any order for a list or set of solutions
  (`\\boxed{-2} and \\boxed{1}` for `-2, 1`; `\\boxed{(2, 2)}`, `\\boxed{(6, 2)}` for `(2, 2), (6, 2)`), in order
  for a tuple (`(2, 3)`; with an infinite end it is an interval, never split), two roots for a `\\pm` gold. Any
  other different boxes are hedging, with no credit (verdict `wrong`, "hedged"): listing candidates for one answer
  is a reward hack. (This replaced the rule "box a multi-part answer as one".)
* Lists are not numbers. A comma then a space separates list items: `32, 349` is a list, never 32349. A comma
  between groups of three digits, with no space, is a thousands separator (`1,000`, `32,349`, MATH's `32,\\! 349`;
  SI's `1 000` too), in the gold as in the prediction (such a gold is one number, never split into boxes). A plain
  number never matches a list (`-2100`, `3125`, `10100` against `-2, 100`, `3, 125`, `10, 100`), and there is no
  decimal comma (`1,22` is a list) but after a lone 0 (`0,111` is 0.111: no whole number is written so).
* One answer, one reading: no prediction may match two golds that differ only by how the prediction is read.
  - Percent: a `%` (`\\%`, `percent`, `pct`) is the number as written, in the gold as in the prediction: `50\\%`
    matches 50 and `50\\%`, never 0.5 or `\\frac12`; and 0.5 does not match a `50\\%` gold. (The conformance cases
    label `28` right for `28\\%` and `20 \\%` right for 20; none asks for the fraction reading.)
  - Hedged text: text after the answer is dropped only when it is a unit (`5\\text{ cm}^2`, `10 cm^2`, `10 m^2`,
    `4\\text{ square units}`). A hedging word (`or`, `maybe`, `either`, ...) or a `\\text{}` holding a number beside
    the answer's own (`3\\text{ (or 5)}`, `5\\text{ cm or }6\\text{ cm}`, `3\\text{ (5)}`) is a second candidate: wrong,
    whichever candidate the gold is, unless the gold is a list (`x = 3 \\text{ or } x = 5` for `3, 5`).
  - Numbers: two plain numbers are compared exactly, or, where one is written as a decimal, to 6 places *and* 6
    significant digits (0.333333 is 1/3, but 5e-07 is not 3.54e-07). Scientific notation is exact (`3.54e-07`,
    `3.54\\times10^{-7}`); an integer mantissa with a signed exponent (`2e-1`) is Euler's e, `2e - 1`.
  - Degrees are a unit (`30^\\circ` is 30) except inside a trig argument, where they convert to radians
    (`\\sin(90^\\circ - x)` is `\\cos x`, `\\sin 30^\\circ` is 1/2).
  - Multiple choice: a gold `(D) Alina` / `C Cecile` / `\\textbf{(C) } 12` is its letter; the letter (`D`, `(D)`,
    `D. Alina`) or the option's text alone (`Alina`) is right; a different letter is wrong whatever text follows;
    two letters (`B and C`) are no single choice.
  - Plain text reads as LaTeX (`pi/2`, `exp(16)`, `sqrt(2)`, `-2*pi`, `2**3`), in the gold as in the prediction; a
    mixed number is a whole number and a proper fraction (`1 1/2`, `1\\frac{1}{2}`: 3/2); `i` (and `\\mathrm{i}`) is
    the imaginary unit.
* Equations. A chain in one box (`\\binom{5}{2} = 10`, `\\log_2 8 = 3`, `e^{i\\pi} = -1`) is the gold when every
  member is, where the gold is not itself a relation; a leading name is dropped (`x`, `a_n`, `\\theta`,
  `\\text{area}`, `f(x)`, `f(2)`, `(x, y)`): `x = 3` and `x = \\frac{6}{2} = 3` are 3, but `2+2=5`, `1=2=3=4=5` and
  `x = 4 = 5` are not 5.
* Equivalence is mathematical: math-verify (latex2sympy + sympy) decides, after a cheap canonical-string fast
  path that also covers its gaps: fractions/decimals, radicals, polynomial identities, `\\dfrac`, `\\left`/`\\right`,
  spacing, units, thousands separators (also `1{,}000`, `1\\,000`; a parenthesised `(1,2)` stays a tuple), degrees,
  percent, dollar signs, intervals (open/closed ends matter), tuples (order matters), sets and lists (order does
  not), matrices, multiple-choice letters (`(B)`, `\\text{(B)}`, `B`, `\\textbf{(B) } 12`). Gold answers may be bare
  LaTeX (`\\sqrt{18}`): they are parsed directly, not searched for.
* Plain-number fallback (GSM8K style: the last number in the answer part, commas removed) only when
  `fallback_last_number=True`, and only when the answer part has no `\\boxed` (nor a final-answer statement) at all.
* Verdicts: reward 1.0 only for `correct`; `no_answer` when no final answer can be extracted; `wrong` otherwise.

Where other projects' labels say otherwise (tests/verifiers/test_math_conformance.py lists each case): a list of
answers is a set, so `4, 10, -2` matches `10, 4, -2` (MATH's string test says not); there is no decimal comma, so
`1000,99` is not 1000.99 (Math-Verify's label says it is); and Math-Verify's label that `1 + \\frac{1}{\\mathrm{e}}`
equals `1 - \\frac{1}{\\mathrm{e}}` is wrong.

`verify_math` is pure and has no timeout of its own (math-verify's signal-based timeouts are disabled): sympy can
hang on inputs like power towers, so callers run it in `distill.verifiers.pool`, which kills and replaces a worker
that overruns its CPU-time bound. `answer_key` runs in the caller's process and is bounded by size instead.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

import math_verify.grader
from latex2sympy2_extended.latex2sympy2 import NormalizationConfig, latex2sympy, normalize_latex
from math_verify import verify
from math_verify.grader import is_equation, is_relation, should_treat_as_complex
from math_verify.parser import get_last_eq
from sympy import Eq, I, Symbol, Tuple
from sympy.core.function import AppliedUndef

from distill.verifiers.base import Verdict, answer_part, correct, error, no_answer, wrong
from distill.verifiers.latex import BOX_CMD, brace_args, closers, extract_boxed_answers, split_top, strip_parens, unbox
from distill.verifiers.math_text import (
    TEXT_WRAPPER,
    choice,
    close,
    drop_percent,
    drop_unit,
    hedged,
    mixed_numbers,
    plain_to_latex,
    scientific,
    split_equals,
    trig_degrees,
    upright_constants,
)

__all__ = ["answer_key", "extract_boxed_answers", "last_number", "verify_math"]

# Timeouts are disabled on purpose (the pool bounds time); skip math-verify's once-per-process warning about it.
math_verify.grader.TIMEOUT_WARNING_SHOWN = True

# math-verify's own normalisation for LaTeX answers, minus box extraction (we have already unboxed).
_NORMALIZATION = NormalizationConfig(
    basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="none", equations=False
)
MAX_DISTINCT_BOXES = 8  # more distinct boxed answers than this is hedging whatever the gold; don't compare them all

_DFRAC = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
# A thin space (or `\ `, `~`) between digit groups is a thousands separator: 1\,000 -> 1000 (math-verify reads 1*0).
_THOUSANDS_SPACE = re.compile(r"(?<=\d)(?:\\[,;: ]|~)(?=\d{3}(?!\d))")
_DELIMS = re.compile(
    r"\\\$|\$|\\displaystyle|\\(?:left|right)(?:\.|(?![a-zA-Z]))|(?<!\\)\\[,;:! ]|\\q?quad(?![a-zA-Z])|~"
)
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\degree(?![a-zA-Z])|°")
# A space matters only between two letters (\pi r) or two digits (1 2 is not 12).
_SPACE = re.compile(r"(?<![A-Za-z\d]) | (?![A-Za-z\d])|(?<=[A-Za-z]) (?=\d)|(?<=\d) (?=[A-Za-z])")
_DECIMAL_COMMA = re.compile(r"[-+]?0,\d+")  # 0,111 is 0.111: no whole number is written with a leading 0 group
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACED_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")  # SI style: 1 000 000
_LISTED = re.compile(r",\s")  # a comma and a space separate the items of a list: `32, 349` is not 32349
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_SIMPLE_FRAC = re.compile(r"([-+]?)(\d*)(?:\\frac\{(\d+)\}\{(\d+)\}|(?<!\d)(\d+)/(\d+))")
_RATIONAL = re.compile(r"-?\d+(?:/\d+)?")  # the canonical form of an exact number
_INEXACT = re.compile(r"\.")  # a decimal may be rounded; a percent is its number as written, exact
_CHOICE = re.compile(r"\(([A-E])\)(?![A-Za-z]).*|([A-E])", re.DOTALL)
# `x`, `a_n`, `\\theta`, `\\text{area}` (unwrapped by then), `\\angle ABC`: a name, which may stand left of a dropped `=`.
_NAME = re.compile(r"(?:[A-Za-z]+|\\[a-zA-Z]+|m?\\angle ?[A-Z]{1,3})(?:_\{?\w+\}?)?")
_ASSIGNMENT = re.compile(rf"{_NAME.pattern} ?= ?([^=]+)")
# A gold that is itself a relation keeps its `=`: no chain reading of the prediction then.
_RELATION = re.compile(r"[=<>]|\\(?:le|ge|leq|geq|neq|ne|approx|in)(?![a-zA-Z])")
# Minerva's format, for a completion without a box: "Final Answer: The final answer is $10,455$. I hope it is ..."
_FINAL_ANSWER = re.compile(r"final answer is:?\s*\$\$?([^$]{1,1000})\$", re.IGNORECASE)  # bounded: linear scan
_QUAD = re.compile(r"^\\q?quad")  # `x_1 = 1,\quadx_2 = 2`: a list gold whose items are spaced by \quad
MAX_KEY_CHARS = 2000  # answer_key runs unbounded in the eval's own process: longer answers get no vote
# GSM8K-style numbers: 1,234.5 or -17; a minus only where it is not a binary minus (3-5 gives 5).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


@lru_cache(maxsize=8192)
def _prenormalize(s: str) -> str:
    """Meaning-preserving LaTeX cleanup shared by the fast path and the sympy path."""
    s = upright_constants(plain_to_latex(unbox(s.strip())))
    s = _DFRAC.sub(r"\\frac", s).replace("{,}", ",")
    s = re.sub(r"\\!\s*", "", s)  # MATH's thousands: 32,\! 349
    s = _THOUSANDS_SPACE.sub("", s)
    s = brace_args(s).rstrip()
    if s[-1:] in (".", ",", ";", ":") and s[-2:-1] not in (".", "\\"):  # sentence punctuation: \boxed{5.}
        s = s[:-1].rstrip()
    return mixed_numbers(drop_percent(trig_degrees(s)))


def _number(s: str, thousands: bool = True) -> Fraction | None:
    """The exact value of a plain number (12, -0.50, 1,000, 3/4, \\frac{3}{4}), or None."""
    try:
        if _DECIMAL_COMMA.fullmatch(s):
            return Fraction(s.replace(",", "."))
        if _DECIMAL.fullmatch(s) or (thousands and _THOUSANDS.fullmatch(s)):
            return Fraction(s.replace(",", ""))
        if (value := scientific(s)) is not None:
            return value
        if m := _SIMPLE_FRAC.fullmatch(s):  # whole part: a mixed number 3\frac{1}{2}, as latex2sympy reads it
            sign, whole, *parts = m.groups()
            num, den = (parts[0], parts[1]) if parts[0] is not None else (parts[2], parts[3])
            return (int(whole or 0) + Fraction(int(num), int(den))) * (-1 if sign == "-" else 1)
    except (ValueError, ZeroDivisionError):  # int() refuses more than 4300 digits; x/0
        pass
    return None


@lru_cache(maxsize=8192)
def _canon(s: str, drop_name: bool = False) -> str:
    """A canonical string: equal canons mean equivalent answers under the policy (units, %, degrees, $ ignored).

    drop_name: `x = 3` -> `3` (for a prediction where the gold is not itself an equation).
    """
    s = _DELIMS.sub(" ", _prenormalize(s))
    s = drop_unit(_DEGREE.sub("", s).strip())
    s = re.sub(r"\s+", " ", TEXT_WRAPPER.sub(r"\1", s)).strip()
    if drop_name and (m := _ASSIGNMENT.fullmatch(s)):
        s = m.group(1).strip()
    if _SPACED_THOUSANDS.fullmatch(s):
        s = s.replace(" ", "")
    listed = _LISTED.search(s) is not None
    s = strip_parens(_SPACE.sub("", s))
    if (value := _number(s, thousands=not listed)) is not None:
        return str(value)
    if m := _CHOICE.fullmatch(s):  # (B), \text{(B)}, B, \textbf{(B) } 12 -> B
        return m.group(1) or m.group(2)
    return s


@lru_cache(maxsize=4096)
def _to_sympy(latex: str, gold: bool = False):
    """math-verify's parse of one LaTeX answer (what it does to a match), or None; cached so the gold parses once.

    A gold that does not parse whole is tried as its last `= ...` part (`1 = \\zzz = x = 0`); a prediction is not.
    """
    text = normalize_latex(drop_unit(_prenormalize(latex)), _NORMALIZATION)
    for candidate in dict.fromkeys((text, get_last_eq(text) if gold else text)):
        try:
            real = not should_treat_as_complex(candidate)
            return latex2sympy(candidate, is_real=real, convert_degrees=False, normalization_config=None)
        except Exception:  # any parser failure just means "not parseable"
            continue
    return None


def _is_name(expr) -> bool:
    """A variable (`x`, `a_n`, `\\text{area}`) or a function at variables or numbers (`f(x)`, `f(2)`: the value
    asked for), not an expression (`2+2`)."""
    if isinstance(expr, AppliedUndef):  # f(x) =, f(2) =
        return all(_is_name(a) or a.is_number for a in expr.args)
    if isinstance(expr, Tuple):  # (x, y) =
        return all(_is_name(a) for a in expr.args)
    return isinstance(expr, Symbol)


def _is_number_vs_list(gold_canon: str, pred_canon: str) -> bool:
    """One side a plain number, the other a list (`-2100` against `-2, 100`): never equivalent, whatever sympy says."""
    return any(
        _RATIONAL.fullmatch(a) and len(split_top(b)) > 1
        for a, b in ((gold_canon, pred_canon), (pred_canon, gold_canon))
    )


def _plain(s: str) -> str:
    """The answer as plain words: delimiters and \\text wrappers gone, spaces collapsed."""
    s = TEXT_WRAPPER.sub(r"\1", _DELIMS.sub(" ", _prenormalize(s)))
    return re.sub(r"\s+", " ", s).strip()


def _choice_verdict(gold: str, pred: str) -> bool | None:
    """For a multiple-choice gold (`B`, `(D) Alina`, `C Cecile`): the letter decides, or the option's text alone;
    a different letter is wrong whatever text follows it. None when the gold is not a choice."""
    if (gold_choice := choice(_plain(gold))) is None:
        return None
    letter, text = gold_choice
    if (pred_choice := choice(_plain(pred))) is None:
        return bool(text) and _equivalent(text, pred)
    return pred_choice[0] == letter and (not text or not pred_choice[1] or _equivalent(text, pred_choice[1]))


def _is_name_text(member: str) -> bool:
    """Whether member is a name (`x`, `a_n`, `\\text{area}`, `f(x)`, `(x, y)`) that may stand left of an `=`."""
    canon = _canon(member)
    if _NAME.fullmatch(canon):
        return True
    if canon.startswith("(") and canon.endswith(")"):  # (x, y) =: latex2sympy reads (x, y) as an open interval
        return all(_NAME.fullmatch(name) for name in split_top(canon[1:-1]))
    expr = _to_sympy(member)
    return expr is not None and _is_name(expr)


def _chain_verdict(gold: str, pred: str) -> bool | None:
    """A chain (`\\binom{5}{2} = 10`, `x = 2 + 3 = 5`) is the gold when every member is, but a leading name; None
    when pred is no chain (or a list with `=` in it: `x = 1, y = 2`) or the gold is itself a relation."""
    if _RELATION.search(gold) or hedged(pred):  # `x = 3 \\text{ or } x = 5` is a list of roots, not a chain
        return None
    members = split_equals(_DELIMS.sub(" ", _prenormalize(pred)))
    if len(members) < 2 or not all(members) or any(len(split_top(m)) > 1 for m in members):
        return None
    if _is_name_text(members[0]):
        members = members[1:]
    return all(_equivalent(gold, m) for m in members)


def _with_imaginary_unit(expr):
    """`i` read as the imaginary unit (latex2sympy leaves it a plain symbol, so e^{i\\pi} was never -1)."""
    try:
        unit = [s for s in expr.free_symbols if s.name == "i"]
        return expr.subs({s: I for s in unit}) if unit else expr
    except Exception:  # an object without free symbols or one sympy cannot substitute into: leave it
        return expr


@lru_cache(maxsize=8192)
def _equivalent(gold: str, pred: str) -> bool:
    """Whether the answer pred is equivalent to gold: canonical strings first, then math-verify on sympy."""
    if hedged(_prenormalize(pred)) and not hedged(_prenormalize(gold)) and not _is_list(gold):
        return False  # a second candidate for one answer: `3\\text{ (or 5)}` (roots joined by `or` make a list)
    for rule in (_chain_verdict, _choice_verdict):  # the chain first: `x = \\text{(C)}` is the choice C
        if (verdict := rule(gold, pred)) is not None:
            return verdict
    gold_canon = _canon(gold)
    pred_canon = _canon(pred, drop_name="=" not in gold_canon)
    if gold_canon == pred_canon:
        return True
    if _is_number_vs_list(gold_canon, pred_canon):
        return False
    if _RATIONAL.fullmatch(gold_canon) and _RATIONAL.fullmatch(pred_canon):
        # Two plain numbers are decided here: exact ones must be equal; a decimal may round (0.333333 for 1/3).
        return _INEXACT.search(gold + pred) is not None and close(Fraction(gold_canon), Fraction(pred_canon))
    gold_expr, pred_expr = _to_sympy(gold, gold=True), _to_sympy(pred)
    if gold_expr is None or pred_expr is None:
        return False
    gold_expr, pred_expr = _with_imaginary_unit(gold_expr), _with_imaginary_unit(pred_expr)
    if is_equation(pred_expr) and not is_relation(gold_expr):  # only a name may stand left of a dropped `=`
        if not (isinstance(pred_expr, Eq) and _is_name(pred_expr.lhs)):
            return False  # `2+2=5`, `1=2=3=4=5`, `x = 4 = 5` are not the answer 5
        pred_expr = pred_expr.rhs
    try:
        return verify(gold_expr, pred_expr, timeout_seconds=None)
    except Exception:  # sympy can raise anything on odd input; not equivalent then
        return False


def last_number(text: str) -> str | None:
    """The last plain number in text with thousands commas removed (GSM8K style), or None."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def _short(s: str, limit: int = 40) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _stated(completion: str, fallback_last_number: bool) -> tuple[list[str], str]:
    """Every final answer the completion states, in order (its boxes, else Minerva's `final answer is $X$`, else
    maybe its last number), and where they come from; or [] and why there is none."""
    part = answer_part(completion)
    if part is None:
        return [], "unclosed <think>"
    boxes = extract_boxed_answers(part)
    if boxes is None:
        return [], "unclosed \\boxed{"
    stated = list(_FINAL_ANSWER.finditer(part))
    if stated and not BOX_CMD.search(part, stated[-1].start()):  # after every box: it supersedes them
        return [stated[-1].group(1).strip()], "final answer"
    if boxes:
        return boxes, "boxed"
    number = last_number(part) if fallback_last_number else None
    return ([number], "last number") if number is not None else ([], "no \\boxed{}")


def _final_answers(completion: str, fallback_last_number: bool, max_chars: int | None = None) -> tuple[list[str], str]:
    """The distinct answers (by canonical form, in order of appearance) and where they come from, or [] and why."""
    answers, source = _stated(completion, fallback_last_number)
    if max_chars is not None and sum(map(len, answers)) > max_chars:
        return [], f"answers over {max_chars} characters"
    if not answers:
        return [], source
    distinct = {_canon(b): b for b in reversed(answers) if b}  # last spelling of each answer wins
    if not distinct:
        return [], "empty \\boxed{}"
    return list(reversed(distinct.values())), source


def _gold_parts(gold: str) -> tuple[list[str], bool]:
    """The items of a list, set or tuple gold and whether their order matters; ([gold], False) for one value."""
    if _RATIONAL.fullmatch(_canon(gold)):  # one number, commas and all: 1,000 and 0,111 are not two items
        return [gold], False
    s = _DELIMS.sub(" ", _prenormalize(gold)).strip()
    for opener in ("\\{", "{"):  # a set: \{1, 2\}, {1,2,3}
        if s.startswith(opener) and closers(s, "{", "}").get(len(opener) - 1) == len(s) - 1:
            s = s[len(opener) : -len(opener)].strip()
            break
    if len(parts := split_top(s)) > 1:  # a list of solutions is a set, as math-verify reads it
        return [_QUAD.sub("", p).strip() for p in parts], False
    tuple_ = s.startswith("(") and closers(s, "(", ")").get(0) == len(s) - 1 and "\\infty" not in s
    if tuple_ and len(coordinates := split_top(s[1:-1])) > 1:  # ordered (not an interval with an infinite end)
        return coordinates, True
    return [gold], False


def _is_list(gold: str) -> bool:
    """Whether the gold is a list or set of several answers (not one value, not an ordered tuple)."""
    parts, ordered = _gold_parts(gold)
    return len(parts) > 1 and not ordered


def _together(gold: str, answers: list[str]) -> bool:
    """Whether several boxed answers together make the gold: its items as a set (any order) or a tuple (in order)."""
    parts, ordered = _gold_parts(gold)
    if len(parts) == 1 and len(answers) == 2 and "\\pm" in gold:  # 1 \pm \sqrt{2}: two roots
        return _equivalent(gold, ", ".join(answers))
    if len(parts) != len(answers):
        return False
    if ordered:
        return all(_equivalent(p, a) for p, a in zip(parts, answers, strict=True))
    left = list(parts)
    for answer in answers:
        if (match := next((p for p in left if _equivalent(p, answer)), None)) is None:
            return False
        left.remove(match)
    return True


def verify_math(completion: str, answer: str, *, fallback_last_number: bool = False, **row_fields) -> Verdict:
    """Judge a completion against the gold answer (see the module docstring for the policy).

    row_fields absorbs the other keys of a data row (id, problem, task, ...) so a row can be passed as **row.
    """
    gold = str(answer).strip()
    if not gold:
        return error("empty gold answer")
    answers, source = _final_answers(completion, fallback_last_number)
    if not answers:
        return no_answer(source)
    final = answers[-1]
    if len(answers) == 1:
        if _equivalent(gold, final):
            return correct(f"{source} {_short(final)} = gold {_short(gold)}")
        return wrong(f"{source} {_short(final)} ≠ gold {_short(gold)}")
    if len(answers) <= MAX_DISTINCT_BOXES:
        # The same answer in different forms is fine, and so are the items of a list or tuple gold boxed one by one;
        # different candidates for one answer are hedging.
        if all(_equivalent(gold, a) for a in reversed(answers)):
            return correct(f"{len(answers)} equivalent {source} answers = gold {_short(gold)}")
        if _together(gold, answers):
            return correct(f"{len(answers)} {source} answers together = gold {_short(gold)}")
    return wrong(f"hedged: {len(answers)} different {source} answers")


def answer_key(completion: str, *, fallback_last_number: bool = False) -> str | None:
    """A canonical string of the final answer for majority voting (cons@k), or None when there is no answer.

    String-only (no sympy), so `1/2`, `0.5` and `\\dfrac{1}{2}` share a key but `\\sqrt{8}` and `2\\sqrt{2}` do not.
    Several different boxed answers give their keys joined by commas. It runs in the caller's process with no time
    bound, so it is bounded by size instead: answers of more than MAX_KEY_CHARS in all get no key (no vote).
    """
    answers, _ = _final_answers(completion, fallback_last_number, max_chars=MAX_KEY_CHARS)
    return ",".join(_canon(a, drop_name=True) for a in answers) if answers else None

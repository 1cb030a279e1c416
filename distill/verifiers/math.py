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
  SI's `1 000` too), in the gold as in the prediction. A plain number never matches a list (`-2100`, `3125`,
  `10100` against `-2, 100`, `3, 125`, `10, 100`), and there is no decimal comma (`1,22` is a list).
* Equations. `x = 3` counts against `3` where the gold is not an equation, but only a name may stand left of the
  `=` that is dropped (`x`, `a_n`, `\\theta`, `\\text{area}`, `f(x)`, `(x, y)`): `2+2=5`, `1=2=3=4=5` and
  `x = 4 = 5` are not 5.
* Equivalence is mathematical: math-verify (latex2sympy + sympy) decides, after a cheap canonical-string fast
  path that also covers its gaps: fractions/decimals, radicals, polynomial identities, `\\dfrac`, `\\left`/`\\right`,
  spacing, trailing units and `\\text{}`, thousands separators (also `1{,}000`, `1\\,000`; a parenthesised `(1,2)`
  stays a tuple), degrees, percent (the sign may be dropped: `12.5\\%` matches 12.5, and math-verify's reading
  0.125), dollar signs, intervals (open/closed ends matter), tuples (order matters), sets and lists (order does
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
from sympy import Eq, Symbol, Tuple
from sympy.core.function import AppliedUndef

from distill.verifiers.base import Verdict, answer_part, correct, error, no_answer, wrong
from distill.verifiers.latex import BOX_CMD, brace_args, closers, extract_boxed_answers, split_top, strip_parens, unbox

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
_TRAILING_PERCENT = re.compile(r"\\?%$")
# Units: a \text{...} after a number or a closing brace, at the end, maybe squared: 5\text{ cm}^2 -> 5.
_TRAILING_UNIT = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}(?:\^\{?\d\}?)?$")
_TEXT_WRAPPER = re.compile(r"\\(?:text(?:bf|it|rm|normal)?|mbox|math(?:rm|bf|it))\s*\{([^{}]*)\}")
# A space matters only between two letters (\pi r) or two digits (1 2 is not 12).
_SPACE = re.compile(r"(?<![A-Za-z\d]) | (?![A-Za-z\d])|(?<=[A-Za-z]) (?=\d)|(?<=\d) (?=[A-Za-z])")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACED_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")  # SI style: 1 000 000
_LISTED = re.compile(r",\s")  # a comma and a space separate the items of a list: `32, 349` is not 32349
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_SIMPLE_FRAC = re.compile(r"([-+]?)(\d*)(?:\\frac\{(\d+)\}\{(\d+)\}|(?<!\d)(\d+)/(\d+))")
_INTEGER = re.compile(r"-?\d+")
_RATIONAL = re.compile(r"-?\d+(?:/\d+)?")  # the canonical form of an exact number
_INEXACT = re.compile(r"\.|%|percent")
_CHOICE = re.compile(r"\(([A-E])\)(?![A-Za-z]).*|([A-E])", re.DOTALL)
# `x =`, `a_n =`, `\\theta =`, `\\text{area} =` (unwrapped by then): a name, then one `=`.
_ASSIGNMENT = re.compile(r"(?:[A-Za-z]+|\\[a-zA-Z]+)(?:_\{?\w+\}?)? ?= ?([^=]+)")
# Minerva's format, for a completion without a box: "Final Answer: The final answer is $10,455$. I hope it is ..."
_FINAL_ANSWER = re.compile(r"final answer is:?\s*\$\$?([^$]{1,1000})\$", re.IGNORECASE)  # bounded: linear scan
_QUAD = re.compile(r"^\\q?quad")  # `x_1 = 1,\quadx_2 = 2`: a list gold whose items are spaced by \quad
MAX_KEY_CHARS = 2000  # answer_key runs unbounded in the eval's own process: longer answers get no vote
# GSM8K-style numbers: 1,234.5 or -17; a minus only where it is not a binary minus (3-5 gives 5).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


@lru_cache(maxsize=8192)
def _prenormalize(s: str) -> str:
    """Meaning-preserving LaTeX cleanup shared by the fast path and the sympy path."""
    s = unbox(s.strip())
    s = _DFRAC.sub(r"\\frac", s).replace("{,}", ",")
    s = re.sub(r"\\!\s*", "", s)  # MATH's thousands: 32,\! 349
    s = _THOUSANDS_SPACE.sub("", s)
    s = brace_args(s).rstrip()
    if s[-1:] in (".", ",", ";", ":") and s[-2:-1] not in (".", "\\"):  # sentence punctuation: \boxed{5.}
        s = s[:-1].rstrip()
    return s


def _number(s: str, thousands: bool = True) -> Fraction | None:
    """The exact value of a plain number (12, -0.50, 1,000, 3/4, \\frac{3}{4}), or None."""
    try:
        if _DECIMAL.fullmatch(s) or (thousands and _THOUSANDS.fullmatch(s)):
            return Fraction(s.replace(",", ""))
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
    s = _DEGREE.sub("", s).strip()
    s = _TRAILING_PERCENT.sub("", s).strip()
    s = _TRAILING_UNIT.sub("", s)
    s = re.sub(r"\s+", " ", _TEXT_WRAPPER.sub(r"\1", s)).strip()
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
    text = normalize_latex(_prenormalize(latex), _NORMALIZATION)
    for candidate in dict.fromkeys((text, get_last_eq(text) if gold else text)):
        try:
            real = not should_treat_as_complex(candidate)
            return latex2sympy(candidate, is_real=real, convert_degrees=False, normalization_config=None)
        except Exception:  # any parser failure just means "not parseable"
            continue
    return None


def _is_name(expr) -> bool:
    """A variable (`x`, `a_n`, `\\text{area}`) or a function of variables (`f(x)`), not an expression (`2+2`)."""
    if isinstance(expr, (AppliedUndef, Tuple)):  # f(x) =, (x, y) =
        return all(_is_name(a) for a in expr.args)
    return isinstance(expr, Symbol)


def _is_number_vs_list(gold_canon: str, pred_canon: str) -> bool:
    """One side a plain number, the other a list (`-2100` against `-2, 100`): never equivalent, whatever sympy says."""
    return any(
        _RATIONAL.fullmatch(a) and len(split_top(b)) > 1
        for a, b in ((gold_canon, pred_canon), (pred_canon, gold_canon))
    )


@lru_cache(maxsize=8192)
def _equivalent(gold: str, pred: str) -> bool:
    """Whether the answer pred is equivalent to gold: canonical strings first, then math-verify on sympy."""
    gold_canon = _canon(gold)
    pred_canon = _canon(pred, drop_name="=" not in gold_canon)
    if gold_canon == pred_canon:
        return True
    if _is_number_vs_list(gold_canon, pred_canon):
        return False
    if _INTEGER.fullmatch(gold_canon) and _INTEGER.fullmatch(pred_canon):
        return False  # two different integers: no need for sympy (the common case in AIME/GSM8K-style data)
    if _RATIONAL.fullmatch(gold_canon) and _RATIONAL.fullmatch(pred_canon) and not _INEXACT.search(gold + pred):
        return False  # two different exact fractions; decimals and percents go to math-verify (0.333333 = 1/3)
    if len(gold_canon) == 1 and gold_canon in "ABCDE" and _CHOICE.fullmatch(pred_canon):
        return False  # a different multiple-choice letter
    gold_expr, pred_expr = _to_sympy(gold, gold=True), _to_sympy(pred)
    if gold_expr is None or pred_expr is None:
        return False
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

"""Math answer verification: the reward for rejection sampling, evaluation and GRPO.

Policy (followed exactly; each line has a test in tests/verifiers/test_math.py):

* Think block. Where a completion opens a `<think>` block, the answer is looked for only after the closing
  `</think>`; a `<think>` never closed has no answer; a completion without any think block is judged whole
  (`base.answer_part`; a lone `</think>`, as in a prefilled template, counts as a closed block).
* Final answer. The content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5` without braces) of the
  answer part, with nested braces matched. A `\\boxed{` that never closes (truncated output) is no answer, and so
  is a completion whose only boxes are empty (`\\boxed{}`).
* Hedging. If the answer part boxes two or more answers that are not equivalent to each other, there is no
  credit (verdict `wrong`, "hedged"): listing candidates is a reward hack. The same answer boxed twice (in any
  equivalent forms) is fine. A multi-part answer must be boxed as one (`\\boxed{2, 3}`), as MATH's golds are.
* Equivalence is mathematical: math-verify (latex2sympy + sympy) decides, after a cheap canonical-string fast
  path that also covers its gaps: fractions/decimals, radicals, polynomial identities, `\\dfrac`, `\\left`/`\\right`,
  spacing, trailing units and `\\text{}`, thousands separators (`1,000`, `1{,}000`, `1\\,000`; a parenthesised
  `(1,2)` stays a tuple), `x = 3` against `3`, degrees, percent (the sign may be dropped: `12.5\\%` matches 12.5,
  and math-verify's reading 0.125), dollar signs, intervals (open/closed ends matter),
  tuples (order matters), sets (order does not), matrices, multiple-choice letters (`(B)`, `\\text{(B)}`, `B`,
  `\\textbf{(B) } 12`). Gold answers may be bare LaTeX (`\\sqrt{18}`): they are parsed directly, not searched for.
* Plain-number fallback (GSM8K style: the last number in the answer part, commas removed) only when
  `fallback_last_number=True`, and only when the answer part has no `\\boxed` at all.
* Verdicts: reward 1.0 only for `correct`; `no_answer` when no final answer can be extracted; `wrong` otherwise.

`verify_math` is pure and has no timeout of its own (math-verify's signal-based timeouts are disabled): sympy can
hang on inputs like power towers, so callers run it in `distill.verifiers.pool`, which kills and replaces a worker
that overruns its time bound.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

import math_verify.grader
from latex2sympy2_extended.latex2sympy2 import NormalizationConfig, latex2sympy, normalize_latex
from math_verify import verify
from math_verify.grader import should_treat_as_complex
from math_verify.parser import get_last_eq

from distill.verifiers.base import Verdict, answer_part, correct, error, no_answer, wrong

__all__ = ["answer_key", "extract_boxed_answers", "last_number", "verify_math"]

# Timeouts are disabled on purpose (the pool bounds time); skip math-verify's once-per-process warning about it.
math_verify.grader.TIMEOUT_WARNING_SHOWN = True

# math-verify's own normalisation for LaTeX answers, minus box extraction (we have already unboxed).
_NORMALIZATION = NormalizationConfig(
    basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="none", equations=False
)
MAX_DISTINCT_BOXES = 8  # more distinct boxed answers than this is hedging whatever the gold; don't compare them all

_WHITESPACE = re.compile(r"\s*")
_TOKEN = re.compile(r"[^\s$]+")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_BOX_CMD = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_FRAC_SQRT = re.compile(r"\\(?:frac|sqrt)(?![a-zA-Z])")
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
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_SIMPLE_FRAC = re.compile(r"([-+]?)(\d*)(?:\\frac\{(\d+)\}\{(\d+)\}|(?<!\d)(\d+)/(\d+))")
_INTEGER = re.compile(r"-?\d+")
_RATIONAL = re.compile(r"-?\d+(?:/\d+)?")  # the canonical form of an exact number
_INEXACT = re.compile(r"\.|%|percent")
_CHOICE = re.compile(r"\(([A-E])\)(?![A-Za-z]).*|([A-E])", re.DOTALL)
_ASSIGNMENT = re.compile(r"(?:[A-Za-z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?=([^=]+)")
# GSM8K-style numbers: 1,234.5 or -17; a minus only where it is not a binary minus (3-5 gives 5).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def _matching_brace(text: str, open_pos: int) -> int:
    """Index of the `}` closing the `{` at open_pos, or -1; escaped braces `\\{ \\}` do not count."""
    depth = 0
    i = open_pos
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _skip_space(text: str, i: int) -> int:
    return _WHITESPACE.match(text, i).end()


def extract_boxed_answers(text: str) -> list[str] | None:
    """Contents of every `\\boxed{...}` / `\\fbox{...}` / `\\boxed x` in text, in order, stripped (may be empty).

    None when the last box never closes (a truncated output: its final answer is unknown).
    """
    answers: list[str] = []
    pos = 0
    while (m := _BOX_CMD.search(text, pos)) is not None:
        start = _skip_space(text, m.end())
        if text.startswith("{", start):
            close = _matching_brace(text, start)
            if close < 0:
                return None
            answers.append(text[start + 1 : close].strip())
            pos = close + 1
        elif start > m.end() and (token := _TOKEN.match(text, start)):  # `\boxed 5`: one token
            answers.append(token.group(0))
            pos = token.end()
        else:
            pos = m.end()
    return answers


def _unbox(s: str) -> str:
    """`\\boxed{x}` -> x where the whole answer is itself boxed (nested boxes, boxed gold answers)."""
    while (m := _BOX_CMD.match(s)) is not None:
        open_pos = _skip_space(s, m.end())
        if not s.startswith("{", open_pos) or _matching_brace(s, open_pos) != len(s) - 1:
            break
        s = s[open_pos + 1 : -1].strip()
    return s


def _brace_args(s: str) -> str:
    """Brace the shorthand arguments of \\frac and \\sqrt: \\frac12, \\frac\\pi2, \\sqrt3.

    math-verify's own fix-up only handles single characters and turns \\frac\\pi2 into nonsense.
    """
    if "\\frac" not in s and "\\sqrt" not in s:
        return s
    inserts: list[tuple[int, str]] = []
    for m in _FRAC_SQRT.finditer(s):
        i = m.end()
        if m.group(0) == "\\sqrt":
            j = _skip_space(s, i)
            if s.startswith("[", j) and (k := s.find("]", j)) > 0:
                i = k + 1
        for _ in range(2 if m.group(0) == "\\frac" else 1):
            i = _skip_space(s, i)
            if i >= len(s):
                break
            if s[i] == "{":
                end = _matching_brace(s, i)
                if end < 0:
                    break
                i = end + 1
                continue
            end = cmd.end() if (cmd := _COMMAND.match(s, i)) else i + 1
            inserts += [(i, "{"), (end, "}")]
            i = end
    pieces, prev = [], 0
    for pos, brace in sorted(inserts, key=lambda t: t[0]):  # stable: `}` then `{` where two args meet
        pieces += [s[prev:pos], brace]
        prev = pos
    return "".join(pieces) + s[prev:]


@lru_cache(maxsize=8192)
def _prenormalize(s: str) -> str:
    """Meaning-preserving LaTeX cleanup shared by the fast path and the sympy path."""
    s = _unbox(s.strip())
    s = _DFRAC.sub(r"\\frac", s).replace("{,}", ",").replace("\\!", "")
    s = _THOUSANDS_SPACE.sub("", s)
    s = _brace_args(s).rstrip()
    if s[-1:] in (".", ",", ";", ":") and s[-2:-1] not in (".", "\\"):  # sentence punctuation: \boxed{5.}
        s = s[:-1].rstrip()
    return s


def _number(s: str) -> Fraction | None:
    """The exact value of a plain number (12, -0.50, 1,000, 3/4, \\frac{3}{4}), or None."""
    try:
        if _DECIMAL.fullmatch(s) or _THOUSANDS.fullmatch(s):
            return Fraction(s.replace(",", ""))
        if m := _SIMPLE_FRAC.fullmatch(s):  # whole part: a mixed number 3\frac{1}{2}, as latex2sympy reads it
            sign, whole, *parts = m.groups()
            num, den = (parts[0], parts[1]) if parts[0] is not None else (parts[2], parts[3])
            return (int(whole or 0) + Fraction(int(num), int(den))) * (-1 if sign == "-" else 1)
    except (ValueError, ZeroDivisionError):  # int() refuses more than 4300 digits; x/0
        pass
    return None


def _strip_parens(s: str) -> str:
    """`(x+1)` -> `x+1`: parentheses around the whole answer group nothing unless a comma makes a tuple/interval."""
    while len(s) > 2 and s[0] == "(" and s[-1] == ")" and "," not in s:
        depth = 0
        for c in s[1:-1]:
            depth += (c == "(") - (c == ")")
            if depth < 0:  # (a)(b): the first ( closes early
                return s
        if depth:
            return s
        s = s[1:-1]
    return s


@lru_cache(maxsize=8192)
def _canon(s: str) -> str:
    """A canonical string: equal canons mean equivalent answers under the policy (units, %, degrees, $ ignored)."""
    s = _DELIMS.sub(" ", _prenormalize(s))
    s = _DEGREE.sub("", s).strip()
    s = _TRAILING_PERCENT.sub("", s).strip()
    s = _TRAILING_UNIT.sub("", s)
    s = _TEXT_WRAPPER.sub(r"\1", s)
    s = _strip_parens(_SPACE.sub("", re.sub(r"\s+", " ", s)))
    if (value := _number(s)) is not None:
        return str(value)
    if m := _CHOICE.fullmatch(s):  # (B), \text{(B)}, B, \textbf{(B) } 12 -> B
        return m.group(1) or m.group(2)
    return s


def _strip_assignment(pred: str, gold: str) -> str:
    """`x=3` -> `3` when the gold is not itself an equation (policy: `x = 3` counts against `3`)."""
    if "=" not in gold and (m := _ASSIGNMENT.fullmatch(pred)):
        rhs = m.group(1)
        return str(value) if (value := _number(rhs)) is not None else rhs
    return pred


@lru_cache(maxsize=4096)
def _to_sympy(latex: str):
    """math-verify's parse of one LaTeX answer (what it does to a match), or None; cached so the gold parses once."""
    text = normalize_latex(_prenormalize(latex), _NORMALIZATION)
    for candidate in dict.fromkeys((text, get_last_eq(text))):  # the whole answer, then the last `= ...` part
        try:
            return latex2sympy(
                candidate,
                is_real=not should_treat_as_complex(candidate),
                convert_degrees=False,
                normalization_config=None,
            )
        except Exception:  # any parser failure just means "not parseable"
            continue
    return None


@lru_cache(maxsize=8192)
def _equivalent(gold: str, pred: str) -> bool:
    """Whether the answer pred is equivalent to gold: canonical strings first, then math-verify on sympy."""
    gold_canon, pred_canon = _canon(gold), _canon(pred)
    pred_canon = _strip_assignment(pred_canon, gold_canon)
    if gold_canon == pred_canon:
        return True
    if _INTEGER.fullmatch(gold_canon) and _INTEGER.fullmatch(pred_canon):
        return False  # two different integers: no need for sympy (the common case in AIME/GSM8K-style data)
    if _RATIONAL.fullmatch(gold_canon) and _RATIONAL.fullmatch(pred_canon) and not _INEXACT.search(gold + pred):
        return False  # two different exact fractions; decimals and percents go to math-verify (0.333333 = 1/3)
    if len(gold_canon) == 1 and gold_canon in "ABCDE" and _CHOICE.fullmatch(pred_canon):
        return False  # a different multiple-choice letter
    gold_expr, pred_expr = _to_sympy(gold), _to_sympy(pred)
    if gold_expr is None or pred_expr is None:
        return False
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


def _final_answers(completion: str, fallback_last_number: bool) -> tuple[list[str], str]:
    """The distinct answers (by canonical form, in order of appearance) and where they come from, or [] and why."""
    part = answer_part(completion)
    if part is None:
        return [], "unclosed <think>"
    boxes = extract_boxed_answers(part)
    if boxes is None:
        return [], "unclosed \\boxed{"
    if not boxes:
        number = last_number(part) if fallback_last_number else None
        return ([number], "last number") if number is not None else ([], "no \\boxed{}")
    distinct = {_canon(b): b for b in reversed(boxes) if b}  # last spelling of each answer wins
    if not distinct:
        return [], "empty \\boxed{}"
    return list(reversed(distinct.values())), "boxed"


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
    # The same answer boxed in different forms is fine; anything else is hedging.
    if len(answers) <= MAX_DISTINCT_BOXES and all(_equivalent(gold, a) for a in reversed(answers)):
        return correct(f"{len(answers)} equivalent boxed answers = gold {_short(gold)}")
    return wrong(f"hedged: {len(answers)} different boxed answers")


def answer_key(completion: str, *, fallback_last_number: bool = False) -> str | None:
    """A canonical string of the final answer for majority voting (cons@k), or None when there is no answer.

    String-only (no sympy), so `1/2`, `0.5` and `\\dfrac{1}{2}` share a key but `\\sqrt{8}` and `2\\sqrt{2}` do not.
    Several different boxed answers give their keys joined by commas.
    """
    answers, _ = _final_answers(completion, fallback_last_number)
    if not answers:
        return None
    keys = [_strip_assignment(_canon(a), "") for a in answers]
    return ",".join(keys)

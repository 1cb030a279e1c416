"""Text rewrites and number readings for the math verifier: each gives an answer the one reading the policy in
math.py states.

Plain string work on one answer (already unboxed), no sympy, no exception on malformed text; all linear in the
answer except the bracket matching of plain-text functions and trig arguments (quadratic in their number).
"""

from __future__ import annotations

import re
from fractions import Fraction

from distill.verifiers.latex import closers

__all__ = [
    "TEXT_WRAPPER",
    "choice",
    "close",
    "drop_percent",
    "drop_unit",
    "hedged",
    "mixed_numbers",
    "plain_to_latex",
    "scientific",
    "split_equals",
    "trig_degrees",
    "upright_constants",
]

_WRAPPER = r"\\(?:text(?:bf|it|rm|normal)?|mbox|math(?:rm|bf|it))"
TEXT_WRAPPER = re.compile(rf"{_WRAPPER}\s*\{{([^{{}}]*)\}}")

# A percent sign after a number is read as the number as written (50\% is 50, never 0.5), in the gold as in the
# prediction: one reading, so no answer can match both 50 and 0.5.
_PERCENT = re.compile(
    r"(?<=[\w})])\s*(?:\\?%|\\(?:text|mbox|mathrm)\s*\{\s*(?:percent(?:age)?|pct)\s*\}"
    r"|(?<![A-Za-z])(?:percent(?:age)?|pct)(?![A-Za-z]))"
)

# Words that offer a second candidate: `3\text{ (or 5)}`, `5 cm or 6 cm`, `maybe 4`.
_HEDGE = re.compile(
    r"(?<![A-Za-z\\])(?:or|either|maybe|perhaps|possibly|probably|alternatively|otherwise)(?![A-Za-z])"
    r"|\\(?:lor|vee)(?![A-Za-z])",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")
_SEP = r"(?:\s|\\[,;: ]|~)"  # what may stand between a number and its unit
_POWER = r"(?:\s*\^\s*\{?\d\}?|[²³])"
# A \text unit: words, `/`, `.`, `-`, `°` and powers (`cm^2`, `km/h`, `°C`); no other number, no brackets.
_UNIT_CHARS = r"(?:[^\W\d_]|[\s./°'~-])*"
_UNIT_TEXT = re.compile(rf"{_UNIT_CHARS}(?:\^\{{?-?\d\}}?{_UNIT_CHARS})*")
# Upright text only: a bold or italic letter after a number is a vector or a variable (2\mathbf{v}).
_TRAILING_TEXT = re.compile(rf"(?<=[\d}}]){_SEP}*\\(?:text(?:rm|normal)?|mbox|mathrm)\s*\{{([^{{}}]*)\}}{_POWER}?\s*$")
# 3\mathrm{i}, \mathrm{e}: upright constants, not units (math-verify drops `\mathrm{i}` after a digit: 2+3i = 5).
_UPRIGHT_CONSTANT = re.compile(r"\\(?:math(?:rm|it)|text(?:rm|it)?|operatorname)\s*\{\s*([ie])\s*\}")
# Units written without \text. Multi-letter only: a single letter after a number (`3 m`, `2 x`) may be a variable.
_UNIT_WORDS = (
    "mm|cm|dm|km|in|inch(?:es)?|ft|feet|foot|yd|yards?|mi|miles?|(?:centi|milli|kilo)?met(?:er|re)s?"
    "|mg|kg|(?:kilo)?grams?|lbs?|pounds?|oz|ounces?|tons?"
    "|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|weeks?|months?|years?|yrs?"
    "|ml|mL|lit(?:er|re)s?|gallons?|gal|cups?|dollars?|cents?|euros?|units?|degrees?|deg|radians?|rad"
    "|mph|kph|km/h|m/s|cm/s|ft/s"
)
# Square metres are the one single-letter unit, and only with their power: `10 m^2` (a bare `10 m` stays 10m).
_BARE_UNIT = re.compile(
    rf"(?<=[\d}}]){_SEP}+(?:(?:square|sq\.?|cubic)\s+)?(?:(?:{_UNIT_WORDS}){_POWER}?|m{_POWER})\.?\s*$"
)

# A mixed number `1 1/2` (a proper fraction after a whole number and a space) -> 1\frac{1}{2}, read as 3/2.
_MIXED = re.compile(r"(?<![\w.,}^])(\d+)\s+([1-9]\d*)/(\d+)(?![\d./])")

_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![a-zA-Z])\s*(?:\^\s*(?:\{[^{}]*\}|-?\d)\s*)?")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|\\degree(?![a-zA-Z])|°)")
_ARGUMENT_STOP = "+-=,;"

_PLAIN_FUNCTION = re.compile(r"(?<![\\A-Za-z])(sqrt|exp|ln|log|sin|cos|tan)\s*\(")
_PLAIN_PI = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")

# Multiple choice: `(B)`, `B`, `(D) Alina`, `C Cecile`, `C. Cecile`: the letter, then maybe the option's text.
_CHOICE_ALONE = re.compile(r"\(?([A-E])\)?")
_CHOICE_PARENS = re.compile(r"\(([A-E])\)(?:\s+|(?![A-Za-z]))(.*)", re.DOTALL)  # (C)x is no choice: a product
_CHOICE_BARE = re.compile(r"([A-E])(?:[.:)]\s*|\s+)([A-Za-z\d].*)", re.DOTALL)
_LETTER = re.compile(r"(?<![A-Za-z\\])[A-E](?![A-Za-z])")  # `B and C`, `(B) or (C)`: two letters, no one choice
MAX_SCIENTIFIC_CHARS = 60  # a number in scientific notation is short; longer strings are not parsed at all

# 3.54e-07, 3.54\times10^{-7}, 10^{6}. An e-notation with a whole mantissa and a signed exponent (2e-1, 2e+1) is
# not one: in LaTeX that is 2e - 1 with Euler's e; a decimal point (2.0e-1) or a padded exponent (2e-01) settles it.
_E_NOTATION = re.compile(r"([-+]?(?:\d+\.\d*|\.\d+|\d+))[eE]([-+]?\d+)")
_TIMES_TEN = re.compile(r"([-+]?)(?:(\d+\.?\d*|\.\d+)(?:\\times|\\cdot|\*|×))?10\^\{?([-+]?\d+)\}?")
MAX_EXPONENT = 300  # 10^k beyond this is left to sympy (and a thousand-digit Fraction is no use for a fast path)
# An `=` that separates members of a chain: not part of <=, >=, !=, :=, ==.
_EQUALS = re.compile(r"(?<![<>!:=\\])=(?!=)")


def drop_percent(s: str) -> str:
    """`50\\%`, `50 percent`, `50 pct` -> `50`: a percent is the number as written."""
    return _PERCENT.sub("", s)


def hedged(s: str) -> bool:
    """Whether the answer offers a second candidate: a hedging word (`or`, `maybe`, ...) anywhere, or a \\text{}
    holding a number beside a number outside it (`3\\text{ (5)}`). Subscripts like `x_{\\text{1}}` do not count."""
    if _HEDGE.search(s):
        return True
    texts = [m for m in TEXT_WRAPPER.finditer(s) if not s[: m.start()].rstrip("{ ").endswith("_")]
    if not any(_DIGIT.search(m.group(1)) for m in texts):
        return False
    return _DIGIT.search(TEXT_WRAPPER.sub(" ", s)) is not None


def upright_constants(s: str) -> str:
    """`\\mathrm{i}` -> `i`, `\\mathrm{e}` -> `e`: the imaginary unit and Euler's number, read as such."""
    return _UPRIGHT_CONSTANT.sub(r"\1", s)


def _is_unit(text: str) -> bool:
    return bool(re.search(r"[^\W\d_]", text)) and bool(_UNIT_TEXT.fullmatch(text)) and not _HEDGE.search(text)


def drop_unit(s: str) -> str:
    """A unit after the number, dropped: `5\\text{ cm}^2`, `10 cm^2`, `3\\,\\mathrm{km/h}` -> the number.

    Only a unit: text holding another number, brackets or a hedging word stays (`3\\text{ (or 5)}`).
    """
    if (m := _TRAILING_TEXT.search(s)) is not None:
        return s[: m.start()].rstrip() if _is_unit(m.group(1)) else s
    if (m := _BARE_UNIT.search(s)) is not None:
        return s[: m.start()].rstrip()
    return s


def mixed_numbers(s: str) -> str:
    """`1 1/2` -> `1\\frac{1}{2}` (3/2, as MATH writes mixed numbers); only a proper fraction (`2 5/3` stays)."""

    def mixed(m: re.Match) -> str:
        whole, num, den = m.groups()
        proper = (len(num), num) < (len(den.lstrip("0")), den.lstrip("0"))  # num < den, without int() on huge digits
        return f"{whole}\\frac{{{num}}}{{{den}}}" if proper else m.group(0)

    return _MIXED.sub(mixed, s) if "/" in s else s


def _argument_end(s: str, start: int, close: dict[int, int]) -> int:
    """End of a trig function's argument: a bracketed group, else up to the next +, -, =, comma at its level."""
    bracket = start + 5 if s.startswith("\\left", start) else start
    if bracket < len(s) and s[bracket] in "({[" and bracket in close:
        return close[bracket] + 1
    depth, i = 0, start
    while i < len(s):
        depth += (s[i] in "([{") - (s[i] in ")]}")
        if depth < 0 or (depth == 0 and i > start and s[i] in _ARGUMENT_STOP):
            return i
        i += 1
    return i


def trig_degrees(s: str) -> str:
    """Degrees inside a trig argument become radians: `\\sin(90^\\circ - x)` -> `\\sin(\\frac{90\\pi}{180} - x)`.

    Elsewhere the degree sign is dropped as a unit (30^\\circ is 30); inside sin/cos/... it changes the value.
    """
    if not _TRIG.search(s) or not _DEGREES.search(s):
        return s
    close = closers(s)
    spans = [(m.end(), _argument_end(s, m.end(), close)) for m in _TRIG.finditer(s)]

    def radians(m: re.Match) -> str:
        inside = any(a <= m.start() < b for a, b in spans)
        return f"\\frac{{{m.group(1)}\\pi}}{{180}}" if inside else m.group(0)

    return _DEGREES.sub(radians, s)


def _matching_paren(s: str, open_pos: int) -> int:
    depth = 0
    for i in range(open_pos, len(s)):
        depth += (s[i] == "(") - (s[i] == ")")
        if depth == 0:
            return i
    return -1


def plain_to_latex(s: str) -> str:
    """Plain-text math as LaTeX: `pi/2`, `exp(16)`, `sqrt(2)`, `-2*pi`, `2**3` -> `\\pi/2`, `e^{16}`, ...

    `*` stays (latex2sympy reads it); the innermost function is rewritten first, so nesting works.
    """
    s = _PLAIN_PI.sub(r"\\pi", s.replace("**", "^"))
    while (found := list(_PLAIN_FUNCTION.finditer(s))) and (end := _matching_paren(s, found[-1].end() - 1)) > 0:
        m = found[-1]
        name, inner = m.group(1), s[m.end() : end]
        new = {"sqrt": f"\\sqrt{{{inner}}}", "exp": f"e^{{{inner}}}"}.get(name, f"\\{name}({inner})")
        s = s[: m.start()] + new + s[end + 1 :]
    return s


def choice(plain: str) -> tuple[str, str] | None:
    """A multiple-choice answer as (letter, option text or ""), or None; plain has its \\text wrappers removed."""
    if m := _CHOICE_ALONE.fullmatch(plain):
        return m.group(1), ""
    m = _CHOICE_PARENS.fullmatch(plain) or _CHOICE_BARE.fullmatch(plain)
    if m is None or any(letter != m.group(1) for letter in _LETTER.findall(m.group(2))):
        return None
    return m.group(1), m.group(2).strip()


def split_equals(s: str) -> list[str]:
    """s split at each `=` outside any bracket (a chain `\\binom{5}{2} = 10` -> two members), each stripped."""
    depth, parts, start = 0, [], 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if c == "=" and depth == 0 and _EQUALS.match(s, i):
            parts.append(s[start:i].strip())
            start = i + 1
    return [*parts, s[start:].strip()]


def scientific(s: str) -> Fraction | None:
    """The exact value of 3.54e-07, 3.54\\times10^{-7} or 10^{6} (spaces already removed), or None."""
    if len(s) > MAX_SCIENTIFIC_CHARS:
        return None
    if m := _E_NOTATION.fullmatch(s):
        mantissa, exponent = m.groups()
        if "." not in mantissa and exponent[0] in "+-" and not exponent[1:].startswith("0"):
            return None  # 2e-1: Euler's e in an expression
        sign = ""  # the mantissa carries it
    elif m := _TIMES_TEN.fullmatch(s):
        sign, mantissa, exponent = m.groups()
        mantissa = mantissa or "1"
    else:
        return None
    if abs(int(exponent)) > MAX_EXPONENT:
        return None
    return Fraction(sign + mantissa) * Fraction(10) ** int(exponent)


def _significant(x: Fraction, digits: int = 6) -> Fraction:
    """x rounded to `digits` significant digits, exactly (no float: the numbers may be far outside its range)."""
    if x == 0:
        return x
    exponent = len(str(abs(x.numerator))) - len(str(x.denominator))  # 10^exponent <= |x| < 10^(exponent+1), or one less
    if abs(x) < Fraction(10) ** exponent:
        exponent -= 1
    unit = Fraction(10) ** (exponent - digits + 1)
    return round(x / unit) * unit


def close(a: Fraction, b: Fraction) -> bool:
    """Two numbers, one written as a decimal: equal to 6 places (math-verify's rounding, so 0.333333 is 1/3) and to
    6 significant digits (so 3.54e-07 is not 5e-07, which 6 places alone would allow)."""
    return round(a, 6) == round(b, 6) and _significant(a) == _significant(b)

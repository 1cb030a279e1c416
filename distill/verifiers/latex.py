"""LaTeX text helpers for the math verifier: boxes, matched brackets, list items.

Plain string work, no sympy, and no exception on malformed text. Each helper is linear in its input except
brace_args, which walks the arguments of every \\frac and \\sqrt (quadratic in their nesting).
"""

from __future__ import annotations

import re

__all__ = [
    "BOX_CMD",
    "brace_args",
    "closers",
    "extract_boxed_answers",
    "matching_brace",
    "split_top",
    "strip_parens",
    "unbox",
]

_WHITESPACE = re.compile(r"\s*")
_TOKEN = re.compile(r"[^\s$]+")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
BOX_CMD = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_FRAC_SQRT = re.compile(r"\\(?:frac|sqrt)(?![a-zA-Z])")


def matching_brace(text: str, open_pos: int) -> int:
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


def skip_space(text: str, i: int) -> int:
    return _WHITESPACE.match(text, i).end()


def extract_boxed_answers(text: str) -> list[str] | None:
    """Contents of every `\\boxed{...}` / `\\fbox{...}` / `\\boxed x` in text, in order, stripped (may be empty).

    None when the last box never closes (a truncated output: its final answer is unknown).
    """
    answers: list[str] = []
    pos = 0
    while (m := BOX_CMD.search(text, pos)) is not None:
        start = skip_space(text, m.end())
        if text.startswith("{", start):
            close = matching_brace(text, start)
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


def unbox(s: str) -> str:
    """`\\boxed{x}` -> x where the whole answer is itself boxed (nested boxes, boxed gold answers)."""
    while (m := BOX_CMD.match(s)) is not None:
        open_pos = skip_space(s, m.end())
        if not s.startswith("{", open_pos) or matching_brace(s, open_pos) != len(s) - 1:
            break
        s = s[open_pos + 1 : -1].strip()
    return s


def brace_args(s: str) -> str:
    """Brace the shorthand arguments of \\frac and \\sqrt: \\frac12, \\frac\\pi2, \\sqrt3.

    math-verify's own fix-up only handles single characters and turns \\frac\\pi2 into nonsense.
    """
    if "\\frac" not in s and "\\sqrt" not in s:
        return s
    inserts: list[tuple[int, str]] = []
    for m in _FRAC_SQRT.finditer(s):
        i = m.end()
        if m.group(0) == "\\sqrt":
            j = skip_space(s, i)
            if s.startswith("[", j) and (k := s.find("]", j)) > 0:
                i = k + 1
        for _ in range(2 if m.group(0) == "\\frac" else 1):
            i = skip_space(s, i)
            if i >= len(s):
                break
            if s[i] == "{":
                end = matching_brace(s, i)
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


def closers(s: str, opening: str = "([{", closing: str = ")]}") -> dict[int, int]:
    """Index of each opening bracket -> index of the bracket that closes it (any kind: `[0, 1)` is an interval)."""
    closers, stack = {}, []
    for i, c in enumerate(s):
        if c in opening:
            stack.append(i)
        elif c in closing and stack:
            closers[stack.pop()] = i
    return closers


def strip_parens(s: str) -> str:
    """`(x+1)` -> `x+1`: parentheses around the whole answer group nothing unless a comma makes a tuple/interval."""
    if "," in s or not s.startswith("("):
        return s
    close, k = closers(s, "(", ")"), 0
    while len(s) - 2 * k > 2 and s[k] == "(" and close.get(k) == len(s) - 1 - k:  # (a)(b): the first ( closes early
        k += 1
    return s[k : len(s) - k]


def split_top(s: str) -> list[str]:
    """s split at the commas outside any bracket, each part stripped."""
    depth, parts, start = 0, [], 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if c == "," and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
    return [*parts, s[start:].strip()]

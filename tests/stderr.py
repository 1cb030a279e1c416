"""What a stage printed to stderr, without its first line (the resolved settings, distill.recipes.resolved_summary),
for tests that a bad input is reported in exactly one line."""

from __future__ import annotations


def after_first_line(err: str) -> str:
    lines = err.splitlines(keepends=True)
    return "".join(lines[1:]) if lines and ": recipe " in lines[0] else err

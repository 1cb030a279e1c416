"""The errors an entry point reports as bad input: one line naming the file, line or key, exit 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a recipe key, a file, a row, a model name): the message is one line meant for the user."""


class ConfigError(UserError, ValueError):
    """A bad recipe or override; the message is one line meant for the user."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

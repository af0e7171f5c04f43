"""Errors raised at segkit's boundaries (user input): the CLI prints their message, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SegkitError(Exception):
    """A problem with user input (a file, a config key, a flag, a name) whose message says how to fix it."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> SegkitError:
    """An error for a name that is not in ``valid``, listing the valid names and the closest match."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return SegkitError(f"unknown {kind} '{name}'.{hint} Valid names: {', '.join(valid)}")

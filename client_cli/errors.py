"""The CLI's own error type and the one function that turns any expected failure into text."""

from __future__ import annotations

import os
import re

from dropbox_envelope.errors import EnvelopeError

__all__ = ["EXPECTED_ERRORS", "CliError", "describe_error", "one_line"]


class CliError(Exception):
    """A failure the user can act on (refusing to overwrite, a bad option value...).

    ``str(error)`` is the whole message, printed after ``error: ``.
    """


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (EnvelopeError, CliError, OSError)
"""What a command may raise in normal use: shown as one line, never as a traceback."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` with every control character escaped, so that it prints as one harmless line.

    Lone surrogates (undecodable bytes in a file name) are escaped too, so printing never fails.
    """
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(_escape, text)


def describe_error(exc: BaseException) -> str:
    """The one-line message for ``exc`` (without the ``error: `` prefix)."""
    if isinstance(exc, OSError) and exc.strerror:
        message = exc.strerror
        if exc.filename is not None:
            message = f"{os.fsdecode(exc.filename)}: {message}"
        if exc.filename2 is not None:
            message += f" (-> {os.fsdecode(exc.filename2)})"
    else:
        message = str(exc) or type(exc).__name__
    return one_line(message)

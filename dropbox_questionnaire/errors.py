"""The one failure of this package."""

from __future__ import annotations

__all__ = ["QuestionnaireError"]


class QuestionnaireError(ValueError):
    """A questionnaire file is missing, unreadable or malformed; the message names the file and
    the place in it, so whoever edits the file can fix it."""

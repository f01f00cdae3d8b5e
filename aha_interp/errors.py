"""One error type for everything a user can get wrong.

The CLI prints an :class:`AhaError` as a single line and exits non-zero; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class AhaError(Exception):
    """A user-facing error whose message says what went wrong and what to do."""

    def __init__(self, message: str):
        # One line, always: multi-line library messages (torch's unpickler) are folded.
        super().__init__(" ".join(str(message).split()))


class MaskShapeError(AhaError, ValueError):
    """A mask does not fit the model or the other mask it is combined with."""

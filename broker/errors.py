"""One error type for the whole API, rendered as ``{"error": "..."}``."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request the broker refuses, with the status to answer and a readable reason.

    The message names the field at fault; it is shown to the client verbatim.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(ApplicationError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=404)

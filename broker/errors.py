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


class NotStored(Exception):
    """The store did not take the request's rows (a group commit failed): nothing was
    written, and the API answers 503 with ``Retry-After`` as for an outage."""

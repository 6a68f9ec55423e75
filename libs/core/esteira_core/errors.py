"""What a use case says went wrong, by kind, so that every front door (the gateway's routes, a
worker's job) maps it the same way. A library raises `NotFound("session_not_found", "...")`; the
gateway turns each kind into one HTTP status in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a library raises on purpose: a stable `code` and a message for
    people (never a secret, never a stack trace)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Invalid(DomainError):
    """The request cannot be served as asked (an empty list, nothing to analyse)."""


class NotFound(DomainError):
    """The thing does not exist, expired, or belongs to someone else."""


class TooLarge(DomainError):
    """More work than one request may ask for."""


class Busy(DomainError):
    """Nothing can take the work right now; try again after `retry_after` seconds."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class UpstreamFailed(DomainError):
    """A system Esteira depends on (the legacy portal) failed to answer."""


class QuotaExceeded(DomainError):
    """The tenant already has as much work waiting as it may; try again after `retry_after`
    seconds, when some of it has started."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after

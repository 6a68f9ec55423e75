"""A small circuit breaker, for Redis and for a database that hangs (esteira_core.db.patience):
after a failure, calls fail at once (no timeout each) until `reset_seconds` pass; then one call
is let through as a probe, and its outcome closes or reopens the circuit. Written here rather
than taken from a library: it is 60 lines, has no I/O of its own, and the libraries found
(purgatory among them) bring storage back-ends we don't need.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

logger = logging.getLogger(__name__)


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The dependency failed recently; the call was not attempted."""


class CircuitBreaker:
    def __init__(
        self, name: str, reset_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.state = State.CLOSED
        self.opened_at = 0.0

    def allow(self) -> bool:
        """May a call go through now? In OPEN, the first call after reset_seconds is the probe."""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN and self.clock() - self.opened_at >= self.reset_seconds:
            self.state = State.HALF_OPEN
            return True
        return False

    def success(self) -> None:
        if self.state is not State.CLOSED:
            logger.info("circuit closed", extra={"circuit": self.name})
        self.state = State.CLOSED

    def failure(self) -> None:
        if self.state is State.CLOSED:
            logger.warning("circuit opened", extra={"circuit": self.name})
        self.state = State.OPEN
        self.opened_at = self.clock()

    def check(self) -> None:
        if not self.allow():
            raise CircuitOpen(f"{self.name} is unavailable")

"""How late this process's event loop runs: what tells a Redis command that timed out because
Redis did not answer from one that timed out because this process did not get to read the answer.

A process short of CPU (a busy node, or a pod at its CPU limit, which the kernel freezes for the
rest of each scheduling period once its quota is spent) runs its event loop late: an answer that
arrived in a millisecond waits in the socket while the loop is elsewhere, and the command's
timeout fires first. Counted as a Redis failure, that would open the circuit breaker and send
work inline, onto the very process that is short of CPU (a gateway would even start a Chromium
of its own). A tick every TICK_SECONDS notes how late it woke up; `late_seconds` says the most
the loop ran late lately, counting a tick that is overdue right now.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

TICK_SECONDS = 0.05
# Ticks later than this are remembered (a loop is always a little late); at most this many.
NOTED_FROM_SECONDS = 0.01
NOTED_TICKS = 256


class LoopWatch:
    def __init__(self) -> None:
        # When the next tick is due: None until `run` starts (a loop nobody watches is never
        # said to be late).
        self._due: float | None = None
        self._late: deque[tuple[float, float]] = deque(maxlen=NOTED_TICKS)

    async def run(self) -> None:
        """Ticks for the life of the process (until cancelled)."""
        while True:
            due = self._due = time.monotonic() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            if now - due >= NOTED_FROM_SECONDS:
                self._late.append((now, now - due))

    def late_seconds(self, within: float) -> float:
        """The most the loop ran late over the last `within` seconds, a tick overdue now
        included (the timeout that is being handled may have fired before it)."""
        if self._due is None:
            return 0.0
        now = time.monotonic()
        overdue = max(0.0, now - self._due)
        noted = (late for at, late in reversed(self._late) if now - at <= within)
        return max(overdue, max(noted, default=0.0))

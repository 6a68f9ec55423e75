"""Python's garbage collector in a process that lives for days.

A full collection walks every object the collector tracks, and the process's event loop waits
for it. Most of them are what the process built before its first request or job and keeps for
its whole life: modules, FastAPI's routes and models, pydantic's schemas, SQLAlchemy's tables.
A gateway process holds some 300,000 of them; under a flood of connections, whose objects live
a few seconds, a full collection came every few seconds and walked them all again, stalling
the gateway 250-500 ms each time (README, "At the internet's edge").
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> None:
    """Called at the end of a process's start-up, before its first request or job: one
    collection, then every object left is moved out of the collector's sight (`gc.freeze`)
    and never walked again; the objects of requests and jobs still are, and they are then all
    a full collection walks.

    Once per process: a later call (a second app built in the same process, as tests do) does
    nothing, since it would freeze the objects of whatever is in flight then, and a frozen
    object in a reference cycle is never freed."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()

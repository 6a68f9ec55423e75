"""Python's garbage collector in a process that lives for days and serves many at once.

A full collection walks every object the collector tracks, and the process's event loop waits
for it:

- Most of them are what the process built before its first request or job and keeps for its
  whole life: modules, FastAPI's routes and models, pydantic's schemas, SQLAlchemy's tables. A
  gateway process holds some 300,000 of them; under a flood of connections a full collection
  came every few seconds and walked them all again, stalling the gateway 250-500 ms each time
  (README, "At the internet's edge"). They are frozen out of its sight.
- The rest are those of the requests in flight. With 2,000 users arriving over 30 s, each
  gateway process still ran a full collection every 5 s or so (Python's default: after 10
  collections of the middle generation, themselves after 10 of the youngest), each 27-316 ms
  (timed in every collection of both processes, in eight runs of the load). A full collection
  now comes after 100 of the middle generation's: cycles that lived through both younger
  generations wait longer to be freed.
"""

from __future__ import annotations

import gc

# Collections of the middle generation between two full collections (Python's default: 10).
FULL_COLLECTION_AFTER = 100

_tuned = False


def tune_collector() -> None:
    """Called once a process has built what it keeps, before its first request or job (the
    gateway: at the end of its start-up; a worker: before arq's, so its pool's own start-up is
    not frozen): one collection, then every object left is frozen (`gc.freeze`: never walked
    again, nor freed if it ever becomes garbage in a cycle), and full collections made rarer.
    The first of them waits longer still: Python also waits for a quarter more objects than the
    last full collection left, and that one left the whole start-up heap.

    Once per process: a later call (a second app built in the same process, as tests do) does
    nothing, since it would freeze whatever is in flight then."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()
    gc.freeze()
    youngest, middle, _ = gc.get_threshold()
    gc.set_threshold(youngest, middle, FULL_COLLECTION_AFTER)

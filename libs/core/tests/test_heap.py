"""The collector tuned for serving, in a process of its own: the freeze, and the threshold, are
the whole process's."""

import json
import subprocess
import sys

SCRIPT = """
import gc, json, weakref
from esteira_core.heap import FULL_COLLECTION_AFTER, tune_collector

class Node:
    pass

def cycle():
    node = Node()
    node.me = node
    return weakref.ref(node)

before = cycle()  # garbage already: the start-up collection frees it
built = [Node() for _ in range(1000)]  # kept for the process's life
tune_collector()
frozen = gc.get_freeze_count()
after = cycle()  # garbage made later: a later collection still frees it
tune_collector()
gc.collect()
print(json.dumps({
    "frozen": frozen,
    "frozen_again": gc.get_freeze_count(),
    "before_freed": before() is None,
    "after_freed": after() is None,
    "built_frozen": not any(node is built[0] for node in gc.get_objects()),
    "full_after": gc.get_threshold()[2] == FULL_COLLECTION_AFTER,
}))
"""


def test_start_up_frozen_once_later_garbage_still_freed_full_collections_rarer() -> None:
    ran = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout)
    assert found["frozen"] >= 1000
    assert found["frozen_again"] == found["frozen"]  # a second call freezes nothing more
    assert found["before_freed"] and found["after_freed"]
    assert found["built_frozen"]  # out of the collector's sight
    assert found["full_after"]

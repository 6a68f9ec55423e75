"""Waiting for the world to change, as the whole-stack tests do: a condition polled until it
holds (never a fixed sleep), and whether a process is still alive (a zombie is not)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from esteira_scraping.processes import stat_fields

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, message: str) -> T:
    """The condition's first truthy value; fails the test with `message` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
    return value


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != b"Z"

"""Processes as /proc shows them: when one started, its descendants, and killing a browser's
whole process tree (chromedriver and every Chromium process under it, renderers, GPU and zygote
processes included)."""

from __future__ import annotations

import os
import signal
from contextlib import suppress


def stat_fields(pid: int | str) -> list[bytes] | None:
    """A process's /proc/<pid>/stat fields after its command (its state first: field 3 of
    proc(5)), or None when it is not running."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def started(pid: int) -> str | None:
    """When a process started (clock ticks since boot), or None when it is not running: with
    its pid, what tells it from a later process given the same pid."""
    fields = stat_fields(pid)
    return None if fields is None else fields[19].decode()


def process_parents() -> dict[int, int]:
    """Every live process and its parent, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := stat_fields(entry.name)) is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int, parents: dict[int, int] | None = None) -> list[int]:
    """Every live descendant of `pid` (children before grandchildren), from /proc or from one
    reading of it (`process_parents()`) shared by several calls."""
    parents = process_parents() if parents is None else parents
    found: list[int] = []
    frontier = [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def kill_tree(pid: int) -> list[int]:
    """SIGKILLs `pid` and all its descendants (a browser's renderers, GPU and zygote processes
    included); returns the pids signalled."""
    victims = [pid, *descendants(pid)]
    for victim in victims:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)
    return victims

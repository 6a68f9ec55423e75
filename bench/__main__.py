"""`make bench`: runs every benchmark module in this folder (bench_*.py), one after another.

Each prints a markdown table and exactly one summary line; pass names to run only some:
`python -m bench serialization ruptura`.
"""

import importlib
import pkgutil
import signal
import sys
from pathlib import Path


def _stop(_signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so every benchmark's context managers stop what they started.
    raise KeyboardInterrupt


def main(names: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    available = sorted(
        module.name.removeprefix("bench_")
        for module in pkgutil.iter_modules([str(Path(__file__).parent)])
        if module.name.startswith("bench_")
    )
    unknown = set(names) - set(available)
    if unknown:
        print(
            f"unknown benchmarks: {', '.join(sorted(unknown))}; available: {', '.join(available)}"
        )
        return 2
    for name in names or available:
        print(f"\n## {name}\n")
        importlib.import_module(f"bench.bench_{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

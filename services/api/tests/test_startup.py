"""What a gateway process does once at start-up, in a process of its own (it is once per
process, and the collector's settings are the whole process's)."""

import json
import subprocess
import sys

from esteira_core.heap import FULL_COLLECTION_AFTER

SCRIPT = """
import asyncio, gc, json, sys
from esteira_api.main import create_app
from esteira_api.settings import ApiSettings

settings = ApiSettings(
    auth_disabled=True, redis_url="redis://127.0.0.1:1", database_url=sys.argv[1]
)
app = create_app(settings)
before = gc.get_threshold()


async def started():
    async with app.router.lifespan_context(app):
        return gc.get_threshold(), gc.get_freeze_count()


after, frozen = asyncio.run(started())
print(json.dumps({"before": before, "after": after, "frozen": frozen}))
"""


def test_the_gateways_start_up_freezes_what_it_built_and_makes_full_collections_rarer(
    tmp_path,
) -> None:
    database = f"sqlite:///{tmp_path / 'gateway.db'}"
    ran = subprocess.run(
        [sys.executable, "-c", SCRIPT, database], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    assert found["before"][2] == 10  # Python's default
    assert found["after"][2] == FULL_COLLECTION_AFTER
    assert found["frozen"] > 50_000  # the app, its routes, models and libraries

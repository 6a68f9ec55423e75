"""Job records: Esteira's JSON serializer against arq's default pickle, side by side.

JSON was chosen for safety (a record from Redis can't run code) and readability; this measures
what that costs per job, so the choice stays an informed one.
"""

import pickle
import timeit

from esteira_core.serialization import deserialize_job, serialize_job

RECORD = {
    "t": 1,
    "f": "ruptura_analyse_batch",
    "a": [],
    "k": {
        "payload": {
            "session_id": "0f" * 16,
            "pedidos": [str(100000 + i) for i in range(20)],
            "batch_index": 7,
            "mode": "independent",
            "reference_date": "2026-11-22",
        }
    },
    "et": 1795311881271,
}
ROUNDS = 20_000


def _per_call(statement, repeat: int = 5) -> float:
    return min(timeit.repeat(statement, number=ROUNDS, repeat=repeat)) / ROUNDS * 1e6


def main() -> None:
    json_raw, pickle_raw = serialize_job(RECORD), pickle.dumps(RECORD)
    rows = [
        (
            "json (esteira)",
            _per_call(lambda: serialize_job(RECORD)),
            _per_call(lambda: deserialize_job(json_raw)),
            len(json_raw),
        ),
        (
            "pickle (arq default)",
            _per_call(lambda: pickle.dumps(RECORD)),
            _per_call(lambda: pickle.loads(pickle_raw)),
            len(pickle_raw),
        ),
    ]
    print("| serializer | encode µs | decode µs | bytes |")
    print("|---|---:|---:|---:|")
    for name, encode, decode, size in rows:
        print(f"| {name} | {encode:.2f} | {decode:.2f} | {size} |")
    ratio = (rows[0][1] + rows[0][2]) / (rows[1][1] + rows[1][2])
    print(
        f"serialization: json {ratio:.2f}x the time of pickle per job record, "
        f"{rows[0][3] / rows[1][3]:.2f}x the size"
    )

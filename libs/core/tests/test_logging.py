import json
import logging

import pytest

from esteira_core.logging import JsonFormatter, bind


def _format(record: logging.LogRecord) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(JsonFormatter().format(record))
    return parsed


def test_a_line_carries_the_bound_ids_and_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"msg": "batch %s done", "args": (3,), "levelname": "INFO", "name": "w", "pool": "ruptura"}
    )
    with bind(job_id="j-1"), bind(request_id="r-9"):
        line = _format(record)
    assert line["msg"] == "batch 3 done"
    assert (line["job_id"], line["request_id"], line["pool"]) == ("j-1", "r-9", "ruptura")


def test_ids_do_not_leak_out_of_their_block() -> None:
    with bind(job_id="j-1"):
        pass
    line = _format(logging.makeLogRecord({"msg": "x"}))
    assert "job_id" not in line


def test_exceptions_are_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("n", logging.ERROR, __file__, 1, "failed", (), None)
        import sys

        record.exc_info = sys.exc_info()
    formatted = JsonFormatter().format(record)
    assert "\n" not in formatted
    assert "ValueError: boom" in json.loads(formatted)["exc"]

from datetime import date, datetime

import pytest

from esteira_core.serialization import deserialize_job, serialize_job


def test_round_trips_an_arq_job_record_as_json() -> None:
    record = {"t": 1, "f": "canary", "a": [], "k": {"payload": {"note": "olá"}}, "et": 1700000000}
    raw = serialize_job(record)
    assert raw.startswith(b"{")
    assert deserialize_job(raw) == record


def test_dates_become_iso_strings_and_exceptions_keep_type_and_message() -> None:
    raw = serialize_job(
        {"d": date(2026, 1, 2), "dt": datetime(2026, 1, 2, 3, 4), "r": KeyError("x")}
    )
    assert deserialize_job(raw) == {
        "d": "2026-01-02",
        "dt": "2026-01-02T03:04:00",
        "r": {"exception": "KeyError", "message": "'x'"},
    }


def test_refuses_objects_it_cannot_represent() -> None:
    with pytest.raises(TypeError):
        serialize_job({"x": object()})


def test_refuses_a_record_that_is_not_an_object() -> None:
    with pytest.raises(ValueError):
        deserialize_job(b"[1, 2]")

"""A session's event stream, as a browser's EventSource meets it."""

import pytest

pytestmark = pytest.mark.integration


def test_an_event_stream_ends_at_its_bound_with_a_reconnect_hint(make_client, redis_url) -> None:
    """A session nobody serves never finishes; its stream still ends, telling the browser to
    reconnect, so a gateway's rollout never waits on it."""
    client = make_client(redis_url, event_stream_max_seconds=0.5, ruptura_grace_seconds=3600)
    started = client.post("/api/v1/ruptura/sessions", json={"pedidos": ["100001"]})
    assert started.status_code == 202, started.text
    with client.stream("GET", started.json()["events_url"]) as stream:
        lines = list(stream.iter_lines())
    assert lines[0] == "event: progress" and '"done": false' in lines[1]
    assert [line for line in lines if line][-3:] == ["retry: 1000", "event: reconnect", "data: {}"]

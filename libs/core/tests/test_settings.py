import pytest
from pydantic import ValidationError

from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings, WorkerPoolSettings
from esteira_core.worker import configured_timeouts


def test_reads_esteira_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_REDIS_URL", "rediss://cache.internal:6380/2")
    monkeypatch.setenv("ESTEIRA_REDIS_PASSWORD", "s3cret")
    pool = create_redis(CoreSettings()).connection_pool
    options = pool.connection_kwargs
    assert (options["host"], options["port"], options["db"]) == ("cache.internal", 6380, 2)
    assert options["password"] == "s3cret" and "SSL" in pool.connection_class.__name__


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_REDIS_PASSWORD", "s3cret")
    monkeypatch.setenv("ESTEIRA_DATABASE_PASSWORD", "pg-s3cret")
    text = repr(CoreSettings()) + str(CoreSettings().model_dump())
    assert "s3cret" not in text


def test_rejects_a_redis_url_of_another_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_REDIS_URL", "http://localhost:6379")
    with pytest.raises(ValidationError, match="ESTEIRA_REDIS_URL"):
        CoreSettings()


def test_the_completion_wait_must_exceed_the_job_timeout() -> None:
    class Pool:
        job_timeout = 30
        job_completion_wait = 40

    assert configured_timeouts(Pool, WorkerPoolSettings()) == {
        "job_timeout": 30,
        "job_completion_wait": 40,
    }
    configured = WorkerPoolSettings(job_timeout_seconds=50, job_completion_wait_seconds=55)
    assert configured_timeouts(Pool, configured) == {"job_timeout": 50, "job_completion_wait": 55}
    with pytest.raises(ValueError, match="must exceed the job timeout"):
        configured_timeouts(Pool, WorkerPoolSettings(job_timeout_seconds=45))
    # A pool's own overrides (the scraper's, after a raised hard limit) stand in for its
    # defaults; what is configured still wins.
    raised = {"job_timeout": 630, "job_completion_wait": 640}
    assert configured_timeouts(Pool, WorkerPoolSettings(), raised) == raised
    assert configured_timeouts(Pool, configured, raised) == {
        "job_timeout": 50,
        "job_completion_wait": 55,
    }


def test_sentinels_are_host_port_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_REDIS_URL", "redis://ignored:6379/3")
    monkeypatch.setenv("ESTEIRA_REDIS_SENTINELS", "sentinel-0:26379, [fd00::7]:26380,")
    monkeypatch.setenv("ESTEIRA_REDIS_MASTER_NAME", "esteira")
    settings = CoreSettings()
    assert settings.sentinel_addresses == [("sentinel-0", 26379), ("fd00::7", 26380)]
    assert CoreSettings(redis_sentinels="").sentinel_addresses == []


@pytest.mark.parametrize("sentinels", ["sentinel-0", "sentinel-0:port", ":26379", "s:70000"])
def test_rejects_a_malformed_sentinel(sentinels: str) -> None:
    with pytest.raises(ValidationError, match="ESTEIRA_REDIS_SENTINELS"):
        CoreSettings(redis_sentinels=sentinels)

from esteira_core.breaker import CircuitBreaker, CircuitOpen, State
from esteira_testing.clock import ManualClock


def test_a_failure_opens_the_circuit_until_a_probe_succeeds() -> None:
    clock = ManualClock(100.0)
    breaker = CircuitBreaker("redis", reset_seconds=2, clock=clock)
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is State.OPEN and not breaker.allow()
    clock.now += 1.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow() and breaker.state is State.HALF_OPEN  # the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.success()
    assert breaker.state is State.CLOSED and breaker.allow()


def test_a_failed_probe_reopens_for_another_interval() -> None:
    clock = ManualClock(100.0)
    breaker = CircuitBreaker("redis", reset_seconds=2, clock=clock)
    breaker.failure()
    clock.now += 2
    assert breaker.allow()
    breaker.failure()
    clock.now += 1
    try:
        breaker.check()
    except CircuitOpen:
        pass
    else:
        raise AssertionError("the circuit should be open")

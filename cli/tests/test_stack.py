"""The local stack's restart back-off (the restart itself is tested end to end in
tests/e2e/test_local_stack.py)."""

from esteira_cli.stack import RESTART_MAX_DELAY_SECONDS, RESTART_STABLE_SECONDS, Restarts


def test_a_crash_looping_worker_waits_longer_each_time_up_to_the_cap() -> None:
    restarts = Restarts(started_at=1000.0)
    now = 1001.0
    waits = []
    for _ in range(8):
        wait = restarts.died(now)
        waits.append(wait)
        now += wait
        restarts.restarted(now)
        now += 0.5  # dies again at once
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    assert restarts.count == 8 and max(waits) == RESTART_MAX_DELAY_SECONDS


def test_a_worker_that_ran_a_while_is_restarted_quickly_again() -> None:
    restarts = Restarts(started_at=0.0)
    for now in (1.0, 3.0, 7.0):
        restarts.restarted(now + restarts.died(now))
    assert restarts.delay == 8
    later = restarts.started_at + RESTART_STABLE_SECONDS + 1
    assert restarts.died(later) == 1

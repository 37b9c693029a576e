"""Container restart backoff: first restart at once, then 10 s doubling to 300 s, reset after a quiet spell."""

from __future__ import annotations

from kubelite.agent.pods import RestartBackoff, should_restart

KEY = ("uid", "c")


def test_first_restart_is_immediate_then_doubles_to_the_cap() -> None:
    b = RestartBackoff()
    t = 1000.0
    assert b.remaining(KEY, t) == 0
    delays = []
    for _ in range(8):
        b.restarted(KEY, t)
        delays.append(b.remaining(KEY, t))
        t += b.remaining(KEY, t)  # it crashes again at once; restart when allowed
        assert b.remaining(KEY, t) == 0
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_waiting_time_counts_down() -> None:
    b = RestartBackoff()
    b.restarted(KEY, 0.0)
    b.restarted(KEY, 1.0)  # crashed quickly: 20 s now
    assert b.remaining(KEY, 6.0) == 15.0
    assert b.current(KEY) == 20.0


def test_reset_after_running_long_enough() -> None:
    b = RestartBackoff(reset_after=600)
    b.restarted(KEY, 0.0)
    b.restarted(KEY, 10.0)
    b.restarted(KEY, 30.0)
    assert b.current(KEY) == 40.0
    assert b.remaining(KEY, 700.0) == 0
    b.restarted(KEY, 700.0)
    assert b.current(KEY) == 10.0


def test_forget_pod_only_drops_that_pod() -> None:
    b = RestartBackoff()
    b.restarted(("u1", "a"), 0.0)
    b.restarted(("u2", "a"), 0.0)
    b.forget_pod("u1")
    assert b.remaining(("u1", "a"), 1.0) == 0
    assert b.remaining(("u2", "a"), 1.0) == 9.0


def test_restart_policy() -> None:
    assert should_restart("Always", 0) and should_restart("Always", 1)
    assert should_restart("OnFailure", 1) and not should_restart("OnFailure", 0)
    assert not should_restart("Never", 1) and not should_restart("Never", 0)

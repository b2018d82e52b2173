"""The device's wait for the edge (edgent_ros.inference.reply_wait_ms)."""

import pytest

from edgent_ros.inference import reply_wait_ms


def test_waits_until_the_last_moment_a_local_answer_meets_the_deadline() -> None:
    # 1000 ms deadline, 100 ms old, local answer takes 600 ms: wait 300 ms.
    assert reply_wait_ms(remote_ms=50, fallback_ms=600, deadline_ms=1000,
                         age_ms=100) == pytest.approx(300)


def test_a_slow_link_is_not_a_dead_edge() -> None:
    # Twice the predicted remote part at least, and 50 ms at least.
    assert reply_wait_ms(remote_ms=100, fallback_ms=100, deadline_ms=1000,
                         age_ms=750) == pytest.approx(250)
    assert reply_wait_ms(remote_ms=5, fallback_ms=100, deadline_ms=0, age_ms=0) == 50


def test_when_a_local_answer_would_be_late_the_edge_gets_until_the_deadline() -> None:
    # The device part took 850 of 1000 ms and the fallback needs 890: answering
    # alone cannot meet the deadline, so the edge is waited for until it.
    assert reply_wait_ms(remote_ms=40, fallback_ms=890, deadline_ms=1000,
                         age_ms=850) == pytest.approx(150)
    # Local answer possible only by cutting the edge's floor short: the same.
    assert reply_wait_ms(remote_ms=100, fallback_ms=700, deadline_ms=1000,
                         age_ms=150) == pytest.approx(850)
    # The fallback alone misses the deadline whatever happens.
    assert reply_wait_ms(remote_ms=100, fallback_ms=1500, deadline_ms=1000,
                         age_ms=20) == pytest.approx(980)

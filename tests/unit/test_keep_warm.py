"""keep_warm's spinner runs while the participant waits and stops while it computes."""

from __future__ import annotations

import time

from splittracer.participant.warm import KeepWarm


def test_spins_while_waiting_and_not_while_computing() -> None:
    warm = KeepWarm()
    warm.start()
    try:
        time.sleep(0.2)
        assert warm.products > 0
        with warm.paused():
            before = warm.products
            time.sleep(0.1)
            assert warm.products == before
        time.sleep(0.1)
        assert warm.products > before
    finally:
        warm.stop()
    assert not warm._thread.is_alive()

"""`limits.time_limit`: work is stopped at its deadline even where Python loses the signal's
exception (a weakref callback, a `__del__`)."""

from __future__ import annotations

import time

import pytest

from diffvq.limits import TooSlow, time_limit


def test_a_block_within_its_time_is_left_alone():
    with time_limit(5):
        time.sleep(0.01)


def test_a_slow_block_is_stopped():
    start = time.monotonic()
    with pytest.raises(TooSlow):
        with time_limit(0.05):
            time.sleep(5)
    assert time.monotonic() - start < 1


def test_a_swallowed_alarm_still_ends_the_block_with_too_slow():
    """As when the exception lands in a weakref callback ("Exception ignored in ..."): the
    block carries on, and is told it was too slow when it ends."""
    with pytest.raises(TooSlow):
        with time_limit(0.05):
            for _ in range(3):
                try:
                    time.sleep(0.2)
                except TooSlow:
                    pass  # lost, whatever the repeats


def test_an_exception_of_the_block_is_not_replaced():
    with pytest.raises(ValueError):
        with time_limit(0.01):
            time.sleep(0.05) if False else None
            raise ValueError("its own")


def test_an_alarm_that_lands_inside_no_grad_enter_leaves_gradients_on():
    """The alarm can fire between `torch.no_grad().__enter__` switching gradients off and the
    `with` body, where no `__exit__` runs; before this was handled, every training after a
    timed-out meta build in the same process failed ('does not require grad')."""
    import torch

    from diffvq.limits import TooSlow, time_limit

    with pytest.raises(TooSlow):
        with time_limit(5.0):
            torch.set_grad_enabled(False)  # as no_grad's __enter__ does, then the alarm
            raise TooSlow
    assert torch.is_grad_enabled()

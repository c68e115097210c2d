"""Warm, repeated timing: the timed calls come after an untimed warm-up, and the figure is the
median of at least five of them. (Nothing here asserts a duration: the clock is replaced.)"""

import pytest
import torch

from diffvq import measure
from diffvq.measure import Timing, time_calls

CPU = torch.device("cpu")


class Recorder:
    """A sampler stand-in that records each call and whether it came after a warm-up."""

    def __init__(self):
        self.calls: list[bool] = []  # per call: was the function already warm?

    def __call__(self):
        self.calls.append(bool(self.calls))
        return len(self.calls)


def test_first_timed_call_is_not_the_first_call(monkeypatch):
    fn = Recorder()
    timed_calls: list[bool] = []
    real = measure.timed

    def spy(f, device):
        out = real(f, device)
        timed_calls.append(fn.calls[-1])
        return out

    monkeypatch.setattr(measure, "timed", spy)
    t = time_calls(fn, CPU)
    assert fn.calls[0] is False and len(fn.calls) == 1 + t.repeats
    assert timed_calls and all(timed_calls)  # every timed call was a warm one


def test_at_least_five_repeats_by_default():
    fn = Recorder()
    t = time_calls(fn, CPU)
    assert t.repeats >= 5 and len(t.times) == t.repeats


def test_the_figure_is_the_median_with_its_range(monkeypatch):
    clock = iter([0.1, 0.9, 0.3, 0.2, 0.4])  # what each timed call "took"
    monkeypatch.setattr(measure, "timed", lambda f, device: (f(), next(clock)))
    fn = Recorder()
    t = time_calls(fn, CPU, repeats=5)
    assert len(fn.calls) == 6  # the warm-up ran, but took no reading
    assert t.times == (0.1, 0.9, 0.3, 0.2, 0.4)
    assert t.median_s == 0.3 and t.lo_s == 0.1 and t.hi_s == 0.9
    clock = iter([4.0, 1.0, 3.0, 2.0])  # an even count: the mean of the middle two
    assert time_calls(lambda: None, CPU, repeats=4, warmup=0).median_s == 2.5


def test_per_item_divides_every_figure():
    t = Timing(0.3, 0.1, 0.9, 3, (0.1, 0.3, 0.9)).per(10)
    assert t.median_s == pytest.approx(0.03) and t.lo_s == pytest.approx(0.01)
    assert t.hi_s == pytest.approx(0.09) and t.times == pytest.approx((0.01, 0.03, 0.09))
    assert t.as_dict()["repeats"] == 3


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="repeats"):
        time_calls(lambda: None, CPU, repeats=0)

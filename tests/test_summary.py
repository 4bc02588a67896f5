"""r2d.eval.summary: mean ± sample SD over seeds, and figures as text."""

import math

import pytest

from r2d.eval.summary import MeanSD, fmt, fmt_mean_sd, mean_sd


def test_mean_sd_is_the_sample_standard_deviation_of_present_values():
    stat = mean_sd([0.5, None, 0.7, 0.9])
    assert stat.mean == pytest.approx(0.7) and stat.sd == pytest.approx(math.sqrt(0.04))  # (0.04+0+0.04)/(3-1)
    assert mean_sd([0.4]) == MeanSD(0.4, None) and mean_sd([None]) == mean_sd([]) == MeanSD(None, None)


@pytest.mark.parametrize(
    "value, digits, text",
    [(0.51234, 3, "0.512"), (0.51234, 4, "0.5123"), (None, 3, "n/a"), (7, 3, "7"), ("skipped", 4, "skipped")],
)
def test_fmt(value, digits, text):
    assert fmt(value, digits) == text


def test_fmt_mean_sd():
    assert fmt_mean_sd(mean_sd([0.5, 0.7])) == "0.600 ± 0.141"
    assert fmt_mean_sd(mean_sd([1])) == "1.000" and fmt_mean_sd(mean_sd([])) == "n/a"

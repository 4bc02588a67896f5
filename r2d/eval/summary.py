"""How figures are summarised and printed in reports and model cards: the mean and sample standard deviation
over seeds or arms, and a figure as text."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MeanSD:
    mean: float | None  # None: no value to average
    sd: float | None  # None: fewer than two values


def mean_sd(values: Sequence[float | None]) -> MeanSD:
    """Mean and sample standard deviation of the values that are not None."""
    present = [v for v in values if v is not None]
    if not present:
        return MeanSD(None, None)
    return MeanSD(statistics.mean(present), statistics.stdev(present) if len(present) > 1 else None)


def fmt(value: Any, digits: int = 3) -> str:
    """A float to `digits` places, None as "n/a", anything else as its text."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def fmt_mean_sd(stat: MeanSD, digits: int = 3) -> str:
    """ "0.512 ± 0.031", or the mean alone for one value, or "n/a"."""
    if stat.mean is None:
        return "n/a"
    return fmt(float(stat.mean), digits) + ("" if stat.sd is None else f" ± {stat.sd:.{digits}f}")

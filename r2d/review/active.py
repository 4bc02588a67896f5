"""Review what teaches most first: order a batch queue by the model's uncertainty, as active-learning tools do.

Two measures, both read from the stored batch prediction (no model call when ordering):
- least_confident: 1 - the top label probability (uncertainty sampling);
- disagreement: 1 - the probability that the rationale *alone* gives the predicted label (the
  "rationale_probabilities" a batch prediction stores): a rationale that does not support its own label
  is where a nurse's correction changes the most.
"upload" keeps the file's order. Items without a prediction go last, in upload order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ORDERS = ("upload", "least_confident", "disagreement")
DEFAULT_ORDER = "upload"


def uncertainty(prediction: Mapping[str, Any], order: str) -> float | None:
    """How unsure the model is about one stored prediction under `order` (higher = review sooner), or None
    when the prediction lacks what that order reads."""
    if order == "least_confident":
        probabilities = prediction.get("probabilities") or {}
        return 1.0 - max(probabilities.values()) if probabilities else None
    if order == "disagreement":
        from_rationale = prediction.get("rationale_probabilities") or {}
        label = prediction.get("label")
        return 1.0 - float(from_rationale[label]) if label in from_rationale else None
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


def review_order(predictions: Sequence[Mapping[str, Any] | None], order: str) -> list[int]:
    """Positions of the items in the order to review them: most uncertain first (ties and items the
    measure cannot read keep their upload order, after the measured ones)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "upload":
        return list(range(len(predictions)))
    scored = [(uncertainty(p, order) if p else None, i) for i, p in enumerate(predictions)]
    measured = sorted((s for s in scored if s[0] is not None), key=lambda s: (-s[0], s[1]))
    return [i for _, i in measured] + [i for s, i in scored if s is None]

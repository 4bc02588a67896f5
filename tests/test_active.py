"""r2d.review.active: the queue order for each measure, with ties and unpredicted items in upload order."""

from __future__ import annotations

import pytest

from r2d.review.active import ORDERS, review_order, uncertainty

PREDICTIONS = [
    {"label": "3", "probabilities": {"2": 0.1, "3": 0.9}, "rationale_probabilities": {"2": 0.2, "3": 0.8}},
    {"label": "2", "probabilities": {"2": 0.5, "3": 0.5}, "rationale_probabilities": {"2": 0.9, "3": 0.1}},
    None,  # not predicted yet
    {"label": "3", "probabilities": {"2": 0.4, "3": 0.6}, "rationale_probabilities": {"2": 0.7, "3": 0.3}},
]


def test_upload_order_is_the_file_order():
    assert review_order(PREDICTIONS, "upload") == [0, 1, 2, 3]


def test_least_confident_first():
    assert uncertainty(PREDICTIONS[1], "least_confident") == pytest.approx(0.5)
    assert review_order(PREDICTIONS, "least_confident") == [1, 3, 0, 2]


def test_disagreement_between_label_and_rationale_first():
    assert uncertainty(PREDICTIONS[3], "disagreement") == pytest.approx(0.7)
    assert review_order(PREDICTIONS, "disagreement") == [3, 0, 1, 2]


def test_ties_and_unmeasurable_items_keep_upload_order():
    same = [{"label": "1", "probabilities": {"1": 0.5, "2": 0.5}}] * 3
    assert review_order(same, "least_confident") == [0, 1, 2]
    assert review_order(same, "disagreement") == [0, 1, 2]  # no rationale_probabilities stored


@pytest.mark.parametrize("order", ["random", ""])
def test_unknown_orders_are_refused(order):
    with pytest.raises(ValueError, match="order must be one of"):
        review_order(PREDICTIONS, order)
    assert order not in ORDERS

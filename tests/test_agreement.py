"""Reviewer agreement: Cohen's and Fleiss' kappa against published worked examples, and on stored reviews."""

from __future__ import annotations

import pytest

from r2d.review.agreement import agreement, cohen_kappa, fleiss_kappa


def test_cohen_kappa_matches_the_worked_example():
    # Wikipedia "Cohen's kappa": 50 proposals, both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["1", "2", "3"], ["1", "2", "3"]) == pytest.approx(1.0)
    assert cohen_kappa([], []) is None and cohen_kappa(["2", "2"], ["2", "2"]) is None
    with pytest.raises(ValueError):
        cohen_kappa(["1"], ["1", "2"])


def test_fleiss_kappa_matches_the_worked_example():
    # Wikipedia "Fleiss' kappa": 10 subjects, 14 raters, 5 categories -> P = 0.378, Pe = 0.213, kappa = 0.210
    rows = [
        (0, 0, 0, 0, 14),
        (0, 2, 6, 4, 2),
        (0, 0, 3, 5, 6),
        (0, 3, 9, 2, 0),
        (2, 2, 8, 1, 1),
        (7, 7, 0, 0, 0),
        (3, 2, 6, 3, 0),
        (2, 5, 3, 2, 2),
        (6, 5, 2, 1, 0),
        (0, 2, 2, 3, 7),
    ]
    table = [{str(k + 1): c for k, c in enumerate(row) if c} for row in rows]
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-4)
    assert fleiss_kappa([{"1": 1}]) is None  # one rater: no agreement to measure


@pytest.fixture(scope="session")
def review(make_review):
    """review(case, reviewer, label, i): reviewer's review i of a case, with its final label."""
    return lambda case, reviewer, label, i: make_review(
        i, case_text=case, reviewer=reviewer, final_label=label, review_id=i
    )


def test_agreement_of_stored_reviews_counts_cases_pairs_and_disagreements(review):
    reviews = [
        review("c1", "A", "2", 1),
        review("c1", "B", "2", 2),
        review("c2", "A", "3", 3),
        review("c2", "B", "4", 4),
        review("c3", "A", "1", 5),
        review("c3", "B", "1", 6),
        review("c3", "C", "2", 7),
        review("c4", "A", "5", 8),
    ]  # c4 has one reviewer: left out
    result = agreement(reviews)
    assert (result.n_cases, result.n_reviewers) == (3, 3)
    assert result.observed == pytest.approx((1 + 0 + 1 / 3) / 3)
    [ab, *rest] = result.pairs
    assert ab.reviewers == ("A", "B") and ab.n_cases == 3 and ab.agreement == pytest.approx(2 / 3)
    assert ab.kappa == pytest.approx(cohen_kappa(["2", "3", "1"], ["2", "4", "1"]))
    assert {tuple(r.reviewer for r in d) for d in result.disagreements} == {("A", "B"), ("A", "B", "C")}
    assert agreement([]).n_cases == 0 and agreement([]).fleiss is None

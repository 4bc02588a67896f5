"""Dashboard figures and summary numbers, computed from plain ReviewRecords."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest

from r2d.review.dashboard import (
    action_rates_figure,
    confidence_histogram,
    dashboard_figures,
    label_distribution_figure,
    per_class_f1_figure,
    probability_figure,
    ratings_figure,
    summarize,
    triage_figure,
)
from r2d.review.store import ReviewRecord


@pytest.fixture(scope="session")
def review(make_review, ktas_labels):
    """review(model_label, final_label, action, rating, top): the model gave model_label probability top."""

    def build(model_label: str, final_label: str, action: str, rating: int | None, top: float = 0.6) -> ReviewRecord:
        rest = (1 - top) / 4
        probabilities = {k: top if k == model_label else rest for k in ktas_labels}
        return make_review(
            f"{model_label}{final_label}{action}{rating}{top}",
            reviewer="A",
            case_id="c",
            case_text="case",
            model_id="m",
            prompt_version="p",
            action=action,
            model_label=model_label,
            model_rationale="r",
            model_probabilities=probabilities,
            final_label=final_label,
            final_rationale="r2",
            rating=rating,
            comment="",
            consistency_label=None,
            time_on_task_s=None,
        )

    return build


@pytest.fixture(scope="session")
def dashboard_reviews(review) -> list[ReviewRecord]:
    return [
        review("2", "2", "accepted", 5, top=0.9),
        review("2", "2", "edited", 4, top=0.7),
        review("3", "2", "relabelled", 2, top=0.35),  # model less urgent than nurse: under-triage
        review("4", "5", "relabelled", None, top=0.45),  # model more urgent: over-triage
    ]


def test_probability_figure_shows_every_label_and_highlights_the_choice(ktas_names):
    probabilities = {"1": 0.05, "2": 0.6, "3": 0.2, "4": 0.1, "5": 0.05}
    fig = probability_figure(probabilities, ktas_names, chosen="2")
    bar = fig.data[0]
    assert list(bar.x) == list(probabilities.values())
    assert list(bar.y) == [f"{k} — {v}" for k, v in ktas_names.items()]
    assert list(bar.text) == ["5%", "60%", "20%", "10%", "5%"]
    assert probability_figure({"a": 0.999, "b": 0.001}, {}).data[0].text == ("100%", "<1%")
    colors = list(bar.marker.color)
    others = {c for c, label in zip(colors, probabilities) if label != "2"}
    assert len(others) == 1 and colors[1] not in others


def test_summary_numbers(dashboard_reviews, ktas_labels):
    s = summarize(dashboard_reviews, ktas_labels, ordinal=True)
    assert s.n_reviews == 4
    assert (s.accept_rate, s.edit_rate, s.relabel_rate) == (0.25, 0.25, 0.5)
    assert s.accuracy == 0.5
    assert s.mean_rating == pytest.approx(11 / 3)
    assert (s.under_triage, s.over_triage) == (1, 1)
    text = s.as_markdown()
    assert "**4** reviewed" in text and "under-triage 1" in text


def test_summary_of_nothing_and_of_unordered_labels(dashboard_reviews, ktas_labels):
    assert summarize([], ktas_labels, True).as_markdown() == "No reviews yet."
    s = summarize(dashboard_reviews, ktas_labels, ordinal=False)
    assert s.under_triage is None and "triage" not in s.as_markdown()


def test_label_distribution_counts_model_and_nurse(dashboard_reviews, ktas_labels, ktas_names):
    fig = label_distribution_figure(dashboard_reviews, ktas_labels, ktas_names)
    model, nurse = fig.data
    assert (model.name, nurse.name) == ("model", "nurse")
    assert list(model.y) == [0, 2, 1, 1, 0] and list(nurse.y) == [0, 3, 0, 0, 1]


def test_confidence_histogram_splits_kept_and_corrected(dashboard_reviews):
    kept, corrected = confidence_histogram(dashboard_reviews).data
    assert sorted(kept.x) == [0.7, 0.9] and sorted(corrected.x) == [0.35, 0.45]


def test_ratings_and_action_rates(dashboard_reviews):
    assert list(ratings_figure(dashboard_reviews).data[0].y) == [0, 1, 0, 1, 1, 1]
    assert list(action_rates_figure(dashboard_reviews).data[0].y) == [0.25, 0.25, 0.5]


def test_per_class_f1_against_the_nurse_label(dashboard_reviews, ktas_labels, ktas_names):
    bar = per_class_f1_figure(dashboard_reviews, ktas_labels, ktas_names).data[0]
    f1 = dict(zip(bar.x, bar.y))
    assert f1["2 — Emergency"] == pytest.approx(0.8)  # tp 2, fp 0, fn 1
    assert f1["3 — Urgent"] == 0.0 and f1["5 — Non-urgent"] == 0.0


def test_triage_figure_counts_and_non_ordinal_message(dashboard_reviews):
    bar = triage_figure(dashboard_reviews, ordinal=True).data[0]
    assert list(bar.y) == [1, 2, 1]
    fig = triage_figure(dashboard_reviews, ordinal=False)
    assert not fig.data and "not ordinal" in fig.layout.annotations[0].text


def test_labels_from_another_model_stay_visible(ktas_labels, ktas_names, review):
    fig = label_distribution_figure([review("2", "7", "relabelled", 3)], ktas_labels, ktas_names)
    assert "7" in list(fig.data[1].x)


def test_every_dashboard_figure_exists_with_and_without_reviews(dashboard_reviews, ktas_labels, ktas_names):
    for reviews in ([], dashboard_reviews):
        figures = dashboard_figures(reviews, ktas_labels, ktas_names, ordinal=True)
        assert list(figures) == ["labels", "confidence", "ratings", "actions", "f1", "triage"]
        assert all(isinstance(f, go.Figure) for f in figures.values())
        if not reviews:
            assert all(f.layout.annotations[0].text == "No reviews yet" for f in figures.values())


def test_figures_have_transparent_backgrounds_for_dark_mode():
    from r2d.review.dashboard import probability_figure

    fig = probability_figure({"1": 0.2, "2": 0.8}, {}, "2")
    assert fig.layout.paper_bgcolor == fig.layout.plot_bgcolor == "rgba(0,0,0,0)"
    css = (Path(__file__).resolve().parent.parent / "assets" / "app.css").read_text()
    assert ".dark .js-plotly-plot" in css


def test_reviews_per_class_counts_every_class():
    from types import SimpleNamespace

    from r2d.review.dashboard import reviews_per_class

    reviews = [SimpleNamespace(final_label=label) for label in ("2", "2", "4")]
    line = reviews_per_class(reviews, ["1", "2", "3", "4", "5"], {"2": "Emergency"})
    assert line.endswith("1: 0 · 2 — Emergency: 2 · 3: 0 · 4: 1 · 5: 0")


def test_comparison_figure_pairs_current_and_new():
    from r2d.review.dashboard import comparison_figure
    from r2d.review.jobs import COMPARED

    comparison = {
        "sets": {
            "held out": {"n": 3, "old": {"accuracy": 0.5, "fidelity": None}, "new": {"accuracy": 0.75, "fidelity": 0.9}}
        }
    }
    fig = comparison_figure(comparison, COMPARED)
    assert [t.name for t in fig.data] == ["current", "new"]
    assert list(fig.data[0].y) == [0.5] and list(fig.data[1].y) == [0.75]  # a metric one side lacks is left out
    assert comparison_figure({"sets": {}}, COMPARED).layout.annotations[0].text == "No comparison yet"

"""Plotly figures for the app: one case's label probabilities and the review dashboard.

All figures are built from plain data (probabilities, ReviewRecords), so they are tested without
a browser. On reviewed cases the nurse's final label is the reference and the model's label the
prediction: per-class F1 and under-/over-triage describe how often nurses had to correct the model.
Each figure function imports plotly itself, so importing this module (and starting the app) does not.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from r2d.eval.metrics import macro_f1, per_class_f1, triage_errors
from r2d.review.session import format_label
from r2d.review.store import ACTIONS, ReviewRecord

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

logger = logging.getLogger(__name__)

_HEIGHT = 300
_BLUE, _ORANGE, _GREY, _RED = "#1f77b4", "#ff7f0e", "#9e9e9e", "#d62728"
_GRID = "rgba(128, 128, 128, 0.3)"


def _layout(fig: Figure, title: str, x_title: str = "", y_title: str = "") -> Figure:
    # transparent backgrounds and grey grid lines read on a light and a dark page alike; assets/app.css gives
    # the text the page's own colour in dark mode
    fig.update_layout(
        title=title,
        height=_HEIGHT,
        margin=dict(l=50, r=20, t=50, b=50),
        xaxis_title=x_title,
        yaxis_title=y_title,
        template="plotly_white",
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
    )
    fig.update_xaxes(gridcolor=_GRID, zerolinecolor=_GRID)
    fig.update_yaxes(gridcolor=_GRID, zerolinecolor=_GRID)
    return fig


def _count_axis(fig: Figure, max_count: int) -> Figure:
    # whole numbers only: half a case on a count axis reads as a bug
    fig.update_yaxes(rangemode="tozero", tick0=0, dtick=max(1, math.ceil(max_count / 5)))
    return fig


def _empty(title: str, message: str = "No reviews yet") -> Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def probability_figure(
    probabilities: Mapping[str, float], label_names: Mapping[str, str], chosen: str | None = None
) -> Figure:
    """Horizontal bar of every label's probability (label-set order, top to bottom); chosen in orange."""
    import plotly.graph_objects as go

    labels = list(probabilities)
    names = [format_label(label, label_names) for label in labels]
    values = [float(probabilities[label]) for label in labels]
    # every label's number stays visible, even a near-zero one (outside the bar, never clipped)
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=[_ORANGE if label == chosen else _BLUE for label in labels],
            text=[f"{v:.0%}" if v >= 0.005 else "<1%" for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, 1.12], tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Probability of each label", "probability")


@dataclass(frozen=True)
class ReviewSummary:
    """Headline numbers of the reviewed cases (current review of each case)."""

    n_reviews: int
    accept_rate: float
    edit_rate: float
    relabel_rate: float
    accuracy: float  # model label == nurse label
    macro_f1: float
    mean_rating: float | None
    under_triage: int | None  # None for non-ordinal label sets
    over_triage: int | None

    def as_markdown(self) -> str:
        """One line of headline numbers for the dashboard."""
        if self.n_reviews == 0:
            return "No reviews yet."
        parts = [
            f"**{self.n_reviews}** reviewed cases",
            f"accepted {self.accept_rate:.0%}",
            f"rationale edited {self.edit_rate:.0%}",
            f"label corrected {self.relabel_rate:.0%}",
            f"model agrees with nurses {self.accuracy:.0%} (macro-F1 {self.macro_f1:.2f})",
        ]
        if self.mean_rating is not None:
            parts.append(f"mean rating {self.mean_rating:.1f}/5")
        if self.under_triage is not None:
            parts.append(f"under-triage {self.under_triage}, over-triage {self.over_triage}")
        return " · ".join(parts)


def summarize(reviews: Sequence[ReviewRecord], label_set: Sequence[str], ordinal: bool) -> ReviewSummary:
    """Rates and agreement of the given (current) reviews; zeros when there are none."""
    n = len(reviews)
    if n == 0:
        return ReviewSummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None)
    actions = Counter(r.action for r in reviews)
    gold, pred = [r.final_label for r in reviews], [r.model_label for r in reviews]
    ratings = [r.rating for r in reviews if r.rating is not None]
    triage = triage_errors(gold, pred) if ordinal else None
    return ReviewSummary(
        n,
        actions["accepted"] / n,
        actions["edited"] / n,
        actions["relabelled"] / n,
        sum(g == p for g, p in zip(gold, pred)) / n,
        macro_f1(gold, pred, _labels(label_set, gold, pred)),
        sum(ratings) / len(ratings) if ratings else None,
        triage.under_triage if triage else None,
        triage.over_triage if triage else None,
    )


def _labels(label_set: Sequence[str], gold: Sequence[str], pred: Sequence[str]) -> list[str]:
    # reviews made with another model may use labels outside the current label set: keep them visible
    return list(label_set) + sorted((set(gold) | set(pred)) - set(label_set))


def label_distribution_figure(
    reviews: Sequence[ReviewRecord], label_set: Sequence[str], label_names: Mapping[str, str]
) -> Figure:
    """Grouped bars: how often the model and the nurses chose each label."""
    import plotly.graph_objects as go

    title = "Label distribution (model vs nurse)"
    if not reviews:
        return _empty(title)
    labels = _labels(label_set, [r.final_label for r in reviews], [r.model_label for r in reviews])
    names = [format_label(label, label_names) for label in labels]
    model, nurse = Counter(r.model_label for r in reviews), Counter(r.final_label for r in reviews)
    fig = go.Figure(
        [
            go.Bar(name="model", x=names, y=[model[label] for label in labels], marker_color=_BLUE),
            go.Bar(name="nurse", x=names, y=[nurse[label] for label in labels], marker_color=_ORANGE),
        ]
    )
    fig.update_layout(barmode="group")
    _count_axis(fig, max([*model.values(), *nurse.values()]))
    return _layout(fig, title, "label", "cases")


def confidence_histogram(reviews: Sequence[ReviewRecord]) -> Figure:
    """Histogram of the model's top-label probability, split by whether the nurse kept its label."""
    import plotly.graph_objects as go

    title = "Model confidence (top-label probability)"
    if not reviews:
        return _empty(title)
    top = [(max(r.model_probabilities.values()), r.final_label == r.model_label) for r in reviews]
    bins = dict(start=0.0, end=1.0, size=0.1)
    fig = go.Figure(
        [
            go.Histogram(name="label kept", x=[p for p, kept in top if kept], xbins=bins, marker_color=_BLUE),
            go.Histogram(name="label corrected", x=[p for p, kept in top if not kept], xbins=bins, marker_color=_RED),
        ]
    )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    _count_axis(fig, len(top))
    return _layout(fig, title, "top-label probability", "cases")


def ratings_figure(reviews: Sequence[ReviewRecord]) -> Figure:
    """Bars of rationale ratings 1-5 and unrated."""
    import plotly.graph_objects as go

    title = "Rationale ratings"
    if not reviews:
        return _empty(title)
    counts = Counter(r.rating for r in reviews)
    x = ["1", "2", "3", "4", "5", "unrated"]
    y = [counts[i] for i in range(1, 6)] + [counts[None]]
    fig = go.Figure(go.Bar(x=x, y=y, marker_color=[_BLUE] * 5 + [_GREY]))
    _count_axis(fig, max(y))
    return _layout(fig, title, "rating", "cases")


def action_rates_figure(reviews: Sequence[ReviewRecord]) -> Figure:
    """Share of reviews accepted unchanged, with an edited rationale, and with a corrected label."""
    import plotly.graph_objects as go

    title = "Accept / edit / relabel rates"
    if not reviews:
        return _empty(title)
    counts = Counter(r.action for r in reviews)
    rates = [counts[a] / len(reviews) for a in ACTIONS]
    fig = go.Figure(
        go.Bar(
            x=list(ACTIONS),
            y=rates,
            text=[f"{v:.0%}" for v in rates],
            textposition="auto",
            marker_color=[_BLUE, _ORANGE, _RED],
        )
    )
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return _layout(fig, title, "", "share of reviews")


def per_class_f1_figure(
    reviews: Sequence[ReviewRecord], label_set: Sequence[str], label_names: Mapping[str, str]
) -> Figure:
    """Per-class F1 of the model's labels against the nurses' labels on reviewed cases."""
    import plotly.graph_objects as go

    title = "Per-class F1 (model vs nurse label)"
    if not reviews:
        return _empty(title)
    gold, pred = [r.final_label for r in reviews], [r.model_label for r in reviews]
    scores = per_class_f1(gold, pred, _labels(label_set, gold, pred))
    names = [format_label(label, label_names) for label in scores]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[s.f1 for s in scores.values()],
            marker_color=_BLUE,
            customdata=[s.support for s in scores.values()],
            hovertemplate="%{x}: F1 %{y:.2f} (n=%{customdata})<extra></extra>",
        )
    )
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title, "label", "F1")


def triage_figure(reviews: Sequence[ReviewRecord], ordinal: bool) -> Figure:
    """Under-triage (model less urgent than the nurse), agreement and over-triage counts."""
    import plotly.graph_objects as go

    title = "Under- vs over-triage (model vs nurse)"
    if not ordinal:
        return _empty(title, "Labels are not ordinal: under/over-triage does not apply")
    if not reviews:
        return _empty(title)
    errors = triage_errors([r.final_label for r in reviews], [r.model_label for r in reviews])
    agree = errors.n - errors.under_triage - errors.over_triage
    fig = go.Figure(
        go.Bar(
            x=["under-triage", "same level", "over-triage"],
            y=[errors.under_triage, agree, errors.over_triage],
            marker_color=[_RED, _GREY, _ORANGE],
        )
    )
    _count_axis(fig, errors.n)
    return _layout(fig, title, "", "cases")


def dashboard_figures(
    reviews: Sequence[ReviewRecord], label_set: Sequence[str], label_names: Mapping[str, str], ordinal: bool
) -> dict[str, Figure]:
    """Every dashboard figure by name, in display order."""
    return {
        "labels": label_distribution_figure(reviews, label_set, label_names),
        "confidence": confidence_histogram(reviews),
        "ratings": ratings_figure(reviews),
        "actions": action_rates_figure(reviews),
        "f1": per_class_f1_figure(reviews, label_set, label_names),
        "triage": triage_figure(reviews, ordinal),
    }


def reviews_per_class(reviews: Sequence[ReviewRecord], label_set: Sequence[str], label_names: Mapping[str, str]) -> str:
    """One line: how many current reviews carry each (nurse) label, rare classes included at 0."""
    counts = Counter(r.final_label for r in reviews)
    labels = _labels(label_set, list(counts), [])
    return "**Reviews per class (nurse label):** " + " · ".join(
        f"{format_label(label, label_names)}: {counts[label]}" for label in labels
    )


def comparison_figure(comparison: Mapping[str, Any], compared: Sequence[tuple[str, str, bool]]) -> Figure:
    """Grouped bars of a training.improve comparison: the current and the new model on each data set and
    metric (rates, 0-1; under-triage is better when lower, as its label says)."""
    import plotly.graph_objects as go

    title = "Current vs new model"
    x, old, new = [], [], []
    for name, row in comparison.get("sets", {}).items():
        for key, label, higher in compared:
            if row["old"].get(key) is None or row["new"].get(key) is None:
                continue
            x.append(f"{label}{'' if higher else ' (lower is better)'}<br>{name}")
            old.append(row["old"][key])
            new.append(row["new"][key])
    if not x:
        return _empty(title, "No comparison yet")
    fig = go.Figure(
        [go.Bar(name="current", x=x, y=old, marker_color=_BLUE), go.Bar(name="new", x=x, y=new, marker_color=_ORANGE)]
    )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title, "", "rate")

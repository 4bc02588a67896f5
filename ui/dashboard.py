"""The Dashboard tab: summary, reviewer agreement, flags, the adjudication panel (ui/adjudication.py) and six
figures of the review that counts for each case (resolved across reviewers as the export does)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from r2d.review import adjudication as adj
from r2d.review import session as rv
from r2d.review.agreement import agreement
from r2d.review.dashboard import dashboard_figures, reviews_per_class, summarize
from r2d.review.export import export_cases
from r2d.review.store import ReviewStore
from ui.adjudication import AdjudicationPanel
from ui.common import Tab, ui_errors
from ui.model import ModelInUse

PLOT_ROWS = (
    ("Label distribution", "Model confidence"),
    ("Ratings", "Accept / edit rates"),
    ("Per-class F1", "Under- vs over-triage"),
)


@dataclass
class DashboardUI:
    tab: gr.Tab
    refresh: gr.Button
    summary: gr.Markdown
    agreement: gr.Markdown
    flags: gr.Dataframe
    plots: list


def agreement_markdown(a: Any) -> str:
    """Agreement with its counts; reviewer names go through rv.plain (they are user text)."""
    if a.n_cases == 0:
        return "**Agreement:** no case has been reviewed by two or more reviewers yet."
    fleiss = "undefined (every label the same)" if a.fleiss is None else f"{a.fleiss:.2f}"
    parts = [
        f"**Agreement** on {a.n_cases} case(s) reviewed by 2+ of {a.n_reviewers} reviewers: "
        f"{a.observed:.0%} of reviewer pairs agree on the label · Fleiss' κ {fleiss} · "
        f"{len(a.disagreements)} with different labels"
    ]
    for pair in a.pairs[:6]:
        kappa = "undefined" if pair.kappa is None else f"{pair.kappa:.2f}"
        parts.append(
            f"Cohen's κ {rv.plain(pair.reviewers[0])} vs {rv.plain(pair.reviewers[1])}: {kappa} "
            f"(n = {pair.n_cases}, {pair.agreement:.0%} agree)"
        )
    return "\n\n".join(parts)


class DashboardTab(Tab):
    def __init__(self, model: ModelInUse, store: ReviewStore) -> None:
        self.model, self.store = model, store
        self.adjudication = AdjudicationPanel(model, store, on_settled=self.show)

    @ui_errors
    def show(self, name: str = "", request: gr.Request | None = None) -> dict:
        """Summary, reviewer agreement, the cases to adjudicate (the first one opened), flags and the figures."""
        cases, p = export_cases(self.store), self.model.predictor
        reviews = [c.review for c in cases]
        figures = dashboard_figures(reviews, p.label_set, p.label_names, p.ordinal)
        summary = summarize(reviews, p.label_set, p.ordinal).as_markdown()
        guard = rv.under_triage_line(reviews, p.label_set)
        choices = adj.case_choices(self.store, p.label_names)
        first = choices[0][1] if choices else None
        return {
            **self.out(
                summary=f"{summary}\n\n{reviews_per_class(reviews, p.label_set, p.label_names)}"
                + (f"\n\n{guard}" if guard else ""),
                agreement=self._agreement(),
                flags=[
                    [e.case_id, e.reviewer, e.note, e.created_at[:16].replace("T", " ")]
                    for e in self.store.events("flag")
                ],
            ),
            **self.adjudication.out(open_cases=adj.open_markdown(cases), case=gr.update(choices=choices, value=first)),
            **self.adjudication.open_case(first, name, request),
            **dict(zip(self.ui.plots, figures.values())),
        }

    def _agreement(self) -> str:
        blind, n_unblinded = adj.blind_reviews(self.store)
        return agreement_markdown(agreement(blind)) + (
            f"\n\n{n_unblinded} review(s) made after their reviewer had seen another's answer "
            "(a save, then an undo or a correction) are left out of agreement."
            if n_unblinded
            else ""
        )

    def layout(self, label_choices: list[tuple[str, str]]) -> DashboardUI:
        with gr.Tab("Dashboard", elem_id="r2d-dashboard-tab") as tab:
            refresh = gr.Button("Refresh", elem_id="r2d-dash-refresh")
            summary = gr.Markdown(elem_id="r2d-dash-summary")
            agreement_md = gr.Markdown(elem_id="r2d-dash-agreement")
            self.adjudication.layout(label_choices)
            flags = gr.Dataframe(
                headers=["case id", "reviewer", "why", "when"],
                datatype="str",
                interactive=False,
                label="Flagged cases",
                elem_id="r2d-flags",
            )
            plots = []
            for row in PLOT_ROWS:
                with gr.Row():
                    plots += [gr.Plot(label=name, show_label=False) for name in row]
        self.ui = DashboardUI(
            tab=tab, refresh=refresh, summary=summary, agreement=agreement_md, flags=flags, plots=plots
        )
        return self.ui

    def wire(self) -> None:
        u, a = self.ui, self.adjudication.ui
        out = [u.summary, u.agreement, a.open_cases, a.case, u.flags] + self.adjudication.opened_outputs() + u.plots
        for trigger in (u.refresh.click, u.tab.select):
            trigger(self.show, [self.shared.reviewer], out, api_name=False)
        self.adjudication.wire(out)

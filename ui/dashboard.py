"""The Dashboard tab: summary, reviewer agreement, flags, figures, and adjudication."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from r2d.errors import ReviewActionError
from r2d.review import adjudication as adj
from r2d.review import session as rv
from r2d.review.agreement import agreement
from r2d.review.dashboard import dashboard_figures, reviews_per_class, summarize
from r2d.review.export import export_cases
from ui.common import HandlerBase, picker, ui_errors, who


def _agreement_markdown(a: Any) -> str:
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


def dashboard_tab(c: dict[str, Any]) -> None:
    c["dash_refresh"] = gr.Button("Refresh", elem_id="r2d-dash-refresh")
    c["dash_summary"] = gr.Markdown(elem_id="r2d-dash-summary")
    c["dash_agreement"] = gr.Markdown(elem_id="r2d-dash-agreement")
    adjudication_panel(c)
    c["dash_flags"] = gr.Dataframe(
        headers=["case id", "reviewer", "why", "when"],
        datatype="str",
        interactive=False,
        label="Flagged cases",
        elem_id="r2d-flags",
    )
    c["dash_plots"] = []
    for row in (
        ("Label distribution", "Model confidence"),
        ("Ratings", "Accept / edit rates"),
        ("Per-class F1", "Under- vs over-triage"),
    ):
        with gr.Row():
            c["dash_plots"] += [gr.Plot(label=name, show_label=False) for name in row]


def adjudication_panel(c: dict[str, Any]) -> None:
    """Cases whose reviewers disagree: their reviews side by side, and a pick (click, or Tab and arrow keys)."""
    with gr.Group(elem_id="r2d-adjudication"):
        c["adj_md"] = gr.Markdown(elem_id="r2d-adj-count")
        c["adj_case"] = gr.Dropdown(label="Case to adjudicate", choices=[], elem_id="r2d-adj-case")
        c["adj_view"] = gr.HTML(elem_id="r2d-adj-view")
        c["adj_pick"] = gr.Radio(
            [],
            label="Settle it: adopt a review, or write the final (arrow keys move the choice)",
            elem_id="r2d-adj-pick",
        )
        with gr.Row():
            c["adj_label"] = gr.Radio(
                c["label_choices"], label="Final label (if you write the final)", elem_id="r2d-adj-label"
            )
            c["adj_rationale"] = gr.Textbox(
                label="Final rationale (if you write the final)", lines=3, elem_id="r2d-adj-rationale"
            )
        c["adj_settle"] = gr.Button("Settle this case", variant="primary", elem_id="r2d-adj-settle")
    c["dash_status"] = gr.Markdown(elem_id="r2d-dash-status")


class DashboardHandlers(HandlerBase):
    """The dashboard's figures and the adjudication of cases whose reviewers disagree."""

    @ui_errors
    def dashboard(self, name: str = "", request: gr.Request | None = None) -> dict:
        """Summary, reviewer agreement, the cases to adjudicate, flags, and the figures of the review that counts
        for each case (resolved across reviewers as the export does)."""
        cases, p = export_cases(self.store), self.predictor
        reviews = [c.review for c in cases]
        figures = dashboard_figures(reviews, p.label_set, p.label_names, p.ordinal)
        blind, n_unblinded = adj.blind_reviews(self.store)
        agreed = agreement(blind)
        summary = summarize(reviews, p.label_set, p.ordinal).as_markdown()
        choices = adj.case_choices(self.store, p.label_names)
        opened = self.adjudication_case(choices[0][1] if choices else None, name, request)
        guard = rv.under_triage_line(reviews, p.label_set)
        return {
            **self._out(
                dash_summary=f"{summary}\n\n{reviews_per_class(reviews, p.label_set, p.label_names)}"
                + (f"\n\n{guard}" if guard else ""),
                dash_agreement=_agreement_markdown(agreed)
                + (
                    f"\n\n{n_unblinded} review(s) made after their reviewer had seen another's answer "
                    "(a save, then an undo or a correction) are left out of agreement."
                    if n_unblinded
                    else ""
                ),
                adj_md=adj.open_markdown(cases),
                adj_case=gr.update(choices=choices, value=choices[0][1] if choices else None),
                dash_flags=[
                    [e.case_id, e.reviewer, e.note, e.created_at[:16].replace("T", " ")]
                    for e in self.store.events("flag")
                ],
            ),
            **opened,
            **dict(zip(self.c["dash_plots"], figures.values())),
        }

    @ui_errors
    def adjudication_case(self, case_id: str | None, name: str = "", request: gr.Request | None = None) -> dict:
        """The reviews of one case side by side with their diff, and the ways to settle it (blind review: not
        to a reviewer of its batch who has not reviewed it yet)."""
        empty = self._out(adj_view="", adj_pick=gr.update(choices=[], value=None), adj_label=None, adj_rationale="")
        if not case_id:
            return empty
        case = adj.find_case(self.store, case_id)
        hidden = adj.hidden_from(self.store, case, who(request, name))
        if hidden:
            return {**empty, **self._out(adj_view=f"<p class='r2d-adj-hidden'>{html.escape(hidden)}</p>")}
        latest = case.reviews[-1]
        return self._out(
            adj_view=adj.side_by_side_html(case, self.predictor.label_names),
            adj_pick=gr.update(choices=adj.pick_choices(case, self.predictor.label_names), value=None),
            adj_label=latest.final_label,
            adj_rationale=latest.final_rationale,
        )

    @ui_errors
    def adjudicate(
        self, case_id: str | None, pick: str | None, label: str | None, rationale: str, name: str, request: gr.Request
    ) -> dict:
        """Settle a case: adopt the picked review, or store the final the adjudicator wrote (the export takes it)."""
        reviewer = self._reviewer(request, name)
        if not case_id:
            raise ReviewActionError("choose a case to adjudicate first")
        if not pick:
            raise ReviewActionError("pick a review to adopt, or 'Write the final' and fill in the label and rationale")
        hidden = adj.hidden_from(self.store, adj.find_case(self.store, case_id), reviewer)
        if hidden:
            raise ReviewActionError(hidden)
        if pick == adj.WRITE:
            record = adj.write_final(self.store, reviewer, case_id, label or "", rationale or "")
            done = f"✓ Your final (label {record.final_label}, review #{record.review_id}) settles case `{case_id}`."
        else:
            try:
                review_id = int(pick)
            except ValueError as e:
                raise ReviewActionError("pick one of the listed reviews") from e
            record = adj.adopt(self.store, reviewer, case_id, review_id)
            done = f"✓ Review #{review_id} (label {record.final_label}) adopted for case `{case_id}`."
        return {**self.dashboard(name, request), **self._out(dash_status=done)}


def wire_dashboard(demo: gr.Blocks, h: Any, c: dict[str, Any]) -> None:
    """The dashboard's and the adjudication panel's events."""
    outs = picker(c)
    adj_out = outs("adj_view", "adj_pick", "adj_label", "adj_rationale")
    dash_out = outs("dash_summary", "dash_agreement", "adj_md", "adj_case", "dash_flags") + adj_out + c["dash_plots"]
    for trigger in (c["dash_refresh"].click, c["dash_tab"].select):
        trigger(h.dashboard, outs("reviewer"), dash_out, api_name=False)
    c["adj_case"].select(h.adjudication_case, outs("adj_case", "reviewer"), adj_out, api_name=False)
    c["adj_settle"].click(
        h.adjudicate,
        outs("adj_case", "adj_pick", "adj_label", "adj_rationale", "reviewer"),
        dash_out + outs("dash_status"),
        api_name="adjudicate",
        trigger_mode="once",
    )

"""The Dashboard's adjudication panel: cases whose reviewers disagree, their reviews side by side, and a pick
(click, or Tab and arrow keys) that settles each one (r2d.review.adjudication decides who may)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from r2d.review import adjudication as adj
from r2d.review.store import ReviewStore
from ui.common import Tab, reviewer, ui_errors, who
from ui.model import ModelInUse


@dataclass
class AdjudicationUI:
    open_cases: gr.Markdown
    case: gr.Dropdown
    view: gr.HTML
    pick: gr.Radio
    label: gr.Radio
    rationale: gr.Textbox
    settle: gr.Button
    status: gr.Markdown


class AdjudicationPanel(Tab):
    """on_settled(name, request): the dashboard as it stands after a case is settled."""

    def __init__(self, model: ModelInUse, store: ReviewStore, on_settled: Callable[[str, Any], dict]) -> None:
        self.model, self.store, self.on_settled = model, store, on_settled

    @ui_errors
    def open_case(self, case_id: str | None, name: str = "", request: gr.Request | None = None) -> dict:
        """The reviews of one case side by side with their diff, and the ways to settle it (blind review: not
        to a reviewer of its batch who has not reviewed it yet)."""
        empty = self.out(view="", pick=gr.update(choices=[], value=None), label=None, rationale="")
        if not case_id:
            return empty
        case = adj.find_case(self.store, case_id)
        hidden = adj.hidden_from(self.store, case, who(request, name))
        if hidden:
            return {**empty, **self.out(view=f"<p class='r2d-adj-hidden'>{html.escape(hidden)}</p>")}
        latest, names = case.reviews[-1], self.model.predictor.label_names
        return self.out(
            view=adj.side_by_side_html(case, names),
            pick=gr.update(choices=adj.pick_choices(case, names), value=None),
            label=latest.final_label,
            rationale=latest.final_rationale,
        )

    @ui_errors
    def settle(
        self, case_id: str | None, pick: str | None, label: str | None, rationale: str, name: str, request: gr.Request
    ) -> dict:
        """Settle a case: adopt the picked review, or store the final the adjudicator wrote (the export takes it)."""
        _, done = adj.settle(self.store, reviewer(request, name), case_id, pick, label, rationale)
        return {**self.on_settled(name, request), **self.out(status=done)}

    def opened_outputs(self) -> list:
        u = self.ui
        return [u.view, u.pick, u.label, u.rationale]

    def layout(self, label_choices: list[tuple[str, str]]) -> AdjudicationUI:
        with gr.Group(elem_id="r2d-adjudication"):
            open_cases = gr.Markdown(elem_id="r2d-adj-count")
            case = gr.Dropdown(label="Case to adjudicate", choices=[], elem_id="r2d-adj-case")
            view = gr.HTML(elem_id="r2d-adj-view")
            pick = gr.Radio(
                [],
                label="Settle it: adopt a review, or write the final (arrow keys move the choice)",
                elem_id="r2d-adj-pick",
            )
            with gr.Row():
                label = gr.Radio(label_choices, label="Final label (if you write the final)", elem_id="r2d-adj-label")
                rationale = gr.Textbox(
                    label="Final rationale (if you write the final)", lines=3, elem_id="r2d-adj-rationale"
                )
            settle = gr.Button("Settle this case", variant="primary", elem_id="r2d-adj-settle")
        self.ui = AdjudicationUI(
            open_cases=open_cases,
            case=case,
            view=view,
            pick=pick,
            label=label,
            rationale=rationale,
            settle=settle,
            status=gr.Markdown(elem_id="r2d-dash-status"),
        )
        return self.ui

    def wire(self, dashboard_out: list) -> None:
        u, name = self.ui, self.shared.reviewer
        u.case.select(self.open_case, [u.case, name], self.opened_outputs(), api_name=False)
        u.settle.click(
            self.settle,
            [u.case, u.pick, u.label, u.rationale, name],
            dashboard_out + [u.status],
            api_name="adjudicate",
            trigger_mode="once",
        )

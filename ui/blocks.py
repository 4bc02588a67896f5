"""The app's Blocks: the header, the reviewer's name, and the four tabs, each from its own module
(ui.review and ui.batch, ui.dashboard, ui.export, ui.improve), with one Handlers object that all of them share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from r2d.config import R2DConfig
from r2d.review import session as rv
from r2d.review import upload as up
from r2d.review.store import ReviewStore
from ui.batch import BatchHandlers, batch_panel, wire_batch
from ui.common import ROOT, read_asset
from ui.dashboard import DashboardHandlers, dashboard_tab, wire_dashboard
from ui.export import ExportHandlers, export_tab, wire_export
from ui.improve import ImproveHandlers, improve_tab, wire_improve
from ui.review import ReviewHandlers, review_panel, wire_review
from ui.server import CACHE_CLEANUP_S

EXAMPLES_DIR = ROOT / "examples"
UNVERIFIED_NOTE = (
    "⚠ **Names are not verified**: anyone can type any name here. Start the app with "
    "`--auth FILE` to have reviewers sign in."
)
SIGNED_IN_NOTE = "Signed in: your reviews are recorded under your sign-in name."


class Handlers(ReviewHandlers, BatchHandlers, DashboardHandlers, ExportHandlers, ImproveHandlers):
    """Every tab's event handlers on one shared state (ui.common.HandlerBase). Each returns {component: value};
    per-user data arrives as gr.State/BrowserState inputs."""


def load_example_cases(directory: Path = EXAMPLES_DIR, limit: int = 8) -> list[str]:
    """Up to `limit` case texts from examples/*.jsonl (none if there are none)."""
    cases: list[str] = []
    for path in sorted(directory.glob("*.jsonl")):
        cases += up.load_cases(path, max_rows=100_000, max_chars=100_000)
    return cases[:limit]


def build_app(
    predictor: rv.PredictorLike,
    store: ReviewStore,
    cfg: R2DConfig,
    examples: Sequence[str] | None = None,
    signed_in: bool = False,
) -> tuple[gr.Blocks, Handlers]:
    """The UI and its handlers (whose `c` names every component); nothing is launched, no weights loaded.

    signed_in: the app is launched with sign-in (--auth), so the recorded name is the signed-in one.
    """
    h = Handlers(predictor, store, cfg)
    c = h.c
    c["examples"] = list(load_example_cases() if examples is None else examples)
    c["label_choices"] = rv.label_choices(predictor.label_set, predictor.label_names)
    secret = store.browser_secret()
    with gr.Blocks(
        title="Reason2Decide — triage review", analytics_enabled=False, delete_cache=CACHE_CLEANUP_S
    ) as demo:
        gr.Markdown("# Reason2Decide — triage review")
        c["model_md"] = gr.Markdown(h._model_line(), elem_id="r2d-model")
        gr.Markdown(read_asset("disclaimer.md"), elem_id="r2d-disclaimer")
        with gr.Row():
            with gr.Column():
                c["reviewer"] = gr.Textbox(
                    label="Reviewer",
                    placeholder="Your name (recorded with every review)",
                    elem_id="r2d-reviewer",
                    interactive=not signed_in,
                )
                gr.Markdown(SIGNED_IN_NOTE if signed_in else UNVERIFIED_NOTE, elem_id="r2d-names-note")
            gr.Markdown(read_asset("shortcuts.md"), elem_id="r2d-shortcuts")
        c["shown"] = gr.State(None)  # the case under review, per browser session
        # the open batch, the position and the name survive a refresh (browser storage) and a restart (DB secret)
        c["queue"] = gr.BrowserState({}, storage_key="r2d-queue", secret=secret)
        c["saved_name"] = gr.BrowserState("", storage_key="r2d-reviewer", secret=secret)
        with gr.Tabs():
            with gr.Tab("Review", elem_id="r2d-review-tab"):
                batch_panel(c)
                review_panel(predictor, c)
            with gr.Tab("Dashboard", elem_id="r2d-dashboard-tab") as c["dash_tab"]:
                dashboard_tab(c)
            with gr.Tab("Export", elem_id="r2d-export-tab"):
                export_tab(c)
            with gr.Tab("Improve the model", elem_id="r2d-improve-tab") as c["im_tab"]:
                improve_tab(c, cfg)
        for wire in (wire_review, wire_batch, wire_dashboard, wire_export, wire_improve):
            wire(demo, h, c)
        demo.load(h._model_line, None, [c["model_md"]], api_name=False)  # a page opened after a switch says so
    # several reviewers may save at once; model-heavy events keep their own limit of 1 (ui.common.MODEL_QUEUE)
    return demo.queue(default_concurrency_limit=8), h

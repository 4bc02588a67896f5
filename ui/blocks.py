"""The app's Blocks: the header, then one tab per module (review with its batch panel, dashboard, export, improve).

Nothing is launched here and no weights are loaded: build_app takes any predictor, so tests run the whole UI on
a fake one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from r2d.config import R2DConfig
from r2d.review import session as rv
from r2d.review import upload as up
from r2d.review.store import ReviewStore
from ui.batch import BatchPanel
from ui.common import ROOT, Shared, read_asset
from ui.dashboard import DashboardTab
from ui.export import ExportTab
from ui.improve import ImproveTab
from ui.model import ModelInUse
from ui.review import ReviewTab
from ui.server import CACHE_CLEANUP_S

EXAMPLES_DIR = ROOT / "examples"
UNVERIFIED_NOTE = (
    "⚠ **Names are not verified**: anyone can type any name here. Start the app with "
    "`--auth FILE` to have reviewers sign in."
)
SIGNED_IN_NOTE = "Signed in: your reviews are recorded under your sign-in name."


@dataclass
class App:
    """The built UI and its parts: each tab's handlers hold its components in `.ui`."""

    demo: gr.Blocks
    model: ModelInUse
    shared: Shared
    review: ReviewTab
    batch: BatchPanel
    dashboard: DashboardTab
    export: ExportTab
    improve: ImproveTab


def load_example_cases(directory: Path = EXAMPLES_DIR, limit: int = 8) -> list[str]:
    """Up to `limit` case texts from examples/*.jsonl (none if there are none)."""
    cases: list[str] = []
    for path in sorted(directory.glob("*.jsonl")):
        cases += up.load_cases(path, max_rows=100_000, max_chars=100_000)
    return cases[:limit]


def _header(model: ModelInUse, signed_in: bool, secret: str) -> Shared:
    gr.Markdown("# Reason2Decide — triage review")
    model_md = gr.Markdown(model.line(), elem_id="r2d-model")
    gr.Markdown(read_asset("disclaimer.md"), elem_id="r2d-disclaimer")
    with gr.Row():
        with gr.Column():
            name = gr.Textbox(
                label="Reviewer",
                placeholder="Your name (recorded with every review)",
                elem_id="r2d-reviewer",
                interactive=not signed_in,
            )
            gr.Markdown(SIGNED_IN_NOTE if signed_in else UNVERIFIED_NOTE, elem_id="r2d-names-note")
        gr.Markdown(read_asset("shortcuts.md"), elem_id="r2d-shortcuts")
    # the name survives a refresh (browser storage) and a restart (the DB's secret)
    saved_name = gr.BrowserState("", storage_key="r2d-reviewer", secret=secret)
    return Shared(model_md=model_md, reviewer=name, saved_name=saved_name)


def build_app(
    predictor: rv.PredictorLike,
    store: ReviewStore,
    cfg: R2DConfig,
    examples: Sequence[str] | None = None,
    signed_in: bool = False,
) -> App:
    """The UI around a predictor and a store, every event wired; nothing is launched, no weights loaded.

    examples: case texts offered one click away (default: examples/*.jsonl).
    signed_in: the app is launched with sign-in (--auth), so the recorded name is the signed-in one.
    """
    model = ModelInUse(predictor, cfg)
    review = ReviewTab(model, store, cfg)
    batch, dashboard = BatchPanel(review, store, cfg), DashboardTab(model, store)
    export, improve = ExportTab(store, cfg), ImproveTab(model, cfg)
    examples = list(load_example_cases() if examples is None else examples)
    label_choices = rv.label_choices(predictor.label_set, predictor.label_names)
    secret = store.browser_secret()
    with gr.Blocks(
        title="Reason2Decide — triage review", analytics_enabled=False, delete_cache=CACHE_CLEANUP_S
    ) as demo:
        shared = _header(model, signed_in, secret)
        for tab in (review, batch, dashboard, dashboard.adjudication, export, improve):
            tab.shared = shared
        with gr.Tabs():
            review.layout(examples, batch, secret)
            dashboard.layout(label_choices)
            export.layout()
            improve.layout()
        review.wire()
        batch.wire(demo)
        dashboard.wire()
        export.wire()
        improve.wire()
        shared.reviewer.change(
            lambda name: name, [shared.reviewer], [shared.saved_name], api_name=False, show_progress="hidden"
        )
        demo.load(model.line, None, [shared.model_md], api_name=False)  # a page opened after a switch says so
    # several reviewers may save at once; model-heavy events keep their own limit of 1 (ui.common.MODEL_QUEUE)
    return App(demo.queue(default_concurrency_limit=8), model, shared, review, batch, dashboard, export, improve)

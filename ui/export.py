"""The Export tab: the current review of each case as Stage-2 training data, after an identifier scan whose
findings the reviewer must see and confirm ('Export anyway'); the download is a zip, never the folder itself."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gradio as gr

from r2d.config import R2DConfig, config_to_dict
from r2d.errors import ReviewActionError
from r2d.review.export import (
    DownloadZips,
    ExportPolicy,
    export_stage2_dataset,
    findings_fingerprint,
    findings_message,
    new_export_dir,
    preview_export,
    sweep_partial_exports,
)
from r2d.review.store import ACTIONS, ReviewStore
from ui.common import Tab, reviewer, ui_errors


@dataclass
class ExportUI:
    actions: gr.CheckboxGroup
    min_rating: gr.Slider
    consistent: gr.Checkbox
    val_fraction: gr.Slider
    test_csv: gr.Checkbox
    start: gr.Button
    findings_md: gr.Markdown
    findings: gr.Dataframe
    confirm_row: gr.Row
    confirm: gr.Button
    cancel: gr.Button
    summary: gr.Markdown
    files: gr.File
    seen: gr.State  # the findings this session was shown, which 'Export anyway' confirms


def policy_of(actions: list[str] | None, min_rating: float, consistent: bool) -> ExportPolicy:
    return ExportPolicy(tuple(actions or ()), int(min_rating), bool(consistent))


class ExportTab(Tab):
    def __init__(self, store: ReviewStore, cfg: R2DConfig) -> None:
        self.store, self.cfg = store, cfg
        self.downloads = DownloadZips()
        sweep_partial_exports(cfg.app.export_dir)  # exports a killed app or CLI never finished

    @ui_errors
    def start(
        self,
        actions: list[str],
        min_rating: float,
        consistent: bool,
        val_fraction: float,
        test_csv: bool,
        name: str,
        request: gr.Request,
    ) -> dict:
        """Scan what would be exported; export at once if the scans find nothing, else show the findings and
        remember them: 'Export anyway' (UI or API) only confirms the findings this session has seen."""
        exported_by = reviewer(request, name)
        policy = policy_of(actions, min_rating, consistent)
        reviews, findings = preview_export(self.store, policy)
        message = findings_message(findings, len(reviews))
        if not findings:
            return {
                **self.out(findings=[], findings_md=message, confirm_row=gr.update(visible=False)),
                **self._export(policy, val_fraction, test_csv, exported_by, findings_fingerprint(policy, [])),
            }
        return self.out(
            findings=[[f.case_id, f.field, f.kind, f.text] for f in findings],
            findings_md=message,
            confirm_row=gr.update(visible=True),
            files=None,
            summary="",
            seen=findings_fingerprint(policy, findings),
        )

    @ui_errors
    def confirm(
        self,
        actions: list[str],
        min_rating: float,
        consistent: bool,
        val_fraction: float,
        test_csv: bool,
        name: str,
        seen: Any,
        request: gr.Request,
    ) -> dict:
        """Export anyway: only when this session was shown exactly the findings the data has now."""
        exported_by = reviewer(request, name)
        if not isinstance(seen, str) or not seen:
            raise ReviewActionError(
                "press 'Export for Stage 2' first and look at what the scan found: nothing was scanned in this session"
            )
        policy = policy_of(actions, min_rating, consistent)
        return {**self._export(policy, val_fraction, test_csv, exported_by, seen), **self.out(seen=None)}

    def cancel(self) -> dict:
        return self.out(
            findings=[],
            confirm_row=gr.update(visible=False),
            findings_md="Export cancelled: save corrected reviews, then export again.",
        )

    def _export(self, policy: ExportPolicy, val_fraction: float, test_csv: bool, exported_by: str, seen: str) -> dict:
        """Write the export if its own scan finds what the reviewer saw (`seen`, a findings fingerprint)."""
        # a folder outside every path Gradio serves; the download is a copy (a zip) in the app's private cache
        result = export_stage2_dataset(
            self.store,
            new_export_dir(self.cfg.app.export_dir),
            policy,
            float(val_fraction),
            bool(test_csv),
            seed=self.cfg.optim.seed,
            exported_by=exported_by,
            config=config_to_dict(self.cfg),
            expect_fingerprint=seen,
        )
        # the app's private cache folder (ui.server.use_private_temp_dir), else the system temporary folder
        archive = self.downloads.add(result.out_dir, result.all_files, os.environ.get("GRADIO_TEMP_DIR"))
        return self.out(files=[str(archive)], summary=result.summary(), confirm_row=gr.update(visible=False))

    def layout(self) -> ExportUI:
        with gr.Tab("Export", elem_id="r2d-export-tab"):
            gr.Markdown(
                "Writes the current review of each case as Stage-2 training data (question / label / "
                "rationale, rationale_source = nurse_post_processed) and `export_meta.json`, after an "
                "identifier scan."
            )
            with gr.Row():
                actions = gr.CheckboxGroup(list(ACTIONS), value=list(ACTIONS), label="Include reviews that were")
                rating = gr.Slider(0, 5, value=0, step=1, label="Minimum rating (0 = any, unrated included)")
                consistent = gr.Checkbox(label="Only rationales consistent with their label")
            with gr.Row():
                val = gr.Slider(0.05, 0.4, value=0.1, step=0.05, label="Validation fraction")
                test = gr.Checkbox(label="Also write a test split as test.csv")
            start = gr.Button("Export for Stage 2", variant="primary", elem_id="r2d-export")
            findings_md = gr.Markdown(elem_id="r2d-findings-md")
            findings = gr.Dataframe(
                headers=["case id", "field", "kind", "text"],
                datatype="str",
                interactive=False,
                label="Likely patient identifiers",
                elem_id="r2d-findings",
            )
            with gr.Row(visible=False) as row:
                confirm = gr.Button("Export anyway", variant="stop", elem_id="r2d-export-anyway")
                cancel = gr.Button("Go back", elem_id="r2d-export-cancel")
            summary = gr.Markdown(elem_id="r2d-export-summary")
            files = gr.File(
                label="Download the export (zip)", file_count="multiple", interactive=False, elem_id="r2d-export-files"
            )
        self.ui = ExportUI(
            actions=actions,
            min_rating=rating,
            consistent=consistent,
            val_fraction=val,
            test_csv=test,
            start=start,
            findings_md=findings_md,
            findings=findings,
            confirm_row=row,
            confirm=confirm,
            cancel=cancel,
            summary=summary,
            files=files,
            seen=gr.State(None),
        )
        return self.ui

    def wire(self) -> None:
        u = self.ui
        given = [u.actions, u.min_rating, u.consistent, u.val_fraction, u.test_csv, self.shared.reviewer]
        out = [u.findings, u.findings_md, u.confirm_row, u.files, u.summary, u.seen]
        u.start.click(self.start, given, out, api_name="export")
        u.confirm.click(self.confirm, given + [u.seen], out, api_name="export_anyway")
        u.cancel.click(self.cancel, None, out, api_name=False)

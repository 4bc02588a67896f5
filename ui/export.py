"""The Export tab: nurse-post-processed rationales as Stage-2 data, after an identifier scan."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from r2d.config import config_to_dict
from r2d.errors import ReviewActionError
from r2d.review.export import (
    ExportPolicy,
    export_stage2_dataset,
    findings_fingerprint,
    findings_message,
    preview_export,
)
from r2d.review.store import ACTIONS
from ui.common import HandlerBase, picker, ui_errors


def _policy(actions: list[str] | None, min_rating: float, consistent: bool) -> ExportPolicy:
    return ExportPolicy(tuple(actions or ()), int(min_rating), bool(consistent))


def export_tab(c: dict[str, Any]) -> None:
    gr.Markdown(
        "Writes the current review of each case as Stage-2 training data (question / label / rationale, "
        "rationale_source = nurse_post_processed) and `export_meta.json`, after an identifier scan."
    )
    with gr.Row():
        c["ex_actions"] = gr.CheckboxGroup(list(ACTIONS), value=list(ACTIONS), label="Include reviews that were")
        c["ex_rating"] = gr.Slider(0, 5, value=0, step=1, label="Minimum rating (0 = any, unrated included)")
        c["ex_consistent"] = gr.Checkbox(label="Only rationales consistent with their label")
    with gr.Row():
        c["ex_val"] = gr.Slider(0.05, 0.4, value=0.1, step=0.05, label="Validation fraction")
        c["ex_test"] = gr.Checkbox(label="Also write a test split as test.csv")
    c["ex_start"] = gr.Button("Export for Stage 2", variant="primary", elem_id="r2d-export")
    c["ex_findings_md"] = gr.Markdown(elem_id="r2d-findings-md")
    c["ex_findings"] = gr.Dataframe(
        headers=["case id", "field", "kind", "text"],
        datatype="str",
        interactive=False,
        label="Likely patient identifiers",
        elem_id="r2d-findings",
    )
    with gr.Row(visible=False) as c["ex_row"]:
        c["ex_confirm"] = gr.Button("Export anyway", variant="stop", elem_id="r2d-export-anyway")
        c["ex_cancel"] = gr.Button("Go back", elem_id="r2d-export-cancel")
    c["ex_summary"] = gr.Markdown(elem_id="r2d-export-summary")
    c["ex_files"] = gr.File(
        label="Download the export (zip)", file_count="multiple", interactive=False, elem_id="r2d-export-files"
    )
    c["ex_seen"] = gr.State(None)  # the findings this session was shown, which 'Export anyway' confirms


class ExportHandlers(HandlerBase):
    """Scan, confirm and write an export; hand it out as a zip."""

    @ui_errors
    def export_start(
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
        self._reviewer(request, name)
        policy = _policy(actions, min_rating, consistent)
        reviews, findings = preview_export(self.store, policy)
        message = findings_message(findings, len(reviews))
        if not findings:
            return {
                **self._out(ex_findings=[], ex_findings_md=message, ex_row=gr.update(visible=False)),
                **self._export(policy, val_fraction, test_csv, name, request, findings_fingerprint(policy, [])),
            }
        return self._out(
            ex_findings=[[f.case_id, f.field, f.kind, f.text] for f in findings],
            ex_findings_md=message,
            ex_row=gr.update(visible=True),
            ex_files=None,
            ex_summary="",
            ex_seen=findings_fingerprint(policy, findings),
        )

    @ui_errors
    def export_confirm(
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
        self._reviewer(request, name)
        if not isinstance(seen, str) or not seen:
            raise ReviewActionError(
                "press 'Export for Stage 2' first and look at what the scan found: nothing was scanned in this session"
            )
        policy = _policy(actions, min_rating, consistent)
        return {**self._export(policy, val_fraction, test_csv, name, request, seen), **self._out(ex_seen=None)}

    def _export(
        self, policy: ExportPolicy, val_fraction: float, test_csv: bool, name: str, request: gr.Request, seen: str
    ) -> dict:
        """Write the export if its own scan finds what the reviewer saw (`seen`, a findings fingerprint)."""
        # a folder name nobody can guess, outside every path Gradio serves; the download is a copy (a zip)
        folder = f"export-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(8)}"
        result = export_stage2_dataset(
            self.store,
            Path(self.cfg.app.export_dir) / folder,
            policy,
            float(val_fraction),
            bool(test_csv),
            seed=self.cfg.optim.seed,
            exported_by=self._reviewer(request, name),
            config=config_to_dict(self.cfg),
            expect_fingerprint=seen,
        )
        return self._out(
            ex_files=[str(self._download_copy(result.out_dir, result.all_files))],
            ex_summary=result.summary(),
            ex_row=gr.update(visible=False),
        )

    def _download_copy(self, out_dir: Path, files: Sequence[Path]) -> Path:
        """A zip of the export in a private temporary folder, for the download component to hand out once."""
        while len(self._downloads) >= 4:  # Gradio keeps its own copy; older temporary zips are not needed
            shutil.rmtree(self._downloads.pop(0), ignore_errors=True)
        cache = os.environ.get("GRADIO_TEMP_DIR")  # the app's private folder (see use_private_temp_dir)
        if cache:
            Path(cache).mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="r2d-download-", dir=cache))  # mode 0700
        self._downloads.append(folder)
        archive = folder / f"{out_dir.name}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f.name)
        archive.chmod(0o600)
        return archive


def wire_export(demo: gr.Blocks, h: Any, c: dict[str, Any]) -> None:
    """The export's events."""
    outs = picker(c)
    export_in = outs("ex_actions", "ex_rating", "ex_consistent", "ex_val", "ex_test", "reviewer")
    export_out = outs("ex_findings", "ex_findings_md", "ex_row", "ex_files", "ex_summary", "ex_seen")
    c["ex_start"].click(h.export_start, export_in, export_out, api_name="export")
    c["ex_confirm"].click(h.export_confirm, export_in + outs("ex_seen"), export_out, api_name="export_anyway")
    c["ex_cancel"].click(
        lambda: {
            c["ex_findings"]: [],
            c["ex_row"]: gr.update(visible=False),
            c["ex_findings_md"]: "Export cancelled: save corrected reviews, then export again.",
        },
        None,
        export_out,
        api_name=False,
    )

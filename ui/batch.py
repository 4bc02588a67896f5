"""The batch panel of the Review tab: upload cases (choosing columns when the file names none), predict them
all, then move through the queue in the chosen order. Each case opens in the review panel (ui/review.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from r2d.config import R2DConfig
from r2d.errors import InvalidCaseError, R2DError, ReviewActionError
from r2d.review import session as rv
from r2d.review import upload as up
from r2d.review.active import DEFAULT_ORDER
from r2d.review.store import ReviewStore
from ui.common import MODEL_QUEUE, Tab, known_order, queue_of, ui_errors, who

logger = logging.getLogger("r2d.app")
NO_ID_COLUMN = "(no id column)"
ORDER_CHOICES = [
    ("As uploaded", "upload"),
    ("Least confident first", "least_confident"),
    ("Rationale disagrees with its label first", "disagreement"),
]
NO_BATCH = "open a batch first: upload one, or choose a saved batch and press Open"


@dataclass
class BatchUI:
    queue: gr.BrowserState  # the open batch and position: survives a refresh (browser) and a restart (DB secret)
    batch_panel: gr.Accordion
    upload: gr.File
    batch: gr.Dropdown
    resume: gr.Button
    up_status: gr.Markdown
    up_map: gr.Row
    up_case_col: gr.Dropdown
    up_id_col: gr.Dropdown
    up_use: gr.Button
    up_pending: gr.State  # the upload waiting for its columns (server side, this session only)
    order: gr.Dropdown
    prev: gr.Button
    queue_md: gr.Markdown
    next: gr.Button
    next_todo: gr.Button


def _in_upload_cache(path: str) -> bool:
    """Whether a path is an upload in Gradio's cache (never any other server file)."""
    from gradio.utils import get_upload_folder, is_in_or_equal

    return is_in_or_equal(path, get_upload_folder())


def _discard_upload(path: str) -> None:
    """Delete an uploaded file once it is read (its cases are in the store), if it is in Gradio's cache."""
    if _in_upload_cache(path):
        Path(path).unlink(missing_ok=True)
        try:
            Path(path).parent.rmdir()  # Gradio's per-file folder, when empty
        except OSError:
            pass


class BatchPanel(Tab):
    """Upload, resume and move through a batch; every case it opens is rendered by the review panel."""

    def __init__(self, review: Any, store: ReviewStore, cfg: R2DConfig) -> None:
        """review: the Review tab's handlers (ui.review.ReviewTab), which open and render each case."""
        self.review, self.store, self.cfg = review, store, cfg

    def holders(self) -> tuple[Any, ...]:
        return (self.ui, self.shared)

    @ui_errors
    def upload(
        self,
        path: str | None,
        name: str,
        request: gr.Request,
        order: str = DEFAULT_ORDER,
        progress: gr.Progress = gr.Progress(),
    ) -> dict:
        """Store the uploaded cases (with their ids) first, then predict them chunk by chunk with a progress bar.
        A file naming no case column opens the column choice instead (upload_mapped goes on from there)."""
        if not path:
            raise InvalidCaseError("choose a .csv or .jsonl file of cases first")
        return self._upload(path, name, request, order, progress)

    @ui_errors
    def upload_mapped(
        self,
        pending: str | None,
        case_column: str | None,
        id_column: str | None,
        name: str,
        request: gr.Request,
        order: str = DEFAULT_ORDER,
        progress: gr.Progress = gr.Progress(),
    ) -> dict:
        """The upload waiting for its columns, read with the ones the reviewer chose."""
        if not pending or not _in_upload_cache(pending) or not Path(pending).is_file():
            raise InvalidCaseError("upload the file again: the one waiting for its columns is gone")
        if not case_column:
            raise InvalidCaseError("choose the column that holds the case text")
        return self._upload(
            pending,
            name,
            request,
            order,
            progress,
            case_column,
            None if id_column in (None, "", NO_ID_COLUMN) else id_column,
        )

    def _upload(
        self,
        path: str,
        name: str,
        request: gr.Request,
        order: str,
        progress: gr.Progress,
        case_column: str | None = None,
        id_column: str | None = None,
    ) -> dict:
        """Read, check and store an upload, then predict it; a refusal is one message in the batch panel (a
        raised error marked every panel, the case box among them)."""
        predictor = self.review.model.predictor
        try:
            cases, ids = up.load_upload(
                path, self.cfg.app.max_batch_rows, self.cfg.app.max_case_chars, case_column, id_column
            )
            rv.check_cases(predictor, cases, Path(path).name)
        except up.CaseColumnNeeded as e:  # the file stays in the cache until the columns are chosen
            return self.out(
                up_status=f"**{rv.plain(str(e))}**",
                up_map=gr.update(visible=True),
                up_pending=path,
                up_case_col=gr.update(choices=e.columns, value=None),
                up_id_col=gr.update(choices=[NO_ID_COLUMN, *e.columns], value=NO_ID_COLUMN),
            )
        except R2DError as e:
            _discard_upload(path)  # refused: the file has served, case texts do not stay in the cache
            logger.warning("upload refused: %s", e)
            return self.out(
                up_status=f"⚠ **Not uploaded: {rv.plain(str(e))}**", up_map=gr.update(visible=False), up_pending=None
            )
        _discard_upload(path)
        info = self.store.create_batch(
            Path(path).name, cases, who(request, name) or "unknown", predictor.model_id, source_ids=ids
        )
        return {
            **self.resume(info.batch_id, name, request, order, progress),
            **self.out(
                up_status=f"✓ {len(cases)} case(s) uploaded from {rv.plain(Path(path).name)}.",
                up_map=gr.update(visible=False),
                up_pending=None,
            ),
        }

    @ui_errors
    def resume(
        self,
        batch_id: str | None,
        name: str,
        request: gr.Request,
        order: str = DEFAULT_ORDER,
        progress: gr.Progress = gr.Progress(),
    ) -> dict:
        """Predict what the batch still lacks (after a crash or restart), then open the reviewer's first case."""
        if not batch_id:
            raise ReviewActionError("choose a saved batch first")
        rv.predict_missing(
            self.store,
            self.review.model.predictor,
            batch_id,
            self.cfg.app.batch_size,
            progress=lambda done, total: progress((done, total), desc="Predicting", unit="cases"),
        )
        return self.review.open_queue(batch_id, None, who(request, name), order=known_order(order))

    @ui_errors
    def reorder(self, queue: Any, order: str, name: str, request: gr.Request) -> dict:
        """Review the open batch in another order (most uncertain first, or as uploaded), from its first
        case still to do."""
        queue = queue_of(queue)
        if not queue:
            return {}  # no batch open: the choice applies when one is opened
        return self.review.open_queue(queue["batch_id"], None, who(request, name), order=known_order(order))

    @ui_errors
    def step(self, queue: Any, delta: int, name: str, request: gr.Request) -> dict:
        """Move through the open batch by delta items (clamped at both ends)."""
        queue = queue_of(queue)
        if not queue:
            raise ReviewActionError(NO_BATCH)
        return self.review.open_queue(
            queue["batch_id"], queue["position"] + delta, who(request, name), order=queue["order"]
        )

    def next_case(self, queue: Any, name: str, request: gr.Request) -> dict:
        return self.step(queue, 1, name, request)

    def previous_case(self, queue: Any, name: str, request: gr.Request) -> dict:
        return self.step(queue, -1, name, request)

    @ui_errors
    def next_unreviewed(self, queue: Any, name: str, request: gr.Request) -> dict:
        """Jump to the next case this reviewer has not reviewed (round to the start), or say the batch is done."""
        queue = queue_of(queue)
        if not queue:
            raise ReviewActionError(NO_BATCH)
        return self.review.open_queue(
            queue["batch_id"], None, who(request, name), order=queue["order"], unreviewed_after=queue["position"]
        )

    def restore(self, queue: Any, name: Any, request: gr.Request) -> dict:
        """On page load: the name, then the open batch at its saved position or the last single-case draft."""
        username = getattr(request, "username", None)
        name = name if isinstance(name, str) else ""
        # nothing saved: leave the box alone, the reviewer may already be typing (this runs after page load)
        shown_name = gr.update(value=username, interactive=False) if username else (name or gr.skip())
        reviewer_name, queue = (username or name).strip(), queue_of(queue)
        if queue:
            try:
                return {
                    **self.out(reviewer=shown_name),
                    **self.review.open_queue(queue["batch_id"], queue["position"], reviewer_name, order=queue["order"]),
                }
            except R2DError as e:  # a batch of another database, or not predicted yet: start clean
                logger.info("not restoring the saved queue: %s", e)
        restored = rv.restorable_draft(self.store, reviewer_name) if reviewer_name else None
        if restored and restored[0].batch_id is None:
            return {
                **self.out(reviewer=shown_name, queue={}, queue_md=""),
                **self.review.render(restored[0], draft=restored[1], status="Restored your unsaved draft."),
            }
        return self.out(
            reviewer=shown_name,
            queue={},
            queue_md="",
            batch=gr.update(choices=rv.batch_choices(self.store, reviewer_name), value=None),
        )

    def layout(self, secret: str) -> BatchUI:
        queue = gr.BrowserState({}, storage_key="r2d-queue", secret=secret)
        with gr.Accordion(
            "Batch: upload cases, predict them all, then review them one by one", open=False, elem_id="r2d-batch"
        ) as panel:
            with gr.Row():
                upload = gr.File(
                    label="Cases (.csv or .jsonl with a question, case_text or case column, optional "
                    "id; or the raw KTAS data.csv)",
                    file_types=[".csv", ".jsonl"],
                    type="filepath",
                    elem_id="r2d-upload",
                )
                with gr.Column():
                    batch = gr.Dropdown(label="Saved batches", choices=[], elem_id="r2d-batch-choice")
                    resume = gr.Button("Open / resume batch", elem_id="r2d-resume")
            up_status = gr.Markdown(elem_id="r2d-upload-status")
            with gr.Row(visible=False, elem_id="r2d-upload-map") as up_map:  # only when no case column is named
                case_col = gr.Dropdown(
                    label="Column that holds the case text", choices=[], elem_id="r2d-upload-case-col"
                )
                id_col = gr.Dropdown(
                    label="Column that holds the case id (optional)",
                    choices=[NO_ID_COLUMN],
                    value=NO_ID_COLUMN,
                    elem_id="r2d-upload-id-col",
                )
                use = gr.Button("Use these columns", variant="primary", elem_id="r2d-upload-use")
            pending = gr.State(None)
            with gr.Row():
                order = gr.Dropdown(
                    ORDER_CHOICES,
                    value=DEFAULT_ORDER,
                    label="Review order",
                    elem_id="r2d-order",
                    info="Most uncertain first puts the cases a correction teaches most at the front",
                )
            with gr.Row():
                prev = gr.Button("◀ Previous [P]", elem_id="r2d-prev")
                queue_md = gr.Markdown(elem_id="r2d-queue")
                next_ = gr.Button("Next [N] ▶", elem_id="r2d-next")
                next_todo = gr.Button("Next unreviewed [R] ⏭", elem_id="r2d-next-unreviewed")
        self.ui = BatchUI(
            queue=queue,
            batch_panel=panel,
            upload=upload,
            batch=batch,
            resume=resume,
            up_status=up_status,
            up_map=up_map,
            up_case_col=case_col,
            up_id_col=id_col,
            up_use=use,
            up_pending=pending,
            order=order,
            prev=prev,
            queue_md=queue_md,
            next=next_,
            next_todo=next_todo,
        )
        return self.ui

    def wire(self, demo: gr.Blocks) -> None:
        u, who_box = self.ui, self.shared.reviewer
        queue_out = self.review.queue_outputs()
        upload_out = queue_out + [u.up_status, u.up_map, u.up_pending, u.up_case_col, u.up_id_col]
        u.upload.upload(self.upload, [u.upload, who_box, u.order], upload_out, api_name="upload_batch", **MODEL_QUEUE)
        u.up_use.click(
            self.upload_mapped,
            [u.up_pending, u.up_case_col, u.up_id_col, who_box, u.order],
            upload_out,
            api_name="upload_mapped",
            trigger_mode="once",
            **MODEL_QUEUE,
        )
        u.resume.click(self.resume, [u.batch, who_box, u.order], queue_out, api_name="resume_batch", **MODEL_QUEUE)
        u.order.select(self.reorder, [u.queue, u.order, who_box], queue_out, api_name="reorder_batch")
        u.next.click(self.next_case, [u.queue, who_box], queue_out, api_name="next_case")
        u.prev.click(self.previous_case, [u.queue, who_box], queue_out, api_name="previous_case")
        u.next_todo.click(self.next_unreviewed, [u.queue, who_box], queue_out, api_name="next_unreviewed")
        # a page load restores the name and the open batch (or the last single-case draft)
        demo.load(self.restore, [u.queue, self.shared.saved_name], [who_box] + queue_out, api_name=False)

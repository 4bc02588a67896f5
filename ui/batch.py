"""The Review tab's batch panel: upload cases, predict them all, review them one by one in an order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from r2d.errors import InvalidCaseError, R2DError, ReviewActionError
from r2d.review import session as rv
from r2d.review import upload as up
from r2d.review.active import DEFAULT_ORDER
from ui.common import (
    MODEL_QUEUE,
    QUEUE_OUTPUTS,
    SHOWN_OUTPUTS,
    HandlerBase,
    known_order,
    logger,
    picker,
    queue_of,
    ui_errors,
    who,
)

NO_ID_COLUMN = "(no id column)"


ORDER_CHOICES = [
    ("As uploaded", "upload"),
    ("Least confident first", "least_confident"),
    ("Rationale disagrees with its label first", "disagreement"),
]


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


def batch_panel(c: dict[str, Any]) -> None:
    with gr.Accordion(
        "Batch: upload cases, predict them all, then review them one by one", open=False, elem_id="r2d-batch"
    ) as c["batch_panel"]:
        with gr.Row():
            c["upload"] = gr.File(
                label="Cases (.csv or .jsonl with a question, case_text or case column, optional id; "
                "or the raw KTAS data.csv)",
                file_types=[".csv", ".jsonl"],
                type="filepath",
                elem_id="r2d-upload",
            )
            with gr.Column():
                c["batch"] = gr.Dropdown(label="Saved batches", choices=[], elem_id="r2d-batch-choice")
                c["resume"] = gr.Button("Open / resume batch", elem_id="r2d-resume")
        c["up_status"] = gr.Markdown(elem_id="r2d-upload-status")
        with gr.Row(visible=False, elem_id="r2d-upload-map") as c["up_map"]:  # only when no case column is named
            c["up_case_col"] = gr.Dropdown(
                label="Column that holds the case text", choices=[], elem_id="r2d-upload-case-col"
            )
            c["up_id_col"] = gr.Dropdown(
                label="Column that holds the case id (optional)",
                choices=[NO_ID_COLUMN],
                value=NO_ID_COLUMN,
                elem_id="r2d-upload-id-col",
            )
            c["up_use"] = gr.Button("Use these columns", variant="primary", elem_id="r2d-upload-use")
        c["up_pending"] = gr.State(None)  # the upload waiting for its columns (server side, this session only)
        with gr.Row():
            c["order"] = gr.Dropdown(
                ORDER_CHOICES,
                value=DEFAULT_ORDER,
                label="Review order",
                elem_id="r2d-order",
                info="Most uncertain first puts the cases a correction teaches most at the front",
            )
        with gr.Row():
            c["prev"] = gr.Button("◀ Previous [P]", elem_id="r2d-prev")
            c["queue_md"] = gr.Markdown(elem_id="r2d-queue")
            c["next"] = gr.Button("Next [N] ▶", elem_id="r2d-next")
            c["next_todo"] = gr.Button("Next unreviewed [R] ⏭", elem_id="r2d-next-unreviewed")


class BatchHandlers(HandlerBase):
    """Upload (with a column choice), resume, reorder, move through the queue, restore on load."""

    def _open(
        self,
        batch_id: str,
        position: int | None,
        reviewer: str,
        status: str = "",
        after: int | None = None,
        order: str = DEFAULT_ORDER,
        item: int | None = None,
        unreviewed_after: int | None = None,
    ) -> dict:
        """The queue, the batch list, progress, then the item (with this reviewer's draft or review)."""
        view = rv.open_queue(
            self.store,
            batch_id,
            position,
            reviewer,
            after=after,
            order=order,
            item=item,
            unreviewed_after=unreviewed_after,
        )
        return {
            **self._out(
                queue={"batch_id": batch_id, "position": view.position, "order": view.order},
                order=view.order,
                batch_panel=gr.update(open=True),
                batch=gr.update(choices=rv.batch_choices(self.store, reviewer), value=batch_id),
                queue_md=view.progress,
            ),
            **self._render(
                view.shown,
                view.review,
                view.draft,
                " ".join(filter(None, [status, view.status])),
                source_id=view.source_id,
            ),
        }

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
        try:
            cases, ids = up.load_upload(
                path, self.cfg.app.max_batch_rows, self.cfg.app.max_case_chars, case_column, id_column
            )
            rv.check_cases(self.predictor, cases, Path(path).name)
        except up.CaseColumnNeeded as e:  # the file stays in the cache until the columns are chosen
            return self._out(
                up_status=f"**{rv.plain(str(e))}**",
                up_map=gr.update(visible=True),
                up_pending=path,
                up_case_col=gr.update(choices=e.columns, value=None),
                up_id_col=gr.update(choices=[NO_ID_COLUMN, *e.columns], value=NO_ID_COLUMN),
            )
        except R2DError as e:
            _discard_upload(path)  # refused: the file has served, case texts do not stay in the cache
            logger.warning("upload refused: %s", e)
            return self._out(
                up_status=f"⚠ **Not uploaded: {rv.plain(str(e))}**", up_map=gr.update(visible=False), up_pending=None
            )
        _discard_upload(path)
        info = self.store.create_batch(
            Path(path).name, cases, who(request, name) or "unknown", self.predictor.model_id, source_ids=ids
        )
        return {
            **self.resume(info.batch_id, name, request, order, progress),
            **self._out(
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
            self.predictor,
            batch_id,
            self.cfg.app.batch_size,
            progress=lambda done, total: progress((done, total), desc="Predicting", unit="cases"),
        )
        return self._open(batch_id, None, who(request, name), order=known_order(order))

    @ui_errors
    def reorder(self, queue: Any, order: str, name: str, request: gr.Request) -> dict:
        """Review the open batch in another order (most uncertain first, or as uploaded), from its first
        case still to do."""
        queue = queue_of(queue)
        if not queue:
            return {}  # no batch open: the choice applies when one is opened
        return self._open(queue["batch_id"], None, who(request, name), order=known_order(order))

    @ui_errors
    def step(self, queue: Any, delta: int, name: str, request: gr.Request) -> dict:
        """Move through the open batch by delta items (clamped at both ends)."""
        queue = queue_of(queue)
        if not queue:
            raise ReviewActionError("open a batch first: upload one, or choose a saved batch and press Open")
        return self._open(queue["batch_id"], queue["position"] + delta, who(request, name), order=queue["order"])

    def next_case(self, queue: Any, name: str, request: gr.Request) -> dict:
        return self.step(queue, 1, name, request)

    @ui_errors
    def next_unreviewed(self, queue: Any, name: str, request: gr.Request) -> dict:
        """Jump to the next case this reviewer has not reviewed (round to the start), or say the batch is done."""
        queue = queue_of(queue)
        if not queue:
            raise ReviewActionError("open a batch first: upload one, or choose a saved batch and press Open")
        return self._open(
            queue["batch_id"], None, who(request, name), order=queue["order"], unreviewed_after=queue["position"]
        )

    def previous_case(self, queue: Any, name: str, request: gr.Request) -> dict:
        return self.step(queue, -1, name, request)

    def restore(self, queue: Any, name: Any, request: gr.Request) -> dict:
        """On page load: the name, then the open batch at its saved position or the last single-case draft."""
        username = getattr(request, "username", None)
        name = name if isinstance(name, str) else ""
        # nothing saved: leave the box alone, the reviewer may already be typing (this runs after page load)
        reviewer = gr.update(value=username, interactive=False) if username else (name or gr.skip())
        who, queue = (username or name).strip(), queue_of(queue)
        if queue:
            try:
                return {
                    self.c["reviewer"]: reviewer,
                    **self._open(queue["batch_id"], queue["position"], who, order=queue["order"]),
                }
            except R2DError as e:  # a batch of another database, or not predicted yet: start clean
                logger.info("not restoring the saved queue: %s", e)
        restored = rv.restorable_draft(self.store, who) if who else None
        if restored and restored[0].batch_id is None:
            return {
                self.c["reviewer"]: reviewer,
                **self._out(queue={}, queue_md=""),
                **self._render(restored[0], draft=restored[1], status="Restored your unsaved draft."),
            }
        return {
            self.c["reviewer"]: reviewer,
            **self._out(queue={}, batch=gr.update(choices=rv.batch_choices(self.store, who), value=None), queue_md=""),
        }


def wire_batch(demo: gr.Blocks, h: Any, c: dict[str, Any]) -> None:
    """The batch panel's events, and the queue restored on page load."""
    outs = picker(c)
    queue_out = outs(*SHOWN_OUTPUTS, *QUEUE_OUTPUTS)
    upload_out = queue_out + outs("up_status", "up_map", "up_pending", "up_case_col", "up_id_col")
    c["upload"].upload(
        h.upload, outs("upload", "reviewer", "order"), upload_out, api_name="upload_batch", **MODEL_QUEUE
    )
    c["up_use"].click(
        h.upload_mapped,
        outs("up_pending", "up_case_col", "up_id_col", "reviewer", "order"),
        upload_out,
        api_name="upload_mapped",
        trigger_mode="once",
        **MODEL_QUEUE,
    )
    c["resume"].click(h.resume, outs("batch", "reviewer", "order"), queue_out, api_name="resume_batch", **MODEL_QUEUE)
    c["order"].select(h.reorder, outs("queue", "order", "reviewer"), queue_out, api_name="reorder_batch")
    c["next"].click(h.next_case, outs("queue", "reviewer"), queue_out, api_name="next_case")
    c["prev"].click(h.previous_case, outs("queue", "reviewer"), queue_out, api_name="previous_case")
    c["next_todo"].click(h.next_unreviewed, outs("queue", "reviewer"), queue_out, api_name="next_unreviewed")
    demo.load(h.restore, outs("queue", "saved_name"), outs("reviewer") + queue_out, api_name=False)

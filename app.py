"""Reason2Decide review app: a nurse checks the model's triage label and rationale, and corrects them.

Layout and wiring only. Decisions live in r2d.review.session, storage in r2d.review.store, export in r2d.review.export,
figures in r2d.review.dashboard; the model is loaded in main(), never at import, and build_demo() takes
any predictor, so tests run the whole UI on a fake one. R2DError becomes gr.Error here and only here.
Run: `python app.py [--model DIR] [--db reviews.sqlite3]` and open http://127.0.0.1:7860.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import functools
import hashlib
import html
import inspect
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry at all

import gradio as gr  # noqa: E402

from r2d.review import adjudication as adj  # noqa: E402
from r2d.review import session as rv  # noqa: E402
from r2d.review import upload as up  # noqa: E402
from r2d.review.active import DEFAULT_ORDER, ORDERS  # noqa: E402
from r2d.model.artifacts import model_source  # noqa: E402
from r2d.review.agreement import agreement  # noqa: E402
from r2d.review.auth import authenticator, load_users  # noqa: E402
from r2d.checks.consistency import consistency_line, load_calibration  # noqa: E402
from r2d.config import (CONFIG_FILENAME, QUANTIZATIONS, ModelConfig, R2DConfig, config_to_dict, load_config,  # noqa: E402
                        with_section)
from r2d.review.dashboard import (comparison_figure, dashboard_figures, probability_figure, reviews_per_class,  # noqa: E402
                           summarize)
from r2d.errors import FeedbackStoreError, InvalidCaseError, R2DError, TrainingRunError  # noqa: E402
from r2d.checks.factcheck import case_has_triage_facts  # noqa: E402
from r2d.review.export import (ExportPolicy, export_cases, export_stage2_dataset, findings_message,  # noqa: E402
                        is_complete_export, preview_export, sweep_partial_exports)
from r2d.review.jobs import COMPARED, MIN_COMPARED_CASES, ImproveRuns, comparison_table, plan_run  # noqa: E402
from r2d.review.store import ACTIONS, ReviewStore, case_id_for  # noqa: E402

logger = logging.getLogger("r2d.app")
ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
EXAMPLES_DIR = ROOT / "examples"
DIFF_COLORS = {rv.DIFF_ADDED: "#2ca02c", rv.DIFF_REMOVED: "#d62728"}
FACT_COLORS = {rv.FACT_CONTRADICTED: "#d62728", rv.FACT_UNSUPPORTED: "#ff7f0e"}
NO_ID_COLUMN = "(no id column)"
NO_SUGGESTION = "The suggested triage level appears here."
GUESS_CONFIRM = ("⚠ **Not saved: this text is no triage note** (no vital sign, age, complaint or mental state), so "
                 "the suggestion is only a guess. Press the same key again to save the guess as it is, or change "
                 "the label or the rationale first.")
NO_FACTS_NOTE = ("**⚠ This case holds none of the triage facts the model was trained on** (vital signs, chief "
                 "complaint, mental state, pain). The suggestion is a guess: decide from the case itself.")
# what a "show a case" event may fill (see Handlers._render), and what a batch event fills besides
SHOWN_OUTPUTS = ("shown", "case", "case_md", "label_md", "plot", "rationale", "final_label", "rating", "comment",
                 "diff", "facts", "fact_notes", "consistency", "status", "model_md")
QUEUE_OUTPUTS = ("queue", "batch_panel", "batch", "queue_md", "order")
ORDER_CHOICES = [("As uploaded", "upload"), ("Least confident first", "least_confident"),
                 ("Rationale disagrees with its label first", "disagreement")]
UNVERIFIED_NOTE = ("⚠ **Names are not verified**: anyone can type any name here. Start the app with "
                   "`--auth FILE` to have reviewers sign in.")
SIGNED_IN_NOTE = "Signed in: your reviews are recorded under your sign-in name."
TEMP_PREFIX = "r2d-gradio-"  # the app's private Gradio cache: TEMP_PREFIX + its process id + "-" + random
# Gradio's own clean-up of its cache (uploads, download copies): every 5 minutes, files older than 15 minutes
CACHE_CLEANUP_S = (300, 900)


def _ui_error(name: str, e: Exception) -> gr.Error:
    """R2DError: its own message. Anything else: a generic message, the details logged under a short id."""
    if isinstance(e, R2DError):
        logger.warning("%s refused: %s", name, e)
        return gr.Error(str(e))
    log_id = os.urandom(4).hex()
    logger.error("%s failed [log id %s]", name, log_id, exc_info=e)
    # internals (paths, library messages) are never shown: they can carry case text or the DB location
    return gr.Error(f"Something went wrong in the app (log id {log_id}); what you typed is still on screen. "
                    "Try again, and give the log id to whoever runs the app if it happens again.")


def ui_errors(fn: Callable) -> Callable:
    """Turn every exception into gr.Error (a readable modal), for plain and generator handlers alike."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:
                raise _ui_error(fn.__name__, e) from e
        return generator

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise _ui_error(fn.__name__, e) from e
    return call


def _who(request: gr.Request | None, name: str | None) -> str:
    """The Gradio-auth username if there is one, else the name typed in the Reviewer box."""
    return ((getattr(request, "username", None) if request is not None else None) or name or "").strip()


def _policy(actions: list[str] | None, min_rating: float, consistent: bool) -> ExportPolicy:
    return ExportPolicy(tuple(actions or ()), int(min_rating), bool(consistent))


def _fact_notes(view: rv.FactView) -> str:
    """The fact check in words (its messages quote the rationale, so they go through rv.plain)."""
    lines = [] if view.case_has_facts else [NO_FACTS_NOTE]
    if view.problems:
        lines.append(f"**Fact check: {len(view.problems)} statement(s) the case does not support**")
        lines += [f"- {rv.plain(m)}" for m in view.problems]
    elif view.case_has_facts:
        lines.append("Fact check: every statement checked matches the case.")
    if view.missing_critical:
        lines.append("**Critical findings the rationale leaves out:** "
                     + "; ".join(rv.plain(m) for m in view.missing_critical))
    return "\n".join(lines)


def _on_screen(shown: rv.ShownCase, case_text: str | None) -> bool:
    """Whether the editor values that came with an event belong to the case under review. gr.State is read on
    the server when the event runs, the boxes when it was triggered: after a save that opened the next case, a
    late event would otherwise file the previous case's editor under the next one."""
    return case_text is None or case_id_for(case_text) == shown.case_id


def _known_order(order: Any) -> str:
    """A review order r2d.review.active knows, else the upload order (an old or forged browser value)."""
    return order if order in ORDERS else DEFAULT_ORDER


def _queue_of(queue: Any) -> dict[str, Any]:
    """The saved queue position, or {} for anything that is not one (an old or forged browser value)."""
    if isinstance(queue, dict) and isinstance(queue.get("batch_id"), str) and queue["batch_id"]:
        position = queue.get("position", 0)
        return {"batch_id": queue["batch_id"], "position": position if isinstance(position, int) else 0,
                "order": _known_order(queue.get("order"))}
    return {}


class Handlers:
    """Event handlers. Each returns {component: value}; per-user data arrives as gr.State/BrowserState inputs.

    `c` maps names to the components of the layout (filled in by build_app before the events are wired).
    """

    def __init__(self, predictor: rv.PredictorLike, store: ReviewStore, cfg: R2DConfig) -> None:
        self.predictor, self.store, self.cfg = predictor, store, cfg
        self.c: dict[str, Any] = {}
        self._downloads: list[Path] = []  # temporary folders of download zips, oldest first
        # (reviewer, case id, showing) of each non-triage text whose one-key acceptance was asked to be confirmed
        self._guesses_warned: set[tuple[str, str, str]] = set()
        self.runs = ImproveRuns(cfg.app.runs_dir)
        sweep_partial_exports(cfg.app.export_dir)  # exports a killed app or CLI never finished
        self.model_dir = cfg.model.name_or_path  # what "Improve the model" starts from; changes on a switch
        self.calibration = load_calibration(self.model_dir)  # how far the consistency line can be trusted

    def _out(self, **values: Any) -> dict:
        return {self.c[name]: value for name, value in values.items()}

    def _reviewer(self, request: gr.Request | None, name: str | None) -> str:
        reviewer = _who(request, name)
        if not reviewer:
            raise FeedbackStoreError("enter your name in the 'Reviewer' box first: every review records who made it")
        return reviewer

    def _label_markdown(self, label: str, probabilities: dict[str, float], case_text: str) -> str:
        name = rv.format_label(label, self.predictor.label_names)
        text = f"### Suggested triage: {name} ({probabilities[label]:.0%})"
        guard = rv.under_triage(case_text, label, self.predictor.label_set)
        if guard:  # right under the suggestion, before anything else: the case itself calls for more urgency
            text += f"\n\n**⚠ {guard.message(self.predictor.label_names)}**"  # no user text: only fixed words
        note = rv.probability_note(probabilities, self.cfg.app.low_probability)
        # beside the suggestion too, not only under the fact check: a confident guess on "hello" is still a guess
        facts = "" if case_has_triage_facts(case_text) else f"\n\n{NO_FACTS_NOTE}"
        return text + (f"\n\n**⚠ {note}**" if note else "") + facts

    def _render(self, shown: rv.ShownCase, prefill: Any = None, draft: dict | None = None, status: str = "",
                consistency: str = "", source_id: str | None = None) -> dict:
        """The case, the suggestion and the editor: the reviewer's draft, else their review, else the model's."""
        if draft:
            label, rationale = draft.get("final_label") or shown.model_label, draft.get("rationale") or ""
            rating, comment = draft.get("rating"), draft.get("comment") or ""
        elif prefill is not None:
            label, rationale = prefill.final_label, prefill.final_rationale
            rating, comment = str(prefill.rating) if prefill.rating else None, prefill.comment
        else:
            label, rationale, rating, comment = shown.model_label, shown.model_rationale, None, ""
        where = f" · batch case {shown.item_index + 1}" if shown.item_index is not None else ""
        named = f" · upload id {rv.plain(source_id)}" if source_id else ""
        return {**self.facts(shown, rationale, label), **self._out(
            shown=shown, case=shown.case_text, case_md=f"Case id `{shown.case_id}`{where}{named}",
            label_md=self._label_markdown(shown.model_label, shown.probabilities, shown.case_text),
            plot=probability_figure(shown.probabilities, self.predictor.label_names, shown.model_label),
            rationale=rationale, final_label=label, rating=rating, comment=comment,
            diff=rv.word_diff(shown.model_rationale, rationale), consistency=consistency, status=status,
            model_md=self._model_line())}  # another page may have switched the model since this one loaded

    @ui_errors
    def predict(self, case_text: str, name: str, request: gr.Request) -> Iterator[dict]:
        """Label and every probability first, then the rationale streamed into the editor; leaves any batch.
        A case that cannot be read (empty, too long) gets one message under the case box, which keeps its text."""
        try:
            if len(case_text or "") > self.cfg.app.max_case_chars:
                raise InvalidCaseError(f"the case has {len(case_text):,} characters; the limit is "
                                       f"{self.cfg.app.max_case_chars:,}. Keep the triage-relevant part")
            case_text = self.predictor.check_case(case_text or "")
        except InvalidCaseError as e:  # raised, it marked every output "Error", over the pasted text too
            yield self._out(case_md=f"⚠ **No suggestion: {rv.plain(str(e))}**", label_md=NO_SUGGESTION)
            return
        shown_at = time.time()
        scores = self.predictor.predict_label(case_text)
        probabilities, label = dict(zip(scores.labels, scores.probabilities)), scores.best
        yield self._out(shown=None, label_md=self._label_markdown(label, probabilities, case_text),
                        plot=probability_figure(probabilities, self.predictor.label_names, label), rationale="",
                        final_label=label, rating=None, comment="", diff=[], consistency="",
                        status="Writing the rationale…", queue={}, queue_md="", case_md="", facts=[], fact_notes="")
        text = ""
        for text in self.predictor.stream_rationale(case_text, label):
            yield self._out(rationale=text)
        shown = rv.ShownCase(case_text, label, probabilities, text, self.predictor.model_id,
                             self.predictor.quantization, shown_at=shown_at)
        reviewer = _who(request, name)
        restored = rv.restorable_draft(self.store, reviewer, shown.case_id)
        draft = restored[1] if restored else None
        status = ("Restored your unsaved draft of this case." if draft else
                  "Review the rationale: press A to save what is shown, or edit it first.")
        note = rv.others_note(self.store, shown.case_id, reviewer) if reviewer else ""
        # complete values at the end: API clients only see the last yield
        rendered = self._render(shown, draft=draft, status=" ".join(filter(None, [status, note])))
        yield {**rendered, **self._out(queue={}, queue_md="",
                                       consistency=self.check(shown, rendered[self.c["rationale"]],
                                                              rendered[self.c["final_label"]]))}

    def facts(self, shown: rv.ShownCase | None, rationale: str, final_label: str | None) -> dict:
        """The fact check of the rationale as it stands (live while the nurse types)."""
        if not isinstance(shown, rv.ShownCase):
            return self._out(facts=[], fact_notes="")
        try:
            view = rv.fact_view(shown.case_text, rationale or "", final_label)
        except InvalidCaseError as e:  # too long: say so instead of checking it (the save refuses it too)
            return self._out(facts=[], fact_notes=f"**⚠ Fact check paused: {e}.**")
        guard = rv.under_triage(shown.case_text, final_label, self.predictor.label_set) if final_label else None
        mine = (f"**⚠ {guard.message(self.predictor.label_names, 'your label')}**\n"
                if guard and final_label != shown.model_label else "")
        return self._out(facts=view.highlights, fact_notes=mine + _fact_notes(view))

    def diff(self, shown: rv.ShownCase | None, rationale: str) -> dict:
        """The live word diff while the reviewer types."""
        try:
            return self._out(diff=rv.word_diff(shown.model_rationale, rationale or "") if shown else [])
        except InvalidCaseError:  # too long: the fact check notes say so
            return self._out(diff=[])

    def check(self, shown: rv.ShownCase | None, rationale: str, final_label: str) -> str:
        """The consistency line: does the rationale alone point to the chosen label?"""
        if shown is None or not (rationale or "").strip():
            return ""
        return self._consistency_line(rv.check_consistency(self.predictor, rationale, final_label,
                                                           self.cfg.app.low_probability))

    def _consistency_line(self, check: rv.ConsistencyResult) -> str:
        label = rv.format_label(check.label, self.predictor.label_names)
        return consistency_line(label, check.probability, check.agrees, check.message, self.predictor.model_id,
                                self.calibration)

    @ui_errors
    def check_event(self, shown: rv.ShownCase | None, rationale: str, final_label: str) -> dict:
        return self._out(consistency=self.check(shown, rationale, final_label))

    @ui_errors
    def save_draft(self, shown: rv.ShownCase | None, name: str, final_label: str, rationale: str, rating: Any,
                   comment: str, case_text: str | None, request: gr.Request) -> None:
        """Keep what is on screen server-side (per reviewer and case) so a refresh or restart loses nothing."""
        reviewer = _who(request, name)
        if isinstance(shown, rv.ShownCase) and reviewer and _on_screen(shown, case_text):
            draft = rv.make_draft(shown, final_label, rationale, rating, comment)
            if rv.differs_from_model(draft, shown) or self.store.draft(reviewer, shown.case_id):
                self.store.save_draft(reviewer, shown.case_id, draft)

    def _open(self, batch_id: str, position: int | None, reviewer: str, status: str = "",
              after: int | None = None, order: str = DEFAULT_ORDER, item: int | None = None,
              unreviewed_after: int | None = None) -> dict:
        """The queue, the batch list, progress, then the item (with this reviewer's draft or review)."""
        view = rv.open_queue(self.store, batch_id, position, reviewer, after=after, order=order, item=item,
                             unreviewed_after=unreviewed_after)
        return {**self._out(queue={"batch_id": batch_id, "position": view.position, "order": view.order},
                            order=view.order,
                            batch_panel=gr.update(open=True),
                            batch=gr.update(choices=rv.batch_choices(self.store, reviewer), value=batch_id),
                            queue_md=view.progress),
                **self._render(view.shown, view.review, view.draft, " ".join(filter(None, [status, view.status])),
                               source_id=view.source_id)}

    @ui_errors
    def save(self, shown: rv.ShownCase | None, name: str, final_label: str, rationale: str, rating: Any,
             comment: str, queue: Any, case_text: str | None, request: gr.Request) -> dict:
        """Store what is on screen (A and S alike: an edit on screen is saved, never replaced by the model's
        output); in a batch, open the next case to review."""
        if shown is None:
            raise FeedbackStoreError("nothing to review yet: predict a case or open a batch first")
        if not _on_screen(shown, case_text):
            raise FeedbackStoreError("the Case box no longer holds the case under review, so nothing was saved: "
                                     "press 'Suggest triage' for the new text, or open the case again")
        reviewer = self._reviewer(request, name)
        if rv.unconfirmed_guess(shown, final_label or "", rationale or ""):
            showing = (reviewer, shown.case_id, shown.review_token)
            if showing not in self._guesses_warned:  # the second press on the same showing saves
                self._guesses_warned.add(showing)
                return self._out(status=GUESS_CONFIRM)
        result, check = rv.save_review(self.store, self.predictor, shown, reviewer, final_label or "",
                                       rationale or "", rating, comment or "")
        message = rv.saved_message(result, in_batch=False)
        queue = _queue_of(queue)
        if shown.batch_id is not None and queue.get("batch_id") == shown.batch_id:
            return self._open(shown.batch_id, None, reviewer, message, after=shown.item_index, order=queue["order"])
        note = rv.others_note(self.store, shown.case_id, reviewer)
        return self._out(status=" ".join(filter(None, [message, note])), consistency=self._consistency_line(check),
                         diff=rv.word_diff(shown.model_rationale, result.record.final_rationale))

    @ui_errors
    def undo(self, shown: rv.ShownCase | None, name: str, queue: Any, request: gr.Request) -> dict:
        """Retract the reviewer's last save (a new audit row) and put its content back in the editor as a draft."""
        reviewer = self._reviewer(request, name)
        record = self.store.retract_last(reviewer)
        if record is None:
            raise FeedbackStoreError("nothing to undo: you have no saved review that still counts")
        back = rv.shown_from_review(record)
        self.store.save_draft(reviewer, record.case_id, rv.make_draft(
            back, record.final_label, record.final_rationale, record.rating, record.comment))
        message = (f"↶ Retracted your review #{record.review_id} ({record.action}); it no longer counts. "
                   "Its content is back in the editor: change it and save, or move on.")
        if any(r.reviewer != reviewer for r in self.store.reviewer_reviews(record.case_id)):
            message += (" You have seen the other reviewers' answers to this case, so your next review of it is "
                        "not blind: agreement leaves it out.")
        if record.batch_id is not None:
            queue = _queue_of(queue)
            order = queue["order"] if queue.get("batch_id") == record.batch_id else DEFAULT_ORDER
            return self._open(record.batch_id, None, reviewer, message, order=order, item=record.item_index)
        restored = rv.restorable_draft(self.store, reviewer, record.case_id)
        return {**self._render(back, draft=restored[1] if restored else None, status=message),
                **self._out(queue={}, queue_md="")}

    @ui_errors
    def skip(self, shown: rv.ShownCase | None, name: str, queue: Any, request: gr.Request) -> dict:
        """Record a skip (the case stays to do) and, in a batch, open the next case."""
        if shown is None:
            raise FeedbackStoreError("nothing to skip: predict a case or open a batch first")
        reviewer = self._reviewer(request, name)
        self.store.add_event(reviewer, "skip", shown.case_id, batch_id=shown.batch_id, item_index=shown.item_index)
        message = "Skipped: the case stays in your queue."
        queue = _queue_of(queue)
        if shown.batch_id is not None and queue.get("batch_id") == shown.batch_id:
            return self._open(shown.batch_id, None, reviewer, message, after=shown.item_index, order=queue["order"])
        return self._out(status=message)

    @ui_errors
    def flag(self, shown: rv.ShownCase | None, name: str, comment: str, request: gr.Request) -> dict:
        """Flag the case for discussion (the comment box says why); it appears on the dashboard."""
        if shown is None:
            raise FeedbackStoreError("nothing to flag: predict a case or open a batch first")
        reviewer = self._reviewer(request, name)
        if not (comment or "").strip():
            raise FeedbackStoreError("say why you flag this case: type the reason in the Comment box (key M), "
                                     "then flag again (F)")
        self.store.add_event(reviewer, "flag", shown.case_id, batch_id=shown.batch_id, item_index=shown.item_index,
                             note=comment)
        return self._out(status="⚑ Flagged for discussion; it is listed on the dashboard. Your edits stay on screen.")

    @ui_errors
    def upload(self, path: str | None, name: str, request: gr.Request, order: str = DEFAULT_ORDER,
               progress: gr.Progress = gr.Progress()) -> dict:
        """Store the uploaded cases (with their ids) first, then predict them chunk by chunk with a progress bar.
        A file naming no case column opens the column choice instead (upload_mapped goes on from there)."""
        if not path:
            raise InvalidCaseError("choose a .csv or .jsonl file of cases first")
        return self._upload(path, name, request, order, progress)

    @ui_errors
    def upload_mapped(self, pending: str | None, case_column: str | None, id_column: str | None, name: str,
                      request: gr.Request, order: str = DEFAULT_ORDER, progress: gr.Progress = gr.Progress()) -> dict:
        """The upload waiting for its columns, read with the ones the reviewer chose."""
        if not pending or not _in_upload_cache(pending) or not Path(pending).is_file():
            raise InvalidCaseError("upload the file again: the one waiting for its columns is gone")
        if not case_column:
            raise InvalidCaseError("choose the column that holds the case text")
        return self._upload(pending, name, request, order, progress, case_column,
                            None if id_column in (None, "", NO_ID_COLUMN) else id_column)

    def _upload(self, path: str, name: str, request: gr.Request, order: str, progress: gr.Progress,
                case_column: str | None = None, id_column: str | None = None) -> dict:
        """Read, check and store an upload, then predict it; a refusal is one message in the batch panel (a
        raised error marked every panel, the case box among them)."""
        try:
            cases, ids = up.load_upload(path, self.cfg.app.max_batch_rows, self.cfg.app.max_case_chars,
                                        case_column, id_column)
            rv.check_cases(self.predictor, cases, Path(path).name)
        except up.CaseColumnNeeded as e:  # the file stays in the cache until the columns are chosen
            return self._out(up_status=f"**{rv.plain(str(e))}**", up_map=gr.update(visible=True), up_pending=path,
                             up_case_col=gr.update(choices=e.columns, value=None),
                             up_id_col=gr.update(choices=[NO_ID_COLUMN, *e.columns], value=NO_ID_COLUMN))
        except R2DError as e:
            _discard_upload(path)  # refused: the file has served, case texts do not stay in the cache
            logger.warning("upload refused: %s", e)
            return self._out(up_status=f"⚠ **Not uploaded: {rv.plain(str(e))}**", up_map=gr.update(visible=False),
                             up_pending=None)
        _discard_upload(path)
        info = self.store.create_batch(Path(path).name, cases, _who(request, name) or "unknown",
                                       self.predictor.model_id, source_ids=ids)
        return {**self.resume(info.batch_id, name, request, order, progress),
                **self._out(up_status=f"✓ {len(cases)} case(s) uploaded from {rv.plain(Path(path).name)}.",
                            up_map=gr.update(visible=False), up_pending=None)}

    @ui_errors
    def resume(self, batch_id: str | None, name: str, request: gr.Request, order: str = DEFAULT_ORDER,
               progress: gr.Progress = gr.Progress()) -> dict:
        """Predict what the batch still lacks (after a crash or restart), then open the reviewer's first case."""
        if not batch_id:
            raise FeedbackStoreError("choose a saved batch first")
        rv.predict_missing(self.store, self.predictor, batch_id, self.cfg.app.batch_size,
                           progress=lambda done, total: progress((done, total), desc="Predicting", unit="cases"))
        return self._open(batch_id, None, _who(request, name), order=_known_order(order))

    @ui_errors
    def reorder(self, queue: Any, order: str, name: str, request: gr.Request) -> dict:
        """Review the open batch in another order (most uncertain first, or as uploaded), from its first
        case still to do."""
        queue = _queue_of(queue)
        if not queue:
            return {}  # no batch open: the choice applies when one is opened
        return self._open(queue["batch_id"], None, _who(request, name), order=_known_order(order))

    @ui_errors
    def step(self, queue: Any, delta: int, name: str, request: gr.Request) -> dict:
        """Move through the open batch by delta items (clamped at both ends)."""
        queue = _queue_of(queue)
        if not queue:
            raise FeedbackStoreError("open a batch first: upload one, or choose a saved batch and press Open")
        return self._open(queue["batch_id"], queue["position"] + delta, _who(request, name), order=queue["order"])

    def next_case(self, queue: Any, name: str, request: gr.Request) -> dict:
        return self.step(queue, 1, name, request)

    @ui_errors
    def next_unreviewed(self, queue: Any, name: str, request: gr.Request) -> dict:
        """Jump to the next case this reviewer has not reviewed (round to the start), or say the batch is done."""
        queue = _queue_of(queue)
        if not queue:
            raise FeedbackStoreError("open a batch first: upload one, or choose a saved batch and press Open")
        return self._open(queue["batch_id"], None, _who(request, name), order=queue["order"],
                          unreviewed_after=queue["position"])

    def previous_case(self, queue: Any, name: str, request: gr.Request) -> dict:
        return self.step(queue, -1, name, request)

    def restore(self, queue: Any, name: Any, request: gr.Request) -> dict:
        """On page load: the name, then the open batch at its saved position or the last single-case draft."""
        username = getattr(request, "username", None)
        name = name if isinstance(name, str) else ""
        # nothing saved: leave the box alone, the reviewer may already be typing (this runs after page load)
        reviewer = gr.update(value=username, interactive=False) if username else (name or gr.skip())
        who, queue = (username or name).strip(), _queue_of(queue)
        if queue:
            try:
                return {self.c["reviewer"]: reviewer, **self._open(queue["batch_id"], queue["position"], who,
                                                                  order=queue["order"])}
            except R2DError as e:  # a batch of another database, or not predicted yet: start clean
                logger.info("not restoring the saved queue: %s", e)
        restored = rv.restorable_draft(self.store, who) if who else None
        if restored and restored[0].batch_id is None:
            return {self.c["reviewer"]: reviewer, **self._out(queue={}, queue_md=""),
                    **self._render(restored[0], draft=restored[1], status="Restored your unsaved draft.")}
        return {self.c["reviewer"]: reviewer, **self._out(
            queue={}, batch=gr.update(choices=rv.batch_choices(self.store, who), value=None), queue_md="")}

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
        return {**self._out(dash_summary=f"{summary}\n\n{reviews_per_class(reviews, p.label_set, p.label_names)}"
                                         + (f"\n\n{guard}" if guard else ""),
                            dash_agreement=_agreement_markdown(agreed) + (
                                f"\n\n{n_unblinded} review(s) made after their reviewer had seen another's answer "
                                "(a save, then an undo or a correction) are left out of agreement."
                                if n_unblinded else ""),
                            adj_md=adj.open_markdown(cases),
                            adj_case=gr.update(choices=choices, value=choices[0][1] if choices else None),
                            dash_flags=[[e.case_id, e.reviewer, e.note, e.created_at[:16].replace("T", " ")]
                                        for e in self.store.events("flag")]),
                **opened, **dict(zip(self.c["dash_plots"], figures.values()))}

    @ui_errors
    def adjudication_case(self, case_id: str | None, name: str = "", request: gr.Request | None = None) -> dict:
        """The reviews of one case side by side with their diff, and the ways to settle it (blind review: not
        to a reviewer of its batch who has not reviewed it yet)."""
        empty = self._out(adj_view="", adj_pick=gr.update(choices=[], value=None), adj_label=None, adj_rationale="")
        if not case_id:
            return empty
        case = adj.find_case(self.store, case_id)
        hidden = adj.hidden_from(self.store, case, _who(request, name))
        if hidden:
            return {**empty, **self._out(adj_view=f"<p class='r2d-adj-hidden'>{html.escape(hidden)}</p>")}
        latest = case.reviews[-1]
        return self._out(adj_view=adj.side_by_side_html(case, self.predictor.label_names),
                         adj_pick=gr.update(choices=adj.pick_choices(case, self.predictor.label_names), value=None),
                         adj_label=latest.final_label, adj_rationale=latest.final_rationale)

    @ui_errors
    def adjudicate(self, case_id: str | None, pick: str | None, label: str | None, rationale: str, name: str,
                   request: gr.Request) -> dict:
        """Settle a case: adopt the picked review, or store the final the adjudicator wrote (the export takes it)."""
        reviewer = self._reviewer(request, name)
        if not case_id:
            raise FeedbackStoreError("choose a case to adjudicate first")
        if not pick:
            raise FeedbackStoreError("pick a review to adopt, or 'Write the final' and fill in the label and rationale")
        hidden = adj.hidden_from(self.store, adj.find_case(self.store, case_id), reviewer)
        if hidden:
            raise FeedbackStoreError(hidden)
        if pick == adj.WRITE:
            record = adj.write_final(self.store, reviewer, case_id, label or "", rationale or "")
            done = f"✓ Your final (label {record.final_label}, review #{record.review_id}) settles case `{case_id}`."
        else:
            try:
                review_id = int(pick)
            except ValueError as e:
                raise FeedbackStoreError("pick one of the listed reviews") from e
            record = adj.adopt(self.store, reviewer, case_id, review_id)
            done = f"✓ Review #{review_id} (label {record.final_label}) adopted for case `{case_id}`."
        return {**self.dashboard(name, request), **self._out(dash_status=done)}

    @ui_errors
    def export_start(self, actions: list[str], min_rating: float, consistent: bool, val_fraction: float,
                     test_csv: bool, name: str, request: gr.Request) -> dict:
        """Scan what would be exported; export at once if the scans find nothing, else show the findings and
        remember them: 'Export anyway' (UI or API) only confirms the findings this session has seen."""
        self._reviewer(request, name)
        policy = _policy(actions, min_rating, consistent)
        reviews, findings = preview_export(self.store, policy)
        message = findings_message(findings, len(reviews))
        if not findings:
            return {**self._out(ex_findings=[], ex_findings_md=message, ex_row=gr.update(visible=False)),
                    **self._export(policy, val_fraction, test_csv, name, request)}
        return self._out(ex_findings=[[f.case_id, f.field, f.kind, f.text] for f in findings],
                         ex_findings_md=message, ex_row=gr.update(visible=True), ex_files=None, ex_summary="",
                         ex_seen=_fingerprint(policy, findings))

    @ui_errors
    def export_confirm(self, actions: list[str], min_rating: float, consistent: bool, val_fraction: float,
                       test_csv: bool, name: str, seen: Any, request: gr.Request) -> dict:
        """Export anyway: only when this session was shown exactly the findings the data has now."""
        self._reviewer(request, name)
        policy = _policy(actions, min_rating, consistent)
        _, findings = preview_export(self.store, policy)
        if not seen or seen != _fingerprint(policy, findings):
            raise FeedbackStoreError("press 'Export for Stage 2' first and look at what the scan found: the "
                                     "reviews or the policy changed since, or nothing was scanned in this session")
        return {**self._export(policy, val_fraction, test_csv, name, request), **self._out(ex_seen=None)}

    def _export(self, policy: ExportPolicy, val_fraction: float, test_csv: bool, name: str,
                request: gr.Request) -> dict:
        # a folder name nobody can guess, outside every path Gradio serves; the download is a copy (a zip)
        folder = f"export-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(8)}"
        result = export_stage2_dataset(
            self.store, Path(self.cfg.app.export_dir) / folder, policy, float(val_fraction), bool(test_csv),
            seed=self.cfg.optim.seed, exported_by=self._reviewer(request, name), config=config_to_dict(self.cfg))
        return self._out(ex_files=[str(self._download_copy(result.out_dir, result.all_files))],
                         ex_summary=result.summary(), ex_row=gr.update(visible=False))

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


    # --- Improve the model: a training.improve run in a background process, compared before a switch ---

    def _export_folders(self) -> list[str]:
        root = Path(self.cfg.app.export_dir)
        # finished exports only: a killed export leaves a .partial folder with train.jsonl but no meta
        found = [p for p in root.iterdir() if is_complete_export(p)] if root.is_dir() else []
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]

    @ui_errors
    def improve_refresh(self) -> dict:
        """The exports to learn from and the runs so far (newest first)."""
        runs = [r.run_id for r in self.runs.runs()]
        exports = self._export_folders()
        return self._out(im_export=gr.update(choices=exports, value=exports[0] if exports else None),
                         im_run=gr.update(choices=runs, value=runs[0] if runs else None))

    def _plan(self, export: str | None, steps: Any) -> str:
        """Before a run: what its comparison will score and how long it should take (Markdown)."""
        a = self.cfg.app
        if not export or export not in self._export_folders():
            return "Choose an export to see how long a run takes."
        try:
            steps = max(int(steps or 0), 0)
        except (TypeError, ValueError):  # a half-typed number: the estimate waits for a whole one
            steps = 0
        plan = plan_run(Path(a.export_dir) / export, a.improve_data_dir, steps, a.improve_test_cases,
                        a.improve_step_s, a.improve_case_s)
        text = (f"**About {max(1, round(plan.seconds / 60))} min** on one core: {steps} training steps, "
                f"then both models score {plan.held_out} held-out reviewed case(s) and {plan.test_cases} public "
                "test cases.")
        if plan.held_out < MIN_COMPARED_CASES:
            text += (f"\n\n⚠ **Only {plan.held_out} reviewed case(s) are held out** in this export: with fewer "
                     f"than {MIN_COMPARED_CASES}, the comparison on them cannot tell the models apart. Review and "
                     "export more cases (or a larger validation share) first if you want that comparison.")
        return text

    @ui_errors
    def improve_plan(self, export: str | None, steps: Any) -> dict:
        """The estimate and the held-out warning, shown before Start is pressed."""
        return self._out(im_plan=self._plan(export, steps))

    def _check_data_dir(self, data_dir: str) -> str:
        """The configured original data folder, prepared from app.improve_source when it lacks its splits;
        a note saying so ("" when it was there). Raises TrainingRunError for any other folder."""
        from training.corpus.splits import prepare_missing  # no torch: r2d.data and r2d.sources only
        configured = self.cfg.app.improve_data_dir
        # only the data folder the app was started with: any other server folder, and errors naming its path
        # (whether it exists), are not the reviewer's to choose
        if not data_dir or not configured or Path(data_dir).resolve() != Path(configured).resolve():
            raise TrainingRunError("the original training data must be the folder this app was started with "
                                   "(app.improve_data_dir); ask whoever runs the app to configure another")
        manifest = prepare_missing(configured, self.cfg.app.improve_source)
        if manifest is None:
            return ""
        sizes = ", ".join(f"{split} {manifest['counts'][split]['total']}" for split in ("train", "val", "test"))
        return f"Prepared the original training data first, from the public KTAS data ({sizes} cases)."

    @ui_errors
    def improve_start(self, export: str | None, data_dir: str, steps: Any, full: bool, name: str,
                      request: gr.Request) -> dict:
        """Start Stage 2 on the original data plus the chosen export, from the model in use, in the background
        (preparing the original data first when it is missing)."""
        reviewer = self._reviewer(request, name)
        if not export or export not in self._export_folders():  # only the app's own export folders
            raise TrainingRunError("choose an export first (make one in the Export tab)")
        steps = int(steps or 0)
        if not 1 <= steps <= 100_000:
            raise TrainingRunError("steps must be between 1 and 100,000")
        prepared = self._check_data_dir(data_dir)
        run_id = self.runs.start(self.model_dir, Path(self.cfg.app.export_dir) / export, data_dir, steps,
                                 lora=not full, test_cases=self.cfg.app.improve_test_cases)
        logger.info("%s started improvement run %s from %s on export %s", reviewer, run_id, self.model_dir, export)
        polled = self.improve_poll(run_id)
        plan = self._plan(export, steps)
        return {**polled, **self._out(im_run=gr.update(choices=[r.run_id for r in self.runs.runs()], value=run_id),
                                      im_plan=" ".join(filter(None, [prepared, plan])))}

    @ui_errors
    def improve_poll(self, run_id: str | None) -> dict:
        """Where the chosen run stands: progress, log, and once done the comparison (table and plot)."""
        if not run_id:
            return self._out(im_status="No run yet.", im_progress=progress_bar(0))
        st = self.runs.status(run_id)
        doing = (f"scoring cases for the comparison, {st.scored} of {st.to_score}" if st.phase == "evaluate"
                 else f"{st.phase}, step {st.step} of {st.max_steps or '?'}")
        words = {"running": f"⏳ Running: {doing}",
                 "done": "✓ Done: compare below, then switch if the new model is better",
                 "failed": f"✗ Failed: {rv.plain(st.error or '')}", "cancelled": "Cancelled: the app is unchanged",
                 "lost": f"✗ The worker stopped without a result: {rv.plain(st.error or '')}"}
        done = st.state == "done" and st.comparison is not None
        in_use = done and Path(self.model_dir) == st.out_dir / "model"
        if in_use:
            words["done"] = f"✓ In use: suggestions come from `{self.predictor.model_id}`"
        return self._out(im_status=f"**{words[st.state]}** · run `{run_id}`",
                         im_progress=progress_bar(round(100 * st.fraction)),
                         im_log=st.log_tail, im_table=comparison_table(st.comparison) if done else "",
                         im_plot=comparison_figure(st.comparison or {}, COMPARED),
                         im_switch=gr.update(interactive=done and not in_use))

    @ui_errors
    def improve_cancel(self, run_id: str | None, name: str, request: gr.Request) -> dict:
        """Cancel a run: needs a reviewer's name, and is logged with it."""
        reviewer = self._reviewer(request, name)
        if not run_id:
            raise TrainingRunError("no run chosen")
        self.runs.cancel(run_id)
        logger.info("%s cancelled improvement run %s", reviewer, run_id)
        return self.improve_poll(run_id)

    def use_run(self, run_id: str) -> None:
        """Load a finished run's model for every later suggestion and remember it across restarts.
        Raises TrainingRunError (no such finished run) or ModelLoadError."""
        new_dir = self.runs.new_model_dir(run_id)
        base, adapter = model_source(new_dir)
        cfg = with_section(self.cfg, model=dataclasses.replace(self.cfg.model, name_or_path=base,
                                                               adapter_path=adapter))
        predictor = load_predictor(cfg)
        # the adapter directory is always called "model": name the run instead, so reviews say which run
        predictor.model_id = f"{predictor.model_id.split('+')[0]}+{run_id}"
        self.predictor, self.model_dir = predictor, str(new_dir)
        self.calibration = load_calibration(new_dir)  # a new model's consistency check is not the old one's
        self.runs.remember(run_id)

    def restore_model(self) -> None:
        """At start: the improved model in use before the restart, if any (else the configured one stays)."""
        run_id = self.runs.remembered()
        if run_id:
            try:
                self.use_run(run_id)
                logger.info("using the improved model of run %s, as before the restart", run_id)
            except R2DError as e:
                logger.warning("not using the remembered run %s: %s", run_id, e)
                self.runs.forget()

    @ui_errors
    def improve_switch(self, run_id: str | None, name: str, request: gr.Request) -> dict:
        """Use a finished run's model for every later suggestion (reviews record its id), also after a restart."""
        reviewer = self._reviewer(request, name)
        self.use_run(run_id or "")
        logger.info("%s switched suggestions to %s (%s)", reviewer, self.predictor.model_id, self.model_dir)
        return self._out(model_md=self._model_line(), im_status=(
            f"✓ Suggestions now come from `{self.predictor.model_id}`; every later review records it, also after "
            "a restart. Reviews already saved keep the model that made them."))

    @ui_errors
    def improve_revert(self, name: str, request: gr.Request) -> dict:
        """Back to the model the app was started with (the embedded one by default), now and after a restart."""
        reviewer = self._reviewer(request, name)
        if self.model_dir == self.cfg.model.name_or_path:
            raise TrainingRunError("the app already uses the model it was started with")
        self.predictor = load_predictor(self.cfg)
        self.model_dir = self.cfg.model.name_or_path
        self.calibration = load_calibration(self.model_dir)
        self.runs.forget()
        logger.info("%s switched suggestions back to %s", reviewer, self.predictor.model_id)
        return self._out(model_md=self._model_line(), im_status=(
            f"✓ Suggestions come from `{self.predictor.model_id}` again, also after a restart."))

    def _model_line(self) -> str:
        p = self.predictor
        engine = {"ct2": "CTranslate2", "torch": "transformers"}.get(getattr(p, "backend", "torch"), "transformers")
        line = f"Model `{p.model_id}` · backend `{engine}` · quantization `{p.quantization}`"
        if self.model_dir != self.cfg.model.name_or_path:
            line += " · an improved model (Improve tab: 'Back to the starting model')"
        n = self.predictor.generation.fact_check_candidates
        if n > 1:
            line += (f" · rationale: of {n} candidates the model wrote, the one the fact check finds fewest problems "
                     "in (what it still gets wrong is listed beside it)")
        return line


def progress_bar(percent: int) -> str:
    """An improvement run's progress as a bar that shows, never takes, a value (a slider invited dragging)."""
    percent = min(max(int(percent), 0), 100)
    return (f'<div class="r2d-progress"><progress max="100" value="{percent}" aria-label="Run progress">'
            f"</progress> <span>{percent}%</span></div>")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def private_temp_dir(base: str | Path | None = None) -> Path:
    """A new folder only this user can open (mode 700) for Gradio's cache, under base (default: the system
    temporary folder). Gradio's shared default (/tmp/gradio) is world-readable and served by any other Gradio
    app; exports copied there once stayed readable by every local user. Folders an earlier app left behind
    (it was killed) are deleted first: this user's, whose process is gone."""
    root = Path(base or tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(f"{TEMP_PREFIX}*"):
        pid = old.name[len(TEMP_PREFIX):].split("-")[0]
        if pid.isdigit() and old.stat().st_uid == os.getuid() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=root))


def use_private_temp_dir() -> Path:
    """Point Gradio's cache (uploads, download copies) at a private folder, deleted when the app exits.

    Called before the app is built: Gradio reads GRADIO_TEMP_DIR when Blocks and its server are created."""
    folder = private_temp_dir(os.environ.get("GRADIO_TEMP_DIR"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder


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


def _agreement_markdown(a: Any) -> str:
    """Agreement with its counts; reviewer names go through rv.plain (they are user text)."""
    if a.n_cases == 0:
        return "**Agreement:** no case has been reviewed by two or more reviewers yet."
    fleiss = "undefined (every label the same)" if a.fleiss is None else f"{a.fleiss:.2f}"
    parts = [f"**Agreement** on {a.n_cases} case(s) reviewed by 2+ of {a.n_reviewers} reviewers: "
             f"{a.observed:.0%} of reviewer pairs agree on the label · Fleiss' κ {fleiss} · "
             f"{len(a.disagreements)} with different labels"]
    for pair in a.pairs[:6]:
        kappa = "undefined" if pair.kappa is None else f"{pair.kappa:.2f}"
        parts.append(f"Cohen's κ {rv.plain(pair.reviewers[0])} vs {rv.plain(pair.reviewers[1])}: {kappa} "
                     f"(n = {pair.n_cases}, {pair.agreement:.0%} agree)")
    return "\n\n".join(parts)


def _fingerprint(policy: ExportPolicy, findings: Sequence[Any]) -> str:
    """What an 'Export anyway' confirms: this policy with exactly these findings."""
    seen = json.dumps([policy.to_dict(), [f.to_dict() for f in findings]], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(seen.encode("utf-8")).hexdigest()


def _read_asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def load_example_cases(directory: Path = EXAMPLES_DIR, limit: int = 8) -> list[str]:
    """Up to `limit` case texts from examples/*.jsonl (none if there are none)."""
    cases: list[str] = []
    for path in sorted(directory.glob("*.jsonl")):
        cases += up.load_cases(path, max_rows=100_000, max_chars=100_000)
    return cases[:limit]


def _review_panel(p: rv.PredictorLike, c: dict[str, Any]) -> None:
    """The case, the suggestion and the review controls (shared by single cases and the batch queue)."""
    with gr.Row():
        with gr.Column():
            c["case"] = gr.Textbox(label="Case", lines=6, elem_id="r2d-case",
                                   placeholder="Paste the triage note: complaint, vital signs, history")
            c["case_md"] = gr.Markdown(elem_id="r2d-case-id")
            with gr.Row():
                c["predict"] = gr.Button("Suggest triage", variant="primary", elem_id="r2d-predict")
                gr.ClearButton([c["case"]], value="Clear")
            if c["examples"]:
                gr.Examples([[e] for e in c["examples"]], [c["case"]], label="Example cases", cache_examples=False)
        with gr.Column():
            c["label_md"] = gr.Markdown(NO_SUGGESTION, elem_id="r2d-suggestion")
            c["plot"] = gr.Plot(label="Probability of each label", show_label=False, elem_id="r2d-probabilities")
    with gr.Row():
        with gr.Column(scale=3):
            how = ("streamed from the model" if p.generation.fact_check_candidates <= 1 and p.generation.num_beams == 1
                   else "from the model")
            c["rationale"] = gr.Textbox(label=f"Rationale ({how}; edit it if needed)", lines=5,
                                        elem_id="r2d-rationale")
            c["diff"] = gr.HighlightedText(label="Your changes: word diff against the model's rationale",
                                           color_map=DIFF_COLORS, show_legend=True, combine_adjacent=True,
                                           elem_id="r2d-diff")
        with gr.Column(scale=2):
            c["facts"] = gr.HighlightedText(label="Fact check against the case (updates as you type)",
                                            color_map=FACT_COLORS, show_legend=True, elem_id="r2d-facts")
            c["fact_notes"] = gr.Markdown(elem_id="r2d-fact-notes")
        with gr.Column(scale=2):
            c["final_label"] = gr.Radio(rv.label_choices(p.label_set, p.label_names), elem_id="r2d-final-label",
                                        label="Triage label (correct it if needed) · keys 1–5")
            c["rating"] = gr.Radio(["1", "2", "3", "4", "5"], elem_id="r2d-rating",
                                   label="Rate the model's rationale (1 = wrong, 5 = excellent) · Shift+1–5")
            c["comment"] = gr.Textbox(label="Comment (optional; the reason when you flag) · key M", lines=2,
                                      elem_id="r2d-comment")
            with gr.Accordion("KTAS reference: levels and first-order modifiers", open=False,
                              elem_id="r2d-ktas-reference"):
                gr.Markdown(_read_asset("ktas_reference.md"))
    with gr.Row(elem_id="r2d-actions"):
        c["accept"] = gr.Button("Accept what is shown [A]", variant="primary", elem_id="r2d-accept")
        c["submit"] = gr.Button("Save [S]", elem_id="r2d-submit")
        c["skip"] = gr.Button("Skip [K]", elem_id="r2d-skip")
        c["flag"] = gr.Button("Flag [F]", elem_id="r2d-flag")
        c["undo"] = gr.Button("Undo my last save [U]", elem_id="r2d-undo")
        c["check"] = gr.Button("Check consistency [C]", elem_id="r2d-check")
        c["consistency"] = gr.Markdown(elem_id="r2d-consistency")
    c["status"] = gr.Markdown(elem_id="r2d-status")


def _batch_panel(c: dict[str, Any]) -> None:
    with gr.Accordion("Batch: upload cases, predict them all, then review them one by one", open=False,
                      elem_id="r2d-batch") as c["batch_panel"]:
        with gr.Row():
            c["upload"] = gr.File(label="Cases (.csv or .jsonl with a question, case_text or case column, optional id; "
                                        "or the raw KTAS data.csv)",
                                  file_types=[".csv", ".jsonl"], type="filepath", elem_id="r2d-upload")
            with gr.Column():
                c["batch"] = gr.Dropdown(label="Saved batches", choices=[], elem_id="r2d-batch-choice")
                c["resume"] = gr.Button("Open / resume batch", elem_id="r2d-resume")
        c["up_status"] = gr.Markdown(elem_id="r2d-upload-status")
        with gr.Row(visible=False, elem_id="r2d-upload-map") as c["up_map"]:  # only when no case column is named
            c["up_case_col"] = gr.Dropdown(label="Column that holds the case text", choices=[],
                                           elem_id="r2d-upload-case-col")
            c["up_id_col"] = gr.Dropdown(label="Column that holds the case id (optional)", choices=[NO_ID_COLUMN],
                                         value=NO_ID_COLUMN, elem_id="r2d-upload-id-col")
            c["up_use"] = gr.Button("Use these columns", variant="primary", elem_id="r2d-upload-use")
        c["up_pending"] = gr.State(None)  # the upload waiting for its columns (server side, this session only)
        with gr.Row():
            c["order"] = gr.Dropdown(ORDER_CHOICES, value=DEFAULT_ORDER, label="Review order", elem_id="r2d-order",
                                     info="Most uncertain first puts the cases a correction teaches most at the front")
        with gr.Row():
            c["prev"] = gr.Button("◀ Previous [P]", elem_id="r2d-prev")
            c["queue_md"] = gr.Markdown(elem_id="r2d-queue")
            c["next"] = gr.Button("Next [N] ▶", elem_id="r2d-next")
            c["next_todo"] = gr.Button("Next unreviewed [R] ⏭", elem_id="r2d-next-unreviewed")


def _dashboard_tab(c: dict[str, Any]) -> None:
    c["dash_refresh"] = gr.Button("Refresh", elem_id="r2d-dash-refresh")
    c["dash_summary"] = gr.Markdown(elem_id="r2d-dash-summary")
    c["dash_agreement"] = gr.Markdown(elem_id="r2d-dash-agreement")
    _adjudication_panel(c)
    c["dash_flags"] = gr.Dataframe(headers=["case id", "reviewer", "why", "when"], datatype="str",
                                   interactive=False, label="Flagged cases", elem_id="r2d-flags")
    c["dash_plots"] = []
    for row in (("Label distribution", "Model confidence"), ("Ratings", "Accept / edit rates"),
                ("Per-class F1", "Under- vs over-triage")):
        with gr.Row():
            c["dash_plots"] += [gr.Plot(label=name, show_label=False) for name in row]


def _adjudication_panel(c: dict[str, Any]) -> None:
    """Cases whose reviewers disagree: their reviews side by side, and a pick (click, or Tab and arrow keys)."""
    with gr.Group(elem_id="r2d-adjudication"):
        c["adj_md"] = gr.Markdown(elem_id="r2d-adj-count")
        c["adj_case"] = gr.Dropdown(label="Case to adjudicate", choices=[], elem_id="r2d-adj-case")
        c["adj_view"] = gr.HTML(elem_id="r2d-adj-view")
        c["adj_pick"] = gr.Radio([], label="Settle it: adopt a review, or write the final (arrow keys move the choice)",
                                 elem_id="r2d-adj-pick")
        with gr.Row():
            c["adj_label"] = gr.Radio(c["label_choices"], label="Final label (if you write the final)",
                                      elem_id="r2d-adj-label")
            c["adj_rationale"] = gr.Textbox(label="Final rationale (if you write the final)", lines=3,
                                            elem_id="r2d-adj-rationale")
        c["adj_settle"] = gr.Button("Settle this case", variant="primary", elem_id="r2d-adj-settle")
    c["dash_status"] = gr.Markdown(elem_id="r2d-dash-status")


def _export_tab(c: dict[str, Any]) -> None:
    gr.Markdown("Writes the current review of each case as Stage-2 training data (question / label / rationale, "
                "rationale_source = nurse_post_processed) and `export_meta.json`, after an identifier scan.")
    with gr.Row():
        c["ex_actions"] = gr.CheckboxGroup(list(ACTIONS), value=list(ACTIONS), label="Include reviews that were")
        c["ex_rating"] = gr.Slider(0, 5, value=0, step=1, label="Minimum rating (0 = any, unrated included)")
        c["ex_consistent"] = gr.Checkbox(label="Only rationales consistent with their label")
    with gr.Row():
        c["ex_val"] = gr.Slider(0.05, 0.4, value=0.1, step=0.05, label="Validation fraction")
        c["ex_test"] = gr.Checkbox(label="Also write a test split as test.csv")
    c["ex_start"] = gr.Button("Export for Stage 2", variant="primary", elem_id="r2d-export")
    c["ex_findings_md"] = gr.Markdown(elem_id="r2d-findings-md")
    c["ex_findings"] = gr.Dataframe(headers=["case id", "field", "kind", "text"], datatype="str", interactive=False,
                                    label="Likely patient identifiers", elem_id="r2d-findings")
    with gr.Row(visible=False) as c["ex_row"]:
        c["ex_confirm"] = gr.Button("Export anyway", variant="stop", elem_id="r2d-export-anyway")
        c["ex_cancel"] = gr.Button("Go back", elem_id="r2d-export-cancel")
    c["ex_summary"] = gr.Markdown(elem_id="r2d-export-summary")
    c["ex_files"] = gr.File(label="Download the export (zip)", file_count="multiple", interactive=False,
                            elem_id="r2d-export-files")
    c["ex_seen"] = gr.State(None)  # the findings this session was shown, which 'Export anyway' confirms


def _improve_tab(c: dict[str, Any], cfg: R2DConfig) -> None:
    gr.Markdown(_read_asset("improve.md"))
    with gr.Row():
        c["im_export"] = gr.Dropdown(label="Reviewed export to learn from", choices=[], elem_id="r2d-im-export")
        c["im_data"] = gr.Textbox(label="Original training data (train/val/test.jsonl)",
                                  value=cfg.app.improve_data_dir, elem_id="r2d-im-data")
        c["im_steps"] = gr.Number(label="Stage-2 steps", value=cfg.app.improve_steps, precision=0,
                                  elem_id="r2d-im-steps")
        c["im_full"] = gr.Checkbox(label="Full fine-tune (default: LoRA)", elem_id="r2d-im-full")
    with gr.Row():
        c["im_start"] = gr.Button("Start improving", variant="primary", elem_id="r2d-im-start")
        c["im_refresh"] = gr.Button("Refresh lists", elem_id="r2d-im-refresh")
        c["im_run"] = gr.Dropdown(label="Run", choices=[], elem_id="r2d-im-run")
        c["im_cancel"] = gr.Button("Cancel run", variant="stop", elem_id="r2d-im-cancel")
    c["im_plan"] = gr.Markdown(elem_id="r2d-im-plan")
    c["im_status"] = gr.Markdown(elem_id="r2d-im-status")
    c["im_progress"] = gr.HTML(progress_bar(0), label="Progress", elem_id="r2d-im-progress")
    c["im_table"] = gr.Markdown(elem_id="r2d-im-table")
    c["im_plot"] = gr.Plot(show_label=False, elem_id="r2d-im-plot")
    with gr.Row():
        c["im_switch"] = gr.Button("Use the new model for suggestions", interactive=False, elem_id="r2d-im-switch")
        c["im_revert"] = gr.Button("Back to the starting model", elem_id="r2d-im-revert")
    c["im_log"] = gr.Textbox(label="Log (last lines)", lines=8, interactive=False, elem_id="r2d-im-log")
    c["im_timer"] = gr.Timer(2.0)


def _wire(demo: gr.Blocks, h: Handlers, c: dict[str, Any]) -> None:
    outs = lambda *names: [c[n] for n in names]  # noqa: E731
    shown_out = outs(*SHOWN_OUTPUTS)
    queue_out = shown_out + outs(*QUEUE_OUTPUTS)
    # long model runs (predict, batches) queue one at a time; saves and checks only wait for the Predictor's own
    # lock, i.e. for the model call in progress, not for a whole batch
    model = dict(concurrency_id="model", concurrency_limit=1)
    # a single prediction has its own queue: behind a 1,000-case upload it waits for one chunk (the Predictor's
    # fair lock), not for the whole batch
    single = dict(concurrency_id="single", concurrency_limit=4)
    quiet = dict(api_name=False, show_progress="hidden")
    c["predict"].click(h.predict, outs("case", "reviewer"), queue_out, api_name="predict", **single)
    # .input fires on typing only: text pasted with the mouse or dropped in arrives with the box's .blur (leaving it)
    typed_or_left = ("input", "blur")
    for event in typed_or_left:
        getattr(c["rationale"], event)(h.diff, outs("shown", "rationale"), outs("diff"), trigger_mode="always_last",
                                       **quiet)
    # radios: .select, which only a person fires; their .input also fired while an output was being applied,
    # which saved the previous case's editor as a draft of the next one
    fact_in = outs("shown", "rationale", "final_label")
    for event in typed_or_left:
        getattr(c["rationale"], event)(h.facts, fact_in, outs("facts", "fact_notes"), trigger_mode="always_last",
                                       **quiet)
    c["final_label"].select(h.facts, fact_in, outs("facts", "fact_notes"), trigger_mode="always_last", **quiet)
    checked = outs("shown", "rationale", "final_label")
    c["rationale"].blur(h.check_event, checked, outs("consistency"), **quiet)
    # a relabel re-checks at once: the line said something about the previous label
    c["final_label"].select(h.check_event, checked, outs("consistency"), trigger_mode="always_last", **quiet)
    c["check"].click(h.check_event, checked, outs("consistency"), api_name="check")
    editor = outs("shown", "reviewer", "final_label", "rationale", "rating", "comment")
    for box in ("rationale", "comment"):
        for event in typed_or_left:
            getattr(c[box], event)(h.save_draft, editor + outs("case"), None, trigger_mode="always_last", **quiet)
    for radio in ("final_label", "rating"):
        c[radio].select(h.save_draft, editor + outs("case"), None, trigger_mode="always_last", **quiet)
    for button, api in (("submit", "submit"), ("accept", "accept")):
        c[button].click(h.save, editor + outs("queue", "case"), queue_out, api_name=api, trigger_mode="once")
    c["undo"].click(h.undo, outs("shown", "reviewer", "queue"), queue_out, api_name="undo", trigger_mode="once")
    c["skip"].click(h.skip, outs("shown", "reviewer", "queue"), queue_out, api_name="skip", trigger_mode="once")
    c["flag"].click(h.flag, outs("shown", "reviewer", "comment"), outs("status"), api_name="flag", trigger_mode="once")
    upload_out = queue_out + outs("up_status", "up_map", "up_pending", "up_case_col", "up_id_col")
    c["upload"].upload(h.upload, outs("upload", "reviewer", "order"), upload_out, api_name="upload_batch", **model)
    c["up_use"].click(h.upload_mapped, outs("up_pending", "up_case_col", "up_id_col", "reviewer", "order"), upload_out,
                      api_name="upload_mapped", trigger_mode="once", **model)
    c["resume"].click(h.resume, outs("batch", "reviewer", "order"), queue_out, api_name="resume_batch", **model)
    c["order"].select(h.reorder, outs("queue", "order", "reviewer"), queue_out, api_name="reorder_batch")
    c["next"].click(h.next_case, outs("queue", "reviewer"), queue_out, api_name="next_case")
    c["prev"].click(h.previous_case, outs("queue", "reviewer"), queue_out, api_name="previous_case")
    c["next_todo"].click(h.next_unreviewed, outs("queue", "reviewer"), queue_out, api_name="next_unreviewed")
    demo.load(h.restore, outs("queue", "saved_name"), outs("reviewer") + queue_out, api_name=False)
    c["reviewer"].change(lambda name: name, outs("reviewer"), outs("saved_name"), **quiet)
    adj_out = outs("adj_view", "adj_pick", "adj_label", "adj_rationale")
    dash_out = outs("dash_summary", "dash_agreement", "adj_md", "adj_case", "dash_flags") + adj_out + c["dash_plots"]
    for trigger in (c["dash_refresh"].click, c["dash_tab"].select):
        trigger(h.dashboard, outs("reviewer"), dash_out, api_name=False)
    c["adj_case"].select(h.adjudication_case, outs("adj_case", "reviewer"), adj_out, api_name=False)
    c["adj_settle"].click(h.adjudicate, outs("adj_case", "adj_pick", "adj_label", "adj_rationale", "reviewer"),
                          dash_out + outs("dash_status"), api_name="adjudicate", trigger_mode="once")
    export_in = outs("ex_actions", "ex_rating", "ex_consistent", "ex_val", "ex_test", "reviewer")
    export_out = outs("ex_findings", "ex_findings_md", "ex_row", "ex_files", "ex_summary", "ex_seen")
    c["ex_start"].click(h.export_start, export_in, export_out, api_name="export")
    c["ex_confirm"].click(h.export_confirm, export_in + outs("ex_seen"), export_out, api_name="export_anyway")
    poll_out = outs("im_status", "im_progress", "im_log", "im_table", "im_plot", "im_switch")
    lists = outs("im_export", "im_run")
    for trigger in (c["im_refresh"].click, c["im_tab"].select):
        trigger(h.improve_refresh, None, lists, api_name=False).then(h.improve_poll, outs("im_run"), poll_out,
                                                                     api_name=False)
    c["im_start"].click(h.improve_start, outs("im_export", "im_data", "im_steps", "im_full", "reviewer"),
                        poll_out + outs("im_run", "im_plan"), api_name="improve_start", trigger_mode="once")
    for changed in (c["im_export"].change, c["im_steps"].change):  # the estimate before Start, not after
        changed(h.improve_plan, outs("im_export", "im_steps"), outs("im_plan"), **quiet)
    c["im_run"].select(h.improve_poll, outs("im_run"), poll_out, api_name=False)
    c["im_timer"].tick(h.improve_poll, outs("im_run"), poll_out, api_name=False, show_progress="hidden")
    c["im_cancel"].click(h.improve_cancel, outs("im_run", "reviewer"), poll_out, api_name="improve_cancel")
    c["im_switch"].click(h.improve_switch, outs("im_run", "reviewer"), outs("model_md", "im_status"),
                         api_name="improve_switch", **model)
    c["im_revert"].click(h.improve_revert, outs("reviewer"), outs("model_md", "im_status"),
                         api_name="improve_revert", **model)
    demo.load(h._model_line, None, outs("model_md"), api_name=False)  # a page opened after a switch says so
    c["ex_cancel"].click(lambda: {c["ex_findings"]: [], c["ex_row"]: gr.update(visible=False),
                                  c["ex_findings_md"]: "Export cancelled: save corrected reviews, then export again."},
                         None, export_out, api_name=False)


def build_app(predictor: rv.PredictorLike, store: ReviewStore, cfg: R2DConfig, examples: Sequence[str] | None = None,
              signed_in: bool = False) -> tuple[gr.Blocks, Handlers]:
    """The UI and its handlers (whose `c` names every component); nothing is launched, no weights loaded.

    signed_in: the app is launched with sign-in (--auth), so the recorded name is the signed-in one.
    """
    h = Handlers(predictor, store, cfg)
    c = h.c
    c["examples"] = list(load_example_cases() if examples is None else examples)
    c["label_choices"] = rv.label_choices(predictor.label_set, predictor.label_names)
    secret = store.browser_secret()
    with gr.Blocks(title="Reason2Decide — triage review", analytics_enabled=False,
                   delete_cache=CACHE_CLEANUP_S) as demo:
        gr.Markdown("# Reason2Decide — triage review")
        c["model_md"] = gr.Markdown(h._model_line(), elem_id="r2d-model")
        gr.Markdown(_read_asset("disclaimer.md"), elem_id="r2d-disclaimer")
        with gr.Row():
            with gr.Column():
                c["reviewer"] = gr.Textbox(label="Reviewer", placeholder="Your name (recorded with every review)",
                                           elem_id="r2d-reviewer", interactive=not signed_in)
                gr.Markdown(SIGNED_IN_NOTE if signed_in else UNVERIFIED_NOTE, elem_id="r2d-names-note")
            gr.Markdown(_read_asset("shortcuts.md"), elem_id="r2d-shortcuts")
        c["shown"] = gr.State(None)  # the case under review, per browser session
        # the open batch, the position and the name survive a refresh (browser storage) and a restart (DB secret)
        c["queue"] = gr.BrowserState({}, storage_key="r2d-queue", secret=secret)
        c["saved_name"] = gr.BrowserState("", storage_key="r2d-reviewer", secret=secret)
        with gr.Tabs():
            with gr.Tab("Review", elem_id="r2d-review-tab"):
                _batch_panel(c)
                _review_panel(predictor, c)
            with gr.Tab("Dashboard", elem_id="r2d-dashboard-tab") as c["dash_tab"]:
                _dashboard_tab(c)
            with gr.Tab("Export", elem_id="r2d-export-tab"):
                _export_tab(c)
            with gr.Tab("Improve the model", elem_id="r2d-improve-tab") as c["im_tab"]:
                _improve_tab(c, cfg)
        _wire(demo, h, c)
    # several reviewers may save at once; model-heavy events keep their own limit of 1 (see _wire)
    return demo.queue(default_concurrency_limit=8), h


def build_demo(predictor: rv.PredictorLike, store: ReviewStore, cfg: R2DConfig,
               examples: Sequence[str] | None = None) -> gr.Blocks:
    """Construct the UI around a predictor and a store; nothing is launched and no weights are loaded.

    examples: case texts offered one click away (default: examples/*.jsonl).
    """
    return build_app(predictor, store, cfg, examples)[0]


def launch_kwargs(cfg: R2DConfig, allowed_hosts: Sequence[str] = ()) -> dict[str, Any]:
    """Privacy-first launch options: loopback, no share link, no run history, no monitoring, no MCP server.

    Every request must name this app in its Host header (allowed_hosts: extra names) and come from its own
    origin; every response forbids outside scripts, images and connections (see webguard.py).
    """
    from r2d.limits import max_upload_bytes
    from webguard import MAX_REQUEST_BYTES, guard_middleware
    upload_bytes = max_upload_bytes(cfg.app.max_batch_rows, cfg.app.max_case_chars)
    # a request body: an event's bounded fields, or one upload (plus its multipart framing)
    guard = guard_middleware(cfg.app.host, cfg.app.port, allowed_hosts, max_body_bytes=MAX_REQUEST_BYTES,
                             max_upload_bytes=upload_bytes + MAX_REQUEST_BYTES)
    return dict(server_name=cfg.app.host, server_port=cfg.app.port, share=False, run_history=False,
                app_kwargs={"middleware": guard},
                footer_links=["settings"], enable_monitoring=False, mcp_server=False, pwa=False, ssr_mode=False,
                show_error=False, blocked_paths=[str(Path(cfg.app.export_dir).resolve())],  # downloads: zips
                max_file_size=upload_bytes,
                css_paths=[ASSETS / "app.css"], js=_read_asset("shortcuts.js"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The app's command line (unknown flags are an error, as argparse does)."""
    ap = argparse.ArgumentParser(description="Reason2Decide review app (loopback only).")
    ap.add_argument("--model", help="model directory or hub id (default: the embedded assets/models/r2d-ktas-small)")
    ap.add_argument("--quantization", choices=QUANTIZATIONS)
    ap.add_argument("--db", help="review database path (SQLite)")
    ap.add_argument("--port", type=int)
    ap.add_argument("--config", help="JSON config file")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    ap.add_argument("--auth", metavar="FILE",
                    help="sign-in: users file of names and scrypt hashes (make one: `python -m r2d.review.auth add`)")
    ap.add_argument("--allow-remote", action="store_true",
                    help="allow app.host beyond loopback (also needs sign-in with --auth)")
    ap.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="another name this app is reached by (checked against the Host header)")
    return ap.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> R2DConfig:
    """Defaults, --config, --set, then the dedicated flags. Raises ConfigError."""
    cfg = load_config(args.config, args.set)
    model = dataclasses.replace(cfg.model, **{k: v for k, v in (("name_or_path", args.model),
                                                                ("quantization", args.quantization)) if v})
    app = dataclasses.replace(cfg.app, **{k: v for k, v in (("db_path", args.db), ("port", args.port)) if v})
    path = Path(model.name_or_path)
    if not path.is_absolute() and not path.exists() and (ROOT / path).exists():
        model = dataclasses.replace(model, name_or_path=str(ROOT / path))  # launched from another directory
    own = Path(model.name_or_path) / CONFIG_FILENAME
    if args.config is None and own.is_file():
        # the model's own generation lengths (e.g. rationales of up to 256 tokens), then the user's --set
        generation = load_config(own, [s for s in args.set if s.startswith("generation.")]).generation
        cfg = with_section(cfg, generation=generation)
    return with_section(cfg, model=model, app=app)


def load_predictor(cfg: R2DConfig) -> rv.PredictorLike:
    """Load the model named by cfg.model on the backend model.backend resolves to (auto: CTranslate2 on CPU
    when installed, else transformers; the app's only road to torch). Raises ModelLoadError."""
    from r2d.model.load import load_predictor as load
    return load(cfg.model, cfg.generation, cfg.app.max_case_chars)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, load the model and the store, launch on loopback. Exits with a message on R2DError."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        cfg = resolve_config(args)
        from webguard import check_bind
        check_bind(cfg.app.host, auth_enabled=bool(getattr(args, "auth", None)), allow_remote=args.allow_remote)
        default = ModelConfig().name_or_path
        if cfg.model.name_or_path.endswith(default) and not Path(cfg.model.name_or_path).is_dir():
            sys.exit(f"error: the default model {default} is missing. Create it with "
                     "`python -m training.default_model`, or pass --model DIR with a trained model directory.")
        users = load_users(args.auth) if args.auth else None
        use_private_temp_dir()
        predictor = load_predictor(cfg)
        store = ReviewStore(cfg.app.db_path)
    except R2DError as e:
        sys.exit(f"error: {e}")
    demo, h = build_app(predictor, store, cfg, signed_in=users is not None)
    if not args.model:  # an explicit --model wins over the improved model remembered from the last run
        h.restore_model()
    logger.info("reviews go to %s; open http://%s:%d", store.path.resolve(), cfg.app.host, cfg.app.port)
    demo.launch(**launch_kwargs(cfg, args.allowed_host), auth=authenticator(users) if users else None,
                auth_message="Sign in with your reviewer name: every review records who made it.")


if __name__ == "__main__":
    main()

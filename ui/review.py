"""The Review tab: a case, the model's suggestion, and the reviewer's verdict (save, undo, skip, flag, drafts).

Decisions live in r2d.review.session: this module lays the panel out, renders what it returns and wires the
events. The batch queue above the panel is ui/batch.py; a save or skip in a batch opens the next case here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from r2d.checks.consistency import consistency_line
from r2d.checks.factcheck import case_has_triage_facts
from r2d.config import R2DConfig
from r2d.errors import InvalidCaseError, ReviewActionError
from r2d.review import session as rv
from r2d.review.active import DEFAULT_ORDER
from r2d.review.dashboard import probability_figure
from r2d.review.store import ReviewStore, case_id_for
from ui.common import (
    QUEUE_OUTPUTS,
    QUIET,
    SHOWN_OUTPUTS,
    SINGLE_QUEUE,
    Tab,
    joined,
    queue_of,
    read_asset,
    reviewer,
    ui_errors,
    who,
)
from ui.model import ModelInUse

logger = logging.getLogger("r2d.app")
DIFF_COLORS = {rv.DIFF_ADDED: "#2ca02c", rv.DIFF_REMOVED: "#d62728"}
FACT_COLORS = {rv.FACT_CONTRADICTED: "#d62728", rv.FACT_UNSUPPORTED: "#ff7f0e"}
NO_SUGGESTION = "The suggested triage level appears here."
GUESS_CONFIRM = (
    "⚠ **Not saved: this text is no triage note** (no vital sign, age, complaint or mental state), so "
    "the suggestion is only a guess. Press the same key again to save the guess as it is, or change "
    "the label or the rationale first."
)
NO_FACTS_NOTE = (
    "**⚠ This case holds none of the triage facts the model was trained on** (vital signs, chief "
    "complaint, mental state, pain). The suggestion is a guess: decide from the case itself."
)


@dataclass
class ReviewUI:
    shown: gr.State  # the case under review, per browser session
    case: gr.Textbox
    case_md: gr.Markdown
    predict: gr.Button
    label_md: gr.Markdown
    plot: gr.Plot
    rationale: gr.Textbox
    diff: gr.HighlightedText
    facts: gr.HighlightedText
    fact_notes: gr.Markdown
    final_label: gr.Radio
    rating: gr.Radio
    comment: gr.Textbox
    accept: gr.Button
    submit: gr.Button
    skip: gr.Button
    flag: gr.Button
    undo: gr.Button
    check: gr.Button
    consistency: gr.Markdown
    status: gr.Markdown


def fact_notes(view: rv.FactView) -> str:
    """The fact check in words (its messages quote the rationale, so they go through rv.plain)."""
    lines = [] if view.case_has_facts else [NO_FACTS_NOTE]
    if view.problems:
        lines.append(f"**Fact check: {len(view.problems)} statement(s) the case does not support**")
        lines += [f"- {rv.plain(m)}" for m in view.problems]
    elif view.case_has_facts:
        lines.append("Fact check: every statement checked matches the case.")
    if view.missing_critical:
        lines.append(
            "**Critical findings the rationale leaves out:** " + "; ".join(rv.plain(m) for m in view.missing_critical)
        )
    return "\n".join(lines)


def on_screen(shown: rv.ShownCase, case_text: str | None) -> bool:
    """Whether the editor values that came with an event belong to the case under review. gr.State is read on
    the server when the event runs, the boxes when it was triggered: after a save that opened the next case, a
    late event would otherwise file the previous case's editor under the next one."""
    return case_text is None or case_id_for(case_text) == shown.case_id


class ReviewTab(Tab):
    """The review panel's handlers; `queue_ui` is the batch panel's components (a batch event fills both)."""

    def __init__(self, model: ModelInUse, store: ReviewStore, cfg: R2DConfig) -> None:
        self.model, self.store, self.cfg = model, store, cfg
        self.queue_ui: Any = None
        # (reviewer, case id, showing) of each non-triage text whose one-key acceptance was asked to be confirmed
        self._guesses_warned: set[tuple[str, str, str]] = set()

    def holders(self) -> tuple[Any, ...]:
        return (self.ui, self.queue_ui, self.shared)

    # --- showing a case ---

    def _label_markdown(self, label: str, probabilities: dict[str, float], case_text: str) -> str:
        p = self.model.predictor
        text = f"### Suggested triage: {rv.format_label(label, p.label_names)} ({probabilities[label]:.0%})"
        guard = rv.under_triage(case_text, label, p.label_set)
        if guard:  # right under the suggestion, before anything else: the case itself calls for more urgency
            text += f"\n\n**⚠ {guard.message(p.label_names)}**"  # no user text: only fixed words
        note = rv.probability_note(probabilities, self.cfg.app.low_probability)
        # beside the suggestion too, not only under the fact check: a confident guess on "hello" is still a guess
        facts = "" if case_has_triage_facts(case_text) else f"\n\n{NO_FACTS_NOTE}"
        return text + (f"\n\n**⚠ {note}**" if note else "") + facts

    def render(
        self,
        shown: rv.ShownCase,
        prefill: Any = None,
        draft: dict | None = None,
        status: str = "",
        consistency: str = "",
        source_id: str | None = None,
    ) -> dict:
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
        p = self.model.predictor
        return {
            **self.facts(shown, rationale, label),
            **self.out(
                shown=shown,
                case=shown.case_text,
                case_md=f"Case id `{shown.case_id}`{where}{named}",
                label_md=self._label_markdown(shown.model_label, shown.probabilities, shown.case_text),
                plot=probability_figure(shown.probabilities, p.label_names, shown.model_label),
                rationale=rationale,
                final_label=label,
                rating=rating,
                comment=comment,
                diff=rv.word_diff(shown.model_rationale, rationale),
                consistency=consistency,
                status=status,
                model_md=self.model.line(),
            ),
        }  # another page may have switched the model since this one loaded

    def open_queue(
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
            **self.out(
                queue={"batch_id": batch_id, "position": view.position, "order": view.order},
                order=view.order,
                batch_panel=gr.update(open=True),
                batch=gr.update(choices=rv.batch_choices(self.store, reviewer), value=batch_id),
                queue_md=view.progress,
            ),
            **self.render(view.shown, view.review, view.draft, joined(status, view.status), source_id=view.source_id),
        }

    def _next_in_batch(self, shown: rv.ShownCase, queue: Any, reviewer: str, message: str) -> dict | None:
        """In the open batch the case belongs to, the next case to review; else None."""
        queue = queue_of(queue)
        if shown.batch_id is not None and queue.get("batch_id") == shown.batch_id:
            return self.open_queue(
                shown.batch_id, None, reviewer, message, after=shown.item_index, order=queue["order"]
            )
        return None

    @ui_errors
    def predict(self, case_text: str, name: str, request: gr.Request) -> Iterator[dict]:
        """Label and every probability first, then the rationale streamed into the editor; leaves any batch.
        A case that cannot be read (empty, too long) gets one message under the case box, which keeps its text."""
        p = self.model.predictor
        try:
            if len(case_text or "") > self.cfg.app.max_case_chars:
                raise InvalidCaseError(
                    f"the case has {len(case_text):,} characters; the limit is "
                    f"{self.cfg.app.max_case_chars:,}. Keep the triage-relevant part"
                )
            case_text = p.check_case(case_text or "")
        except InvalidCaseError as e:  # raised, it marked every output "Error", over the pasted text too
            yield self.out(case_md=f"⚠ **No suggestion: {rv.plain(str(e))}**", label_md=NO_SUGGESTION)
            return
        shown_at = time.time()
        scores = p.predict_label(case_text)
        probabilities, label = dict(zip(scores.labels, scores.probabilities)), scores.best
        yield self.out(
            shown=None,
            label_md=self._label_markdown(label, probabilities, case_text),
            plot=probability_figure(probabilities, p.label_names, label),
            rationale="",
            final_label=label,
            rating=None,
            comment="",
            diff=[],
            consistency="",
            status="Writing the rationale…",
            queue={},
            queue_md="",
            case_md="",
            facts=[],
            fact_notes="",
        )
        text = ""
        for text in p.stream_rationale(case_text, label):
            yield self.out(rationale=text)
        shown = rv.ShownCase(case_text, label, probabilities, text, p.model_id, p.quantization, shown_at=shown_at)
        yield self._shown_with_draft(shown, who(request, name))

    def _shown_with_draft(self, shown: rv.ShownCase, reviewer: str) -> dict:
        """A freshly predicted case, with the reviewer's unsaved draft of it; complete values at the end, since
        API clients only see the last yield."""
        restored = rv.restorable_draft(self.store, reviewer, shown.case_id)
        draft = restored[1] if restored else None
        status = (
            "Restored your unsaved draft of this case."
            if draft
            else "Review the rationale: press A to save what is shown, or edit it first."
        )
        note = rv.others_note(self.store, shown.case_id, reviewer) if reviewer else ""
        rendered = self.render(shown, draft=draft, status=joined(status, note))
        consistency = self.check(shown, rendered[self.ui.rationale], rendered[self.ui.final_label])
        return {**rendered, **self.out(queue={}, queue_md="", consistency=consistency)}

    # --- live checks while the reviewer edits ---

    def facts(self, shown: rv.ShownCase | None, rationale: str, final_label: str | None) -> dict:
        """The fact check of the rationale as it stands (live while the nurse types)."""
        if not isinstance(shown, rv.ShownCase):
            return self.out(facts=[], fact_notes="")
        try:
            view = rv.fact_view(shown.case_text, rationale or "", final_label)
        except InvalidCaseError as e:  # too long: say so instead of checking it (the save refuses it too)
            return self.out(facts=[], fact_notes=f"**⚠ Fact check paused: {e}.**")
        p = self.model.predictor
        guard = rv.under_triage(shown.case_text, final_label, p.label_set) if final_label else None
        mine = (
            f"**⚠ {guard.message(p.label_names, 'your label')}**\n"
            if guard and final_label != shown.model_label
            else ""
        )
        return self.out(facts=view.highlights, fact_notes=mine + fact_notes(view))

    def diff(self, shown: rv.ShownCase | None, rationale: str) -> dict:
        """The live word diff while the reviewer types."""
        try:
            return self.out(diff=rv.word_diff(shown.model_rationale, rationale or "") if shown else [])
        except InvalidCaseError:  # too long: the fact check notes say so
            return self.out(diff=[])

    def check(self, shown: rv.ShownCase | None, rationale: str, final_label: str) -> str:
        """The consistency line: does the rationale alone point to the chosen label?"""
        if shown is None or not (rationale or "").strip():
            return ""
        return self._consistency_line(
            rv.check_consistency(self.model.predictor, rationale, final_label, self.cfg.app.low_probability)
        )

    def _consistency_line(self, check: rv.ConsistencyResult) -> str:
        p = self.model.predictor
        return consistency_line(
            rv.format_label(check.label, p.label_names),
            check.probability,
            check.agrees,
            check.message,
            p.model_id,
            self.model.calibration,
        )

    @ui_errors
    def check_event(self, shown: rv.ShownCase | None, rationale: str, final_label: str) -> dict:
        return self.out(consistency=self.check(shown, rationale, final_label))

    @ui_errors
    def save_draft(
        self,
        shown: rv.ShownCase | None,
        name: str,
        final_label: str,
        rationale: str,
        rating: Any,
        comment: str,
        case_text: str | None,
        request: gr.Request,
    ) -> None:
        """Keep what is on screen server-side (per reviewer and case) so a refresh or restart loses nothing."""
        reviewer = who(request, name)
        if isinstance(shown, rv.ShownCase) and reviewer and on_screen(shown, case_text):
            draft = rv.make_draft(shown, final_label, rationale, rating, comment)
            if rv.differs_from_model(draft, shown) or self.store.draft(reviewer, shown.case_id):
                self.store.save_draft(reviewer, shown.case_id, draft)

    # --- the verdict ---

    @ui_errors
    def save(
        self,
        shown: rv.ShownCase | None,
        name: str,
        final_label: str,
        rationale: str,
        rating: Any,
        comment: str,
        queue: Any,
        case_text: str | None,
        request: gr.Request,
    ) -> dict:
        """Store what is on screen (A and S alike: an edit on screen is saved, never replaced by the model's
        output); in a batch, open the next case to review."""
        if shown is None:
            raise ReviewActionError("nothing to review yet: predict a case or open a batch first")
        if not on_screen(shown, case_text):
            raise ReviewActionError(
                "the Case box no longer holds the case under review, so nothing was saved: "
                "press 'Suggest triage' for the new text, or open the case again"
            )
        name = reviewer(request, name)
        if rv.unconfirmed_guess(shown, final_label or "", rationale or ""):
            showing = (name, shown.case_id, shown.review_token)
            if showing not in self._guesses_warned:  # the second press on the same showing saves
                self._guesses_warned.add(showing)
                return self.out(status=GUESS_CONFIRM)
        result, check = rv.save_review(
            self.store, self.model.predictor, shown, name, final_label or "", rationale or "", rating, comment or ""
        )
        message = rv.saved_message(result, in_batch=False)
        opened = self._next_in_batch(shown, queue, name, message)
        if opened is not None:
            return opened
        note = rv.others_note(self.store, shown.case_id, name)
        return self.out(
            status=joined(message, note),
            consistency=self._consistency_line(check),
            diff=rv.word_diff(shown.model_rationale, result.record.final_rationale),
        )

    @ui_errors
    def undo(self, name: str, queue: Any, request: gr.Request) -> dict:
        """Retract the reviewer's last save (a new audit row) and put its content back in the editor as a draft."""
        name = reviewer(request, name)
        undone = rv.undo_last_review(self.store, name)
        record, back, message = undone.record, undone.shown, undone.message
        if record.batch_id is not None:
            queue = queue_of(queue)
            order = queue["order"] if queue.get("batch_id") == record.batch_id else DEFAULT_ORDER
            return self.open_queue(record.batch_id, None, name, message, order=order, item=record.item_index)
        restored = rv.restorable_draft(self.store, name, record.case_id)
        return {
            **self.render(back, draft=restored[1] if restored else None, status=message),
            **self.out(queue={}, queue_md=""),
        }

    @ui_errors
    def skip(self, shown: rv.ShownCase | None, name: str, queue: Any, request: gr.Request) -> dict:
        """Record a skip (the case stays to do) and, in a batch, open the next case."""
        if shown is None:
            raise ReviewActionError("nothing to skip: predict a case or open a batch first")
        name = reviewer(request, name)
        message = rv.skip_case(self.store, name, shown)
        return self._next_in_batch(shown, queue, name, message) or self.out(status=message)

    @ui_errors
    def flag(self, shown: rv.ShownCase | None, name: str, comment: str, request: gr.Request) -> dict:
        """Flag the case for discussion (the comment box says why); it appears on the dashboard."""
        if shown is None:
            raise ReviewActionError("nothing to flag: predict a case or open a batch first")
        return self.out(status=rv.flag_case(self.store, reviewer(request, name), shown, comment))

    # --- layout and wiring ---

    def shown_outputs(self) -> list:
        return [self.component(n) for n in SHOWN_OUTPUTS]

    def queue_outputs(self) -> list:
        return self.shown_outputs() + [self.component(n) for n in QUEUE_OUTPUTS]

    def layout(self, examples: Sequence[str], batch: Any, secret: str) -> ReviewUI:
        """The tab: the batch panel (ui/batch.py) above the review panel, which shows its cases too."""
        with gr.Tab("Review", elem_id="r2d-review-tab"):
            self.queue_ui = batch.layout(secret)
            return self._panel(examples)

    def _panel(self, examples: Sequence[str]) -> ReviewUI:
        """The case, the suggestion and the review controls (shared by single cases and the batch queue)."""
        shown = gr.State(None)
        parts = {**self._case_row(examples), **self._editor_row()}
        with gr.Row(elem_id="r2d-actions"):
            parts.update(
                accept=gr.Button("Accept what is shown [A]", variant="primary", elem_id="r2d-accept"),
                submit=gr.Button("Save [S]", elem_id="r2d-submit"),
                skip=gr.Button("Skip [K]", elem_id="r2d-skip"),
                flag=gr.Button("Flag [F]", elem_id="r2d-flag"),
                undo=gr.Button("Undo my last save [U]", elem_id="r2d-undo"),
                check=gr.Button("Check consistency [C]", elem_id="r2d-check"),
                consistency=gr.Markdown(elem_id="r2d-consistency"),
            )
        self.ui = ReviewUI(shown=shown, **parts, status=gr.Markdown(elem_id="r2d-status"))
        return self.ui

    def _case_row(self, examples: Sequence[str]) -> dict[str, Any]:
        """The case box with its examples, beside the suggestion and its probabilities."""
        with gr.Row():
            with gr.Column():
                case = gr.Textbox(
                    label="Case",
                    lines=6,
                    elem_id="r2d-case",
                    placeholder="Paste the triage note: complaint, vital signs, history",
                )
                case_md = gr.Markdown(elem_id="r2d-case-id")
                with gr.Row():
                    predict = gr.Button("Suggest triage", variant="primary", elem_id="r2d-predict")
                    gr.ClearButton([case], value="Clear")
                if examples:
                    gr.Examples([[e] for e in examples], [case], label="Example cases", cache_examples=False)
            with gr.Column():
                label_md = gr.Markdown(NO_SUGGESTION, elem_id="r2d-suggestion")
                plot = gr.Plot(label="Probability of each label", show_label=False, elem_id="r2d-probabilities")
        return dict(case=case, case_md=case_md, predict=predict, label_md=label_md, plot=plot)

    def _editor_row(self) -> dict[str, Any]:
        """The rationale and its diff, the fact check, and the verdict (label, rating, comment)."""
        generation = self.model.predictor.generation
        how = (
            "streamed from the model"
            if generation.fact_check_candidates <= 1 and generation.num_beams == 1
            else "from the model"
        )
        with gr.Row():
            with gr.Column(scale=3):
                rationale = gr.Textbox(label=f"Rationale ({how}; edit it if needed)", lines=5, elem_id="r2d-rationale")
                diff = gr.HighlightedText(
                    label="Your changes: word diff against the model's rationale",
                    color_map=DIFF_COLORS,
                    show_legend=True,
                    combine_adjacent=True,
                    elem_id="r2d-diff",
                )
            with gr.Column(scale=2):
                facts = gr.HighlightedText(
                    label="Fact check against the case (updates as you type)",
                    color_map=FACT_COLORS,
                    show_legend=True,
                    elem_id="r2d-facts",
                )
                notes = gr.Markdown(elem_id="r2d-fact-notes")
            with gr.Column(scale=2):
                final_label, rating, comment = self._verdict_controls()
        return dict(
            rationale=rationale,
            diff=diff,
            facts=facts,
            fact_notes=notes,
            final_label=final_label,
            rating=rating,
            comment=comment,
        )

    def _verdict_controls(self) -> tuple[gr.Radio, gr.Radio, gr.Textbox]:
        p = self.model.predictor
        final_label = gr.Radio(
            rv.label_choices(p.label_set, p.label_names),
            elem_id="r2d-final-label",
            label="Triage label (correct it if needed) · keys 1–5",
        )
        rating = gr.Radio(
            ["1", "2", "3", "4", "5"],
            elem_id="r2d-rating",
            label="Rate the model's rationale (1 = wrong, 5 = excellent) · Shift+1–5",
        )
        comment = gr.Textbox(
            label="Comment (optional; the reason when you flag) · key M", lines=2, elem_id="r2d-comment"
        )
        with gr.Accordion("KTAS reference: levels and first-order modifiers", open=False, elem_id="r2d-ktas-reference"):
            gr.Markdown(read_asset("ktas_reference.md"))
        return final_label, rating, comment

    def wire(self) -> None:
        u, s = self.ui, self.shared
        queue_out = self.queue_outputs()
        u.predict.click(self.predict, [u.case, s.reviewer], queue_out, api_name="predict", **SINGLE_QUEUE)
        self._wire_live_checks()
        editor = [u.shown, s.reviewer, u.final_label, u.rationale, u.rating, u.comment]
        # .input fires on typing only: text pasted with the mouse or dropped in arrives with the box's .blur
        for box in (u.rationale, u.comment):
            for event in (box.input, box.blur):
                event(self.save_draft, editor + [u.case], None, trigger_mode="always_last", **QUIET)
        for radio in (u.final_label, u.rating):
            radio.select(self.save_draft, editor + [u.case], None, trigger_mode="always_last", **QUIET)
        for button, api in ((u.submit, "submit"), (u.accept, "accept")):
            button.click(
                self.save, editor + [self.queue_ui.queue, u.case], queue_out, api_name=api, trigger_mode="once"
            )
        u.undo.click(self.undo, [s.reviewer, self.queue_ui.queue], queue_out, api_name="undo", trigger_mode="once")
        u.skip.click(
            self.skip, [u.shown, s.reviewer, self.queue_ui.queue], queue_out, api_name="skip", trigger_mode="once"
        )
        u.flag.click(self.flag, [u.shown, s.reviewer, u.comment], [u.status], api_name="flag", trigger_mode="once")

    def _wire_live_checks(self) -> None:
        u = self.ui
        # radios: .select, which only a person fires; their .input also fired while an output was being applied,
        # which saved the previous case's editor as a draft of the next one
        for event in (u.rationale.input, u.rationale.blur):
            event(self.diff, [u.shown, u.rationale], [u.diff], trigger_mode="always_last", **QUIET)
        checked = [u.shown, u.rationale, u.final_label]
        for event in (u.rationale.input, u.rationale.blur):
            event(self.facts, checked, [u.facts, u.fact_notes], trigger_mode="always_last", **QUIET)
        u.final_label.select(self.facts, checked, [u.facts, u.fact_notes], trigger_mode="always_last", **QUIET)
        u.rationale.blur(self.check_event, checked, [u.consistency], **QUIET)
        # a relabel re-checks at once: the line said something about the previous label
        u.final_label.select(self.check_event, checked, [u.consistency], trigger_mode="always_last", **QUIET)
        u.check.click(self.check_event, checked, [u.consistency], api_name="check")

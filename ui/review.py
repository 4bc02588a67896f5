"""The Review tab's case panel: a case, the model's label and rationale, the nurse's edits and saves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from r2d.checks.consistency import consistency_line
from r2d.checks.factcheck import case_has_triage_facts
from r2d.errors import InvalidCaseError, ReviewActionError
from r2d.review import session as rv
from r2d.review.active import DEFAULT_ORDER
from r2d.review.dashboard import probability_figure
from r2d.review.store import case_id_for
from ui.common import (
    QUEUE_OUTPUTS,
    QUIET,
    SHOWN_OUTPUTS,
    SINGLE_QUEUE,
    HandlerBase,
    picker,
    queue_of,
    read_asset,
    ui_errors,
    who,
)

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


def _fact_notes(view: rv.FactView) -> str:
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


def _on_screen(shown: rv.ShownCase, case_text: str | None) -> bool:
    """Whether the editor values that came with an event belong to the case under review. gr.State is read on
    the server when the event runs, the boxes when it was triggered: after a save that opened the next case, a
    late event would otherwise file the previous case's editor under the next one."""
    return case_text is None or case_id_for(case_text) == shown.case_id


def review_panel(p: rv.PredictorLike, c: dict[str, Any]) -> None:
    """The case, the suggestion and the review controls (shared by single cases and the batch queue)."""
    with gr.Row():
        with gr.Column():
            c["case"] = gr.Textbox(
                label="Case",
                lines=6,
                elem_id="r2d-case",
                placeholder="Paste the triage note: complaint, vital signs, history",
            )
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
            how = (
                "streamed from the model"
                if p.generation.fact_check_candidates <= 1 and p.generation.num_beams == 1
                else "from the model"
            )
            c["rationale"] = gr.Textbox(label=f"Rationale ({how}; edit it if needed)", lines=5, elem_id="r2d-rationale")
            c["diff"] = gr.HighlightedText(
                label="Your changes: word diff against the model's rationale",
                color_map=DIFF_COLORS,
                show_legend=True,
                combine_adjacent=True,
                elem_id="r2d-diff",
            )
        with gr.Column(scale=2):
            c["facts"] = gr.HighlightedText(
                label="Fact check against the case (updates as you type)",
                color_map=FACT_COLORS,
                show_legend=True,
                elem_id="r2d-facts",
            )
            c["fact_notes"] = gr.Markdown(elem_id="r2d-fact-notes")
        with gr.Column(scale=2):
            c["final_label"] = gr.Radio(
                rv.label_choices(p.label_set, p.label_names),
                elem_id="r2d-final-label",
                label="Triage label (correct it if needed) · keys 1–5",
            )
            c["rating"] = gr.Radio(
                ["1", "2", "3", "4", "5"],
                elem_id="r2d-rating",
                label="Rate the model's rationale (1 = wrong, 5 = excellent) · Shift+1–5",
            )
            c["comment"] = gr.Textbox(
                label="Comment (optional; the reason when you flag) · key M", lines=2, elem_id="r2d-comment"
            )
            with gr.Accordion(
                "KTAS reference: levels and first-order modifiers", open=False, elem_id="r2d-ktas-reference"
            ):
                gr.Markdown(read_asset("ktas_reference.md"))
    with gr.Row(elem_id="r2d-actions"):
        c["accept"] = gr.Button("Accept what is shown [A]", variant="primary", elem_id="r2d-accept")
        c["submit"] = gr.Button("Save [S]", elem_id="r2d-submit")
        c["skip"] = gr.Button("Skip [K]", elem_id="r2d-skip")
        c["flag"] = gr.Button("Flag [F]", elem_id="r2d-flag")
        c["undo"] = gr.Button("Undo my last save [U]", elem_id="r2d-undo")
        c["check"] = gr.Button("Check consistency [C]", elem_id="r2d-check")
        c["consistency"] = gr.Markdown(elem_id="r2d-consistency")
    c["status"] = gr.Markdown(elem_id="r2d-status")


class ReviewHandlers(HandlerBase):
    """Predict, the live checks, drafts, save, undo, skip and flag of the case under review."""

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

    def _render(
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
        return {
            **self.facts(shown, rationale, label),
            **self._out(
                shown=shown,
                case=shown.case_text,
                case_md=f"Case id `{shown.case_id}`{where}{named}",
                label_md=self._label_markdown(shown.model_label, shown.probabilities, shown.case_text),
                plot=probability_figure(shown.probabilities, self.predictor.label_names, shown.model_label),
                rationale=rationale,
                final_label=label,
                rating=rating,
                comment=comment,
                diff=rv.word_diff(shown.model_rationale, rationale),
                consistency=consistency,
                status=status,
                model_md=self._model_line(),
            ),
        }  # another page may have switched the model since this one loaded

    @ui_errors
    def predict(self, case_text: str, name: str, request: gr.Request) -> Iterator[dict]:
        """Label and every probability first, then the rationale streamed into the editor; leaves any batch.
        A case that cannot be read (empty, too long) gets one message under the case box, which keeps its text."""
        try:
            if len(case_text or "") > self.cfg.app.max_case_chars:
                raise InvalidCaseError(
                    f"the case has {len(case_text):,} characters; the limit is "
                    f"{self.cfg.app.max_case_chars:,}. Keep the triage-relevant part"
                )
            case_text = self.predictor.check_case(case_text or "")
        except InvalidCaseError as e:  # raised, it marked every output "Error", over the pasted text too
            yield self._out(case_md=f"⚠ **No suggestion: {rv.plain(str(e))}**", label_md=NO_SUGGESTION)
            return
        shown_at = time.time()
        scores = self.predictor.predict_label(case_text)
        probabilities, label = dict(zip(scores.labels, scores.probabilities)), scores.best
        yield self._out(
            shown=None,
            label_md=self._label_markdown(label, probabilities, case_text),
            plot=probability_figure(probabilities, self.predictor.label_names, label),
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
        for text in self.predictor.stream_rationale(case_text, label):
            yield self._out(rationale=text)
        shown = rv.ShownCase(
            case_text,
            label,
            probabilities,
            text,
            self.predictor.model_id,
            self.predictor.quantization,
            shown_at=shown_at,
        )
        reviewer = who(request, name)
        restored = rv.restorable_draft(self.store, reviewer, shown.case_id)
        draft = restored[1] if restored else None
        status = (
            "Restored your unsaved draft of this case."
            if draft
            else "Review the rationale: press A to save what is shown, or edit it first."
        )
        note = rv.others_note(self.store, shown.case_id, reviewer) if reviewer else ""
        # complete values at the end: API clients only see the last yield
        rendered = self._render(shown, draft=draft, status=" ".join(filter(None, [status, note])))
        yield {
            **rendered,
            **self._out(
                queue={},
                queue_md="",
                consistency=self.check(shown, rendered[self.c["rationale"]], rendered[self.c["final_label"]]),
            ),
        }

    def facts(self, shown: rv.ShownCase | None, rationale: str, final_label: str | None) -> dict:
        """The fact check of the rationale as it stands (live while the nurse types)."""
        if not isinstance(shown, rv.ShownCase):
            return self._out(facts=[], fact_notes="")
        try:
            view = rv.fact_view(shown.case_text, rationale or "", final_label)
        except InvalidCaseError as e:  # too long: say so instead of checking it (the save refuses it too)
            return self._out(facts=[], fact_notes=f"**⚠ Fact check paused: {e}.**")
        guard = rv.under_triage(shown.case_text, final_label, self.predictor.label_set) if final_label else None
        mine = (
            f"**⚠ {guard.message(self.predictor.label_names, 'your label')}**\n"
            if guard and final_label != shown.model_label
            else ""
        )
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
        return self._consistency_line(
            rv.check_consistency(self.predictor, rationale, final_label, self.cfg.app.low_probability)
        )

    def _consistency_line(self, check: rv.ConsistencyResult) -> str:
        label = rv.format_label(check.label, self.predictor.label_names)
        return consistency_line(
            label, check.probability, check.agrees, check.message, self.predictor.model_id, self.calibration
        )

    @ui_errors
    def check_event(self, shown: rv.ShownCase | None, rationale: str, final_label: str) -> dict:
        return self._out(consistency=self.check(shown, rationale, final_label))

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
        if isinstance(shown, rv.ShownCase) and reviewer and _on_screen(shown, case_text):
            draft = rv.make_draft(shown, final_label, rationale, rating, comment)
            if rv.differs_from_model(draft, shown) or self.store.draft(reviewer, shown.case_id):
                self.store.save_draft(reviewer, shown.case_id, draft)

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
        if not _on_screen(shown, case_text):
            raise ReviewActionError(
                "the Case box no longer holds the case under review, so nothing was saved: "
                "press 'Suggest triage' for the new text, or open the case again"
            )
        reviewer = self._reviewer(request, name)
        if rv.unconfirmed_guess(shown, final_label or "", rationale or ""):
            showing = (reviewer, shown.case_id, shown.review_token)
            if showing not in self._guesses_warned:  # the second press on the same showing saves
                self._guesses_warned.add(showing)
                return self._out(status=GUESS_CONFIRM)
        result, check = rv.save_review(
            self.store, self.predictor, shown, reviewer, final_label or "", rationale or "", rating, comment or ""
        )
        message = rv.saved_message(result, in_batch=False)
        queue = queue_of(queue)
        if shown.batch_id is not None and queue.get("batch_id") == shown.batch_id:
            return self._open(shown.batch_id, None, reviewer, message, after=shown.item_index, order=queue["order"])
        note = rv.others_note(self.store, shown.case_id, reviewer)
        return self._out(
            status=" ".join(filter(None, [message, note])),
            consistency=self._consistency_line(check),
            diff=rv.word_diff(shown.model_rationale, result.record.final_rationale),
        )

    @ui_errors
    def undo(self, shown: rv.ShownCase | None, name: str, queue: Any, request: gr.Request) -> dict:
        """Retract the reviewer's last save (a new audit row) and put its content back in the editor as a draft."""
        reviewer = self._reviewer(request, name)
        undone = rv.undo_last_review(self.store, reviewer)
        record, back, message = undone.record, undone.shown, undone.message
        if record.batch_id is not None:
            queue = queue_of(queue)
            order = queue["order"] if queue.get("batch_id") == record.batch_id else DEFAULT_ORDER
            return self._open(record.batch_id, None, reviewer, message, order=order, item=record.item_index)
        restored = rv.restorable_draft(self.store, reviewer, record.case_id)
        return {
            **self._render(back, draft=restored[1] if restored else None, status=message),
            **self._out(queue={}, queue_md=""),
        }

    @ui_errors
    def skip(self, shown: rv.ShownCase | None, name: str, queue: Any, request: gr.Request) -> dict:
        """Record a skip (the case stays to do) and, in a batch, open the next case."""
        if shown is None:
            raise ReviewActionError("nothing to skip: predict a case or open a batch first")
        reviewer = self._reviewer(request, name)
        self.store.add_event(reviewer, "skip", shown.case_id, batch_id=shown.batch_id, item_index=shown.item_index)
        message = "Skipped: the case stays in your queue."
        queue = queue_of(queue)
        if shown.batch_id is not None and queue.get("batch_id") == shown.batch_id:
            return self._open(shown.batch_id, None, reviewer, message, after=shown.item_index, order=queue["order"])
        return self._out(status=message)

    @ui_errors
    def flag(self, shown: rv.ShownCase | None, name: str, comment: str, request: gr.Request) -> dict:
        """Flag the case for discussion (the comment box says why); it appears on the dashboard."""
        if shown is None:
            raise ReviewActionError("nothing to flag: predict a case or open a batch first")
        reviewer = self._reviewer(request, name)
        if not (comment or "").strip():
            raise ReviewActionError(
                "say why you flag this case: type the reason in the Comment box (key M), then flag again (F)"
            )
        self.store.add_event(
            reviewer, "flag", shown.case_id, batch_id=shown.batch_id, item_index=shown.item_index, note=comment
        )
        return self._out(status="⚑ Flagged for discussion; it is listed on the dashboard. Your edits stay on screen.")


def wire_review(demo: gr.Blocks, h: Any, c: dict[str, Any]) -> None:
    """The case panel's events."""
    outs = picker(c)
    queue_out = outs(*SHOWN_OUTPUTS, *QUEUE_OUTPUTS)
    c["predict"].click(h.predict, outs("case", "reviewer"), queue_out, api_name="predict", **SINGLE_QUEUE)
    # .input fires on typing only: text pasted with the mouse or dropped in arrives with the box's .blur (leaving it)
    TYPED_OR_LEFT = ("input", "blur")
    for event in TYPED_OR_LEFT:
        getattr(c["rationale"], event)(
            h.diff, outs("shown", "rationale"), outs("diff"), trigger_mode="always_last", **QUIET
        )
    # radios: .select, which only a person fires; their .input also fired while an output was being applied,
    # which saved the previous case's editor as a draft of the next one
    fact_in = outs("shown", "rationale", "final_label")
    for event in TYPED_OR_LEFT:
        getattr(c["rationale"], event)(
            h.facts, fact_in, outs("facts", "fact_notes"), trigger_mode="always_last", **QUIET
        )
    c["final_label"].select(h.facts, fact_in, outs("facts", "fact_notes"), trigger_mode="always_last", **QUIET)
    checked = outs("shown", "rationale", "final_label")
    c["rationale"].blur(h.check_event, checked, outs("consistency"), **QUIET)
    # a relabel re-checks at once: the line said something about the previous label
    c["final_label"].select(h.check_event, checked, outs("consistency"), trigger_mode="always_last", **QUIET)
    c["check"].click(h.check_event, checked, outs("consistency"), api_name="check")
    editor = outs("shown", "reviewer", "final_label", "rationale", "rating", "comment")
    for box in ("rationale", "comment"):
        for event in TYPED_OR_LEFT:
            getattr(c[box], event)(h.save_draft, editor + outs("case"), None, trigger_mode="always_last", **QUIET)
    for radio in ("final_label", "rating"):
        c[radio].select(h.save_draft, editor + outs("case"), None, trigger_mode="always_last", **QUIET)
    for button, api in (("submit", "submit"), ("accept", "accept")):
        c[button].click(h.save, editor + outs("queue", "case"), queue_out, api_name=api, trigger_mode="once")
    c["undo"].click(h.undo, outs("shown", "reviewer", "queue"), queue_out, api_name="undo", trigger_mode="once")
    c["skip"].click(h.skip, outs("shown", "reviewer", "queue"), queue_out, api_name="skip", trigger_mode="once")
    c["flag"].click(h.flag, outs("shown", "reviewer", "comment"), outs("status"), api_name="flag", trigger_mode="once")
    c["reviewer"].change(lambda name: name, outs("reviewer"), outs("saved_name"), **QUIET)

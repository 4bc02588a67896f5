"""Adjudication: settling a case whose reviewers disagree on the label or the rationale.

The export (r2d.review.export.RESOLUTION) holds such a case back until someone adjudicates it. An adjudicator
either adopts one reviewer's review or writes the final label and rationale; a written final is stored as
the adjudicator's own review (batch_id None) and named by the adjudicate event, whose note says so.

Independence: an adjudicator who reviewed the case cannot settle it in favour of their own review (adopting
it, or writing a final of their own), unless nobody else could: every reviewer the store knows reviewed
this case. Then it is allowed and the event's note records it. Conceding to another reviewer is always allowed.
"""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Mapping, Sequence

from r2d.errors import ReviewActionError
from r2d.review.export import ExportCase, export_cases, pending_cases
from r2d.review.session import DIFF_ADDED, DIFF_REMOVED, classify_action, format_label, word_diff
from r2d.review.store import ReviewRecord, ReviewStore, validate_review

logger = logging.getLogger(__name__)

WRITTEN_FINAL_NOTE = "final written by the adjudicator"
SELF_NOTE = "self-adjudicated: every reviewer the store knows reviewed this case"
WRITE = "write"  # the pick that means "write the final" instead of adopting a review


def written_finals(store: ReviewStore) -> set[int]:
    """Review ids that adjudicators wrote as a case's final (not a reviewer's review: agreement leaves them out)."""
    return {
        e.review_id
        for e in store.events("adjudicate")
        if e.review_id is not None and e.note.startswith(WRITTEN_FINAL_NOTE)
    }


def reviewer_reviews(store: ReviewStore) -> list[ReviewRecord]:
    """Every reviewer's current review, without adjudicators' written finals."""
    finals = written_finals(store)
    return [r for r in store.reviewer_reviews() if r.review_id not in finals]


def unblinded(store: ReviewStore) -> set[int]:
    """Current reviews made after their reviewer had seen another reviewer's answer: the reviewer had saved
    this case before (a save shows the others' answers, and undoing it does not unsee them) and another
    reviewer's review was already stored. Agreement leaves them out (blind review)."""
    rows, current = store.reviews(), reviewer_reviews(store)
    by_case: dict[str, list[ReviewRecord]] = {}
    for r in rows:
        by_case.setdefault(r.case_id, []).append(r)
    found = set()
    for r in current:
        earlier = [x for x in by_case[r.case_id] if x.review_id < r.review_id]
        if any(x.reviewer == r.reviewer for x in earlier) and any(x.reviewer != r.reviewer for x in earlier):
            found.add(r.review_id)
    return found


def blind_reviews(store: ReviewStore) -> tuple[list[ReviewRecord], int]:
    """What agreement is measured on: reviewer_reviews without the unblinded ones; and how many were left out."""
    seen = unblinded(store)
    reviews = reviewer_reviews(store)
    return [r for r in reviews if r.review_id not in seen], len(seen)


def hidden_from(store: ReviewStore, case: ExportCase, viewer: str) -> str:
    """Why the reviews of `case` stay hidden from viewer ('' when they may see them). Blind review: a reviewer
    of one of the case's batches who has not reviewed the case yet must not see the others' answers."""
    viewer = viewer.strip()
    if not viewer:
        return "Enter your name in the 'Reviewer' box to adjudicate: the reviews are shown to a named adjudicator."
    if any(r.reviewer == viewer for r in case.reviews):
        return ""
    batches = {r.batch_id for r in case.reviews if r.batch_id}
    if any(r.reviewer == viewer and r.batch_id in batches for r in store.reviewer_reviews()):
        return (
            "You review the batch this case is in and have not reviewed this case yet: review it first "
            "(blind review), then adjudicate it, or ask someone else to."
        )
    return ""


def why_open(case: ExportCase, label_names: Mapping[str, str]) -> str:
    """'labels differ (1, 3)' or 'same label 3, rationales differ'."""
    labels = list(dict.fromkeys(r.final_label for r in case.reviews))
    if len(labels) > 1:
        return "labels differ (" + ", ".join(labels) + ")"
    return f"same label {format_label(labels[0], label_names)}, rationales differ"


def case_choices(store: ReviewStore, label_names: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, case_id) of every case waiting for adjudication, oldest first; no reviewer's answer in the label."""
    choices = []
    for n, case in enumerate(pending_cases(store), start=1):
        text = " ".join(case.review.case_text.split())
        text = text if len(text) <= 70 else text[:70] + "…"
        choices.append((f"{n}. {text} ({len(case.reviews)} reviewers)", case.review.case_id))
    return choices


def find_case(store: ReviewStore, case_id: str) -> ExportCase:
    """The case with its reviewers' current reviews. Raises ReviewActionError if it has fewer than two."""
    case = next((c for c in export_cases(store) if c.review.case_id == case_id), None)
    if case is None:
        raise ReviewActionError(f"case {case_id!r} has no current review; pick one from the list")
    if len(case.reviews) < 2:
        raise ReviewActionError(f"case {case_id} has only one review: nothing to adjudicate")
    return case


def pick_choices(case: ExportCase, label_names: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, value) of the adjudicator's options: each review, then writing the final."""
    return [
        (f"Adopt #{r.review_id} ({r.reviewer}): {format_label(r.final_label, label_names)}", str(r.review_id))
        for r in case.reviews
    ] + [("Write the final label and rationale myself", WRITE)]


def _diff_html(before: str, after: str) -> str:
    tags = {DIFF_ADDED: "ins", DIFF_REMOVED: "del"}
    return "".join(
        f"<{tags[kind]}>{html.escape(text)}</{tags[kind]}>" if kind else html.escape(text)
        for text, kind in word_diff(before, after)
    )


def side_by_side_html(case: ExportCase, label_names: Mapping[str, str]) -> str:
    """The case, then every review in a column: reviewer, label, action, rating, comment and rationale; each
    rationale after the first shows its word diff against the first. All user text is escaped."""
    first = case.reviews[0].final_rationale
    columns = []
    for i, r in enumerate(case.reviews):
        rating = f" · rated {r.rating}/5" if r.rating else ""
        comment = f"<p class='r2d-adj-comment'>Comment: {html.escape(r.comment)}</p>" if r.comment else ""
        text = html.escape(r.final_rationale) if i == 0 else _diff_html(first, r.final_rationale)
        columns.append(
            f"<section><h4>#{r.review_id} · {html.escape(r.reviewer)}</h4>"
            f"<p><b>{html.escape(format_label(r.final_label, label_names))}</b> · {r.action}{rating}</p>"
            f"{comment}<p class='r2d-adj-rationale'>{text}</p></section>"
        )
    return (
        f"<div class='r2d-adj'><p><b>Case:</b> {html.escape(case.review.case_text)}</p>"
        f"<p>{html.escape(why_open(case, label_names))}. Rationales after the first show what differs from "
        f"#{case.reviews[0].review_id} (<ins>added</ins>, <del>removed</del>).</p>"
        f"<div class='r2d-adj-grid'>{''.join(columns)}</div></div>"
    )


def independence_note(store: ReviewStore, case: ExportCase, adjudicator: str, review_id: int | None) -> str:
    """'' or SELF_NOTE for settling `case` with review_id (None = a written final). Raises ReviewActionError
    when an adjudicator who reviewed the case would settle it their own way while someone else could."""
    adjudicator = adjudicator.strip()
    own = [r for r in case.reviews if r.reviewer == adjudicator]
    if not own or (review_id is not None and all(r.review_id != review_id for r in own)):
        return ""  # not a reviewer of the case, or conceding to another reviewer
    independent = sorted({r.reviewer for r in reviewer_reviews(store)} - {r.reviewer for r in case.reviews})
    if independent:
        raise ReviewActionError(
            "you reviewed this case yourself, so you cannot settle it your way; adopt another reviewer's review, "
            f"or ask a reviewer who did not review it ({', '.join(independent[:3])}) to adjudicate"
        )
    return SELF_NOTE


def adopt(store: ReviewStore, adjudicator: str, case_id: str, review_id: int) -> ReviewRecord:
    """Adopt one current review as the case's answer. Raises ReviewActionError (FeedbackStoreError: the database)."""
    case = find_case(store, case_id)
    record = next((r for r in case.reviews if r.review_id == review_id), None)
    if record is None:
        raise ReviewActionError(f"review #{review_id} is not a current review of this case; pick one from the list")
    note = independence_note(store, case, adjudicator, review_id)
    store.add_event(adjudicator, "adjudicate", case_id, review_id=review_id, note=note)
    return record


def write_final(store: ReviewStore, adjudicator: str, case_id: str, label: str, rationale: str) -> ReviewRecord:
    """Store the adjudicator's own final label and rationale for the case and adopt it. Raises ReviewActionError."""
    case = find_case(store, case_id)
    note = independence_note(store, case, adjudicator, None)
    base = case.reviews[-1]  # the model output the final is compared with (for its action)
    if label not in base.model_probabilities:
        raise ReviewActionError(f"choose the final label (one of {', '.join(base.model_probabilities)})")
    record = ReviewRecord(
        submission_id=f"adjudication-{uuid.uuid4().hex}",
        reviewer=adjudicator.strip(),
        case_id=case_id,
        case_text=base.case_text,
        model_id=base.model_id,
        quantization=base.quantization,
        prompt_version=base.prompt_version,
        action=classify_action(base.model_label, base.model_rationale, label, rationale),
        model_label=base.model_label,
        model_rationale=base.model_rationale,
        model_probabilities=dict(base.model_probabilities),
        final_label=label,
        final_rationale=rationale.strip(),
    )
    validate_review(record)
    stored = store.submit(record).record
    store.add_event(
        adjudicator,
        "adjudicate",
        case_id,
        review_id=stored.review_id,
        note=" · ".join(n for n in (WRITTEN_FINAL_NOTE, note) if n),
    )
    return stored


def settle(
    store: ReviewStore,
    adjudicator: str,
    case_id: str | None,
    pick: str | None,
    label: str | None,
    rationale: str | None,
) -> tuple[ReviewRecord, str]:
    """Settle a case as the Dashboard's pick says: adopt review #pick, or (pick WRITE) store the final the
    adjudicator wrote. Returns the record that now counts and what the adjudicator is told. Raises
    ReviewActionError (no case or pick, the case hidden from the adjudicator, a pick that breaks independence)."""
    if not case_id:
        raise ReviewActionError("choose a case to adjudicate first")
    if not pick:
        raise ReviewActionError("pick a review to adopt, or 'Write the final' and fill in the label and rationale")
    hidden = hidden_from(store, find_case(store, case_id), adjudicator)
    if hidden:
        raise ReviewActionError(hidden)
    if pick == WRITE:
        record = write_final(store, adjudicator, case_id, label or "", rationale or "")
        return (
            record,
            f"✓ Your final (label {record.final_label}, review #{record.review_id}) settles case `{case_id}`.",
        )
    try:
        review_id = int(pick)
    except ValueError as e:
        raise ReviewActionError("pick one of the listed reviews") from e
    record = adopt(store, adjudicator, case_id, review_id)
    return record, f"✓ Review #{review_id} (label {record.final_label}) adopted for case `{case_id}`."


def open_markdown(cases: Sequence[ExportCase]) -> str:
    """The dashboard's line on how many resolved cases (r2d.review.export.export_cases) wait for adjudication."""
    n = sum(c.pending for c in cases)
    if not n:
        return "**Nothing to adjudicate:** every case with several reviewers is settled."
    return (
        f"**{n} case(s) to adjudicate:** their reviewers disagree on the label or the rationale, and the export "
        "holds them back until you settle them."
    )

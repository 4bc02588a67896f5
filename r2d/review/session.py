"""What the review screens do, without any UI: diffs, consistency warnings, the batch queue.

`app.py` is only layout and wiring; every decision it shows (which action a review is, whether the
rationale alone supports the chosen label, which queue item comes next) is made here, in plain
functions that take a predictor and a store and are tested with a fake predictor.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from r2d.checks.factcheck import case_has_triage_facts, check_rationale, parse_case
from r2d.checks.rules import KTAS_LABEL_NAMES, Modifier, first_order_modifiers
from r2d.config import GenerationConfig
from r2d.errors import InvalidCaseError, ReviewActionError
from r2d.limits import MAX_RATIONALE_CHARS
from r2d.prompts import PROMPT_VERSION
from r2d.review.active import review_order
from r2d.review.store import BatchItem, ReviewRecord, ReviewStore, SubmitResult, case_id_for, validate_review

logger = logging.getLogger(__name__)

DIFF_ADDED, DIFF_REMOVED = "added", "removed"


class LabelScoresLike(Protocol):
    """The part of r2d.model.scoring.LabelScores used here (kept structural: this module never imports torch)."""

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]

    @property
    def best(self) -> str: ...


class PredictorLike(Protocol):
    """The part of r2d.model.inference.Predictor the review screens use."""

    label_set: tuple[str, ...]
    label_names: dict[str, str]
    ordinal: bool
    model_id: str
    quantization: str
    generation: GenerationConfig  # fact_check_candidates decides whether the rationale was chosen among several

    def check_case(self, case_text: str) -> str: ...
    def predict_label(self, case_text: str) -> LabelScoresLike: ...
    def stream_rationale(self, case_text: str, label: str) -> Iterator[str]: ...
    def predict_label_from_rationale(self, rationale: str) -> LabelScoresLike: ...
    def predict_batch(
        self, case_texts: Sequence[str], batch_size: int = 8, progress: Callable[[int, int], None] | None = None
    ) -> list[Any]: ...


# --- labels and probabilities ------------------------------------------------------------------


def format_label(label: str, label_names: Mapping[str, str]) -> str:
    """'1 — Resuscitation' when the label has a name, else the label itself."""
    name = label_names.get(label)
    return f"{label} — {name}" if name else label


def label_choices(label_set: Sequence[str], label_names: Mapping[str, str]) -> list[tuple[str, str]]:
    """(display, value) pairs for a Radio, in label-set order."""
    return [(format_label(label, label_names), label) for label in label_set]


def probability_note(probabilities: Mapping[str, float], threshold: float) -> str:
    """A plain-language warning when the top probability is below threshold, else ''."""
    if not probabilities:
        return ""
    label, top = max(probabilities.items(), key=lambda kv: kv[1])
    if top >= threshold:
        return ""
    return (
        f"Low confidence: the top label {label} has only {top:.0%} probability. "
        "Treat the suggestion as uncertain and decide from the case."
    )


# --- the under-triage guard: KTAS first-order modifiers against a label -----------------------------


# cardiac or respiratory arrest said in words (the case parser reads vital signs as numbers only); a negation
# just before ("no cardiac arrest", "not apnoeic") cancels it
_ARREST = re.compile(
    r"\b(pulseless|no (?:palpable |central )?pulse|(?:cardiac|cardiorespiratory|respiratory) arrest|"
    r"CPR|not breathing|apno?eic)\b",
    re.I,
)
_NEGATED = re.compile(r"\b(no|not|denies|without|never)\s+(?:\w+\s+)?$", re.I)


def _arrest_modifier(case_text: str) -> Modifier | None:
    for hit in _ARREST.finditer(case_text):
        if not _NEGATED.search(case_text[max(0, hit.start() - 20) : hit.start()]):
            return Modifier("1", f'"{hit.group(0).lower()}" (arrest)')  # letters and spaces only: safe to show
    return None


@dataclass(frozen=True)
class UnderTriage:
    """A KTAS label less urgent than the case's own first-order modifiers allow (r2d.checks.rules)."""

    label: str  # the suggested or chosen label
    floor: str  # the most urgent level the modifiers call for
    modifiers: tuple[Modifier, ...]  # those calling for a more urgent level than label, most urgent first

    def message(self, label_names: Mapping[str, str], whose: str = "the suggestion") -> str:
        """'Under-triage risk: unresponsive calls for KTAS 1; the suggestion is 4 — Less urgent.'"""
        calls = "; ".join(f"{m.finding} calls for KTAS {m.level}" for m in self.modifiers)
        pain = (
            " The pain levels are for central pain (chest, abdomen, head); peripheral pain allows one level less."
            if any(m.finding.startswith("pain ") for m in self.modifiers)
            else ""
        )
        return (
            f"Under-triage risk: {calls}; {whose} is {format_label(self.label, label_names)}. "
            f"Check the level against the first-order modifiers before saving.{pain}"
        )


def under_triage(case_text: str, label: str, label_set: Sequence[str]) -> UnderTriage | None:
    """When the case's facts call for a more urgent KTAS level than `label`; None when they do not, or when the
    labels are not KTAS levels (another task). For a child only an arrest counts (the adult modifiers do not apply)."""
    if set(label_set) != set(KTAS_LABEL_NAMES) or label not in KTAS_LABEL_NAMES:
        return None
    arrest = _arrest_modifier(case_text)
    modifiers = first_order_modifiers(parse_case(case_text)) + ([arrest] if arrest else [])
    above = sorted((m for m in modifiers if int(m.level) < int(label)), key=lambda m: int(m.level))
    return UnderTriage(label, above[0].level, tuple(above)) if above else None


def under_triage_line(reviews: Sequence[ReviewRecord], label_set: Sequence[str]) -> str:
    """The dashboard's count of reviewed cases whose suggestion, and whose final label, the guard flags."""
    if set(label_set) != set(KTAS_LABEL_NAMES) or not reviews:
        return ""
    model = sum(under_triage(r.case_text, r.model_label, label_set) is not None for r in reviews)
    final = sum(under_triage(r.case_text, r.final_label, label_set) is not None for r in reviews)
    return (
        f"**Under-triage guard:** the model's suggestion was less urgent than the case's first-order modifiers "
        f"allow in **{model}** of {len(reviews)} reviewed cases; the final label still is in **{final}**."
    )


# --- what the nurse is reviewing ---------------------------------------------------------------


def new_review_token() -> str:
    """A fresh id for one showing of a case; submissions made from that showing derive from it."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ShownCase:
    """A model output on screen, waiting for review (kept per user in gr.State, never globally)."""

    case_text: str
    model_label: str
    probabilities: dict[str, float]
    model_rationale: str
    model_id: str
    quantization: str
    prompt_version: str = PROMPT_VERSION
    batch_id: str | None = None
    item_index: int | None = None
    review_token: str = field(default_factory=new_review_token)
    shown_at: float = field(default_factory=time.time)  # seconds since epoch, for time on task

    @property
    def case_id(self) -> str:
        """The store's id of this case text."""
        return case_id_for(self.case_text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShownCase:
        return cls(**dict(data))

    @classmethod
    def from_prediction(
        cls, prediction: Mapping[str, Any], batch_id: str | None = None, item_index: int | None = None
    ) -> ShownCase:
        """From Prediction.to_dict() (as stored with a batch)."""
        return cls(
            case_text=prediction["case_text"],
            model_label=prediction["label"],
            probabilities=dict(prediction["probabilities"]),
            model_rationale=prediction["rationale"],
            model_id=prediction["model_id"],
            quantization=prediction["quantization"],
            prompt_version=prediction.get("prompt_version", PROMPT_VERSION),
            batch_id=batch_id,
            item_index=item_index,
        )


# --- diffs and actions --------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    # words with their trailing whitespace, so that joining the pieces gives the text back
    return re.findall(r"\S+\s*", text)


def check_rationale_length(rationale: str) -> None:
    """Raises InvalidCaseError for a rationale longer than the store keeps (MAX_RATIONALE_CHARS): the diff,
    the fact check and the consistency check read all of it (5 MB once pinned a core for minutes)."""
    if len(rationale) > MAX_RATIONALE_CHARS:
        raise InvalidCaseError(
            f"the rationale has {len(rationale):,} characters; the limit is {MAX_RATIONALE_CHARS:,}. Shorten it"
        )


def word_diff(before: str, after: str) -> list[tuple[str, str | None]]:
    """Word-level diff as (text, category) pieces: 'added', 'removed', or None for unchanged.

    Joining the pieces that are not removed gives `after`; those not added give `before`.
    Raises InvalidCaseError when either text is over MAX_RATIONALE_CHARS.
    """
    check_rationale_length(before)
    check_rationale_length(after)
    old, new = _words(before), _words(after)
    pieces: list[tuple[str, str | None]] = []
    matcher = difflib.SequenceMatcher(a=[w.strip() for w in old], b=[w.strip() for w in new], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pieces.append(("".join(new[j1:j2]), None))
            continue
        if i2 > i1:
            pieces.append(("".join(old[i1:i2]), DIFF_REMOVED))
        if j2 > j1:
            pieces.append(("".join(new[j1:j2]), DIFF_ADDED))
    return pieces


def same_text(a: str, b: str) -> bool:
    """Equal up to whitespace: re-flowing a rationale is not an edit."""
    return " ".join(a.split()) == " ".join(b.split())


def classify_action(model_label: str, model_rationale: str, final_label: str, final_rationale: str) -> str:
    """'relabelled' if the label changed, else 'edited' if the rationale changed, else 'accepted'."""
    if final_label != model_label:
        return "relabelled"
    if not same_text(model_rationale, final_rationale):
        return "edited"
    return "accepted"


# --- consistency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsistencyResult:
    label: str  # the label the rationale alone points to
    probability: float
    agrees: bool
    message: str


def check_consistency(
    predictor: PredictorLike, rationale: str, chosen_label: str, min_probability: float = 0.0
) -> ConsistencyResult:
    """Re-predict the label from the rationale alone and compare it with the chosen label. It agrees only
    when the chosen label is the top one *and* has at least min_probability (a 41% top label is no support).

    Raises InvalidCaseError for an empty rationale or one over MAX_RATIONALE_CHARS.
    """
    check_rationale_length(rationale)
    if not rationale.strip():
        raise InvalidCaseError("the rationale is empty: write one before checking consistency")
    scores = predictor.predict_label_from_rationale(rationale)
    probability = dict(zip(scores.labels, scores.probabilities))[scores.best]
    names = predictor.label_names
    if scores.best == chosen_label and probability >= min_probability:
        message = f"Consistent: the rationale alone points to {format_label(scores.best, names)} ({probability:.0%})."
    elif scores.best == chosen_label:
        message = (
            f"Weak: the rationale alone points to {format_label(scores.best, names)} with only "
            f"{probability:.0%} (below {min_probability:.0%}). Say more about why this level fits."
        )
        return ConsistencyResult(scores.best, probability, False, message)
    else:
        message = (
            f"Warning: the rationale alone points to {format_label(scores.best, names)} ({probability:.0%}), "
            f"not to the chosen label {format_label(chosen_label, names)}. "
            "Check that the rationale supports the label."
        )
    return ConsistencyResult(scores.best, probability, scores.best == chosen_label, message)


# --- the fact check beside the rationale --------------------------------------------------------------


FACT_CONTRADICTED, FACT_UNSUPPORTED = "contradicts the case", "not in the case"


@dataclass(frozen=True)
class FactView:
    """What the fact check shows beside the rationale: the text with its problem spans, and the notes."""

    highlights: list[tuple[str, str | None]]  # (piece of the rationale, FACT_* category or None)
    problems: tuple[str, ...]  # plain-English messages, in text order
    missing_critical: tuple[str, ...]
    case_has_facts: bool


def fact_view(case_text: str, rationale: str, label: str | None) -> FactView:
    """r2d.checks.factcheck on the rationale as it stands, as highlight pieces (joined, they give the rationale).

    Raises InvalidCaseError for a rationale over MAX_RATIONALE_CHARS."""
    check_rationale_length(rationale)
    fc = check_rationale(case_text, rationale, label)
    pieces: list[tuple[str, str | None]] = []
    at = 0
    for problem in fc.problems:
        if problem.start < at or problem.end <= problem.start or (problem.start, problem.end) == (0, len(rationale)):
            continue  # overlapping, empty, or about the whole text (listed in the notes only)
        pieces.append((rationale[at : problem.start], None))
        category = FACT_UNSUPPORTED if problem.kind == "number_not_in_case" else FACT_CONTRADICTED
        pieces.append((rationale[problem.start : problem.end], category))
        at = problem.end
    pieces.append((rationale[at:], None))
    return FactView(
        [p for p in pieces if p[0]], tuple(p.message for p in fc.problems), fc.missing_critical, fc.case_has_facts
    )


# --- building a review ----------------------------------------------------------------------------


def submission_id(
    shown: ShownCase, reviewer: str, final_label: str, final_rationale: str, rating: int | None, comment: str
) -> str:
    """Same showing + same reviewer + same content = same id, so a double click or a retry is stored once;
    a later correction (different content) or a second reviewer's review is a new row."""
    content = json.dumps(
        [reviewer.strip(), final_label, final_rationale.strip(), rating, comment.strip()], ensure_ascii=False
    )
    return f"{shown.review_token}-{hashlib.sha256(content.encode('utf-8')).hexdigest()[:16]}"


def parse_rating(value: Any) -> int | None:
    """A rating widget value ('', None, '4', 4) as 1-5 or None. Raises ReviewActionError otherwise."""
    if value in (None, "", 0, "0"):
        return None
    try:
        rating = int(value)
    except (TypeError, ValueError) as e:
        raise ReviewActionError(f"rating must be 1-5, got {value!r}") from e
    if not 1 <= rating <= 5:
        raise ReviewActionError(f"rating must be 1-5, got {rating}")
    return rating


def build_review(
    shown: ShownCase,
    reviewer: str,
    final_label: str,
    final_rationale: str,
    rating: Any = None,
    comment: str = "",
    consistency_label: str | None = None,
    now: float | None = None,
) -> ReviewRecord:
    """The ReviewRecord for what the nurse decided. Raises ReviewActionError for an unusable review."""
    if final_label not in shown.probabilities:
        raise ReviewActionError(f"label {final_label!r} is not one of {', '.join(shown.probabilities)}")
    final_rationale = final_rationale.strip()
    rating_value = parse_rating(rating)
    elapsed = (time.time() if now is None else now) - shown.shown_at
    return ReviewRecord(
        submission_id=submission_id(shown, reviewer, final_label, final_rationale, rating_value, comment),
        reviewer=reviewer.strip(),
        case_id=shown.case_id,
        case_text=shown.case_text,
        model_id=shown.model_id,
        quantization=shown.quantization,
        prompt_version=shown.prompt_version,
        action=classify_action(shown.model_label, shown.model_rationale, final_label, final_rationale),
        model_label=shown.model_label,
        model_rationale=shown.model_rationale,
        model_probabilities=dict(shown.probabilities),
        final_label=final_label,
        final_rationale=final_rationale,
        rating=rating_value,
        comment=comment.strip(),
        consistency_label=consistency_label,
        time_on_task_s=round(max(elapsed, 0.0), 3),
        batch_id=shown.batch_id,
        item_index=shown.item_index,
    )


def save_review(
    store: ReviewStore,
    predictor: PredictorLike,
    shown: ShownCase,
    reviewer: str,
    final_label: str,
    final_rationale: str,
    rating: Any = None,
    comment: str = "",
) -> tuple[SubmitResult, ConsistencyResult]:
    """Build the review, re-predict its label from the rationale alone, store it (once per content).

    Raises ReviewActionError for an unusable review, FeedbackStoreError for a failed write.
    """
    record = build_review(shown, reviewer, final_label, final_rationale, rating, comment)
    validate_review(record)  # before the model call: an unusable review fails fast with the store's reasons
    check = check_consistency(predictor, record.final_rationale, record.final_label)
    result = store.submit(replace(record, consistency_label=check.label))
    if not result.created and not store.is_live(result.record.review_id):
        # the same content as a review that was retracted: saving it again must count, so it is a new row
        result = store.submit(
            replace(
                record, consistency_label=check.label, submission_id=f"{record.submission_id}-{uuid.uuid4().hex[:8]}"
            )
        )
    return result, check


@dataclass(frozen=True)
class Undone:
    """A retracted save: the review, the case as it was shown, and what the reviewer is told."""

    record: ReviewRecord
    shown: ShownCase
    message: str


def undo_last_review(store: ReviewStore, reviewer: str) -> Undone:
    """Retract the reviewer's last save that still counts (a new audit row, never a deletion) and keep its content
    as their draft of the case, so the editor shows it again. Raises ReviewActionError when there is none."""
    record = store.retract_last(reviewer)
    if record is None:
        raise ReviewActionError("nothing to undo: you have no saved review that still counts")
    back = shown_from_review(record)
    draft = make_draft(back, record.final_label, record.final_rationale, record.rating, record.comment)
    store.save_draft(reviewer, record.case_id, draft)
    message = (
        f"↶ Retracted your review #{record.review_id} ({record.action}); it no longer counts. "
        "Its content is back in the editor: change it and save, or move on."
    )
    if any(r.reviewer != reviewer for r in store.reviewer_reviews(record.case_id)):
        message += (
            " You have seen the other reviewers' answers to this case, so your next review of it is "
            "not blind: agreement leaves it out."
        )
    return Undone(record, back, message)


def skip_case(store: ReviewStore, reviewer: str, shown: ShownCase) -> str:
    """Record a skip: the case stays to do. Returns what the reviewer is told."""
    store.add_event(reviewer, "skip", shown.case_id, batch_id=shown.batch_id, item_index=shown.item_index)
    return "Skipped: the case stays in your queue."


def flag_case(store: ReviewStore, reviewer: str, shown: ShownCase, comment: str) -> str:
    """Flag the case for discussion, the comment saying why (the dashboard lists it). Returns what the reviewer
    is told. Raises ReviewActionError without a reason."""
    if not (comment or "").strip():
        raise ReviewActionError(
            "say why you flag this case: type the reason in the Comment box (key M), then flag again (F)"
        )
    store.add_event(reviewer, "flag", shown.case_id, batch_id=shown.batch_id, item_index=shown.item_index, note=comment)
    return "⚑ Flagged for discussion; it is listed on the dashboard. Your edits stay on screen."


def unconfirmed_guess(shown: ShownCase, final_label: str, final_rationale: str) -> bool:
    """Whether a save would accept the model's guess on a text that is no triage note: none of the triage facts
    and no number at all (no age, no vital sign), with the suggestion and its rationale kept as they are. One key
    once stored "hello" as an accepted KTAS 3: such a save asks to be confirmed."""
    return (
        final_label == shown.model_label
        and same_text(final_rationale, shown.model_rationale)
        and not case_has_triage_facts(shown.case_text)
        and not any(ch.isdigit() for ch in shown.case_text)
    )


def saved_message(result: SubmitResult, in_batch: bool) -> str:
    """What the reviewer is told after pressing save (Markdown; nothing the reviewer typed is in it)."""
    r = result.record
    text = (
        f"✓ Saved review #{r.review_id} ({r.action})."
        if result.created
        else f"Already saved as review #{r.review_id}; nothing new to store."
    )
    return text + (" Press U to undo it." if result.created else "") + (" Next case opened." if in_batch else "")


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: str) -> str:
    """User text (a name, a comment) made inert for a Markdown component: every ASCII punctuation character
    backslash-escaped (CommonMark allows it for all of them), so no link, image, HTML tag or formula survives."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text).replace("\n", " ")


def others_note(store: ReviewStore, case_id: str, reviewer: str) -> str:
    """Blind review: how many others reviewed the case, and their labels only once this reviewer has saved."""
    reviews = store.reviewer_reviews(case_id)
    others = [r for r in reviews if r.reviewer != reviewer.strip()]
    if not others:
        return ""
    if not any(r.reviewer == reviewer.strip() for r in reviews):
        return (
            f"{len(others)} other reviewer(s) reviewed this case; their answers stay hidden until you save "
            "yours (blind review)."
        )
    return "Other reviewers: " + "; ".join(f"{plain(r.reviewer)} chose {r.final_label} ({r.action})" for r in others)


# --- drafts: what the nurse typed, kept server-side per reviewer and case --------------------------


def make_draft(
    shown: ShownCase, final_label: str | None, rationale: str | None, rating: Any, comment: str | None
) -> dict[str, Any]:
    """The unsaved state of the editor, with the case it belongs to (so a refresh can show it again)."""
    return {
        "shown": shown.to_dict(),
        "final_label": final_label,
        "rationale": rationale or "",
        "rating": None if rating in (None, "") else str(rating),
        "comment": comment or "",
    }


def differs_from_model(draft: Mapping[str, Any], shown: ShownCase) -> bool:
    """Whether a draft holds anything the nurse changed (an untouched editor is not worth restoring)."""
    return (
        draft.get("final_label") not in (None, shown.model_label)
        or not same_text(draft.get("rationale") or "", shown.model_rationale)
        or bool(draft.get("rating"))
        or bool((draft.get("comment") or "").strip())
    )


def restorable_draft(store: ReviewStore, reviewer: str, case_id: str | None = None) -> tuple[ShownCase, dict] | None:
    """The reviewer's newest unsaved draft (of one case, or of any single case), with its ShownCase."""
    if not reviewer.strip():
        return None
    draft = store.draft(reviewer, case_id)
    if not draft or not isinstance(draft.get("shown"), Mapping):
        return None
    try:
        shown = ShownCase.from_dict(draft["shown"])
    except TypeError:  # a draft written by another version of this code
        return None
    mine = [r for r in store.reviewer_reviews(shown.case_id) if r.reviewer == reviewer.strip()]
    if mine and _same_content(draft, mine[-1]):
        return None  # a draft that reached the store just after the save it belongs to
    return (shown, draft) if differs_from_model(draft, shown) or mine else None


def _same_content(draft: Mapping[str, Any], review: ReviewRecord) -> bool:
    return (
        draft.get("final_label") == review.final_label
        and same_text(draft.get("rationale") or "", review.final_rationale)
        and parse_rating(draft.get("rating")) == review.rating
        and (draft.get("comment") or "").strip() == review.comment
    )


# --- batch uploads and the review queue -----------------------------------------------------------


def check_cases(predictor: PredictorLike, cases: Sequence[str], source: str) -> None:
    """Check every case before anything is stored. Raises InvalidCaseError naming source and case number."""
    for i, case in enumerate(cases, start=1):
        try:
            predictor.check_case(case)
        except InvalidCaseError as e:
            raise InvalidCaseError(f"{source}, case {i}: {e}") from e


def batch_choices(store: ReviewStore, reviewer: str = "") -> list[tuple[str, str]]:
    """(label, batch_id) of every saved batch, newest first, with the reviewer's own progress (another
    reviewer's reviews are not yours: blind review); without a name, only the batch size."""
    choices = []
    for b in store.list_batches():
        if reviewer.strip():
            mine = sum(item.review is not None for item in store.batch_items(b.batch_id, reviewer))
            progress = f"{mine}/{b.n_items} reviewed by you"
        else:
            progress = f"{b.n_items} cases"
        choices.append((f"{b.name} · {b.created_at[:16].replace('T', ' ')} · {progress}", b.batch_id))
    return choices


def predict_missing(
    store: ReviewStore,
    predictor: PredictorLike,
    batch_id: str,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Predict the batch items that have no stored prediction yet, saving each chunk as it finishes.

    Resumable: after a crash or restart only the missing items are predicted. Returns how many were.
    """
    missing = [item for item in store.batch_items(batch_id) if item.prediction is None]
    total = len(missing)
    for start in range(0, total, batch_size):
        chunk = missing[start : start + batch_size]
        predictions = predictor.predict_batch([item.case_text for item in chunk], batch_size=batch_size)
        store.add_batch_predictions(
            batch_id, {item.item_index: _with_rationale_scores(predictor, p) for item, p in zip(chunk, predictions)}
        )
        if progress is not None:
            progress(start + len(chunk), total)
    return total


def _with_rationale_scores(predictor: PredictorLike, prediction: Any) -> dict[str, Any]:
    """The stored form of a batch prediction, with the label probabilities the rationale alone gives
    (what r2d.review.active's "disagreement" order reads; one scoring pass, no generation)."""
    stored = prediction.to_dict()
    if prediction.rationale.strip():
        scores = predictor.predict_label_from_rationale(prediction.rationale)
        stored["rationale_probabilities"] = dict(zip(scores.labels, scores.probabilities))
    return stored


def first_unreviewed(items: Sequence[BatchItem]) -> int:
    """Index of the first item neither reviewed nor skipped (else the first unreviewed, else the last item)."""
    todo = [i for i, item in enumerate(items) if item.review is None]
    return next((i for i in todo if not items[i].skipped), todo[0] if todo else max(len(items) - 1, 0))


def next_unreviewed(items: Sequence[BatchItem], position: int) -> int:
    """The next item after position that is neither reviewed nor skipped, going round to the start; else the
    first skipped one still unreviewed; else position itself (the batch is complete)."""
    n = len(items)
    ring = [(position + k) % n for k in range(1, n + 1)] if n else []
    todo = [i for i in ring if items[i].review is None]
    return next((i for i in todo if not items[i].skipped), todo[0] if todo else clamp_position(position, n))


def clamp_position(position: int, n_items: int) -> int:
    """A queue position kept inside [0, n_items - 1]."""
    return min(max(position, 0), max(n_items - 1, 0))


def queue_progress(items: Sequence[BatchItem], position: int) -> str:
    """'Case 3 of 20 · 7 reviewed · 13 to go' (· 'n skipped' when some are), counted for one reviewer."""
    reviewed = sum(item.review is not None for item in items)
    skipped = sum(item.skipped and item.review is None for item in items)
    if items and reviewed == len(items):
        return f"Case {position + 1} of {len(items)} · ✓ batch complete: all {len(items)} reviewed"
    text = f"Case {position + 1} of {len(items)} · {reviewed} reviewed · {len(items) - reviewed} to go"
    return text + (f" · {skipped} skipped" if skipped else "")


def shown_from_item(item: BatchItem) -> ShownCase:
    """The ShownCase of a predicted batch item. Raises ReviewActionError if it is not predicted yet."""
    if item.prediction is None:
        raise ReviewActionError(
            f"case {item.item_index + 1} of batch {item.batch_id} has no prediction yet; "
            "press 'Run batch' to finish predicting it"
        )
    shown = ShownCase.from_prediction(item.prediction, item.batch_id, item.item_index)
    # tied to the item's latest review: re-saving the same content after reopening the item is the same
    # submission (stored once); once a new review is stored, the next showing gets a new token
    latest = item.review.review_id if item.review is not None else 0
    return replace(shown, review_token=f"{item.batch_id}-{item.item_index}-r{latest}")


def shown_from_review(record: ReviewRecord) -> ShownCase:
    """The model output a stored review was made from, shown again (a fresh showing: a new token)."""
    return ShownCase(
        case_text=record.case_text,
        model_label=record.model_label,
        probabilities=dict(record.model_probabilities),
        model_rationale=record.model_rationale,
        model_id=record.model_id,
        quantization=record.quantization,
        prompt_version=record.prompt_version,
        batch_id=record.batch_id,
        item_index=record.item_index,
    )


@dataclass(frozen=True)
class QueueView:
    """One batch item opened for review: where it is in the queue and what to show."""

    batch_id: str
    position: int
    progress: str
    shown: ShownCase
    review: ReviewRecord | None  # this reviewer's latest review of the item, to prefill the editor
    status: str  # Markdown; user text in it went through plain()
    draft: dict[str, Any] | None = None  # this reviewer's unsaved draft of the item, which wins over the review
    source_id: str | None = None
    order: str = "upload"  # r2d.review.active.ORDERS: the order positions count in


def open_queue(
    store: ReviewStore,
    batch_id: str,
    position: int | None = None,
    reviewer: str = "",
    after: int | None = None,
    order: str = "upload",
    item: int | None = None,
    unreviewed_after: int | None = None,
) -> QueueView:
    """Open a batch at position (clamped), at batch item `item`, at the next unreviewed item after item
    `after` (or after position `unreviewed_after`), or at the first unreviewed one. Positions count in `order`
    (r2d.review.active.ORDERS: upload order, or most uncertain first); `item` and `after` are item indices, wherever
    the order puts them. When every item is reviewed, the status says the batch is complete.
    Only the reviewer's own review and draft are shown (blind review). Raises FeedbackStoreError."""
    items = store.batch_items(batch_id, reviewer or None)
    items = [items[i] for i in review_order([it.prediction for it in items], order)]
    where = {it.item_index: i for i, it in enumerate(items)}
    if item is not None and item in where:
        position = where[item]
    elif after is not None and after in where:
        position = next_unreviewed(items, where[after])
    elif unreviewed_after is not None:
        position = next_unreviewed(items, clamp_position(unreviewed_after, len(items)))
    position = first_unreviewed(items) if position is None else clamp_position(position, len(items))
    current = items[position]
    status = []
    moving = after is not None or unreviewed_after is not None
    if moving and all(it.review is not None for it in items):
        status.append(
            f"✓ Batch complete: you have reviewed all {len(items)} cases. N / P look back at them; "
            "open another batch to go on."
        )
    elif current.review is not None:
        r = current.review
        status.append(
            f"You reviewed this case at {r.created_at[:19].replace('T', ' ')} ({r.action}). "
            "Saving again adds a correction; your latest review counts."
        )
    shown = shown_from_item(current)
    restored = restorable_draft(store, reviewer, current.case_id)
    draft = restored[1] if restored else None
    if draft:
        status.append("Restored your unsaved draft of this case.")
    note = others_note(store, current.case_id, reviewer) if reviewer else ""
    return QueueView(
        batch_id,
        position,
        queue_progress(items, position),
        shown,
        current.review,
        " ".join(status + ([note] if note else [])),
        draft,
        current.source_id,
        order,
    )

"""UI-free review logic: diffs, actions, consistency, building reviews, case uploads and the batch queue."""

from __future__ import annotations

import json
import re

import pytest

from r2d.errors import InvalidCaseError, ReviewActionError
from r2d.prompts import PROMPT_VERSION
from r2d.review import session as rv
from r2d.review.store import case_id_for


def shown_case(**overrides) -> rv.ShownCase:
    values = dict(
        case_text="level 2: chest pain, BP 88/50",
        model_label="2",
        probabilities={"1": 0.1, "2": 0.6, "3": 0.1, "4": 0.1, "5": 0.1},
        model_rationale="Findings fit triage level 2.",
        model_id="fake-r2d",
        quantization="none",
        shown_at=1000.0,
    )
    values.update(overrides)
    return rv.ShownCase(**values)


# --- labels ---------------------------------------------------------------------------------------


def test_label_choices_show_names_and_keep_values(fake_predictor):
    choices = rv.label_choices(fake_predictor.label_set, fake_predictor.label_names)
    assert choices[0] == ("1 — Resuscitation", "1")
    assert [v for _, v in choices] == list(fake_predictor.label_set)
    assert rv.format_label("yes", {}) == "yes"


@pytest.mark.parametrize("top, warned", [(0.3, True), (0.49, True), (0.5, False), (0.9, False)])
def test_probability_note_only_below_the_threshold(top, warned):
    rest = (1 - top) / 3
    note = rv.probability_note({"a": top, "b": rest, "c": rest, "d": rest}, threshold=0.5)
    assert bool(note) == warned
    if warned:
        assert f"{top:.0%}" in note and "a" in note


# --- diffs and actions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "before, after",
    [
        ("Shock signs: emergency.", "Shock signs: emergency."),
        ("Shock signs: emergency.", "Hypotension and tachycardia: emergency now."),
        ("", "A new rationale."),
        ("An old rationale.", ""),
        ("line one\nline two", "line one\nline 2 changed"),
        ("<script>alert(1)</script> x", "<b>bold</b> x"),
    ],
)
def test_word_diff_reconstructs_both_texts(before, after):
    pieces = rv.word_diff(before, after)
    assert "".join(t for t, c in pieces if c != rv.DIFF_REMOVED) == after
    assert "".join(t for t, c in pieces if c != rv.DIFF_ADDED) == before
    assert {c for _, c in pieces} <= {None, rv.DIFF_ADDED, rv.DIFF_REMOVED}


def test_word_diff_marks_only_changed_words():
    pieces = rv.word_diff("pain is severe today", "pain is mild today")
    assert [(t.strip(), c) for t, c in pieces if c] == [("severe", "removed"), ("mild", "added")]


@pytest.mark.parametrize(
    "final_label, final_rationale, action",
    [
        ("2", "Findings fit triage level 2.", "accepted"),
        ("2", "  Findings fit\ntriage level 2. ", "accepted"),  # re-flowed, not edited
        ("2", "Shock: emergency.", "edited"),
        ("3", "Findings fit triage level 2.", "relabelled"),
        ("3", "Different words.", "relabelled"),
    ],
)
def test_classify_action(final_label, final_rationale, action):
    assert rv.classify_action("2", "Findings fit triage level 2.", final_label, final_rationale) == action


# --- consistency ----------------------------------------------------------------------------------


def test_consistency_agrees_when_the_rationale_points_to_the_label(fake_predictor):
    result = rv.check_consistency(fake_predictor, "Everything says level 2 here.", "2")
    assert result.agrees and result.label == "2" and result.message.startswith("Consistent")
    assert fake_predictor.calls["predict_label_from_rationale"] == 1


def test_consistency_warns_and_names_both_labels(fake_predictor):
    result = rv.check_consistency(fake_predictor, "Stable, walked in: level 5.", "2")
    assert not result.agrees and result.label == "5"
    assert "Warning" in result.message and "5 — Non-urgent" in result.message and "2 — Emergency" in result.message
    assert 0.0 < result.probability <= 1.0


def test_consistency_of_an_empty_rationale_is_an_error(fake_predictor):
    with pytest.raises(InvalidCaseError, match="rationale is empty"):
        rv.check_consistency(fake_predictor, "   ", "2")


# --- building reviews ------------------------------------------------------------------------------


def test_build_review_records_before_after_and_time_on_task():
    shown = shown_case()
    review = rv.build_review(
        shown, " Nurse A ", "3", " Edited: urgent. ", "4", " ok ", consistency_label="3", now=1012.5
    )
    assert review.reviewer == "Nurse A" and review.action == "relabelled"
    assert (review.model_label, review.final_label) == ("2", "3")
    assert (review.model_rationale, review.final_rationale) == ("Findings fit triage level 2.", "Edited: urgent.")
    assert review.rating == 4 and review.comment == "ok" and review.time_on_task_s == 12.5
    assert review.case_id == case_id_for(shown.case_text) and review.prompt_version == PROMPT_VERSION
    assert review.model_probabilities == shown.probabilities


def test_submission_id_is_stable_for_the_same_content_and_new_for_a_correction():
    shown = shown_case()
    a = rv.build_review(shown, "A", "2", "x", None, "", now=1001)
    b = rv.build_review(shown, "A", "2", "x ", None, "", now=1050)  # a retry, later
    c = rv.build_review(shown, "A", "2", "y", None, "", now=1060)  # a correction
    other_showing = rv.build_review(shown_case(review_token="other"), "A", "2", "x", None, "", now=1001)
    other_nurse = rv.build_review(shown, "B", "2", "x", None, "", now=1001)
    assert a.submission_id == b.submission_id
    assert len({a.submission_id, c.submission_id, other_showing.submission_id, other_nurse.submission_id}) == 4


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("3", 3), (5, 5)])
def test_parse_rating(value, expected):
    assert rv.parse_rating(value) == expected


@pytest.mark.parametrize("value", ["6", "-1", "abc", 9])
def test_bad_ratings_are_refused(value):
    with pytest.raises(ReviewActionError, match="rating must be 1-5"):
        rv.parse_rating(value)


def test_a_label_outside_the_label_set_is_refused():
    with pytest.raises(ReviewActionError, match="label '9' is not one of"):
        rv.build_review(shown_case(), "A", "9", "x")


def test_shown_case_round_trips_and_reads_predictions(fake_predictor):
    shown = shown_case(batch_id="b-1", item_index=3)
    assert rv.ShownCase.from_dict(json.loads(json.dumps(shown.to_dict()))) == shown
    prediction = fake_predictor.predict("level 4 ankle sprain").to_dict()
    from_prediction = rv.ShownCase.from_prediction(prediction, "b-1", 0)
    assert from_prediction.model_label == prediction["label"]
    assert from_prediction.model_rationale == prediction["rationale"]
    assert from_prediction.probabilities == prediction["probabilities"] and from_prediction.item_index == 0


# --- the batch queue ------------------------------------------------------------------------------


def test_predict_missing_saves_chunks_and_resumes(store, fake_predictor):
    cases = [f"case {i} level {i % 5 + 1}" for i in range(5)]
    batch = store.create_batch("up.csv", cases, "A", fake_predictor.model_id)
    store.add_batch_predictions(batch.batch_id, {1: fake_predictor.predict(cases[1]).to_dict()})  # done before a crash
    seen = []
    assert (
        rv.predict_missing(
            store, fake_predictor, batch.batch_id, batch_size=2, progress=lambda done, total: seen.append((done, total))
        )
        == 4
    )
    assert seen == [(2, 4), (4, 4)]
    items = store.batch_items(batch.batch_id)
    assert all(item.prediction is not None for item in items)
    assert [item.prediction["case_text"] for item in items] == cases
    assert rv.predict_missing(store, fake_predictor, batch.batch_id) == 0  # nothing left to do


def test_queue_positions_and_progress(store, fake_predictor):
    cases = ["level 1 a", "level 2 b", "level 3 c"]
    batch = store.create_batch("up.csv", cases, "A", "m")
    rv.predict_missing(store, fake_predictor, batch.batch_id)
    items = store.batch_items(batch.batch_id)
    assert rv.first_unreviewed(items) == 0
    first = rv.shown_from_item(items[0])
    store.submit(rv.build_review(first, "A", first.model_label, first.model_rationale))
    items = store.batch_items(batch.batch_id)
    assert rv.first_unreviewed(items) == 1
    assert rv.queue_progress(items, 1) == "Case 2 of 3 · 1 reviewed · 2 to go"
    assert [rv.clamp_position(p, 3) for p in (-1, 0, 2, 7)] == [0, 0, 2, 2]


def test_reopening_an_item_gives_a_token_tied_to_its_latest_review(store, fake_predictor):
    batch = store.create_batch("up.csv", ["level 1 a"], "A", "m")
    rv.predict_missing(store, fake_predictor, batch.batch_id)
    item = store.batch_items(batch.batch_id)[0]
    assert rv.shown_from_item(item).review_token == rv.shown_from_item(item).review_token
    shown = rv.shown_from_item(item)
    store.submit(rv.build_review(shown, "A", "1", "edited"))
    # the same content submitted after reopening is the same submission; a new token only after a new review
    again = rv.shown_from_item(store.batch_items(batch.batch_id)[0])
    assert again.review_token != shown.review_token


def test_an_item_without_prediction_cannot_be_shown(store):
    batch = store.create_batch("up.csv", ["a"], "A", "m")
    with pytest.raises(ReviewActionError, match="no prediction yet"):
        rv.shown_from_item(store.batch_items(batch.batch_id)[0])


def test_all_reviewed_queue_stays_on_the_last_item(store, fake_predictor):
    batch = store.create_batch("up.csv", ["level 1 a", "level 2 b"], "A", "m")
    rv.predict_missing(store, fake_predictor, batch.batch_id)
    for item in store.batch_items(batch.batch_id):
        shown = rv.shown_from_item(item)
        store.submit(rv.build_review(shown, "A", shown.model_label, shown.model_rationale))
    assert rv.first_unreviewed(store.batch_items(batch.batch_id)) == 1


def test_check_cases_names_the_first_bad_case(fake_predictor):
    rv.check_cases(fake_predictor, ["level 1 a", "level 2 b"], "up.csv")
    with pytest.raises(InvalidCaseError, match=r"up.csv, case 2: case text has 5,000 characters"):
        rv.check_cases(fake_predictor, ["ok", "x" * 5000, "  "], "up.csv")


def test_batch_choices_show_each_reviewers_own_progress(store, fake_predictor):
    """B's list said '20/20 reviewed' before B reviewed anything (A's reviews counted)."""
    batch = store.create_batch("up.csv", ["level 1 a", "level 2 b"], "A", "m")
    rv.predict_missing(store, fake_predictor, batch.batch_id)
    [(label, value)] = rv.batch_choices(store)
    assert value == batch.batch_id and label.startswith("up.csv · ") and label.endswith("· 2 cases")
    for item in store.batch_items(batch.batch_id):
        shown = rv.shown_from_item(item)
        store.submit(rv.build_review(shown, "A", shown.model_label, shown.model_rationale))
    assert rv.batch_choices(store, "A")[0][0].endswith("2/2 reviewed by you")
    assert rv.batch_choices(store, "B")[0][0].endswith("0/2 reviewed by you")


def test_the_queue_goes_round_to_what_is_left_and_then_says_the_batch_is_complete(store, fake_predictor):
    batch = store.create_batch("up.csv", ["level 1 a", "level 2 b", "level 3 c"], "A", "m")
    rv.predict_missing(store, fake_predictor, batch.batch_id)

    def review(index: int) -> None:
        shown = rv.shown_from_item(store.batch_items(batch.batch_id)[index])
        store.submit(rv.build_review(shown, "A", shown.model_label, shown.model_rationale))

    review(1)
    review(2)  # the last case: the next unreviewed is the first one, not the last case again
    view = rv.open_queue(store, batch.batch_id, reviewer="A", after=2)
    assert view.position == 0 and "You reviewed" not in view.status
    assert rv.open_queue(store, batch.batch_id, reviewer="A", unreviewed_after=1).position == 0
    review(0)
    done = rv.open_queue(store, batch.batch_id, reviewer="A", after=0)
    assert done.position == 0 and done.status.startswith("✓ Batch complete: you have reviewed all 3 cases")
    assert done.progress == "Case 1 of 3 · ✓ batch complete: all 3 reviewed"
    assert "Batch complete" not in rv.open_queue(store, batch.batch_id, 1, reviewer="A").status  # N / P look back
    assert rv.open_queue(store, batch.batch_id, reviewer="B", after=0).position == 1  # B's own queue


def test_two_reviewers_of_one_batch_item_are_two_rows(store, fake_predictor):
    batch = store.create_batch("up.csv", ["level 1 a"], "A", "m")
    rv.predict_missing(store, fake_predictor, batch.batch_id)
    item = store.batch_items(batch.batch_id)[0]
    for nurse in ("Nurse A", "Nurse B", "Nurse B"):  # B clicks twice
        shown = rv.shown_from_item(item)
        rv.save_review(store, fake_predictor, shown, nurse, shown.model_label, shown.model_rationale)
    assert [r.reviewer for r in store.reviews()] == ["Nurse A", "Nurse B"]


# --- plain text, skips, upload ids, drafts --------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "![n](http://203.0.113.7/x.png)",
        "<img src=x onerror=alert(1)>",
        "$x^2$",
        "[link](javascript:alert(1))",
        "**bold** _it_ `code` # heading",
    ],
)
def test_plain_leaves_no_markdown_or_html_to_interpret(text):
    escaped = rv.plain(text)
    # every punctuation character is escaped, so undoing the escapes gives the text back
    assert re.sub(r"\\(.)", r"\1", escaped) == text
    assert not re.search(r"(?<!\\)[!\[\]()<>$*_`#]", escaped)


def test_skipped_items_come_after_the_rest(store, fake_predictor):
    batch = store.create_batch("up.csv", ["level 1 a", "level 2 b", "level 3 c"], "A", "m")
    rv.predict_missing(store, fake_predictor, batch.batch_id)
    item = store.batch_items(batch.batch_id)[0]
    store.add_event("A", "skip", item.case_id, batch_id=batch.batch_id, item_index=0)
    mine = store.batch_items(batch.batch_id, "A")
    assert rv.first_unreviewed(mine) == 1 and rv.next_unreviewed(mine, 1) == 2
    assert rv.first_unreviewed(store.batch_items(batch.batch_id, "B")) == 0  # B did not skip it
    assert rv.queue_progress(mine, 1).endswith("· 1 skipped")


def test_an_untouched_editor_is_no_draft(store):
    shown = shown_case()
    store.save_draft("A", shown.case_id, rv.make_draft(shown, "2", shown.model_rationale, None, ""))
    assert rv.restorable_draft(store, "A", shown.case_id) is None
    store.save_draft("A", shown.case_id, rv.make_draft(shown, "3", shown.model_rationale, None, ""))
    restored_shown, draft = rv.restorable_draft(store, "A", shown.case_id)
    assert restored_shown == shown and draft["final_label"] == "3"


# --- the under-triage guard -----------------------------------------------------------------

KTAS = ("1", "2", "3", "4", "5")
KTAS_NAMES = {"1": "Resuscitation", "2": "Emergency", "3": "Urgent", "4": "Less urgent", "5": "Non-urgent"}


@pytest.mark.parametrize(
    "case, label, expected",
    [
        # the two cases, both suggested "4 — Less urgent"
        (
            "70-year-old man, unresponsive, BP 72/40 mmHg, SpO2 84%, HR 48/min.",
            "4",
            [
                "unresponsive calls for KTAS 1",
                "systolic BP 72 mmHg (< 80 mmHg) calls for KTAS 1",
                "SpO2 84% (< 90%) calls for KTAS 1",
            ],
        ),
        (
            "Found collapsed, pulseless, CPR started by the ambulance crew.",
            "4",
            ['"pulseless" (arrest) calls for KTAS 1'],
        ),
        (
            "8-year-old girl, not breathing, brought in by her mother.",
            "3",
            ['"not breathing" (arrest) calls for KTAS 1'],
        ),
        (
            "45-year-old woman, responds to voice only, HR 136/min.",
            "3",
            ["responds only to voice calls for KTAS 2", "heart rate 136/min (> 130/min) calls for KTAS 2"],
        ),
        ("30-year-old man, RR 38/min, SpO2 91%.", "2", ["respiratory rate 38/min (>= 36/min) calls for KTAS 1"]),
    ],
)
def test_the_guard_names_each_modifier_above_the_label(case, label, expected):
    guard = rv.under_triage(case, label, KTAS)
    message = guard.message(KTAS_NAMES)
    assert [f"{m.finding} calls for KTAS {m.level}" for m in guard.modifiers] == expected
    assert message.startswith("Under-triage risk: " + "; ".join(expected))
    assert f"the suggestion is {rv.format_label(label, KTAS_NAMES)}" in message


@pytest.mark.parametrize(
    "case, label",
    [
        ("70-year-old man, unresponsive, BP 72/40 mmHg, SpO2 84%.", "1"),  # already as urgent as the floor
        ("40-year-old woman, sore throat, HR 80/min, BP 120/80 mmHg, SpO2 98%.", "5"),  # no modifier at all
        ("Chest pain, no cardiac arrest, not apnoeic, HR 80/min.", "4"),  # negated arrest words
        ("8-year-old boy, HR 150/min, SpO2 85%.", "4"),  # a child: the adult modifiers do not apply
    ],
)
def test_the_guard_is_quiet_when_the_label_is_urgent_enough_or_nothing_applies(case, label):
    assert rv.under_triage(case, label, KTAS) is None


def test_the_guard_only_speaks_ktas_and_says_central_pain():
    assert rv.under_triage("unresponsive, SpO2 80%", "no", ("yes", "no", "maybe")) is None
    guard = rv.under_triage("40-year-old man, ankle sprain, pain 6/10.", "4", KTAS)
    assert guard.floor == "3" and "peripheral pain allows one level less" in guard.message(KTAS_NAMES)


def test_the_guard_on_the_example_cases_follows_their_floor():
    """Real, nurse-labelled example cases: the guard fires for a label exactly when it is less urgent than the
    most urgent modifier, and never for the nurse's label of the peri-arrest cases (all KTAS 1)."""
    from pathlib import Path

    from r2d.checks.factcheck import parse_case
    from r2d.checks.rules import urgency_floor

    rows = [json.loads(line) for line in (Path(__file__).parent.parent / "examples" / "triage_cases.jsonl").open()]
    for row in rows:
        floor = urgency_floor(parse_case(row["question"]))
        for label in KTAS:
            guard = rv.under_triage(row["question"], label, KTAS)
            assert (guard is not None) == (floor is not None and int(label) > int(floor)), (row["id"], label)
    peri_arrest = [r for r in rows if r["label"] == "1"]
    assert len(peri_arrest) == 3 and all(rv.under_triage(r["question"], "1", KTAS) is None for r in peri_arrest)
    assert all(rv.under_triage(r["question"], "4", KTAS).floor == "1" for r in peri_arrest)


def test_the_dashboard_line_counts_suggestions_and_final_labels(make_review):
    case = "70-year-old man, unresponsive, BP 72/40 mmHg, SpO2 84%."
    reviews = [
        make_review(1, case_text=case, model_label="4", final_label="1"),
        make_review(2, case_text=case + " Again.", model_label="4", final_label="4"),
        make_review(3, case_text="sore throat, HR 80/min", model_label="5", final_label="5"),
    ]
    line = rv.under_triage_line(reviews, KTAS)
    assert "in **2** of 3 reviewed cases" in line and "the final label still is in **1**" in line
    assert rv.under_triage_line(reviews, ("yes", "no")) == ""


def test_undo_retracts_the_last_save_and_keeps_it_as_a_draft(store, fake_predictor):
    with pytest.raises(ReviewActionError, match="nothing to undo"):
        rv.undo_last_review(store, "Nurse A")
    shown = shown_case()
    rv.save_review(store, fake_predictor, shown, "Nurse A", "3", "Edited: level 3.", rating=4)
    undone = rv.undo_last_review(store, "Nurse A")
    assert undone.record.final_label == "3" and undone.shown.case_id == shown.case_id
    assert "Retracted your review" in undone.message and "not blind" not in undone.message
    assert store.latest_reviews() == []  # it no longer counts
    draft = store.draft("Nurse A", shown.case_id)
    assert (draft["final_label"], draft["rationale"], draft["rating"]) == ("3", "Edited: level 3.", "4")
    rv.save_review(store, fake_predictor, shown, "Nurse B", "2", "Findings fit triage level 2.")
    rv.save_review(store, fake_predictor, shown, "Nurse A", "3", "Edited again: level 3.")
    assert "not blind" in rv.undo_last_review(store, "Nurse A").message  # A has seen B's answer by now


def test_skip_and_flag_record_events_and_a_flag_needs_a_reason(store):
    shown = shown_case(batch_id="b1", item_index=2)
    assert rv.skip_case(store, "Nurse A", shown).startswith("Skipped")
    with pytest.raises(ReviewActionError, match="say why you flag this case"):
        rv.flag_case(store, "Nurse A", shown, "  ")
    assert "Flagged for discussion" in rv.flag_case(store, "Nurse A", shown, "BP cuff may be wrong")
    assert [(e.kind, e.case_id, e.batch_id, e.item_index, e.note) for e in store.events()] == [
        ("skip", shown.case_id, "b1", 2, ""),
        ("flag", shown.case_id, "b1", 2, "BP cuff may be wrong"),
    ]

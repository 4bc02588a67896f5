"""The Review tab (ui/review.py): prediction, live checks, save, undo, skip, flag and drafts, on a fake predictor."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import pytest
from ui_kit import CASE, named, predicted, save

from r2d.checks.consistency import load_calibration
from r2d.config import load_config
from r2d.review import session as rv
from r2d.review.store import ReviewStore
from ui import review as ui_review
from ui.blocks import build_app

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("gradio_temp")


def test_predict_shows_label_first_then_streams_the_rationale(h, fake_predictor):
    steps = [named(h, v) for v in h.review.predict(CASE, "Nurse A", None)]
    first, streamed, last = steps[0], steps[1:-1], steps[-1]
    assert first["shown"] is None  # nothing to review until the rationale is complete
    assert "2 — Emergency" in first["label_md"] and isinstance(first["plot"], go.Figure)
    assert list(first["plot"].data[0].x) == pytest.approx([0.1, 0.6, 0.1, 0.1, 0.1])
    texts = [s["rationale"] for s in streamed]
    assert len(texts) > 1 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert all(set(s) == {"rationale"} for s in streamed)  # a streamed step touches nothing else
    shown = last["shown"]
    assert isinstance(shown, rv.ShownCase) and shown.model_rationale == texts[-1] == last["rationale"]
    assert shown.model_rationale == fake_predictor.explain(CASE, "2")
    assert (shown.model_label, last["final_label"]) == ("2", "2")
    assert last["consistency"].startswith("Consistent") and shown.case_id in last["case_md"]
    assert (last["queue"], last["queue_md"]) == ({}, "")  # a single prediction leaves any open batch


def test_the_fact_check_shows_beside_the_rationale_and_follows_edits(h):
    case = "level 2: 45-year-old man, chest pain, BP 88/50, HR 124, SpO2 97%, alert, pain 7/10"
    shown = predicted(h, case)["shown"]
    live = named(h, h.review.facts(shown, "Chest pain, SpO2 78%, vitals within adult limits. This fits KTAS 4.", "2"))
    marked = {text: category for text, category in live["facts"] if category}
    assert marked == {
        "SpO2 78%": rv.FACT_UNSUPPORTED,
        "vitals within adult limits": rv.FACT_CONTRADICTED,
        "KTAS 4": rv.FACT_CONTRADICTED,
    }
    assert "3 statement(s) the case does not support" in live["fact_notes"]
    assert "Critical findings the rationale leaves out" in live["fact_notes"]
    fixed = named(h, h.review.facts(shown, "Chest pain with BP 88/50 (hypotension) and HR 124 (tachycardia).", "2"))
    assert all(category is None for _, category in fixed["facts"]) and "matches the case" in fixed["fact_notes"]
    no_facts = predicted(h, "hello level 3")  # a case with no facts: said beside the suggestion and the fact check
    assert "none of the triage facts" in no_facts["fact_notes"] and "none of the triage facts" in no_facts["label_md"]
    assert "none of the triage facts" not in predicted(h, case)["label_md"]


def test_a_megabyte_rationale_is_refused_before_the_diff_fact_check_and_model(h, fake_predictor, monkeypatch):
    shown = predicted(h)["shown"]
    huge = "HR 120, BP 90/60, tachycardia. " * 34_000  # about 1 MB
    read = []
    real = rv.check_rationale
    monkeypatch.setattr(rv, "check_rationale", lambda *args: read.append(args) or real(*args))
    notes = named(h, h.review.facts(shown, huge, "2"))
    assert notes["facts"] == [] and "limit is 4,000" in notes["fact_notes"] and "paused" in notes["fact_notes"]
    assert named(h, h.review.diff(shown, huge))["diff"] == []
    before = fake_predictor.calls["predict_label_from_rationale"]
    with pytest.raises(gr.Error, match="limit is 4,000"):
        h.review.check_event(shown, huge, "2")
    assert read == [] and fake_predictor.calls["predict_label_from_rationale"] == before
    assert named(h, h.review.facts(shown, "Tachycardia with HR 124.", "2"))["facts"] and len(read) == 1


def test_consistency_needs_a_meaningful_probability(h, cfg):
    assert cfg.app.low_probability == 0.5
    shown = predicted(h)["shown"]
    assert h.review.check(shown, "level 2 findings", "2").startswith("Consistent")  # 60%
    h.review.cfg = load_config(None, [f"app.db_path={cfg.app.db_path}", "app.low_probability=0.7"])
    assert h.review.check(shown, "level 2 findings", "2").startswith("**⚠ Weak") and "below 70%" in h.review.check(
        shown, "level 2 findings", "2"
    )


def test_the_consistency_line_warns_only_where_it_was_measured_to_mean_something(h):
    """The embedded model's check warned on 13 of 14 cases, a nurse's 'non-urgent' rationale included."""
    shown = predicted(h)["shown"]
    assert h.review.check(shown, "Stable, walked in: level 5.", "2").startswith(
        "**⚠ Warning: the rationale alone points to 5 — Non-urgent (60%)"
    )
    h.model.calibration = None  # a model never measured: a hint, never a warning
    assert h.review.check(shown, "Stable, walked in: level 5.", "2").startswith(
        "Hint (the consistency check of this model was not measured"
    )
    embedded = load_calibration(ROOT / "assets" / "models" / "r2d-ktas-small")
    assert embedded.model_id == "r2d-ktas-small" and embedded.n == 252 and embedded.warn_min_probability is None
    assert embedded.contradicts_gold > 0.8 and max(p for p in embedded.precision.values() if p) < 0.5
    h.model.calibration, h.model.predictor.model_id = embedded, "r2d-ktas-small"
    line = h.review.check(shown, "Non-urgent, no threat: level 5.", "5")
    assert (
        line.startswith(
            "Hint (unreliable for this model: on 252 gold rationales this check pointed away from "
            f"the expert label {embedded.contradicts_gold:.0%} of the time"
        )
        and "⚠" not in line
    )


def test_a_relabel_rechecks_the_consistency_at_once(fake_predictor, store, cfg, unserved):
    """The line stayed as it was after a relabel (it spoke of the previous label)."""
    h = build_app(fake_predictor, store, cfg, examples=[])
    demo = h.demo
    on_relabel = [fn for fn in demo.fns.values() if (h.review.ui.final_label._id, "select") in fn.targets]
    assert any(
        getattr(fn.fn, "__name__", "") == "check_event" and h.review.ui.consistency in fn.outputs for fn in on_relabel
    )


def test_low_top_probability_is_said_plainly(h):
    assert "Low confidence" in predicted(h, "unclear: level 4 dizziness")["label_md"]
    assert "Low confidence" not in predicted(h, CASE)["label_md"]


PERI_ARREST = "level 4 suggested: 70-year-old man, unresponsive, BP 72/40 mmHg, SpO2 84%, HR 48/min."


def test_an_under_triaged_peri_arrest_case_shows_the_guard_beside_the_suggestion(h, store):
    """An unresponsive, hypotensive, hypoxic patient was suggested '4 — Less urgent' with no word that
    the suggestion contradicts the case. The fake predictor suggests the first digit: 4."""
    result = predicted(h, PERI_ARREST)
    suggestion = result["label_md"]
    assert suggestion.startswith("### Suggested triage: 4 — Less urgent")
    assert "**⚠ Under-triage risk: unresponsive calls for KTAS 1; systolic BP 72 mmHg (< 80 mmHg)" in suggestion
    assert "the suggestion is 4 — Less urgent" in suggestion and not store.reviews()  # before any save
    assert "Under" not in predicted(h, CASE)["label_md"]  # BP 88 calls for 2: the suggestion is 2
    # the label the nurse picks is checked too; the suggestion's own level is said once, beside it
    shown = result["shown"]
    assert "your label is 5" in named(h, h.review.facts(shown, shown.model_rationale, "5"))["fact_notes"]
    assert "Under" not in named(h, h.review.facts(shown, shown.model_rationale, "4"))["fact_notes"]
    assert "Under" not in named(h, h.review.facts(shown, shown.model_rationale, "1"))["fact_notes"]
    save(h, shown, label="1", rationale="Unresponsive, BP 72/40, SpO2 84%: resuscitation.")
    summary = named(h, h.dashboard.show())["summary"]
    assert "less urgent than the case's first-order modifiers allow in **1** of 1" in summary
    assert "the final label still is in **0**" in summary


@pytest.mark.parametrize(
    "case, message", [("", "empty"), ("   \n ", "empty"), ("x" * 1_000_000, "1,000,000 characters")]
)
def test_bad_cases_get_one_message_under_the_case_box(h, case, message):
    """An empty or over-long case painted about ten red Error badges, over the pasted text too:
    now one message under the case box, and no output but that message and the suggestion's placeholder."""
    shown = predicted(h)["shown"]
    [refused] = [named(h, step) for step in h.review.predict(case, "Nurse A", None)]
    assert set(refused) == {"case_md", "label_md"} and refused["label_md"] == ui_review.NO_SUGGESTION
    assert refused["case_md"].startswith("⚠ **No suggestion: ") and rv.plain(message) in refused["case_md"]
    with pytest.raises(gr.Error, match="no longer holds the case under review"):  # the last suggestion's case
        h.review.save(shown, "Nurse A", "2", "x", None, "", {}, case, None)


def test_save_stores_an_edited_review_once(h, store):
    shown = predicted(h)["shown"]
    saved = save(h, shown, rating="4", comment="clear")
    assert saved["status"].startswith("✓ Saved review #1 (edited)")
    assert ("Shock signs: ", rv.DIFF_ADDED) in saved["diff"] and saved["consistency"].startswith("Consistent")
    again = save(h, shown, rating="4", comment="clear")  # a double click
    assert again["status"].startswith("Already saved as review #1")
    [r] = store.reviews()
    assert (r.reviewer, r.action, r.final_label, r.rating, r.comment) == ("Nurse A", "edited", "2", 4, "clear")
    assert (r.model_label, r.model_rationale) == (shown.model_label, shown.model_rationale)
    assert r.consistency_label == "2" and r.time_on_task_s >= 0 and r.model_id == "fake-r2d"


def test_a_correction_is_a_new_row_and_disagreement_is_flagged(h, store):
    shown = predicted(h)["shown"]
    save(h, shown, rationale="Shock: level 2.")
    saved = save(h, shown, label="3", rationale="Walked in, stable: level 5.")
    assert saved["consistency"].startswith("**⚠") and "5 — Non-urgent" in saved["consistency"]
    assert [r.action for r in store.reviews()] == ["edited", "relabelled"]
    assert store.latest_reviews()[0].final_label == "3"


def test_accept_saves_what_is_on_screen_never_the_model_output_over_an_edit(h, store):
    """After an edit and a relabel, A used to store the model's label and text."""
    shown = predicted(h)["shown"]
    accepted = named(
        h, h.review.save(shown, "Nurse A", "1", "Airway at risk: level 1.", "2", "my note", {}, CASE, None)
    )
    assert "(relabelled)" in accepted["status"]
    [r] = store.reviews()
    assert (r.final_label, r.final_rationale, r.comment, r.action) == (
        "1",
        "Airway at risk: level 1.",
        "my note",
        "relabelled",
    )
    untouched = predicted(h, "level 5: sore throat")["shown"]
    named(
        h,
        h.review.save(untouched, "Nurse A", untouched.model_label, untouched.model_rationale, None, "", {}, None, None),
    )
    assert store.reviews()[-1].action == "accepted"


@pytest.mark.parametrize("shown, name, message", [(None, "Nurse A", "predict a case"), ("shown", "  ", "Reviewer")])
def test_save_needs_a_case_and_a_name(h, shown, name, message):
    shown = predicted(h)["shown"] if shown else None
    with pytest.raises(gr.Error, match=message):
        save(h, shown, name=name, rationale="text")


def test_empty_rationale_and_html_are_handled(h, store):
    shown = predicted(h)["shown"]
    with pytest.raises(gr.Error, match="final rationale is empty"):
        save(h, shown, rationale="  ")
    assert h.review.check(shown, "", "2") == ""  # leaving an empty editor is not an error
    evil = "<script>alert(1)</script> level 2"
    save(h, shown, rationale=evil)
    assert store.reviews()[0].final_rationale == evil  # stored verbatim; components render it as text


def test_undo_retracts_my_last_save_and_gives_its_content_back(h, store):
    shown = predicted(h)["shown"]
    save(h, shown, label="1", rationale="Level 1: airway.", rating="3", comment="unsure")
    undone = named(h, h.review.undo("Nurse A", {}, None))
    assert "Retracted your review #1" in undone["status"]
    assert (undone["final_label"], undone["rationale"], undone["rating"], undone["comment"]) == (
        "1",
        "Level 1: airway.",
        "3",
        "unsure",
    )  # nothing typed is lost
    assert len(store.reviews()) == 1 and store.latest_reviews() == []  # the row stays, it no longer counts
    assert [e.kind for e in store.events()] == ["retract"]
    with pytest.raises(gr.Error, match="nothing to undo"):
        h.review.undo("Nurse A", {}, None)
    # saving the same content again counts again (a new row, not "already saved")
    again = save(h, undone["shown"], label="1", rationale="Level 1: airway.", rating="3", comment="unsure")
    assert again["status"].startswith("✓ Saved review #2") and [r.review_id for r in store.latest_reviews()] == [2]


def test_drafts_survive_a_refresh_and_a_restart(h, store, fake_predictor, cfg):
    shown = predicted(h)["shown"]
    h.review.save_draft(shown, "Nurse A", "1", "Half-written: airway", "2", "ask the doctor", CASE, None)
    h.review.save_draft(shown, "Nurse B", "4", "someone else's words", None, "", None, None)
    # a late draft event whose boxes belong to another case is not filed under this one
    h.review.save_draft(shown, "Nurse C", "1", "the previous case's words", None, "", "level 5: another case", None)
    assert store.draft("Nurse C") is None
    restarted = build_app(fake_predictor, ReviewStore(cfg.app.db_path), cfg, examples=[])
    restored = named(restarted, restarted.batch.restore({}, "Nurse A", None))  # a page load, no batch open
    assert (
        restored["case"],
        restored["final_label"],
        restored["rationale"],
        restored["rating"],
        restored["comment"],
    ) == (CASE, "1", "Half-written: airway", "2", "ask the doctor")
    assert "Restored your unsaved draft" in restored["status"]
    # predicting the same case again shows the draft too; after a save the draft is gone
    assert predicted(restarted)["rationale"] == "Half-written: airway"
    save(
        restarted, restored["shown"], label="1", rationale="Half-written: airway", rating="2", comment="ask the doctor"
    )
    assert "rationale" not in named(restarted, restarted.batch.restore({}, "Nurse A", None))
    assert predicted(restarted, name="Nurse B")["rationale"] == "someone else's words"


def test_save_refuses_when_the_case_box_holds_another_case(h, store):
    shown = predicted(h)["shown"]
    with pytest.raises(gr.Error, match="no longer holds the case under review"):
        h.review.save(shown, "Nurse A", "2", "Shock: level 2.", None, "", {}, "level 4: a new case typed in", None)
    assert store.reviews() == []


def test_a_flag_needs_a_reason(h, store):
    shown = predicted(h)["shown"]
    with pytest.raises(gr.Error, match="say why you flag this case"):
        h.review.flag(shown, "Nurse A", "  ", None)
    assert store.events("flag") == []


def test_skip_and_flag_are_recorded(h, store):
    shown = predicted(h)["shown"]
    assert "Skipped" in named(h, h.review.skip(shown, "Nurse A", {}, None))["status"]
    assert "Flagged" in named(h, h.review.flag(shown, "Nurse A", "BP cuff may be wrong", None))["status"]
    assert [(e.kind, e.note) for e in store.events()] == [("skip", ""), ("flag", "BP cuff may be wrong")]
    assert store.reviews() == []


def test_a_markdown_name_is_shown_as_text(h, store):
    """A name like ![n](http://...) made other reviewers' browsers fetch the image."""
    evil = "![n](http://203.0.113.7/x.png)"
    shown = predicted(h)["shown"]
    save(h, shown, name=evil)
    status = predicted(h, name="Nurse B")["status"]
    save(h, predicted(h, name="Nurse B")["shown"], name="Nurse B")
    status = predicted(h, name="Nurse B")["status"]
    assert "![" not in status and "](" not in status and r"\!\[n\]\(http\:" in status


def test_one_key_does_not_accept_a_guess_on_a_text_that_is_no_triage_note(h, store):
    """Once, "hello" was saved as an accepted KTAS 3 with one key."""
    shown = predicted(h, "hello")["shown"]
    first = save(h, shown, label=shown.model_label, rationale=shown.model_rationale)
    assert first["status"] == ui_review.GUESS_CONFIRM and store.reviews() == []
    again = save(h, shown, label=shown.model_label, rationale=shown.model_rationale)  # the same key again
    assert again["status"].startswith("✓ Saved review") and [r.action for r in store.reviews()] == ["accepted"]
    other = predicted(h, "hello there", name="Nurse B")["shown"]  # a decision (here a relabel) needs no second key
    assert save(h, other, name="Nurse B", label="5", rationale="Not a patient.")["status"].startswith("✓ Saved")


def test_the_signed_in_name_is_recorded_not_the_typed_one(h, store):
    import types

    signed_in = types.SimpleNamespace(username="Nurse A")
    shown = predicted(h)["shown"]
    named(h, h.review.save(shown, "alice (typed)", "2", "Shock: level 2.", None, "", {}, None, signed_in))
    assert [r.reviewer for r in store.reviews()] == ["Nurse A"]
    restored = named(h, h.batch.restore({}, "alice (typed)", signed_in))
    assert restored["reviewer"] == gr.update(value="Nurse A", interactive=False)

"""The Gradio app: handlers on a fake predictor, construction, privacy options, CLI, and a loopback round trip."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import pytest

import app
from r2d.checks.consistency import calibrate, load_calibration
from r2d.config import load_config
from r2d.data import Example
from r2d.review import session as rv
from r2d.review.export import export_cases
from r2d.review.store import ACTIONS, ReviewStore
from ui import batch as ui_batch
from ui import blocks, common, server
from ui import improve as ui_improve
from ui import review as ui_review

ROOT = Path(__file__).resolve().parent.parent
CASE = "level 2: chest pain, BP 88/50, HR 124"


@pytest.fixture(autouse=True)
def gradio_temp(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))


@pytest.fixture()
def cfg(tmp_path):
    """The app's config with the database where the shared `store` fixture keeps it, and exports in tmp_path."""
    return load_config(None, [f"app.db_path={tmp_path / 'reviews.sqlite3'}", f"app.export_dir={tmp_path / 'exports'}"])


def named(h: blocks.Handlers, result: dict) -> dict:
    """A handler's {component: value} as {name: value}."""
    names = {id(comp): name for name, comp in h.c.items() if not isinstance(comp, list)}
    names.update({id(comp): f"dash_plot_{i}" for i, comp in enumerate(h.c.get("dash_plots", []))})
    return {names[id(comp)]: value for comp, value in result.items()}


@pytest.fixture()
def unserved(monkeypatch):
    """For tests that build the app and call its handlers but never serve it: gradio's FastAPI app (built three
    times per build_app, 70% of its CPU time) is not built. test_build_demo_*, test_main_*, the handlers on a real
    model and the launched round trips build the real one."""
    monkeypatch.setattr(gr.routes.App, "create_app", staticmethod(lambda *args, **kwargs: None))


# gold rows the fake predictor reads right (it takes the first digit 1-5): its consistency check is measured
# reliable, so the app warns on a disagreement (r2d.checks.consistency)
FAKE_GOLD = [
    Example(f"case {i}", str(i % 5 + 1), f"Findings fit level {i % 5 + 1}.", "rules", f"g{i}") for i in range(20)
]


@pytest.fixture()
def h(fake_predictor, store, cfg, unserved) -> blocks.Handlers:
    """The handlers of a freshly built app (not served), with the fake predictor's consistency check measured."""
    handlers = blocks.build_app(fake_predictor, store, cfg, examples=[CASE])[1]
    handlers.calibration = calibrate(fake_predictor, FAKE_GOLD, fake_predictor.model_id, "FAKE_GOLD")
    assert handlers.calibration.warn_min_probability == 0.5
    return handlers


def predicted(h: blocks.Handlers, case: str = CASE, name: str = "Nurse A") -> dict:
    return named(h, list(h.predict(case, name, None))[-1])


def save(h, shown, name="Nurse A", label="2", rationale="Shock signs: level 2.", rating=None, comment="", queue=None):
    return named(h, h.save(shown, name, label, rationale, rating, comment, queue or {}, None, None))


# --- single case --------------------------------------------------------------------------------


def test_predict_shows_label_first_then_streams_the_rationale(h, fake_predictor):
    steps = [named(h, v) for v in h.predict(CASE, "Nurse A", None)]
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
    live = named(h, h.facts(shown, "Chest pain, SpO2 78%, vitals within adult limits. This fits KTAS 4.", "2"))
    marked = {text: category for text, category in live["facts"] if category}
    assert marked == {
        "SpO2 78%": rv.FACT_UNSUPPORTED,
        "vitals within adult limits": rv.FACT_CONTRADICTED,
        "KTAS 4": rv.FACT_CONTRADICTED,
    }
    assert "3 statement(s) the case does not support" in live["fact_notes"]
    assert "Critical findings the rationale leaves out" in live["fact_notes"]
    fixed = named(h, h.facts(shown, "Chest pain with BP 88/50 (hypotension) and HR 124 (tachycardia).", "2"))
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
    notes = named(h, h.facts(shown, huge, "2"))
    assert notes["facts"] == [] and "limit is 4,000" in notes["fact_notes"] and "paused" in notes["fact_notes"]
    assert named(h, h.diff(shown, huge))["diff"] == []
    before = fake_predictor.calls["predict_label_from_rationale"]
    with pytest.raises(gr.Error, match="limit is 4,000"):
        h.check_event(shown, huge, "2")
    assert read == [] and fake_predictor.calls["predict_label_from_rationale"] == before
    assert named(h, h.facts(shown, "Tachycardia with HR 124.", "2"))["facts"] and len(read) == 1


def test_consistency_needs_a_meaningful_probability(h, cfg):
    assert cfg.app.low_probability == 0.5
    shown = predicted(h)["shown"]
    assert h.check(shown, "level 2 findings", "2").startswith("Consistent")  # 60%
    h.cfg = load_config(None, [f"app.db_path={cfg.app.db_path}", "app.low_probability=0.7"])
    assert h.check(shown, "level 2 findings", "2").startswith("**⚠ Weak") and "below 70%" in h.check(
        shown, "level 2 findings", "2"
    )


def test_the_consistency_line_warns_only_where_it_was_measured_to_mean_something(h):
    """The embedded model's check warned on 13 of 14 cases, a nurse's 'non-urgent' rationale included."""
    shown = predicted(h)["shown"]
    assert h.check(shown, "Stable, walked in: level 5.", "2").startswith(
        "**⚠ Warning: the rationale alone points to 5 — Non-urgent (60%)"
    )
    h.calibration = None  # a model never measured: a hint, never a warning
    assert h.check(shown, "Stable, walked in: level 5.", "2").startswith(
        "Hint (the consistency check of this model was not measured"
    )
    embedded = load_calibration(ROOT / "assets" / "models" / "r2d-ktas-small")
    assert embedded.model_id == "r2d-ktas-small" and embedded.n == 252 and embedded.warn_min_probability is None
    assert embedded.contradicts_gold > 0.8 and max(p for p in embedded.precision.values() if p) < 0.5
    h.calibration, h.predictor.model_id = embedded, "r2d-ktas-small"
    line = h.check(shown, "Non-urgent, no threat: level 5.", "5")
    assert (
        line.startswith(
            "Hint (unreliable for this model: on 252 gold rationales this check pointed away from "
            f"the expert label {embedded.contradicts_gold:.0%} of the time"
        )
        and "⚠" not in line
    )


def test_a_relabel_rechecks_the_consistency_at_once(fake_predictor, store, cfg, unserved):
    """The line stayed as it was after a relabel (it spoke of the previous label)."""
    demo, h = blocks.build_app(fake_predictor, store, cfg, examples=[])
    on_relabel = [fn for fn in demo.fns.values() if (h.c["final_label"]._id, "select") in fn.targets]
    assert any(
        getattr(fn.fn, "__name__", "") == "check_event" and h.c["consistency"] in fn.outputs for fn in on_relabel
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
    assert "your label is 5" in named(h, h.facts(shown, shown.model_rationale, "5"))["fact_notes"]
    assert "Under" not in named(h, h.facts(shown, shown.model_rationale, "4"))["fact_notes"]
    assert "Under" not in named(h, h.facts(shown, shown.model_rationale, "1"))["fact_notes"]
    save(h, shown, label="1", rationale="Unresponsive, BP 72/40, SpO2 84%: resuscitation.")
    summary = named(h, h.dashboard())["dash_summary"]
    assert "less urgent than the case's first-order modifiers allow in **1** of 1" in summary
    assert "the final label still is in **0**" in summary


@pytest.mark.parametrize(
    "case, message", [("", "empty"), ("   \n ", "empty"), ("x" * 1_000_000, "1,000,000 characters")]
)
def test_bad_cases_get_one_message_under_the_case_box(h, case, message):
    """An empty or over-long case painted about ten red Error badges, over the pasted text too:
    now one message under the case box, and no output but that message and the suggestion's placeholder."""
    shown = predicted(h)["shown"]
    [refused] = [named(h, step) for step in h.predict(case, "Nurse A", None)]
    assert set(refused) == {"case_md", "label_md"} and refused["label_md"] == ui_review.NO_SUGGESTION
    assert refused["case_md"].startswith("⚠ **No suggestion: ") and rv.plain(message) in refused["case_md"]
    with pytest.raises(gr.Error, match="no longer holds the case under review"):  # the last suggestion's case
        h.save(shown, "Nurse A", "2", "x", None, "", {}, case, None)


# --- review ---------------------------------------------------------------------------------------


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
    accepted = named(h, h.save(shown, "Nurse A", "1", "Airway at risk: level 1.", "2", "my note", {}, CASE, None))
    assert "(relabelled)" in accepted["status"]
    [r] = store.reviews()
    assert (r.final_label, r.final_rationale, r.comment, r.action) == (
        "1",
        "Airway at risk: level 1.",
        "my note",
        "relabelled",
    )
    untouched = predicted(h, "level 5: sore throat")["shown"]
    named(h, h.save(untouched, "Nurse A", untouched.model_label, untouched.model_rationale, None, "", {}, None, None))
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
    assert h.check(shown, "", "2") == ""  # leaving an empty editor is not an error
    evil = "<script>alert(1)</script> level 2"
    save(h, shown, rationale=evil)
    assert store.reviews()[0].final_rationale == evil  # stored verbatim; components render it as text


def test_undo_retracts_my_last_save_and_gives_its_content_back(h, store):
    shown = predicted(h)["shown"]
    save(h, shown, label="1", rationale="Level 1: airway.", rating="3", comment="unsure")
    undone = named(h, h.undo(shown, "Nurse A", {}, None))
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
        h.undo(shown, "Nurse A", {}, None)
    # saving the same content again counts again (a new row, not "already saved")
    again = save(h, undone["shown"], label="1", rationale="Level 1: airway.", rating="3", comment="unsure")
    assert again["status"].startswith("✓ Saved review #2") and [r.review_id for r in store.latest_reviews()] == [2]


def test_drafts_survive_a_refresh_and_a_restart(h, store, fake_predictor, cfg):
    shown = predicted(h)["shown"]
    h.save_draft(shown, "Nurse A", "1", "Half-written: airway", "2", "ask the doctor", CASE, None)
    h.save_draft(shown, "Nurse B", "4", "someone else's words", None, "", None, None)
    # a late draft event whose boxes belong to another case is not filed under this one
    h.save_draft(shown, "Nurse C", "1", "the previous case's words", None, "", "level 5: another case", None)
    assert store.draft("Nurse C") is None
    restarted = blocks.build_app(fake_predictor, ReviewStore(cfg.app.db_path), cfg, examples=[])[1]
    restored = named(restarted, restarted.restore({}, "Nurse A", None))  # a page load, no batch open
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
    assert "rationale" not in named(restarted, restarted.restore({}, "Nurse A", None))
    assert predicted(restarted, name="Nurse B")["rationale"] == "someone else's words"


def test_save_refuses_when_the_case_box_holds_another_case(h, store):
    shown = predicted(h)["shown"]
    with pytest.raises(gr.Error, match="no longer holds the case under review"):
        h.save(shown, "Nurse A", "2", "Shock: level 2.", None, "", {}, "level 4: a new case typed in", None)
    assert store.reviews() == []


def test_a_flag_needs_a_reason(h, store):
    shown = predicted(h)["shown"]
    with pytest.raises(gr.Error, match="say why you flag this case"):
        h.flag(shown, "Nurse A", "  ", None)
    assert store.events("flag") == []


def test_skip_and_flag_are_recorded(h, store):
    shown = predicted(h)["shown"]
    assert "Skipped" in named(h, h.skip(shown, "Nurse A", {}, None))["status"]
    assert "Flagged" in named(h, h.flag(shown, "Nurse A", "BP cuff may be wrong", None))["status"]
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


# --- batch queue ----------------------------------------------------------------------------------


def write_cases(path: Path, cases: list[str], ids: list[str] | None = None) -> Path:
    rows = [{"question": c} | ({"id": ids[i]} if ids else {}) for i, c in enumerate(cases)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_upload_predicts_and_opens_a_resumable_queue(h, tmp_path, fake_predictor, store, cfg):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b", "level 3 c"], ids=["A-1", "A-2", "A-3"])
    first = named(h, h.upload(str(path), "Nurse A", None))
    batch_id = first["queue"]["batch_id"]
    assert first["queue"]["position"] == 0 and first["queue_md"].startswith("Case 1 of 3")
    assert first["shown"].batch_id == batch_id and first["case"] == "level 1 a" and "A\\-1" in first["case_md"]
    assert fake_predictor.calls["predict_batch"] >= 1
    # A saves and opens the next case to review
    second = save(h, first["shown"], label="1", rationale=first["rationale"], queue=first["queue"])
    assert second["queue"]["position"] == 1 and "1 reviewed" in second["queue_md"]
    assert second["status"].startswith("✓ Saved review #1")
    back = named(h, h.step(second["queue"], -1, "Nurse A", None))
    assert back["status"].startswith("You reviewed this case")
    # a restart: new handlers on the same database, the browser sends its saved queue position
    restarted = blocks.build_app(fake_predictor, ReviewStore(cfg.app.db_path), cfg, examples=[])[1]
    restored = named(restarted, restarted.restore(second["queue"], "Nurse A", None))
    assert restored["reviewer"] == "Nurse A" and restored["queue"] == second["queue"]
    assert restored["case"] == "level 2 b"
    # opening the batch again jumps to the first unreviewed case
    assert named(restarted, restarted.resume(batch_id, "Nurse A", None))["queue"]["position"] == 1


def test_least_confident_order_reviews_the_uncertain_case_first(h, tmp_path, store):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "unclear level 2 b", "level 3 c"])
    first = named(h, h.upload(str(path), "Nurse A", None, "least_confident"))
    assert first["case"] == "unclear level 2 b" and first["queue"]["order"] == "least_confident"
    assert first["order"] == "least_confident"
    prediction = store.batch_items(first["queue"]["batch_id"])[1].prediction
    assert prediction["rationale_probabilities"]["2"] == pytest.approx(0.6)  # stored for the disagreement order
    second = save(h, first["shown"], label="2", rationale=first["rationale"], queue=first["queue"])
    assert second["case"] == "level 1 a" and second["queue"]["order"] == "least_confident"
    undone = named(h, h.undo(second["shown"], "Nurse A", second["queue"], None))
    assert undone["case"] == "unclear level 2 b" and undone["queue"]["position"] == 0  # back where it sits
    as_uploaded = named(h, h.reorder(undone["queue"], "upload", "Nurse A", None))
    assert as_uploaded["case"] == "level 1 a" and as_uploaded["queue"]["order"] == "upload"
    assert h.reorder({}, "least_confident", "Nurse A", None) == {}  # no batch open: nothing to reorder


def test_batch_skip_advances_and_undo_goes_back_to_the_case(h, tmp_path, store):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b", "level 3 c"])
    first = named(h, h.upload(str(path), "Nurse A", None))
    second = named(h, h.skip(first["shown"], "Nurse A", first["queue"], None))
    assert second["queue"]["position"] == 1 and "1 skipped" in second["queue_md"]
    third = save(h, second["shown"], label="4", rationale="Relabelled: level 4.", queue=second["queue"])
    assert third["queue"]["position"] == 2
    undone = named(h, h.undo(third["shown"], "Nurse A", third["queue"], None))
    assert undone["queue"]["position"] == 1 and undone["rationale"] == "Relabelled: level 4."
    assert undone["final_label"] == "4" and "0 reviewed" in undone["queue_md"]


def test_after_the_last_case_the_batch_is_complete_and_r_finds_what_is_left(h, tmp_path, store):
    """After the last case there was no 'batch complete' and no 'next unreviewed', and the next
    save's status mixed in another case."""
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b", "level 3 c"])
    first = named(h, h.upload(str(path), "Nurse A", None))
    last = named(h, h.step(first["queue"], 2, "Nurse A", None))
    back = save(h, last["shown"], label="3", rationale="Level 3.", queue=last["queue"])
    assert back["queue"]["position"] == 0 and back["status"].startswith("✓ Saved review #1 (edited)")
    assert "You reviewed" not in back["status"] and back["case"] == "level 1 a"  # round to what is left
    skipped = named(h, h.skip(back["shown"], "Nurse A", back["queue"], None))
    assert skipped["queue"]["position"] == 1
    todo = named(h, h.next_unreviewed(h.step(skipped["queue"], 1, "Nurse A", None)[h.c["queue"]], "Nurse A", None))
    assert todo["queue"]["position"] == 1  # from the reviewed last case round to the one not skipped
    then = save(h, todo["shown"], label=todo["final_label"], rationale="Seen.", queue=todo["queue"])
    assert then["queue"]["position"] == 0  # only the skipped case is left
    done = save(h, then["shown"], label=then["final_label"], rationale="Seen too.", queue=then["queue"])
    assert (
        done["status"].startswith("✓ Saved review #3")
        and "✓ Batch complete: you have reviewed all 3" in (done["status"])
        and "batch complete: all 3 reviewed" in done["queue_md"]
    )
    assert done["shown"].item_index == 0  # stays on the case just saved
    other = named(h, h.resume(first["queue"]["batch_id"], "Nurse B", None))
    labels = [label for label, _ in other["batch"]["choices"]]
    assert labels[0].endswith("0/3 reviewed by you") and other["queue"]["position"] == 0


def test_blind_review_hides_other_reviewers_until_i_save(h, tmp_path, store):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b"])
    mine = named(h, h.upload(str(path), "Nurse A", None))
    save(h, mine["shown"], label="2", rationale="Nurse A thinks level 2.", comment="A's note", queue=mine["queue"])
    theirs = named(h, h.resume(mine["queue"]["batch_id"], "Nurse B", None))
    assert theirs["queue"]["position"] == 0  # B's queue: the case A reviewed is still B's to do
    assert theirs["rationale"] == theirs["shown"].model_rationale and theirs["final_label"] == "1"
    assert theirs["comment"] == "" and "hidden until you save" in theirs["status"] and "Nurse A" not in theirs["status"]
    after = named(
        h,
        h.step(
            save(h, theirs["shown"], name="Nurse B", label="1", rationale="B: level 1.", queue=theirs["queue"])[
                "queue"
            ],
            -1,
            "Nurse B",
            None,
        ),
    )
    assert "Nurse A chose 2" in after["status"]
    assert sorted((r.reviewer, r.final_label) for r in store.reviewer_reviews()) == [("Nurse A", "2"), ("Nurse B", "1")]
    assert "left out of agreement" not in named(h, h.dashboard("Lead", None))["dash_agreement"]
    # save, read, undo: B has seen A's answer; the review B saves next is not blind and agreement leaves it out
    undone = named(h, h.undo(after["shown"], "Nurse B", after["queue"], None))
    assert "You have seen the other reviewers' answers" in undone["status"]
    save(h, undone["shown"], name="Nurse B", label="2", rationale="B again: level 2.", queue=undone["queue"])
    agreement = named(h, h.dashboard("Lead", None))["dash_agreement"]
    assert "no case has been reviewed by two or more" in agreement and "1 review(s) made after" in agreement


def test_queue_without_a_batch_and_a_stale_or_forged_saved_queue(h):
    with pytest.raises(gr.Error, match="open a batch first"):
        h.step({}, 1, "Nurse A", None)
    for saved in ({"batch_id": "b-gone", "position": 3}, ["not", "a", "dict"], {"batch_id": 5}):
        restored = named(h, h.restore(saved, "", None))
        assert restored["queue"] == {} and restored["queue_md"] == ""
        assert restored["reviewer"] == gr.skip()  # no saved name: a name being typed is not wiped


def test_broken_upload_names_file_and_line_in_one_message(h, tmp_path, store):
    path = tmp_path / "cases.csv"
    path.write_text('question\n"fine"\n"broken","row"\n')
    refused = named(h, h.upload(str(path), "Nurse A", None))
    assert set(refused) == {"up_status", "up_map", "up_pending"}  # no case, queue or editor output touched
    assert refused["up_status"].startswith("⚠ **Not uploaded: " + rv.plain("cases.csv:3: the row has a different"))
    assert refused["up_map"]["visible"] is False and store.list_batches() == []


def test_a_semicolon_file_without_a_case_column_is_read_once_its_columns_are_chosen(h, tmp_path, store, monkeypatch):
    """A semicolon CSV naming no case column was refused with a message about quotes and commas."""
    cache = tmp_path / "gradio" / "77aa"
    cache.mkdir(parents=True)
    path = cache / "notes.csv"
    path.write_text("mrn;note;ward\nA-1;level 2: chest pain, BP 88/50;ED\nA-2;level 4: ankle sprain;ED\n")
    asked = named(h, h.upload(str(path), "Nurse A", None))
    assert rv.plain("notes.csv:1: no case text column") in asked["up_status"] and asked["up_map"]["visible"] is True
    assert asked["up_case_col"]["choices"] == ["mrn", "note", "ward"] and asked["up_pending"] == str(path)
    assert asked["up_id_col"]["value"] == ui_batch.NO_ID_COLUMN and path.exists()  # kept until the columns are chosen
    with pytest.raises(gr.Error, match="choose the column that holds the case text"):
        h.upload_mapped(str(path), None, None, "Nurse A", None)
    opened = named(h, h.upload_mapped(str(path), "note", "mrn", "Nurse A", None))
    assert opened["case"] == "level 2: chest pain, BP 88/50" and "upload id A\\-1" in opened["case_md"]
    assert opened["up_status"] == "✓ 2 case(s) uploaded from notes\\.csv." and opened["up_map"]["visible"] is False
    assert not path.exists() and len(store.list_batches()) == 1
    for gone in (str(path), str(tmp_path / "elsewhere.csv"), None):  # read once; never a file outside the cache
        with pytest.raises(gr.Error, match="upload the file again"):
            h.upload_mapped(gone, "note", None, "Nurse A", None)


def test_one_key_does_not_accept_a_guess_on_a_text_that_is_no_triage_note(h, store):
    """Once, "hello" was saved as an accepted KTAS 3 with one key."""
    shown = predicted(h, "hello")["shown"]
    first = save(h, shown, label=shown.model_label, rationale=shown.model_rationale)
    assert first["status"] == ui_review.GUESS_CONFIRM and store.reviews() == []
    again = save(h, shown, label=shown.model_label, rationale=shown.model_rationale)  # the same key again
    assert again["status"].startswith("✓ Saved review") and [r.action for r in store.reviews()] == ["accepted"]
    other = predicted(h, "hello there", name="Nurse B")["shown"]  # a decision (here a relabel) needs no second key
    assert save(h, other, name="Nurse B", label="5", rationale="Not a patient.")["status"].startswith("✓ Saved")


# --- dashboard and export -------------------------------------------------------------------------


def test_dashboard_has_a_summary_and_six_figures(h):
    save(h, predicted(h)["shown"], label="3", rationale="level 3 really", rating="2")
    result = named(h, h.dashboard())
    assert "**1** reviewed" in result["dash_summary"]
    figures = [v for k, v in result.items() if k.startswith("dash_plot_")]
    assert len(figures) == 6 and all(isinstance(f, go.Figure) for f in figures)


def test_dashboard_shows_agreement_disagreements_flags_and_adjudication(h, store):
    for case, labels in ((CASE, ("2", "2")), ("level 4: ankle sprain", ("4", "5")), ("level 5: sore throat", ("5",))):
        for who, label in zip(("Nurse A", "Nurse B"), labels):
            save(h, predicted(h, case, who)["shown"], name=who, label=label, rationale=f"Level {label} fits.")
    h.flag(predicted(h, CASE)["shown"], "Nurse A", "check the BP", None)
    result = named(h, h.dashboard("Lead nurse", None))
    assert "on 2 case(s) reviewed by 2+ of 2 reviewers" in result["dash_agreement"]
    assert "Cohen's κ Nurse A vs Nurse B" in result["dash_agreement"]
    assert "(n = 2, 50% agree)" in result["dash_agreement"]
    assert "**1 case(s) to adjudicate:**" in result["adj_md"]
    [(_, case_id)] = result["adj_case"]["choices"]
    view = result["adj_view"]
    assert "ankle sprain" in view and "#3 · Nurse A" in view and "#4 · Nurse B" in view
    assert "<del>4 </del><ins>5 </ins>" in view.replace("Level ", "")
    assert [v for _, v in result["adj_pick"]["choices"]] == ["3", "4", "write"]
    assert (result["adj_label"], result["adj_rationale"]) == ("5", "Level 5 fits.")
    assert [f[1:3] for f in result["dash_flags"]] == [["Nurse A", "check the BP"]]
    assert "**3** reviewed" in result["dash_summary"]  # one review per case counts, not one per reviewer
    adopted = named(h, h.adjudicate(case_id, "3", None, "", "Lead nurse", None))
    assert "Review #3" in adopted["dash_status"] and "Nothing to adjudicate" in adopted["adj_md"]
    assert adopted["adj_case"]["choices"] == [] and adopted["adj_view"] == ""
    with pytest.raises(gr.Error, match="pick a review"):
        h.adjudicate(case_id, None, None, "", "Lead nurse", None)
    with pytest.raises(gr.Error, match="not a current review of this case"):
        h.adjudicate(case_id, "99", None, "", "Lead nurse", None)
    with pytest.raises(gr.Error, match="only one review"):
        h.adjudicate(store.reviewer_reviews()[-1].case_id, "5", None, "", "Lead nurse", None)


def test_a_written_final_settles_a_rationale_disagreement_and_a_reviewer_cannot_pick_their_own(h, store):
    """The same label with two different rationales used to be 'agreement'; an adjudicator who
    reviewed the case may concede to the other reviewer but not pick their own review while someone else could."""
    for who, text in (("Nurse A", "HR 124 and BP 88/50: shock."), ("Nurse B", "Chest pain with tachycardia.")):
        save(h, predicted(h, CASE, who)["shown"], name=who, label="2", rationale=text)
    save(h, predicted(h, "level 5: sore throat", "Nurse C")["shown"], name="Nurse C", label="5", rationale="Minor.")
    result = named(h, h.dashboard("Nurse A", None))
    assert "**1 case(s) to adjudicate:**" in result["adj_md"] and "rationales differ" in result["adj_view"]
    [(_, case_id)] = result["adj_case"]["choices"]
    mine, theirs = (r.review_id for r in store.reviewer_reviews(case_id))
    with pytest.raises(gr.Error, match="you reviewed this case yourself.*Nurse C"):
        h.adjudicate(case_id, str(mine), None, "", "Nurse A", None)
    with pytest.raises(gr.Error, match="you reviewed this case yourself"):
        h.adjudicate(case_id, "write", "2", "My own words.", "Nurse A", None)
    written = named(
        h, h.adjudicate(case_id, "write", "1", "BP 88/50 with HR 124: shock, resuscitate.", "Nurse C", None)
    )
    assert "Your final (label 1" in written["dash_status"] and "Nothing to adjudicate" in written["adj_md"]
    [event] = store.events("adjudicate")
    assert event.reviewer == "Nurse C" and event.note == "final written by the adjudicator"
    assert "on 1 case(s) reviewed by 2+ of 2 reviewers" in written["dash_agreement"]  # the final is no rater
    chosen = next(c for c in export_cases(store) if c.review.case_id == case_id)
    assert (chosen.resolution, chosen.review.final_label, chosen.review.reviewer) == ("adjudicated", "1", "Nurse C")
    assert h.adjudicate(case_id, str(theirs), None, "", "Nurse A", None)  # conceding is allowed
    assert store.events("adjudicate")[-1].note == ""


def test_names_are_said_to_be_unverified_without_sign_in(unserved, fake_predictor, store, cfg):
    def notes(demo):
        return " ".join(str(c.value) for c in demo.blocks.values() if isinstance(c, gr.Markdown))

    assert "Names are not verified" in notes(blocks.build_app(fake_predictor, store, cfg, examples=[])[0])
    signed = notes(blocks.build_app(fake_predictor, store, cfg, examples=[], signed_in=True)[0])
    assert "Names are not verified" not in signed and "Signed in" in signed


def review_cases(h: blocks.Handlers, rationale: str = "Shock signs: level 2.") -> None:
    for case in (CASE, "level 5: sore throat", "level 4: ankle sprain"):
        save(h, predicted(h, case)["shown"], rationale=rationale, rating="4")


def zip_names(result: dict) -> list[str]:
    import zipfile

    [archive] = result["ex_files"]
    with zipfile.ZipFile(archive) as z:
        return sorted(z.namelist())


def test_export_without_findings_writes_files_at_once(h, cfg):
    review_cases(h)
    result = named(h, h.export_start(list(ACTIONS), 0, False, 0.1, False, "Nurse A", None))
    assert result["ex_findings"] == [] and "No likely" in result["ex_findings_md"]
    assert result["ex_row"]["visible"] is False and "Exported 3" in result["ex_summary"]
    assert zip_names(result) == ["export_meta.json", "train.jsonl", "val.jsonl"]
    [folder] = Path(cfg.app.export_dir).iterdir()
    # a name nobody can guess (4 of 4 timestamped folders were found in 900 guesses)
    assert re.fullmatch(r"export-\d{8}-\d{6}-[0-9a-f]{16}", folder.name)
    assert not Path(result["ex_files"][0]).is_relative_to(Path(cfg.app.export_dir))  # the download is a copy


def test_export_with_findings_waits_for_confirmation(h, cfg):
    review_cases(h, rationale="Spoke to Mr. John Smith on 555-123-4567: level 2.")
    args = (list(ACTIONS), 0, False, 0.1, True, "Nurse A")
    result = named(h, h.export_start(*args, None))
    assert {(f[2], f[3]) for f in result["ex_findings"]} == {("name", "Mr. John Smith"), ("phone", "555-123-4567")}
    assert "likely patient identifier" in result["ex_findings_md"] and result["ex_row"]["visible"] is True
    assert result["ex_files"] is None
    assert not Path(cfg.app.export_dir).exists()  # nothing written before the user decides
    confirmed = named(h, h.export_confirm(*args, result["ex_seen"], None))
    assert zip_names(confirmed) == ["export_meta.json", "test.csv", "train.jsonl", "val.jsonl"]


def test_export_anyway_needs_the_scan_this_session_saw(h, cfg):
    """The API's export_anyway exported without a name and without the identifier confirmation."""
    review_cases(h, rationale="Spoke to Mr. John Smith: level 2.")
    args = (list(ACTIONS), 0, False, 0.1, False, "Nurse A")
    with pytest.raises(gr.Error, match="press 'Export for Stage 2' first"):
        h.export_confirm(*args, None, None)
    seen = named(h, h.export_start(*args, None))["ex_seen"]
    save(h, predicted(h, "level 3: new case")["shown"], rationale="Also saw Mrs. Brown: level 2.")
    with pytest.raises(gr.Error, match="changed since"):
        h.export_confirm(*args, seen, None)  # a new finding since the scan: look again
    with pytest.raises(gr.Error, match="Reviewer"):
        h.export_start(list(ACTIONS), 0, False, 0.1, False, "", None)
    assert not Path(cfg.app.export_dir).exists()


def test_export_with_nothing_to_export(h):
    with pytest.raises(gr.Error, match="no current review matches"):
        h.export_start(["accepted"], 0, False, 0.1, False, "Nurse A", None)


# --- construction, privacy, CLI -------------------------------------------------------------------------


def test_build_demo_wires_everything_without_calling_the_model(fake_predictor, store, cfg):
    demo = blocks.build_app(fake_predictor, store, cfg, examples=[CASE])[0]
    assert isinstance(demo, gr.Blocks) and demo.analytics_enabled is False
    assert sum(fake_predictor.calls.values()) == 0
    api_names = {fn.api_name for fn in demo.fns.values()}
    assert {"predict", "submit", "accept", "check", "upload_batch", "resume_batch", "next_case", "export"} <= api_names
    components = list(demo.blocks.values())
    radios = [c for c in components if isinstance(c, gr.Radio)]
    assert any(("1 — Resuscitation", "1") in [tuple(x) for x in r.choices] for r in radios)  # labels are a Radio
    assert not any(
        isinstance(c, gr.Dropdown) and ("1 — Resuscitation", "1") in [tuple(x) for x in c.choices] for c in components
    )
    texts = " ".join(str(c.value) for c in components if isinstance(c, gr.Markdown))
    assert "not a medical device" in texts and "only when no text box, radio or list has focus" in texts
    assert "First-order modifiers" in texts and "Resuscitation" in texts  # the KTAS reference beside the task


def test_build_demo_reads_examples_when_present(fake_predictor, store, cfg, tmp_path, monkeypatch):
    write_cases(tmp_path / "ex.jsonl", ["level 3 example"])
    monkeypatch.setattr(blocks, "EXAMPLES_DIR", tmp_path)
    assert blocks.load_example_cases(tmp_path) == ["level 3 example"]
    monkeypatch.setattr(blocks, "load_example_cases", lambda: [])
    assert isinstance(blocks.build_app(fake_predictor, store, cfg)[0], gr.Blocks)  # an empty examples/ is fine


def test_launch_options_are_private(cfg):
    kwargs = server.launch_kwargs(cfg)
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["share"] is False
    assert kwargs["run_history"] is False and "runs" not in kwargs["footer_links"]
    assert kwargs["enable_monitoring"] is False and kwargs["mcp_server"] is False
    assert "keydown" in kwargs["js"]


def test_main_without_the_default_model_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match=r"python -m training.default_model.*--model"):
        app.main([])


def test_flags_override_the_config(tmp_path):
    args = app.parse_args(
        [
            "--model",
            "/models/x",
            "--quantization",
            "none",
            "--db",
            str(tmp_path / "r.db"),
            "--port",
            "7999",
            "--set",
            "app.low_probability=0.3",
        ]
    )
    cfg = app.resolve_config(args)
    assert (cfg.model.name_or_path, cfg.model.quantization) == ("/models/x", "none")
    assert (cfg.app.db_path, cfg.app.port, cfg.app.low_probability) == (str(tmp_path / "r.db"), 7999, 0.3)
    with pytest.raises(Exception, match="unknown config key"):
        app.resolve_config(app.parse_args(["--set", "app.nope=1"]))


def test_the_model_brings_its_own_generation_lengths(current_model):
    from r2d.config import load_config as load

    own = load(current_model / "r2d_config.json").generation
    cfg = app.resolve_config(app.parse_args(["--model", str(current_model)]))
    assert cfg.generation == own and own.max_rationale_tokens != load(None).generation.max_rationale_tokens
    cfg = app.resolve_config(
        app.parse_args(["--model", str(current_model), "--set", "generation.max_rationale_tokens=77"])
    )
    assert cfg.generation.max_rationale_tokens == 77 and cfg.generation.max_input_tokens == own.max_input_tokens


# --- a real round trip ---------------------------------------------------------------------------------


# what the API returns for a "show a case" event: the outputs without the per-session state
API_OUTPUTS = [n for n in common.SHOWN_OUTPUTS + common.QUEUE_OUTPUTS if n != "shown"]


@pytest.mark.slow
def test_gradio_client_round_trip_on_loopback(launched_app, tmp_path):
    from gradio_client import Client

    client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    result = client.predict(CASE, "Nurse C", api_name="/predict")
    values = dict(zip(API_OUTPUTS, result))
    assert values["case"] == CASE and "2 — Emergency" in values["label_md"]
    assert values["rationale"] == launched_app.predictor.explain(CASE, "2")
    submission = ("Nurse C", "3", "Edited: level 3.", "4", "", {}, CASE)
    saved = dict(zip(API_OUTPUTS, client.predict(*submission, api_name="/submit")))
    assert saved["status"].startswith("✓ Saved review")
    again = dict(zip(API_OUTPUTS, client.predict(*submission, api_name="/submit")))
    assert again["status"].startswith("Already")
    [stored] = launched_app.store.reviews()
    assert (stored.reviewer, stored.final_label, stored.action) == ("Nurse C", "3", "relabelled")
    for case, message in (("", "empty"), ("x" * 1_000_000, "1,000,000 characters")):
        refused = dict(zip(API_OUTPUTS, client.predict(case, "Nurse C", api_name="/predict")))
        assert rv.plain(message) in refused["case_md"] and refused["label_md"] == ui_review.NO_SUGGESTION
    assert len(launched_app.store.reviews()) == 1
    assert launched_app.external == []


def test_main_runs_the_app_on_a_real_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    """main() loads a saved model directory through r2d and launches with the private options."""
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda demo, **kwargs: launched.update(demo=demo, **kwargs))
    app.main(
        [
            "--model",
            str(tiny_model_dir),
            "--quantization",
            "none",
            "--db",
            str(tmp_path / "r.sqlite3"),
            "--port",
            "7999",
            "--set",
            f"app.export_dir={tmp_path / 'exports'}",
        ]
    )
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == 7999
    assert launched["run_history"] is False and isinstance(launched["demo"], gr.Blocks)
    assert launched["auth"] is None


def test_main_with_auth_signs_reviewers_in(tiny_model_dir, tmp_path, monkeypatch):
    from r2d.review import auth

    users = tmp_path / "users.txt"
    auth.add_user(users, "Nurse A", "s3cret-pass")
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda demo, **kwargs: launched.update(demo=demo, **kwargs))
    app.main(
        [
            "--model",
            str(tiny_model_dir),
            "--quantization",
            "none",
            "--db",
            str(tmp_path / "r.sqlite3"),
            "--auth",
            str(users),
            "--set",
            f"app.export_dir={tmp_path / 'exports'}",
        ]
    )
    assert launched["auth"]("Nurse A", "s3cret-pass") and not launched["auth"]("Nurse A", "wrong")
    with pytest.raises(SystemExit, match="does not exist"):
        app.main(["--model", str(tiny_model_dir), "--auth", str(tmp_path / "missing.txt")])


def test_handlers_on_a_real_tiny_model(tiny_model_dir, store, tmp_path):
    """The same handlers on the real Predictor (random weights: contracts only, never the text)."""
    cfg = load_config(
        None,
        [
            f"model.name_or_path={tiny_model_dir}",
            "model.quantization=none",
            f"app.db_path={store.path}",
            "generation.max_rationale_tokens=8",
        ],
    )
    predictor = app.load_app_predictor(cfg)
    h = blocks.build_app(predictor, store, cfg, examples=[])[1]
    last = predicted(h, "72-year-old man, crushing chest pain, sweating")
    shown = last["shown"]
    assert shown.model_label in predictor.label_set and sum(shown.probabilities.values()) == pytest.approx(1.0)
    assert list(shown.probabilities) == list(predictor.label_set)
    save(h, shown, label="2", rationale="Chest pain with sweating: emergency.", rating="3")
    [r] = store.reviews()
    assert r.model_id == predictor.model_id and r.consistency_label in predictor.label_set
    arrest = predicted(h, "70-year-old man, pulseless, unresponsive, BP 60/30 mmHg, SpO2 70%.")
    # whatever a random model suggests, the guard speaks exactly when it is less urgent than KTAS 1
    assert ("Under-triage risk" in arrest["label_md"]) == (arrest["shown"].model_label != "1")
    path = write_cases(tmp_path / "cases.jsonl", ["sore throat, walked in", "ankle sprain, pain 3 of 10"])
    queue = named(h, h.upload(str(path), "Nurse A", None))
    assert queue["queue_md"].startswith("Case 1 of 2") and queue["shown"].model_label in predictor.label_set


@pytest.mark.slow
def test_concurrent_reviewers_through_the_api_lose_nothing(launched_app, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    def review_as(k: int) -> str:
        client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / f"dl{k}"))
        case = f"level {k % 5 + 1}: case {k}"
        client.predict(case, f"Nurse {k}", api_name="/predict")
        result = client.predict(f"Nurse {k}", str(k % 5 + 1), f"Rationale {k}.", None, "", {}, case, api_name="/submit")
        return dict(zip(API_OUTPUTS, result))["status"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(review_as, range(6)))
    assert all(s.startswith("✓ Saved review") for s in statuses)
    stored = launched_app.store.reviews()
    assert sorted(r.reviewer for r in stored) == [f"Nurse {k}" for k in range(6)]
    assert {r.case_text for r in stored} == {f"level {k % 5 + 1}: case {k}" for k in range(6)}


@pytest.mark.slow
def test_exports_are_not_served_and_export_anyway_needs_a_scan(launched_app, tmp_path):
    """Exports were served at /gradio_api/file=r2d_exports/export-.../train.jsonl and the API's
    export_anyway skipped the identifier confirmation."""
    import httpx
    from gradio_client import Client

    client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    for k, case in enumerate(("level 2: chest pain", "level 4: ankle sprain", "level 5: sore throat")):
        client.predict(case, "Nurse C", api_name="/predict")
        client.predict("Nurse C", str(k + 2), f"Seen: level {k + 2}.", None, "", {}, case, api_name="/submit")
    with pytest.raises(Exception, match="Export for Stage 2' first"):
        Client(launched_app.url, verbose=False).predict(
            list(ACTIONS), 0, False, 0.1, False, "Nurse C", api_name="/export_anyway"
        )
    assert not (launched_app.tmp_path / "exports").exists()
    outputs = client.predict(list(ACTIONS), 0, False, 0.1, False, "Nurse C", api_name="/export")
    [downloaded] = [o for o in outputs if isinstance(o, list) and o and str(o[0]).endswith(".zip")][0]
    import zipfile

    assert "train.jsonl" in zipfile.ZipFile(downloaded).namelist()  # served from the app's own cache folder
    assert list((launched_app.tmp_path / "gradio").glob("r2d-download-*/export-*.zip"))
    [folder] = (launched_app.tmp_path / "exports").iterdir()
    for path in (folder / "train.jsonl", folder / "export_meta.json"):
        response = httpx.get(f"{launched_app.url}gradio_api/file={path}")
        assert response.status_code in (403, 404) and "question" not in response.text
    assert launched_app.external == []


def test_gradio_cache_is_a_private_folder_swept_of_dead_apps(tmp_path, monkeypatch):
    """The download zip sat world-readable in Gradio's shared /tmp/gradio, never deleted."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{server.TEMP_PREFIX}{gone.stdout.strip()}-abc"
    alive = tmp_path / f"{server.TEMP_PREFIX}{os.getpid()}-def"
    for folder in (dead, alive):
        (folder / "h").mkdir(parents=True)
        (folder / "h" / "export.zip").write_text("train rows")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    exits = []
    monkeypatch.setattr(server.atexit, "register", lambda fn, *args: exits.append((fn, args)))
    folder = server.use_private_temp_dir()
    assert os.environ["GRADIO_TEMP_DIR"] == str(folder) and folder.parent == tmp_path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not dead.exists() and alive.exists()  # a killed app's cache is swept; a running one's is not
    [(fn, args)] = exits
    fn(*args)
    assert not folder.exists()  # deleted when the app exits


def test_an_upload_is_deleted_once_read_and_downloads_are_private(h, tmp_path, monkeypatch, store):
    cache = tmp_path / "gradio"
    (cache / "0f3c").mkdir(parents=True)
    path = write_cases(cache / "0f3c" / "cases.jsonl", ["level 2: chest pain", "level 4: sprain"])
    named(h, h.upload(str(path), "Nurse A", None))
    assert len(store.list_batches()) == 1 and not path.exists() and not path.parent.exists()
    broken = cache / "9a9a" / "broken.csv"
    broken.parent.mkdir()
    broken.write_text("id,question\n1,\n")
    refused = named(h, h.upload(str(broken), "Nurse A", None))
    assert rv.plain("the case text (question) is empty") in refused["up_status"]
    assert not broken.exists()  # refused, and deleted all the same
    assert server.CACHE_CLEANUP_S[1] <= 3600
    save(h, predicted(h)["shown"])
    save(h, predicted(h, "level 4: ankle sprain")["shown"], label="4", rationale="Sprain: level 4.")
    [zipped] = named(h, h.export_start(list(ACTIONS), 0, False, 0.1, False, "Nurse A", None))["ex_files"]
    assert Path(zipped).is_relative_to(cache) and stat.S_IMODE(Path(zipped).stat().st_mode) == 0o600


def test_the_signed_in_name_is_recorded_not_the_typed_one(h, store):
    import types

    signed_in = types.SimpleNamespace(username="Nurse A")
    shown = predicted(h)["shown"]
    named(h, h.save(shown, "alice (typed)", "2", "Shock: level 2.", None, "", {}, None, signed_in))
    assert [r.reviewer for r in store.reviews()] == ["Nurse A"]
    restored = named(h, h.restore({}, "alice (typed)", signed_in))
    assert restored["reviewer"] == gr.update(value="Nurse A", interactive=False)


# --- improve the model ----------------------------------------------------------------------------------


@pytest.fixture()
def improving(tmp_path, store, unserved, current_model, original_data, reviewed_export, fake_predictor):
    """Handlers whose model is the tiny saved model and whose export folder holds one reviewed export."""
    import shutil

    cfg = load_config(
        None,
        [
            f"app.db_path={store.path}",
            f"app.export_dir={tmp_path / 'exports'}",
            f"app.runs_dir={tmp_path / 'runs'}",
            f"app.improve_data_dir={original_data}",
            f"model.name_or_path={current_model}",
            "model.quantization=none",
        ],
    )
    shutil.copytree(reviewed_export, tmp_path / "exports" / "export-1")
    return blocks.build_app(fake_predictor, store, cfg, examples=[])[1]


def test_improve_offers_only_finished_exports(improving, tmp_path):
    import shutil

    exports = tmp_path / "exports"
    shutil.copytree(exports / "export-1", exports / ".export-9.partial-x1")  # a killed export, renamed never
    shutil.copytree(exports / "export-1", exports / "export-8")
    (exports / "export-8" / "export_meta.json").unlink()  # meta is written last: this one never finished
    h = improving
    assert named(h, h.improve_refresh())["im_export"]["choices"] == ["export-1"]
    for export in ("export-8", ".export-9.partial-x1"):
        with pytest.raises(gr.Error, match="choose an export first"):
            h.improve_start(export, str(tmp_path), 3, False, "Nurse A", None)


def test_improve_refuses_what_it_cannot_run(improving, tmp_path):
    h = improving
    lists = named(h, h.improve_refresh())
    assert lists["im_export"]["value"] == "export-1" and lists["im_run"]["value"] is None
    for export in (None, "../exports/export-1", "missing"):
        with pytest.raises(gr.Error, match="choose an export first"):
            h.improve_start(export, str(tmp_path), 3, False, "Nurse A", None)
    with pytest.raises(gr.Error, match="enter your name"):
        h.improve_start("export-1", str(tmp_path), 3, False, "", None)
    for elsewhere in (tmp_path / "nowhere", tmp_path, "/etc"):  # only the configured folder; no path said back
        with pytest.raises(gr.Error, match="folder this app was started with") as refused:
            h.improve_start("export-1", str(elsewhere), 3, False, "Nurse A", None)
        assert str(tmp_path) not in str(refused.value) and "/etc" not in str(refused.value)
    with pytest.raises(gr.Error, match="enter your name"):
        h.improve_cancel("improve-none", "", None)
    with pytest.raises(gr.Error, match="no run 'improve-none'"):
        h.improve_switch("improve-none", "Nurse A", None)
    assert named(h, h.improve_poll(None))["im_status"] == "No run yet."


@pytest.mark.shared_data
def test_improve_prepares_the_missing_original_data_itself(
    tmp_path, store, unserved, current_model, reviewed_export, fake_predictor, shared_data
):
    """Improve said "data/ktas lacks train.jsonl ... prepare it first" and needed a terminal."""
    import shutil

    data = tmp_path / "data-not-prepared"
    cfg = load_config(
        None,
        [
            f"app.db_path={store.path}",
            f"app.export_dir={tmp_path / 'exports'}",
            f"app.runs_dir={tmp_path / 'runs'}",
            f"app.improve_data_dir={data}",
            f"app.improve_source={shared_data / 'ktas' / 'data.csv'}",
            f"model.name_or_path={current_model}",
            "model.quantization=none",
        ],
    )
    shutil.copytree(reviewed_export, tmp_path / "exports" / "export-1")
    h = blocks.build_app(fake_predictor, store, cfg, examples=[])[1]
    started = named(h, h.improve_start("export-1", str(data), 3, False, "Nurse A", None))
    run_id = started["im_run"]["value"]
    h.runs.cancel(run_id)  # the run itself is test_improve_runs_compares_and_switches_the_suggestions's
    assert (
        "Prepared the original training data first, from the public KTAS data (train 888, val 127, test 252"
        in started["im_plan"]
    )
    assert {p.name for p in data.iterdir()} >= {"train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"}
    again = named(h, h.improve_start("export-1", str(data), 3, False, "Nurse A", None))  # prepared once only
    h.runs.cancel(again["im_run"]["value"])
    assert "Prepared" not in again["im_plan"]


def test_improve_says_how_long_a_run_takes_and_warns_on_few_held_out_cases(improving):
    """A 1-step run took 6 min 23 s without saying so, and compared on n = 1 without a warning."""
    h = improving
    plan = named(h, h.improve_plan("export-1", 200))["im_plan"]
    assert plan.startswith(
        "**About 5 min** on one core: 200 training steps, then both models score 1 held-out "
        "reviewed case(s) and 5 public test cases."
    )
    assert "Only 1 reviewed case(s) are held out" in plan and "fewer than 20" in plan
    assert named(h, h.improve_plan(None, 200))["im_plan"].startswith("Choose an export")
    assert "0 training steps" in named(h, h.improve_plan("export-1", "2x"))["im_plan"]


def test_improve_progress_is_a_bar_not_an_input(improving):
    """The progress bar was a slider."""
    h = improving
    assert not isinstance(h.c["im_progress"], gr.Slider) and isinstance(h.c["im_progress"], gr.HTML)
    assert named(h, h.improve_poll(None))["im_progress"] == ui_improve.progress_bar(0)
    bar = ui_improve.progress_bar
    assert '<progress max="100" value="42"' in bar(42) and 'value="100"' in bar(250)


def test_the_model_in_use_shows_on_every_page_survives_a_restart_and_can_be_undone(
    tiny_model_dir, store, tmp_path, unserved
):
    """Other pages kept the old model's name, and a restart went back to the embedded model. The
    finished run here is a real tiny model in a run folder, as training.improve leaves it (a full model)."""
    import shutil

    run = tmp_path / "runs" / "improve-20261204-000000-test"
    shutil.copytree(tiny_model_dir, run / "model")
    (run / "run.json").write_text(json.dumps({"status": "done"}))
    cfg = load_config(
        None,
        [
            f"model.name_or_path={tiny_model_dir}",
            "model.quantization=none",
            f"app.db_path={store.path}",
            f"app.runs_dir={tmp_path / 'runs'}",
            "generation.max_rationale_tokens=8",
        ],
    )
    start = app.load_app_predictor(cfg)
    h, other_page = blocks.build_app(start, store, cfg, examples=[])[1], None
    with pytest.raises(gr.Error, match="already uses the model it was started with"):
        h.improve_revert("Nurse A", None)
    switched = named(h, h.improve_switch(run.name, "Nurse A", None))
    assert h.predictor.model_id.endswith(f"+{run.name}") and "also after a restart" in switched["im_status"]
    assert run.name in switched["model_md"] and "Back to the starting model" in switched["model_md"]
    other_page = predicted(h, "72-year-old man, chest pain")  # a page that loaded before the switch
    assert run.name in other_page["model_md"] and other_page["shown"].model_id == h.predictor.model_id
    restarted = blocks.build_app(app.load_app_predictor(cfg), store, cfg, examples=[])[1]
    restarted.restore_model()
    assert restarted.predictor.model_id == h.predictor.model_id and run.name in restarted._model_line()
    back = named(restarted, restarted.improve_revert("Nurse A", None))
    assert restarted.predictor.model_id == start.model_id and "again, also after a restart" in back["im_status"]
    assert run.name not in back["model_md"]
    again = blocks.build_app(app.load_app_predictor(cfg), store, cfg, examples=[])[1]
    again.restore_model()
    assert again.predictor.model_id == start.model_id


@pytest.mark.slow
def test_improve_runs_compares_and_switches_the_suggestions(improving, original_data):
    import time as clock

    h = improving
    started = named(h, h.improve_start("export-1", str(original_data), 3, False, "Nurse A", None))
    run_id = started["im_run"]["value"]
    deadline = clock.monotonic() + 240
    while clock.monotonic() < deadline:
        polled = named(h, h.improve_poll(run_id))
        if "Running" not in polled["im_status"]:
            break
        clock.sleep(0.5)
    assert polled["im_status"].startswith("**✓ Done"), polled["im_log"]
    assert "| reviewed cases held out (n=1) | accuracy |" in polled["im_table"]
    assert 'value="100"' in polled["im_progress"] and polled["im_switch"]["interactive"] is True
    assert "Too few cases to compare on reviewed cases held out (n=1)" in polled["im_table"]
    before = h.predictor
    switched = named(h, h.improve_switch(run_id, "Nurse A", None))
    assert h.predictor is not before and h.predictor.model_id.endswith(f"+{run_id}")
    assert run_id in switched["model_md"] and "every later review records it" in switched["im_status"]
    after = named(h, h.improve_poll(run_id))  # the 2-s poll keeps saying so, and offers no second switch
    assert "In use" in after["im_status"] and after["im_switch"]["interactive"] is False
    shown = predicted(h, "level 2: chest pain, BP 88/50, HR 124")["shown"]
    assert shown.model_id == h.predictor.model_id  # later suggestions (and so their reviews) name the new model

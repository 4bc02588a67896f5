"""The Dashboard tab and its adjudication panel (ui/dashboard.py, ui/adjudication.py)."""

from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go
import pytest
from ui_kit import CASE, named, predicted, save

from r2d.review.export import export_cases

pytestmark = pytest.mark.usefixtures("gradio_temp")


def test_dashboard_has_a_summary_and_six_figures(h):
    save(h, predicted(h)["shown"], label="3", rationale="level 3 really", rating="2")
    result = named(h, h.dashboard.show())
    assert "**1** reviewed" in result["summary"]
    figures = [v for k, v in result.items() if k.startswith("plot_")]
    assert len(figures) == 6 and all(isinstance(f, go.Figure) for f in figures)


def test_dashboard_shows_agreement_disagreements_flags_and_adjudication(h, store):
    for case, labels in ((CASE, ("2", "2")), ("level 4: ankle sprain", ("4", "5")), ("level 5: sore throat", ("5",))):
        for who, label in zip(("Nurse A", "Nurse B"), labels):
            save(h, predicted(h, case, who)["shown"], name=who, label=label, rationale=f"Level {label} fits.")
    h.review.flag(predicted(h, CASE)["shown"], "Nurse A", "check the BP", None)
    result = named(h, h.dashboard.show("Lead nurse", None))
    assert "on 2 case(s) reviewed by 2+ of 2 reviewers" in result["agreement"]
    assert "Cohen's κ Nurse A vs Nurse B" in result["agreement"]
    assert "(n = 2, 50% agree)" in result["agreement"]
    assert "**1 case(s) to adjudicate:**" in result["open_cases"]
    [(_, case_id)] = result["case"]["choices"]
    view = result["view"]
    assert "ankle sprain" in view and "#3 · Nurse A" in view and "#4 · Nurse B" in view
    assert "<del>4 </del><ins>5 </ins>" in view.replace("Level ", "")
    assert [v for _, v in result["pick"]["choices"]] == ["3", "4", "write"]
    assert (result["label"], result["rationale"]) == ("5", "Level 5 fits.")
    assert [f[1:3] for f in result["flags"]] == [["Nurse A", "check the BP"]]
    assert "**3** reviewed" in result["summary"]  # one review per case counts, not one per reviewer
    adopted = named(h, h.dashboard.adjudication.settle(case_id, "3", None, "", "Lead nurse", None))
    assert "Review #3" in adopted["status"] and "Nothing to adjudicate" in adopted["open_cases"]
    assert adopted["case"]["choices"] == [] and adopted["view"] == ""
    with pytest.raises(gr.Error, match="pick a review"):
        h.dashboard.adjudication.settle(case_id, None, None, "", "Lead nurse", None)
    with pytest.raises(gr.Error, match="not a current review of this case"):
        h.dashboard.adjudication.settle(case_id, "99", None, "", "Lead nurse", None)
    with pytest.raises(gr.Error, match="only one review"):
        h.dashboard.adjudication.settle(store.reviewer_reviews()[-1].case_id, "5", None, "", "Lead nurse", None)


def test_a_written_final_settles_a_rationale_disagreement_and_a_reviewer_cannot_pick_their_own(h, store):
    """The same label with two different rationales used to be 'agreement'; an adjudicator who
    reviewed the case may concede to the other reviewer but not pick their own review while someone else could."""
    for who, text in (("Nurse A", "HR 124 and BP 88/50: shock."), ("Nurse B", "Chest pain with tachycardia.")):
        save(h, predicted(h, CASE, who)["shown"], name=who, label="2", rationale=text)
    save(h, predicted(h, "level 5: sore throat", "Nurse C")["shown"], name="Nurse C", label="5", rationale="Minor.")
    result = named(h, h.dashboard.show("Nurse A", None))
    assert "**1 case(s) to adjudicate:**" in result["open_cases"] and "rationales differ" in result["view"]
    [(_, case_id)] = result["case"]["choices"]
    mine, theirs = (r.review_id for r in store.reviewer_reviews(case_id))
    with pytest.raises(gr.Error, match="you reviewed this case yourself.*Nurse C"):
        h.dashboard.adjudication.settle(case_id, str(mine), None, "", "Nurse A", None)
    with pytest.raises(gr.Error, match="you reviewed this case yourself"):
        h.dashboard.adjudication.settle(case_id, "write", "2", "My own words.", "Nurse A", None)
    written = named(
        h,
        h.dashboard.adjudication.settle(
            case_id, "write", "1", "BP 88/50 with HR 124: shock, resuscitate.", "Nurse C", None
        ),
    )
    assert "Your final (label 1" in written["status"] and "Nothing to adjudicate" in written["open_cases"]
    [event] = store.events("adjudicate")
    assert event.reviewer == "Nurse C" and event.note == "final written by the adjudicator"
    assert "on 1 case(s) reviewed by 2+ of 2 reviewers" in written["agreement"]  # the final is no rater
    chosen = next(c for c in export_cases(store) if c.review.case_id == case_id)
    assert (chosen.resolution, chosen.review.final_label, chosen.review.reviewer) == ("adjudicated", "1", "Nurse C")
    assert h.dashboard.adjudication.settle(case_id, str(theirs), None, "", "Nurse A", None)  # conceding is allowed
    assert store.events("adjudicate")[-1].note == ""

"""r2d.review.adjudication: who may see and settle a case whose reviewers disagree."""

from __future__ import annotations

import pytest

from r2d.errors import ReviewActionError
from r2d.review import adjudication as adj
from r2d.review.export import export_cases

CASE = "case 1: chest pain, HR 135, BP 90/60"


@pytest.fixture()
def disputed(store, make_review):
    """Nurse A and Nurse B reviewed CASE in batch b1 with different labels; Nurse C reviewed another case of b1."""
    for who, label in (("Nurse A", "2"), ("Nurse B", "3")):
        store.submit(
            make_review(f"d-{who}", reviewer=who, case_text=CASE, final_label=label, batch_id="b1", item_index=0)
        )
    return store


def test_a_reviewer_of_the_batch_sees_no_answers_before_reviewing_the_case(disputed, make_review):
    [case] = export_cases(disputed)
    assert adj.hidden_from(disputed, case, "Nurse A") == "" and adj.hidden_from(disputed, case, "Lead") == ""
    assert "Enter your name" in adj.hidden_from(disputed, case, " ")
    disputed.submit(make_review("c", reviewer="Nurse C", case_text="case 2: sore throat", batch_id="b1", item_index=1))
    assert "blind review" in adj.hidden_from(disputed, case, "Nurse C")


def test_with_no_independent_reviewer_self_adjudication_is_allowed_and_recorded(disputed):
    [case] = export_cases(disputed)
    mine = case.reviews[0]
    adj.adopt(disputed, "Nurse A", case.review.case_id, mine.review_id)
    [event] = disputed.events("adjudicate")
    assert event.note == adj.SELF_NOTE and event.review_id == mine.review_id
    assert export_cases(disputed)[0].resolution == "adjudicated"


def test_an_independent_reviewer_blocks_self_adjudication_but_not_conceding(disputed, make_review):
    disputed.submit(make_review("c", reviewer="Nurse C", case_text="case 2: sore throat"))
    case = next(c for c in export_cases(disputed) if len(c.reviews) == 2)
    mine, theirs = case.reviews
    with pytest.raises(ReviewActionError, match="Nurse C"):
        adj.adopt(disputed, "Nurse A", case.review.case_id, mine.review_id)
    adj.adopt(disputed, "Nurse A", case.review.case_id, theirs.review_id)
    assert [e.note for e in disputed.events("adjudicate")] == [""]


def test_a_written_final_needs_a_known_label_and_a_rationale(disputed):
    [case] = export_cases(disputed)
    with pytest.raises(ReviewActionError, match="choose the final label"):
        adj.write_final(disputed, "Lead", case.review.case_id, "", "words")
    with pytest.raises(ReviewActionError, match="final rationale is empty"):
        adj.write_final(disputed, "Lead", case.review.case_id, "2", "  ")
    assert disputed.events("adjudicate") == []
    final = adj.write_final(disputed, "Lead", case.review.case_id, "1", "Shock: resuscitate.")
    assert adj.written_finals(disputed) == {final.review_id}
    assert [r.reviewer for r in adj.reviewer_reviews(disputed)] == ["Nurse A", "Nurse B"]
    assert adj.case_choices(disputed, {}) == []


def test_a_review_made_after_seeing_another_answer_is_not_blind(disputed, make_review):
    """A and B each saved once, blind (B's first save came after A's, but B had not seen it): both count.
    Then A corrects the review after seeing B's answer: A's current review is unblinded."""
    assert adj.unblinded(disputed) == set()
    corrected = disputed.submit(make_review("d-A-2", reviewer="Nurse A", case_text=CASE, final_label="3")).record
    assert adj.unblinded(disputed) == {corrected.review_id}
    blind, left_out = adj.blind_reviews(disputed)
    assert [r.reviewer for r in blind] == ["Nurse B"] and left_out == 1


def test_settle_adopts_a_pick_or_writes_the_final_and_refuses_what_it_cannot(disputed, make_review):
    [case] = export_cases(disputed)
    case_id, (first, second) = case.review.case_id, case.reviews
    refusals = (
        (None, "1", "choose a case"),
        (case_id, None, "pick a review"),
        (case_id, "one", "pick one of the listed reviews"),
        (case_id, "99", "not a current review of this case"),
    )
    for case_given, pick, message in refusals:
        with pytest.raises(ReviewActionError, match=message):
            adj.settle(disputed, "Lead", case_given, pick, None, "")
    disputed.submit(make_review("c", reviewer="Nurse C", case_text="case 2: sore throat", batch_id="b1", item_index=1))
    with pytest.raises(ReviewActionError, match="blind review"):  # hidden from a reviewer of the batch
        adj.settle(disputed, "Nurse C", case_id, str(first.review_id), None, "")
    record, done = adj.settle(disputed, "Lead", case_id, str(second.review_id), None, "")
    assert record.review_id == second.review_id
    assert done == f"✓ Review #{second.review_id} (label 3) adopted for case `{case_id}`."
    record, done = adj.settle(disputed, "Lead", case_id, adj.WRITE, "1", "Shock: resuscitate.")
    assert done.startswith(f"✓ Your final (label 1, review #{record.review_id}) settles case `{case_id}`")
    assert [e.review_id for e in disputed.events("adjudicate")] == [second.review_id, record.review_id]

"""Limits on every field: long, non-text, control characters and lone surrogates refused before anything is stored."""

from __future__ import annotations

import dataclasses
import re

import pytest

from r2d import limits
from r2d.errors import InvalidCaseError, ReviewActionError


@pytest.mark.parametrize(
    "value, multiline, problem",
    [
        ("fine text\nwith lines\tand tabs", True, None),
        ("Ana María O'Neill-Łukasz 李", False, None),
        ("x" * 101, False, "101 characters; the limit is 100"),
        ("bad\x00byte", True, "a NUL byte at position 4"),
        ("bell\x07", True, "a control character (U+0007)"),
        ("two\nlines", False, "a control character (U+000A)"),
        ("c1 \x85 control", True, "U+0085"),
        ("lone \ud800 surrogate", True, "an unpaired surrogate (U+D800)"),
        ("evil\u202eetan", False, "a text-direction control (U+202E)"),
        ("BP 90/60 \u202e021 RH", True, "a text-direction control (U+202E) at position 10"),  # shows as "HR 120"
        ("John\u200bSmith", True, "an invisible character (U+200B)"),
        ("phone 555\ufeff0142", True, "an invisible character (U+FEFF)"),
        ("\u0645\u200c\u0646 \u200d ok", True, None),  # joiners some scripts need stay allowed
        (12345, False, "must be text, got int"),
    ],
)
def test_text_problems(value, multiline, problem):
    found = limits.text_problems("name", value, 100, multiline)
    assert (found == []) if problem is None else (len(found) == 1 and problem in found[0])


def test_case_text_is_checked_for_length_characters_and_emptiness():
    assert limits.check_case_text("  chest pain \n", 100) == "chest pain"
    for bad, message in (
        ("x" * 101, "the limit is 100"),
        ("\x00\x01\x02", "NUL byte"),
        ("   \n\t ", "empty"),
        ("a\ud83d", "surrogate"),
        (None, "must be text"),
    ):
        with pytest.raises(InvalidCaseError, match=message):
            limits.check_case_text(bad, 100)


def test_upload_bytes_cover_the_largest_allowed_upload():
    assert limits.max_upload_bytes(2, 10) == 2 * (40 + limits.UPLOAD_ROW_OVERHEAD_BYTES)


def test_a_10_mb_rationale_is_refused_before_it_is_stored(store, make_review):
    huge = "Shock. " * (10 * 1024 * 1024 // 7)
    size_before = store.path.stat().st_size
    with pytest.raises(ReviewActionError, match=r"final rationale has 10,485,\d+ characters; the limit is 4,000"):
        store.submit(make_review(final_rationale=huge))
    assert store.count_reviews() == 0 and store.path.stat().st_size == size_before


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("reviewer", "N" * (limits.MAX_NAME_CHARS + 1), "reviewer has 101 characters"),
        ("reviewer", "Nurse\x00A", "reviewer contains a NUL byte"),
        ("reviewer", "Nurse\nA", "reviewer contains a control character"),
        ("comment", "c" * (limits.MAX_COMMENT_CHARS + 1), "comment has 2,001 characters"),
        ("comment", "ok \ud800", "comment contains an unpaired surrogate"),
        ("final_rationale", "Shock\x1b[31m", "final rationale contains a control character (U+001B)"),
        ("case_text", "\x00\x00 chest pain", "case text contains a NUL byte"),
        ("final_label", "2\x00", "final label contains a NUL byte"),
        ("submission_id", "s" * 500, "submission id has 500 characters"),
    ],
)
def test_every_review_field_is_bounded_and_plain_text(store, field, value, message, make_review):
    with pytest.raises(ReviewActionError, match=re.escape(message)):
        store.submit(make_review(**{field: value}))
    assert store.count_reviews() == 0


def test_a_review_at_the_limits_is_stored(store, make_review):
    record = make_review(
        reviewer="N" * limits.MAX_NAME_CHARS,
        comment="c" * limits.MAX_COMMENT_CHARS,
        final_rationale="r" * limits.MAX_RATIONALE_CHARS,
    )
    assert store.submit(record).created
    assert dataclasses.replace(store.reviews()[0], created_at="", review_id=None) == record


def test_drafts_and_reviewer_actions_are_bounded_too(store, make_review):
    huge = {"final_rationale": "Shock. " * (10 * 1024 * 1024 // 7), "comment": ""}
    with pytest.raises(ReviewActionError, match="draft not kept: draft final_rationale has 10,485,"):
        store.save_draft("Nurse A", make_review().case_id, huge)
    with pytest.raises(ReviewActionError, match="draft comment contains a NUL byte"):
        store.save_draft("Nurse A", make_review().case_id, {"comment": "a\x00b"})
    with pytest.raises(ReviewActionError, match="draft not kept: the draft has"):
        store.save_draft("Nurse A", make_review().case_id, {f"k{i}": "x" * 1000 for i in range(200)})
    assert store.draft("Nurse A", make_review().case_id) is None
    with pytest.raises(ReviewActionError, match="note has 2,001 characters"):
        store.add_event("Nurse A", "flag", make_review().case_id, note="n" * 2001)
    with pytest.raises(ReviewActionError, match="reviewer contains a control character"):
        store.add_event("Nurse\x07A", "skip", make_review().case_id)
    assert store.events() == []
    store.save_draft("Nurse A", make_review().case_id, {"final_rationale": "r" * limits.MAX_RATIONALE_CHARS})
    assert store.draft("Nurse A", make_review().case_id)["final_rationale"] == "r" * limits.MAX_RATIONALE_CHARS

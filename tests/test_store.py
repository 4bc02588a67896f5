"""The review store: append-only, idempotent, WAL, safe under concurrent writers and a kill mid-write."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from r2d.errors import FeedbackStoreError, ReviewActionError
from r2d.review.store import ReviewStore, case_id_for

ROOT = Path(__file__).resolve().parent.parent


def pragma(store: ReviewStore, name: str) -> str:
    """A PRAGMA's answer read on the store's file by a connection of its own (as any other process sees it)."""
    with closing(sqlite3.connect(store.path)) as conn:
        return str(conn.execute(f"PRAGMA {name}").fetchone()[0])


def logged_exports(store: ReviewStore) -> list[tuple[str, dict]]:
    """(exported_by, meta) of each export in the store's audit trail, oldest first."""
    with closing(sqlite3.connect(store.path)) as conn:
        rows = conn.execute("SELECT exported_by, meta FROM exports ORDER BY export_id").fetchall()
    return [(who, json.loads(meta)) for who, meta in rows]


# --- basics ---------------------------------------------------------------------------------------


def test_new_database_is_wal_and_sound(store):
    assert pragma(store, "journal_mode") == "wal"
    assert pragma(store, "integrity_check") == "ok"
    assert store.count_reviews() == 0


def test_submit_round_trips_every_audit_field(store, make_review):
    review = make_review()
    result = store.submit(review)
    assert result.created
    stored = store.reviews()[0]
    assert stored == result.record
    assert stored.review_id == 1 and stored.created_at.endswith("+00:00")
    assert stored.payload() == review.payload()


def test_resubmitting_the_same_submission_is_stored_once(store, make_review):
    first = store.submit(make_review())
    # a retry arrives later: time on task differs, the submission is the same
    again = store.submit(make_review(time_on_task_s=99.0))
    assert not again.created
    assert again.record.review_id == first.record.review_id
    assert store.count_reviews() == 1


def test_submission_id_reused_for_other_content_is_refused(store, make_review):
    store.submit(make_review())
    with pytest.raises(ReviewActionError, match="differs in final_rationale"):
        store.submit(make_review(final_rationale="something else"))
    assert store.count_reviews() == 1


def test_corrections_append_and_the_latest_counts(store, make_review):
    store.submit(make_review("s-1", final_label="2"))
    store.submit(make_review("s-2", final_label="3", action="relabelled"))
    store.submit(make_review("s-3", case_text="other case", case_id=case_id_for("other case")))
    assert [r.submission_id for r in store.reviews()] == ["s-1", "s-2", "s-3"]
    latest = {r.case_id: r for r in store.latest_reviews()}
    assert len(latest) == 2
    assert latest[make_review().case_id].final_label == "3"


@pytest.mark.parametrize("statement", ["UPDATE reviews SET final_label = '5'", "DELETE FROM reviews"])
def test_reviews_cannot_be_rewritten_even_with_raw_sql(store, statement, make_review):
    store.submit(make_review())
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(statement)
    conn.close()
    assert store.reviews()[0].final_label == "2"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"reviewer": "  "}, "enter your name"),
        ({"rating": 7}, "rating must be 1-5"),
        ({"action": "deleted"}, "action 'deleted'"),
        ({"final_rationale": ""}, "final rationale is empty"),
        ({"final_label": ""}, "final label is empty"),
        ({"submission_id": ""}, "submission_id is empty"),
    ],
)
def test_invalid_reviews_are_refused_with_the_reason(store, overrides, message, make_review):
    with pytest.raises(ReviewActionError, match=message):
        store.submit(make_review(**overrides))
    assert store.count_reviews() == 0


def test_case_id_ignores_whitespace_only():
    assert case_id_for("chest  pain\n BP 88/50 ") == case_id_for("chest pain BP 88/50")
    assert case_id_for("chest pain") != case_id_for("chest pains")


# --- unusable files -----------------------------------------------------------------------------


def test_not_a_database_says_what_to_do(tmp_path):
    path = tmp_path / "reviews.sqlite3"
    path.write_text("question,label\nthis is a CSV, not a database\n")
    with pytest.raises(FeedbackStoreError, match=r"not a SQLite review database.*Move it aside.*--db"):
        ReviewStore(path)
    assert path.read_text().startswith("question,label")  # never overwritten


def test_corrupt_database_body_is_reported(tmp_path, make_review):
    path = tmp_path / "reviews.sqlite3"
    ReviewStore(path).submit(make_review())
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # keep the header, destroy the schema page
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(FeedbackStoreError, match="not a SQLite review database"):
        ReviewStore(path).reviews()


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(FeedbackStoreError, match="is a directory"):
        ReviewStore(tmp_path)


def test_newer_schema_is_refused(store):
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE store_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(FeedbackStoreError, match="schema version 99"):
        ReviewStore(store.path)


# --- batches, exports, browser secret ------------------------------------------------------------


def test_batches_keep_cases_predictions_and_progress(store, make_review):
    info = store.create_batch("upload.csv", ["case a", "case b", "case c"], "Nurse A", "fake-r2d")
    store.add_batch_predictions(info.batch_id, {0: {"label": "1"}, 2: {"label": "3"}})
    store.add_batch_predictions(info.batch_id, {0: {"label": "5"}})  # a retry never replaces a prediction
    store.submit(make_review(batch_id=info.batch_id, item_index=2, case_text="case c", case_id=case_id_for("case c")))
    items = store.batch_items(info.batch_id)
    assert [i.case_text for i in items] == ["case a", "case b", "case c"]
    assert [i.prediction for i in items] == [{"label": "1"}, None, {"label": "3"}]
    assert [i.review is not None for i in items] == [False, False, True]
    listed = store.list_batches()
    assert [(b.batch_id, b.n_items, b.n_predicted, b.n_reviewed) for b in listed] == [(info.batch_id, 3, 2, 1)]


def test_unknown_and_empty_batches(store):
    with pytest.raises(ReviewActionError, match="no batch"):
        store.batch_items("b-missing")
    with pytest.raises(ReviewActionError, match="at least one case"):
        store.create_batch("empty.csv", [], "Nurse A", "m")


def test_exports_are_logged(store):
    store.log_export("Nurse A", "/tmp/x", {"counts": {"train": 3}})
    assert [(who, meta["counts"]["train"]) for who, meta in logged_exports(store)] == [("Nurse A", 3)]


def test_browser_secret_is_stable_across_reopening(store):
    secret = store.browser_secret()
    assert len(secret) >= 16
    assert ReviewStore(store.path).browser_secret() == secret


# --- concurrency and crashes ----------------------------------------------------------------------

_WRITER = """
import sys
sys.path.insert(0, {root!r})
from r2d.review.store import ReviewRecord, ReviewStore
store = ReviewStore({db!r})
prefix, count = sys.argv[1], int(sys.argv[2])
i = 0
while count < 0 or i < count:
    store.submit(ReviewRecord(submission_id=f"{{prefix}}-{{i}}", reviewer=prefix, case_id=f"c-{{prefix}}-{{i}}",
                              case_text="x" * 2000, model_id="m", quantization="none", prompt_version="p",
                              action="accepted", model_label="1", model_rationale="r" * 2000,
                              model_probabilities={{"1": 1.0}}, final_label="1", final_rationale="r" * 2000))
    print(f"{{prefix}}-{{i}}", flush=True)  # printed only after the commit returned
    i += 1
"""


def _writer(tmp_path: Path, db: Path) -> Path:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(root=str(ROOT), db=str(db)))
    return script


def _submit_many(store: ReviewStore, make_review, prefix: str, n: int) -> None:
    for i in range(n):
        store.submit(make_review(f"{prefix}-{i}", case_id=f"c-{prefix}-{i}"))
        store.submit(make_review(f"{prefix}-{i}", case_id=f"c-{prefix}-{i}"))  # a double click: no second row


def test_threads_and_processes_submitting_at_once_lose_nothing(tmp_path, make_review):
    db = tmp_path / "reviews.sqlite3"
    store = ReviewStore(db, busy_timeout_s=60)
    script = _writer(tmp_path, db)
    procs = [
        subprocess.Popen([sys.executable, str(script), f"p{k}", "25"], stdout=subprocess.DEVNULL) for k in range(3)
    ]
    threads = [threading.Thread(target=_submit_many, args=(store, make_review, f"t{k}", 25)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    ids = [r.submission_id for r in store.reviews()]
    expected = {f"{who}-{i}" for who in [f"t{k}" for k in range(6)] + [f"p{k}" for k in range(3)] for i in range(25)}
    assert len(ids) == len(set(ids)) == 9 * 25
    assert set(ids) == expected
    assert pragma(store, "integrity_check") == "ok"


def test_kill_mid_write_keeps_every_committed_review(tmp_path, make_review):
    db = tmp_path / "reviews.sqlite3"
    ReviewStore(db)
    proc = subprocess.Popen([sys.executable, str(_writer(tmp_path, db)), "k", "-1"], stdout=subprocess.PIPE, text=True)
    committed = []
    try:
        while len(committed) < 30:
            line = proc.stdout.readline()
            assert line, "the writer died before writing 30 reviews"
            committed.append(line.strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup: mid-transaction or between two
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    reopened = ReviewStore(db)
    assert pragma(reopened, "integrity_check") == "ok"
    stored = {r.submission_id for r in reopened.reviews()}
    assert set(committed) <= stored
    # it keeps working after the crash
    reopened.submit(make_review("after-crash"))
    assert reopened.count_reviews() == len(stored) + 1


def test_a_write_waits_for_a_held_lock_instead_of_failing(tmp_path, make_review):
    store = ReviewStore(tmp_path / "reviews.sqlite3", busy_timeout_s=30)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock for a moment
    done = threading.Event()
    worker = threading.Thread(target=lambda: (store.submit(make_review()), done.set()))
    worker.start()
    time.sleep(0.3)
    assert not done.is_set()
    blocker.execute("COMMIT")
    worker.join(timeout=30)
    assert done.is_set() and store.count_reviews() == 1


def test_a_lock_held_past_the_timeout_is_an_error_not_a_loss(tmp_path, make_review):
    store = ReviewStore(tmp_path / "reviews.sqlite3", busy_timeout_s=0.2)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(FeedbackStoreError, match="nothing was saved, submit again"):
        store.submit(make_review())
    blocker.execute("ROLLBACK")
    assert store.submit(make_review()).created


# --- retract, skip, flag, adjudicate, drafts, upload ids ---------------------------------------------


def test_retract_keeps_the_row_and_the_previous_review_counts_again(store, make_review):
    store.submit(make_review("s-1", final_label="2"))
    store.submit(make_review("s-2", final_label="3", action="relabelled"))
    retracted = store.retract_last("Nurse A")
    assert retracted.submission_id == "s-2" and not store.is_live(retracted.review_id)
    assert [r.final_label for r in store.latest_reviews()] == ["2"]  # undo brings the earlier review back
    assert len(store.reviews()) == 2 and [e.kind for e in store.events()] == ["retract"]
    assert store.retract_last("Nurse A").submission_id == "s-1"
    assert store.latest_reviews() == [] and store.retract_last("Nurse A") is None


def test_every_reviewers_latest_review_is_kept(store, make_review):
    store.submit(make_review("a-1", reviewer="Nurse A", final_label="2"))
    store.submit(make_review("b-1", reviewer="Nurse B", final_label="3"))
    store.submit(make_review("a-2", reviewer="Nurse A", final_label="1"))
    assert sorted((r.reviewer, r.final_label) for r in store.reviewer_reviews()) == [("Nurse A", "1"), ("Nurse B", "3")]
    assert [r.final_label for r in store.latest_reviews()] == ["1"]


def test_events_are_append_only_and_checked(store):
    store.add_event("Nurse A", "flag", "case-1", note="odd BP")
    with pytest.raises(ReviewActionError, match="not one of"):
        store.add_event("Nurse A", "delete", "case-1")
    with pytest.raises(ReviewActionError, match="name"):
        store.add_event("  ", "skip", "case-1")
    with sqlite3.connect(store.path) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM review_events")


def test_adjudication_names_a_live_review(store, make_review):
    first = store.submit(make_review("a-1", reviewer="Nurse A")).record
    second = store.submit(make_review("b-1", reviewer="Nurse B", final_label="3")).record
    store.add_event("Lead", "adjudicate", first.case_id, review_id=second.review_id)
    assert store.adjudications() == {first.case_id: second.review_id}
    store.retract_last("Nurse B")  # an adjudication of a retracted review no longer holds
    assert store.adjudications() == {}


def test_a_draft_lasts_until_its_reviewer_saves(store, make_review):
    case = make_review().case_id
    store.save_draft("Nurse A", case, {"rationale": "half"})
    store.save_draft("Nurse A", case, {"rationale": "half written"})
    store.save_draft("", case, {"rationale": "nobody"})  # no name: nothing to key it by
    assert store.draft("Nurse A", case) == {"rationale": "half written"} == store.draft("Nurse A")
    assert store.draft("Nurse B", case) is None
    time.sleep(0.002)  # created_at has millisecond resolution
    store.submit(make_review("s-1"))
    assert store.draft("Nurse A", case) is None


def test_upload_ids_are_kept_per_item(store):
    info = store.create_batch("up.jsonl", ["case a", "case b"], "Nurse A", "m", source_ids=["ID-7", None])
    assert [i.source_id for i in store.batch_items(info.batch_id)] == ["ID-7", None]
    assert store.source_ids() == {case_id_for("case a"): "ID-7"}
    with pytest.raises(ReviewActionError, match="2 ids for 1 cases"):
        store.create_batch("bad.jsonl", ["case c"], "Nurse A", "m", source_ids=["x", "y"])

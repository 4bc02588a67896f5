"""Tamper evidence: REPLACE over a review refused, raw edits detected by `python -m training.integrity`, mode 600."""
from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from r2d import audit
from r2d.store import ReviewStore
from training import integrity

ROOT = Path(__file__).resolve().parent.parent
@pytest.fixture()
def reviewed_store(store, make_review):
    """The shared store with three reviews, s-0 to s-2."""
    for i in range(3):
        store.submit(make_review(i))
    return store


def raw(store: ReviewStore) -> sqlite3.Connection:
    """A plain sqlite3 client, as someone editing the file by hand would use."""
    return sqlite3.connect(store.path, isolation_level=None)


def _replace_sql(review_id: int | None, submission_id: str) -> tuple[str, tuple]:
    columns = "review_id, submission_id, created_at, reviewer, case_id, case_text, model_id, quantization, " \
              "prompt_version, action, model_label, model_rationale, model_probabilities, final_label, final_rationale"
    values = (review_id, submission_id, "2026-01-01T00:00:00.000+00:00", "Mallory", "c", "a forged case", "m", "none",
              "p", "relabelled", "2", "x", "{}", "5", "Not urgent at all.")
    return f"INSERT OR REPLACE INTO reviews ({columns}) VALUES ({', '.join('?' * len(values))})", values


@pytest.mark.parametrize("review_id, submission_id", [(1, "forged"), (None, "s-1")])
def test_insert_or_replace_over_a_stored_review_is_refused(reviewed_store, review_id, submission_id):
    conn = raw(reviewed_store)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(*_replace_sql(review_id, submission_id))
    conn.close()
    assert [r.reviewer for r in reviewed_store.reviews()] == ["Nurse A"] * 3
    assert integrity.main(["--db", str(reviewed_store.path)]) == 0


def _drop_triggers(conn: sqlite3.Connection) -> None:
    for name in audit.PROTECTED_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")


@pytest.mark.parametrize("tamper, problem", [
    ("INSERT OR REPLACE", "review 1 was changed after it was stored"),
    ("INSERT", "review 4 is not in the audit chain"),
    ("UPDATE reviews SET final_label = '5' WHERE review_id = 2", "review 2 was changed after it was stored"),
    ("DELETE FROM reviews WHERE review_id = 2", "chain is broken before review 3"),
    ("DELETE FROM reviews WHERE review_id = 3", "review 3 is in the audit chain but missing"),
])
def test_an_edit_with_the_triggers_dropped_is_detected(reviewed_store, tamper, problem, capsys):
    conn = raw(reviewed_store)
    _drop_triggers(conn)
    if tamper.startswith("INSERT"):  # a forged review over review 1, or a new one smuggled in
        conn.execute(*_replace_sql(1 if tamper == "INSERT OR REPLACE" else None, "forged"))
    else:
        conn.execute(tamper)
    conn.close()
    assert integrity.main(["--db", str(reviewed_store.path)]) == 1
    out = capsys.readouterr().out
    assert problem in out and "trigger reviews_no_update is missing" in out


@pytest.mark.parametrize("name, noop", [
    ("reviews_no_update", "CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews BEGIN SELECT 1; END"),
    ("review_chain_no_delete", "CREATE TRIGGER review_chain_no_delete BEFORE DELETE ON review_chain WHEN 0 "
                               "BEGIN SELECT RAISE(ABORT, 'review_chain is append-only'); END"),
])
def test_a_trigger_replaced_by_a_noop_of_the_same_name_is_detected(reviewed_store, name, noop, capsys):
    """Issue 21: only trigger names were checked, so a no-op of the same name passed."""
    conn = raw(reviewed_store)
    conn.execute(f"DROP TRIGGER {name}")
    conn.execute(noop)
    conn.close()
    assert integrity.main(["--db", str(reviewed_store.path)]) == 1
    assert f"trigger {name} was replaced" in capsys.readouterr().out


def test_the_newest_review_deleted_with_its_chain_row_is_caught_by_an_exports_head(reviewed_store, tmp_path,
                                                                                  capsys):
    """Issue 21: deleting the last review together with its chain row left a consistent, shorter chain."""
    import json
    exports = tmp_path / "exports"
    (exports / "export-1").mkdir(parents=True)
    (exports / "export-1" / "export_meta.json").write_text(json.dumps({"audit_chain_heads":
                                                                        reviewed_store.chain_heads()}))
    args = ["--db", str(reviewed_store.path), "--exports", str(exports)]
    assert integrity.main(args) == 0
    conn = raw(reviewed_store)
    _drop_triggers(conn)
    conn.execute("DELETE FROM review_chain WHERE review_id = 3")
    conn.execute("DELETE FROM reviews WHERE review_id = 3")
    conn.close()
    ReviewStore(reviewed_store.path)  # opening it puts the triggers back as they were
    assert integrity.main(["--db", str(reviewed_store.path)]) == 0  # a consistent, shorter chain on its own
    assert integrity.main(args) == 1
    assert "review chain head recorded in export export-1 is no longer in the chain" in capsys.readouterr().out


def test_a_clean_store_passes_and_prints_the_chain_head(reviewed_store, capsys):
    assert integrity.main(["--db", str(reviewed_store.path)]) == 0
    out = capsys.readouterr().out
    conn = raw(reviewed_store)
    head = audit.chain_head(conn)
    conn.close()
    assert "ok: 3 reviews" in out and head in out and head != audit.GENESIS


def test_the_integrity_command_runs_as_a_module(reviewed_store):
    done = subprocess.run([sys.executable, "-m", "training.integrity", "--db", str(reviewed_store.path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok: 3 reviews" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "training.integrity", "--db", str(reviewed_store.path) + ".none"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no review database" in missing.stderr


def test_retries_stay_idempotent_and_chained(reviewed_store, make_review):
    again = reviewed_store.submit(make_review(1))
    assert not again.created and reviewed_store.count_reviews() == 3
    conn = raw(reviewed_store)
    assert audit.verify_chain(conn) == []
    conn.close()


def test_reviews_stored_before_the_chain_existed_are_chained_once(tmp_path, make_review):
    s = ReviewStore(tmp_path / "old.sqlite3")
    s.submit(make_review(0))
    conn = raw(s)
    for name in ("review_chain_no_update", "review_chain_no_delete"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE review_chain")
    conn.execute("DELETE FROM store_meta WHERE key = 'chain_started'")  # as a database made before this change
    conn.close()
    s = ReviewStore(s.path)
    s.submit(make_review(1))
    conn = raw(s)
    assert audit.verify_chain(conn) == [] and conn.execute("SELECT COUNT(*) FROM review_chain").fetchone()[0] == 2
    conn.close()


def test_database_and_wal_files_are_private(tmp_path, make_review):
    s = ReviewStore(tmp_path / "new.sqlite3")
    conn = raw(s)  # keep a connection open, so the WAL and SHM files exist
    conn.execute("SELECT COUNT(*) FROM reviews").fetchone()
    s.submit(make_review(0))
    modes = audit.file_modes(s.path)
    conn.close()
    assert {"new.sqlite3", "new.sqlite3-wal", "new.sqlite3-shm"} <= set(modes)
    assert all(stat.S_IMODE(m) == 0o600 for m in modes.values()), modes
    older = tmp_path / "older.sqlite3"
    older.touch(mode=0o644)
    older.chmod(0o644)
    ReviewStore(older)
    assert stat.S_IMODE(older.stat().st_mode) == 0o600


def test_reviewer_actions_are_chained_and_a_forged_retract_is_detected(reviewed_store, capsys, make_review):
    reviewed_store.add_event("Nurse A", "flag", make_review().case_id, note="check the BP")
    reviewed_store.retract_last("Nurse A")
    assert integrity.main(["--db", str(reviewed_store.path)]) == 0
    conn = raw(reviewed_store)
    conn.execute("INSERT INTO review_events (created_at, reviewer, kind, case_id, review_id) "
                 "VALUES ('2026-01-01', 'Mallory', 'retract', 'c', 1)")  # allowed by the triggers: an insert
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("INSERT OR REPLACE INTO review_events (event_id, created_at, reviewer, kind, case_id) "
                     "VALUES (1, '2026-01-01', 'Mallory', 'skip', 'c')")
    conn.close()
    assert integrity.main(["--db", str(reviewed_store.path)]) == 1
    assert "reviewer action 3 is not in the audit chain" in capsys.readouterr().out

"""Tamper evidence: REPLACE refused, every kind of raw edit detected by `python -m training.integrity`, the seal,
the migration of a version-1 database, mode 600."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from r2d.errors import FeedbackStoreError
from r2d.review import audit
from r2d.review.store import ReviewStore
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
    columns = (
        "review_id, submission_id, created_at, reviewer, case_id, case_text, model_id, quantization, "
        "prompt_version, action, model_label, model_rationale, model_probabilities, final_label, final_rationale"
    )
    values = (
        review_id,
        submission_id,
        "2026-01-01T00:00:00.000+00:00",
        "Mallory",
        "c",
        "a forged case",
        "m",
        "none",
        "p",
        "relabelled",
        "2",
        "x",
        "{}",
        "5",
        "Not urgent at all.",
    )
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
    """Every trigger, as someone who knows the schema would drop them before editing."""
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")


@pytest.fixture()
def audited_store(reviewed_store, make_review):
    """Three reviews, a flag and a retraction, a batch with upload ids and a prediction, a draft, an export."""
    s = reviewed_store
    batch = s.create_batch("upload.csv", ["case a", "case b"], "Nurse A", "fake-r2d", ["P-1", "P-2"])
    s.add_batch_predictions(batch.batch_id, {0: {"label": "2"}})
    s.add_event("Nurse A", "flag", make_review().case_id, note="check the BP")
    s.save_draft("Nurse A", make_review().case_id, {"rationale": "half"})
    s.log_export("Nurse A", "r2d_exports/export-1", {"counts": {"train": 3}})
    s.retract_last("Nurse A")
    return s


def _rechain(conn: sqlite3.Connection, table: str, chain: str, key: str, columns: tuple[str, ...]) -> None:
    """Recompute a chain from scratch with the (public) chain hash, as a tamperer covering an edit would."""
    conn.row_factory = sqlite3.Row
    conn.execute(f"DELETE FROM {chain}")
    prev = audit.GENESIS
    for row in conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall():
        digest = audit.row_hash(prev, row, columns)
        conn.execute(f"INSERT INTO {chain} VALUES (?, ?, ?)", (row[key], prev, digest))
        prev = digest


def _rechain_reviews(conn: sqlite3.Connection) -> None:
    _rechain(conn, "reviews", "review_chain", "review_id", audit.REVIEW_COLUMNS)


def _forge_retraction(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO review_events (created_at, reviewer, kind, case_id, review_id) "
        "VALUES ('2026-01-01', 'Mallory', 'retract', 'c', 1)"
    )


def _batch_id(conn: sqlite3.Connection) -> str:
    return conn.execute("SELECT batch_id FROM batches").fetchone()[0]


# (kind, how it is done with the triggers dropped, a sign the integrity command must print); {batch} is the batch id
TAMPERINGS = [
    (
        "a review updated",
        lambda c: c.execute("UPDATE reviews SET final_label = '5' WHERE review_id = 2"),
        "review 2 was changed after it was stored",
    ),
    ("a review replaced", lambda c: c.execute(*_replace_sql(1, "forged")), "review 1 was changed after it was stored"),
    ("a review smuggled in", lambda c: c.execute(*_replace_sql(None, "forged")), "review 4 is not in the audit chain"),
    (
        "a middle review deleted",
        lambda c: c.execute("DELETE FROM reviews WHERE review_id = 2"),
        "review 2 is in the audit chain but missing",
    ),
    (
        "the last review deleted",
        lambda c: c.execute("DELETE FROM reviews WHERE review_id = 3"),
        "review 3 is in the audit chain but missing",
    ),
    (
        "the last review deleted with its chain row",
        lambda c: (
            c.execute("DELETE FROM review_chain WHERE review_id = 3"),
            c.execute("DELETE FROM reviews WHERE review_id = 3"),
        ),
        "the review chain's head does not match its seal",
    ),
    (
        "a forged review appended with its chain entry",
        lambda c: (c.execute(*_replace_sql(None, "forged")), _rechain_reviews(c)),
        "the review chain's head does not match its seal",
    ),
    (
        "a review rewritten and the chain recomputed",
        lambda c: (
            c.execute("UPDATE reviews SET final_label = '5', final_rationale = 'Fine.' WHERE review_id = 2"),
            _rechain_reviews(c),
        ),
        "the review chain's head does not match its seal",
    ),
    ("a forged retraction", _forge_retraction, "reviewer action 3 is not in the audit chain"),
    (
        "a forged retraction appended with its chain entry",
        lambda c: (_forge_retraction(c), _rechain(c, "review_events", "event_chain", "event_id", audit.EVENT_COLUMNS)),
        "the reviewer action chain's head does not match its seal",
    ),
    (
        "a reviewer action updated",
        lambda c: c.execute("UPDATE review_events SET note = '' WHERE event_id = 1"),
        "reviewer action 1 was changed after it was stored",
    ),
    (
        "a batch updated",
        lambda c: c.execute("UPDATE batches SET created_by = 'Mallory'"),
        "batch {batch} was changed after it was stored",
    ),
    (
        "the case text reviewers see changed",
        lambda c: c.execute("UPDATE batch_items SET case_text = 'a calmer case' WHERE item_index = 0"),
        "batch item {batch} 0 was changed after it was stored",
    ),
    (
        "a batch prediction changed",
        lambda c: c.execute('UPDATE batch_predictions SET prediction = \'{"label": "5"}\''),
        "batch prediction {batch} 0 was changed after it was stored",
    ),
    (
        "an exported id changed",
        lambda c: c.execute("UPDATE batch_item_sources SET source_id = 'P-9' WHERE item_index = 1"),
        "upload id of batch item {batch} 1 was changed after it was stored",
    ),
    ("a draft deleted", lambda c: c.execute("DELETE FROM drafts"), "draft 1 is in the audit chain but missing"),
    (
        "an export log entry rewritten",
        lambda c: c.execute("UPDATE exports SET exported_by = 'Mallory'"),
        "export log entry 1 was changed after it was stored",
    ),
]


@pytest.mark.parametrize("tamper, problem", [t[1:] for t in TAMPERINGS], ids=[t[0] for t in TAMPERINGS])
def test_each_kind_of_tampering_is_detected(audited_store, tamper, problem, capsys):
    """Triggers dropped, the edit made, then the app reopened (which puts the triggers back as they were)."""
    assert integrity.main(["--db", str(audited_store.path)]) == 0
    conn = raw(audited_store)
    problem = problem.format(batch=_batch_id(conn))
    _drop_triggers(conn)
    tamper(conn)
    conn.close()
    ReviewStore(audited_store.path)
    capsys.readouterr()
    assert integrity.main(["--db", str(audited_store.path)]) == 1
    assert problem in capsys.readouterr().out


def test_a_dropped_trigger_is_detected(audited_store, capsys):
    conn = raw(audited_store)
    conn.execute("DROP TRIGGER batch_items_no_update")
    conn.close()
    assert integrity.main(["--db", str(audited_store.path)]) == 1
    assert "trigger batch_items_no_update is missing" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, noop",
    [
        ("reviews_no_update", "CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews BEGIN SELECT 1; END"),
        (
            "review_chain_no_delete",
            "CREATE TRIGGER review_chain_no_delete BEFORE DELETE ON review_chain WHEN 0 "
            "BEGIN SELECT RAISE(ABORT, 'review_chain is append-only'); END",
        ),
        (
            "batch_items_no_update",
            "CREATE TRIGGER batch_items_no_update BEFORE UPDATE ON batch_items BEGIN SELECT 1; END",
        ),
    ],
)
def test_a_trigger_replaced_by_a_noop_of_the_same_name_is_detected(audited_store, name, noop, capsys):
    """Only trigger names were checked, so a no-op of the same name passed."""
    conn = raw(audited_store)
    conn.execute(f"DROP TRIGGER {name}")
    conn.execute(noop)
    conn.close()
    ReviewStore(audited_store.path)  # the app's CREATE TRIGGER IF NOT EXISTS keeps the no-op
    assert integrity.main(["--db", str(audited_store.path)]) == 1
    assert f"trigger {name} was replaced" in capsys.readouterr().out


def test_the_newest_review_deleted_with_its_chain_row_is_caught_by_an_exports_head(reviewed_store, tmp_path, capsys):
    """Deleting the last review together with its chain row and the key leaves a consistent, shorter chain."""
    exports = tmp_path / "exports"
    (exports / "export-1").mkdir(parents=True)
    (exports / "export-1" / "export_meta.json").write_text(
        json.dumps({"audit_chain_heads": reviewed_store.chain_heads()})
    )
    args = ["--db", str(reviewed_store.path), "--exports", str(exports)]
    assert integrity.main(args) == 0
    conn = raw(reviewed_store)
    _drop_triggers(conn)
    conn.execute("DELETE FROM review_chain WHERE review_id = 3")
    conn.execute("DELETE FROM reviews WHERE review_id = 3")
    key = audit.read_key(audit.key_path(reviewed_store.path))  # whoever holds the key can reseal the shorter chain
    conn.execute(
        "UPDATE store_meta SET value = ? WHERE key = 'chain_seal:reviews'",
        (audit.seal(key, "reviews", audit.chain_head(conn)),),
    )
    conn.close()
    ReviewStore(reviewed_store.path)  # opening it puts the triggers back as they were
    assert integrity.main(["--db", str(reviewed_store.path)]) == 0  # a consistent, sealed, shorter chain on its own
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
    done = subprocess.run(
        [sys.executable, "-m", "training.integrity", "--db", str(reviewed_store.path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "ok: 3 reviews" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "training.integrity", "--db", str(reviewed_store.path) + ".none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "no review database" in missing.stderr


def test_retries_stay_idempotent_and_chained(reviewed_store, make_review):
    again = reviewed_store.submit(make_review(1))
    assert not again.created and reviewed_store.count_reviews() == 3
    conn = raw(reviewed_store)
    assert audit.verify_chain(conn) == []
    conn.close()


V1_DUMP = ROOT / "tests" / "data" / "store_v1.sql"
CHAIN_ROWS_V1 = {
    "review_chain": 2,
    "event_chain": 1,
    "batch_chain": 1,
    "batch_item_chain": 2,
    "batch_prediction_chain": 1,
    "batch_item_source_chain": 2,
    "draft_chain": 1,
    "export_chain": 1,
}


def chain_rows(store: ReviewStore) -> dict[str, int]:
    conn = raw(store)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in CHAIN_ROWS_V1}
    finally:
        conn.close()


def test_a_version_1_database_migrates_once_and_its_exports_heads_still_hold(tmp_path, make_review, capsys):
    """A database made before every table was chained: opening it chains the existing rows once, seals the
    chains and records it; the chain heads its exports recorded are still found."""
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(V1_DUMP.read_text(encoding="utf-8"))
    conn.close()
    heads = dict(line[3:].split() for line in V1_DUMP.read_text().splitlines()[3:5])
    (tmp_path / "exports" / "export-1").mkdir(parents=True)
    (tmp_path / "exports" / "export-1" / "export_meta.json").write_text(json.dumps({"audit_chain_heads": heads}))
    assert not audit.key_path(db).exists()
    store = ReviewStore(db)
    assert audit.key_path(db).exists() and chain_rows(store) == CHAIN_ROWS_V1
    args = ["--db", str(db), "--exports", str(tmp_path / "exports")]
    assert integrity.main(args) == 0
    conn = raw(store)
    meta = dict(conn.execute("SELECT key, value FROM store_meta").fetchall())
    conn.close()
    assert meta["schema_version"] == "2" and {"audit_sealed", "chain_started:batch_items"} <= set(meta)
    store = ReviewStore(db)  # a second opening adopts nothing
    store.submit(make_review(7))
    assert chain_rows(store) == {**CHAIN_ROWS_V1, "review_chain": 3}
    assert integrity.main(args) == 0


def test_once_sealed_rows_added_outside_the_app_are_never_adopted(audited_store, capsys):
    """Removing the 'chain started' marks does not make the app chain (and so launder) a smuggled-in row."""
    conn = raw(audited_store)
    batch = _batch_id(conn)
    conn.execute("INSERT INTO batch_items VALUES (?, 7, 'c', 'a smuggled case')", (batch,))
    conn.execute("DELETE FROM store_meta WHERE key LIKE 'chain_started%'")
    conn.close()
    ReviewStore(audited_store.path)
    assert integrity.main(["--db", str(audited_store.path)]) == 1
    assert f"batch item {batch} 7 is not in the audit chain" in capsys.readouterr().out


def test_a_sealed_database_without_its_key_is_refused_not_resealed(audited_store, tmp_path, capsys):
    key = audit.key_path(audited_store.path)
    moved = key.rename(tmp_path / "kept-elsewhere.key")
    with pytest.raises(FeedbackStoreError, match="audit key reviews.sqlite3.audit-key .* is missing"):
        ReviewStore(audited_store.path)
    assert not key.exists()
    assert integrity.main(["--db", str(audited_store.path)]) == 1
    assert "the audit key reviews.sqlite3.audit-key is missing" in capsys.readouterr().out
    assert integrity.main(["--db", str(audited_store.path), "--key", str(moved)]) == 0
    other = tmp_path / "other.key"
    other.write_text("00" * 32)
    assert integrity.main(["--db", str(audited_store.path), "--key", str(other)]) == 1
    assert "does not match its seal" in capsys.readouterr().out


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
    conn.execute(
        "INSERT INTO review_events (created_at, reviewer, kind, case_id, review_id) "
        "VALUES ('2026-01-01', 'Mallory', 'retract', 'c', 1)"
    )  # allowed by the triggers: an insert
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(
            "INSERT OR REPLACE INTO review_events (event_id, created_at, reviewer, kind, case_id) "
            "VALUES (1, '2026-01-01', 'Mallory', 'skip', 'c')"
        )
    conn.close()
    assert integrity.main(["--db", str(reviewed_store.path)]) == 1
    assert "reviewer action 3 is not in the audit chain" in capsys.readouterr().out

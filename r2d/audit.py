"""Tamper evidence for the review store: a hash chain over the review rows, and private file modes.

Triggers already refuse UPDATE and DELETE, and `reviews_no_replace` refuses an INSERT (or INSERT OR
REPLACE, which would silently delete the old row) that reuses a review id or submission id. But
anyone with a raw SQLite client can drop a trigger. So each review row, as stored, is hashed
together with the hash of the row before it (review_chain, written in the same transaction).
`verify_chain` recomputes the chain: a changed, deleted, reordered or smuggled-in review breaks it.
The chain has no secret key: someone who recomputes every later hash can rewrite it, so record the
head hash elsewhere (it is printed by `python -m training.integrity` and kept in export metadata).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Mapping

GENESIS = "0" * 64
# the review columns the chain covers, fixed so that a future column does not change old hashes
CHAINED_COLUMNS = ("review_id", "submission_id", "created_at", "reviewer", "case_id", "case_text", "batch_id",
                   "item_index", "model_id", "quantization", "prompt_version", "action", "model_label",
                   "model_rationale", "model_probabilities", "final_label", "final_rationale", "rating", "comment",
                   "consistency_label", "time_on_task_s")
PROTECTED_TRIGGERS = ("reviews_no_update", "reviews_no_delete", "reviews_no_replace", "review_chain_no_update",
                      "review_chain_no_delete")

SCHEMA = """
CREATE TABLE IF NOT EXISTS review_chain (
    review_id INTEGER PRIMARY KEY REFERENCES reviews (review_id),
    prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS reviews_no_replace BEFORE INSERT ON reviews
WHEN EXISTS (SELECT 1 FROM reviews WHERE review_id = NEW.review_id OR submission_id = NEW.submission_id)
BEGIN SELECT RAISE(ABORT, 'reviews is append-only: a review id or submission id cannot be reused'); END;
CREATE TRIGGER IF NOT EXISTS review_chain_no_update BEFORE UPDATE ON review_chain
BEGIN SELECT RAISE(ABORT, 'review_chain is append-only'); END;
CREATE TRIGGER IF NOT EXISTS review_chain_no_delete BEFORE DELETE ON review_chain
BEGIN SELECT RAISE(ABORT, 'review_chain is append-only'); END;
"""


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """sha256 of the previous hash and the row's chained columns (canonical JSON)."""
    payload = json.dumps({c: row[c] for c in CHAINED_COLUMNS}, sort_keys=True, ensure_ascii=False,
                         separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode("utf-8")).hexdigest()


def chain_head(conn: sqlite3.Connection) -> str:
    """The newest hash of the chain (GENESIS when no review is chained yet)."""
    row = conn.execute("SELECT row_hash FROM review_chain ORDER BY review_id DESC LIMIT 1").fetchone()
    return row[0] if row else GENESIS


def append_to_chain(conn: sqlite3.Connection, review_id: int) -> str:
    """Chain one just-inserted review (call inside the transaction that inserted it); returns its hash."""
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT * FROM reviews WHERE review_id = ?", (review_id,)).fetchone()
    prev = chain_head(conn)
    digest = row_hash(prev, row)
    conn.execute("INSERT INTO review_chain VALUES (?, ?, ?)", (review_id, prev, digest))
    return digest


def start_chain(conn: sqlite3.Connection) -> None:
    """Create the chain's table and triggers; chain reviews stored before the chain existed, once only.

    Needs an autocommit connection. 'chain_started' in store_meta marks that the chain was
    begun, so reviews missing from it later are reported by verify_chain, never silently adopted.
    """
    conn.executescript(SCHEMA)
    conn.execute("BEGIN IMMEDIATE")  # two processes opening an old database must not both chain it
    try:
        if not conn.execute("SELECT 1 FROM store_meta WHERE key = 'chain_started'").fetchone():
            for (review_id,) in conn.execute("SELECT review_id FROM reviews WHERE review_id NOT IN "
                                             "(SELECT review_id FROM review_chain) ORDER BY review_id").fetchall():
                append_to_chain(conn, review_id)
            conn.execute("INSERT INTO store_meta VALUES ('chain_started', datetime('now'))")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def verify_chain(conn: sqlite3.Connection) -> list[str]:
    """Every sign of tampering with the reviews: changed, removed or added rows, missing triggers."""
    conn.row_factory = sqlite3.Row
    problems = []
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    problems += [f"trigger {t} is missing (dropped with a raw SQLite client?)" for t in PROTECTED_TRIGGERS
                 if t not in triggers]
    chain = {r["review_id"]: r for r in conn.execute("SELECT * FROM review_chain ORDER BY review_id")}
    prev = GENESIS
    for row in conn.execute("SELECT * FROM reviews ORDER BY review_id"):
        entry = chain.pop(row["review_id"], None)
        if entry is None:
            problems.append(f"review {row['review_id']} is not in the audit chain (added outside the app)")
            continue
        if entry["prev_hash"] != prev:
            problems.append(f"the audit chain is broken before review {row['review_id']} (a review was removed "
                            "or the chain rewritten)")
        if row_hash(entry["prev_hash"], row) != entry["row_hash"]:
            problems.append(f"review {row['review_id']} was changed after it was stored")
        prev = entry["row_hash"]
    problems += [f"review {review_id} is in the audit chain but missing from the reviews (deleted)"
                 for review_id in chain]
    return problems


PRIVATE_MODE = 0o600


def make_private(db_path: Path) -> None:
    """Create the database file readable by its owner only (or narrow an existing one), with its WAL/SHM."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if not db_path.exists():
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, PRIVATE_MODE))
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        if path.exists() and (path.stat().st_mode & 0o777) != PRIVATE_MODE:
            os.chmod(path, PRIVATE_MODE)


def file_modes(db_path: Path) -> dict[str, int]:
    """Permission bits of the database file and its WAL/SHM files that exist."""
    return {p.name: p.stat().st_mode & 0o777 for p in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"))
            if p.exists()}

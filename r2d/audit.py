"""Tamper evidence for the review store: hash chains over the review and reviewer-action rows, private files.

Triggers already refuse UPDATE and DELETE, and `reviews_no_replace` refuses an INSERT (or INSERT OR
REPLACE, which would silently delete the old row) that reuses a review id or submission id. But
anyone with a raw SQLite client can drop a trigger. So each review row, as stored, is hashed
together with the hash of the row before it (review_chain, written in the same transaction), and so
is each reviewer action (review_events: a retract or an adjudication changes what is exported; event_chain).
`verify_chain` recomputes the chains: a changed, deleted, reordered or smuggled-in row breaks them.
The chain has no secret key: someone who recomputes every later hash can rewrite it, so record the
head hash elsewhere (it is printed by `python -m training.integrity` and kept in export metadata).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Mapping

GENESIS = "0" * 64
# the columns each chain covers, fixed so that a future column does not change old hashes
REVIEW_COLUMNS = ("review_id", "submission_id", "created_at", "reviewer", "case_id", "case_text", "batch_id",
                   "item_index", "model_id", "quantization", "prompt_version", "action", "model_label",
                   "model_rationale", "model_probabilities", "final_label", "final_rationale", "rating", "comment",
                   "consistency_label", "time_on_task_s")
EVENT_COLUMNS = ("event_id", "created_at", "reviewer", "kind", "case_id", "review_id", "batch_id", "item_index",
                 "note")
# audited table -> (its chain table, its id column, the columns hashed, what a row is called in a message)
CHAINS = {"reviews": ("review_chain", "review_id", REVIEW_COLUMNS, "review"),
          "review_events": ("event_chain", "event_id", EVENT_COLUMNS, "reviewer action")}
PROTECTED_TRIGGERS = ("reviews_no_update", "reviews_no_delete", "reviews_no_replace", "review_chain_no_update",
                      "review_chain_no_delete", "review_events_no_update", "review_events_no_delete",
                      "review_events_no_replace", "event_chain_no_update", "event_chain_no_delete")

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
CREATE TABLE IF NOT EXISTS event_chain (
    event_id INTEGER PRIMARY KEY REFERENCES review_events (event_id),
    prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS review_events_no_replace BEFORE INSERT ON review_events
WHEN EXISTS (SELECT 1 FROM review_events WHERE event_id = NEW.event_id)
BEGIN SELECT RAISE(ABORT, 'review_events is append-only: an event id cannot be reused'); END;
CREATE TRIGGER IF NOT EXISTS event_chain_no_update BEFORE UPDATE ON event_chain
BEGIN SELECT RAISE(ABORT, 'event_chain is append-only'); END;
CREATE TRIGGER IF NOT EXISTS event_chain_no_delete BEFORE DELETE ON event_chain
BEGIN SELECT RAISE(ABORT, 'event_chain is append-only'); END;
"""


def row_hash(prev_hash: str, row: Mapping[str, Any], columns: tuple[str, ...] = REVIEW_COLUMNS) -> str:
    """sha256 of the previous hash and the row's chained columns (canonical JSON)."""
    payload = json.dumps({c: row[c] for c in columns}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode("utf-8")).hexdigest()


def chain_head(conn: sqlite3.Connection, table: str = "reviews") -> str:
    """The newest hash of a table's chain (GENESIS when no row is chained yet)."""
    chain, key, _, _ = CHAINS[table]
    row = conn.execute(f"SELECT row_hash FROM {chain} ORDER BY {key} DESC LIMIT 1").fetchone()
    return row[0] if row else GENESIS


def append_to_chain(conn: sqlite3.Connection, row_id: int, table: str = "reviews") -> str:
    """Chain one just-inserted row (call inside the transaction that inserted it); returns its hash."""
    chain, key, columns, _ = CHAINS[table]
    conn.row_factory = sqlite3.Row
    row = conn.execute(f"SELECT * FROM {table} WHERE {key} = ?", (row_id,)).fetchone()
    prev = chain_head(conn, table)
    digest = row_hash(prev, row, columns)
    conn.execute(f"INSERT INTO {chain} VALUES (?, ?, ?)", (row_id, prev, digest))
    return digest


def start_chain(conn: sqlite3.Connection) -> None:
    """Create the chain's table and triggers; chain reviews stored before the chain existed, once only.

    Needs an autocommit connection. A 'chain_started' key in store_meta marks that a chain was
    begun, so rows missing from it later are reported by verify_chain, never silently adopted.
    """
    conn.executescript(SCHEMA)
    conn.execute("BEGIN IMMEDIATE")  # two processes opening an old database must not both chain it
    try:
        for table, (chain, key, _, _) in CHAINS.items():
            started = "chain_started" if table == "reviews" else f"chain_started:{table}"
            if conn.execute("SELECT 1 FROM store_meta WHERE key = ?", (started,)).fetchone():
                continue
            for (row_id,) in conn.execute(f"SELECT {key} FROM {table} WHERE {key} NOT IN (SELECT {key} FROM {chain}) "
                                          f"ORDER BY {key}").fetchall():
                append_to_chain(conn, row_id, table)
            conn.execute("INSERT INTO store_meta VALUES (?, datetime('now'))", (started,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _normal_sql(sql: str) -> str:
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())


@functools.lru_cache(maxsize=1)
def expected_triggers() -> dict[str, str]:
    """The SQL of every protected trigger as the app creates it (whitespace-normalised): this module's SCHEMA,
    run on stand-in tables, and the store's append-only pair for reviews and review_events."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript("CREATE TABLE reviews (review_id, submission_id); CREATE TABLE review_events (event_id);"
                           "CREATE TABLE store_meta (key, value);" + SCHEMA)
        found = {n: _normal_sql(sql) for n, sql in conn.execute("SELECT name, sql FROM sqlite_master "
                                                                 "WHERE type = 'trigger'")}
    finally:
        conn.close()
    for t in ("reviews", "review_events"):  # as r2d.store._create_schema writes them
        found[f"{t}_no_update"] = _normal_sql(f"CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t} BEGIN "
                                              f"SELECT RAISE(ABORT, '{t} is append-only: add a new row instead'); END")
        found[f"{t}_no_delete"] = _normal_sql(f"CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t} BEGIN "
                                              f"SELECT RAISE(ABORT, '{t} is append-only'); END")
    return found


def verify_chain(conn: sqlite3.Connection) -> list[str]:
    """Every sign of tampering with reviews and reviewer actions: changed, removed or added rows, missing
    triggers, and triggers replaced by others of the same name (their SQL is compared, not only the name)."""
    conn.row_factory = sqlite3.Row
    triggers = {r[0]: r[1] or "" for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")}
    expected = expected_triggers()
    problems = [f"trigger {t} is missing (dropped with a raw SQLite client?)" if t not in triggers else
                f"trigger {t} was replaced: its SQL is not the app's (a no-op of the same name?)"
                for t in PROTECTED_TRIGGERS if t not in triggers or _normal_sql(triggers[t]) != expected[t]]
    for table in CHAINS:
        problems += _verify_table(conn, table)
    return problems


def verify_heads(conn: sqlite3.Connection, heads: Mapping[str, str], where: str) -> list[str]:
    """Chain heads recorded outside the database (an export's meta) must still be in its chains: a history
    cut short (the newest reviews deleted with their chain rows) or rewritten from there on no longer holds
    them. where: what recorded them, for the message."""
    problems = []
    for table, head in heads.items():
        if table not in CHAINS or head == GENESIS:
            continue
        chain, key, _, what = CHAINS[table]
        if conn.execute(f"SELECT 1 FROM {chain} WHERE row_hash = ?", (head,)).fetchone() is None:
            problems.append(f"the {what} chain head recorded in {where} is no longer in the chain ({what}s up to "
                            "it were deleted or rewritten)")
    return problems


def _verify_table(conn: sqlite3.Connection, table: str) -> list[str]:
    chain_table, key, columns, what = CHAINS[table]
    problems, prev = [], GENESIS
    chain = {r[key]: r for r in conn.execute(f"SELECT * FROM {chain_table} ORDER BY {key}")}
    for row in conn.execute(f"SELECT * FROM {table} ORDER BY {key}"):
        entry = chain.pop(row[key], None)
        if entry is None:
            problems.append(f"{what} {row[key]} is not in the audit chain (added outside the app)")
            continue
        if entry["prev_hash"] != prev:
            problems.append(f"the audit chain is broken before {what} {row[key]} (a row was removed or the chain "
                            "rewritten)")
        if row_hash(entry["prev_hash"], row, columns) != entry["row_hash"]:
            problems.append(f"{what} {row[key]} was changed after it was stored")
        prev = entry["row_hash"]
    problems += [f"{what} {row_id} is in the audit chain but missing from {table} (deleted)" for row_id in chain]
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

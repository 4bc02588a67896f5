"""Tamper evidence for the review store: a hash chain over every table whose rows matter, sealed with a key.

Triggers already refuse UPDATE and DELETE, and `reviews_no_replace` refuses an INSERT (or INSERT OR
REPLACE, which would silently delete the old row) that reuses a review id or submission id. But
anyone with a raw SQLite client can drop a trigger. So each row of every audited table (reviews, reviewer
actions, batches, their items (the case text reviewers see), predictions and upload ids, drafts and the exports
log), as stored, is hashed together with the hash of the row before it in a chain table written in the same
transaction. `verify_chain` recomputes the chains: a changed, deleted, reordered or smuggled-in row breaks them.

The chain hash has no secret, so someone who knows it can rewrite a row and recompute every later hash, or
append a forged row with its chain entry. Each chain's head is therefore also sealed: an HMAC under a key kept
in a file beside the database (`<db>.audit-key`, mode 600), stored in store_meta and updated in the same
transaction as the row. Rewriting history now needs the key too. Whoever holds both files can still rewrite
it: the chain heads recorded in every export's meta (and printed by `python -m training.integrity`) then show
a rewrite of anything up to them, so keep a copy of the key and of the printed heads elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2d.errors import FeedbackStoreError

GENESIS = "0" * 64
PRIVATE_MODE = 0o600
# the columns each chain covers, fixed so that a future column does not change old hashes
REVIEW_COLUMNS = (
    "review_id",
    "submission_id",
    "created_at",
    "reviewer",
    "case_id",
    "case_text",
    "batch_id",
    "item_index",
    "model_id",
    "quantization",
    "prompt_version",
    "action",
    "model_label",
    "model_rationale",
    "model_probabilities",
    "final_label",
    "final_rationale",
    "rating",
    "comment",
    "consistency_label",
    "time_on_task_s",
)
EVENT_COLUMNS = ("event_id", "created_at", "reviewer", "kind", "case_id", "review_id", "batch_id", "item_index", "note")


@dataclass(frozen=True)
class Chain:
    """One audited table's chain: where it is kept, which columns identify and are hashed, what a row is called."""

    table: str
    chain_table: str
    key: tuple[str, ...]  # the audited table's key columns
    columns: tuple[str, ...]  # the columns hashed
    what: str

    @property
    def legacy(self) -> bool:
        """The first two chains are keyed by their table's integer id; the later ones by a JSON key in order."""
        return self.chain_table in ("review_chain", "event_chain")

    @property
    def entry_key(self) -> str:
        return self.key[0] if self.legacy else "row_key"

    @property
    def order(self) -> str:
        return self.key[0] if self.legacy else "seq"

    def row_key(self, row: Mapping[str, Any]) -> Any:
        """How the chain table names a row of the audited table."""
        return row[self.key[0]] if self.legacy else json.dumps([row[c] for c in self.key])

    def label(self, entry_key: Any) -> str:
        return str(entry_key) if self.legacy else " ".join(str(v) for v in json.loads(entry_key))


_CHAIN_LIST = (
    Chain("reviews", "review_chain", ("review_id",), REVIEW_COLUMNS, "review"),
    Chain("review_events", "event_chain", ("event_id",), EVENT_COLUMNS, "reviewer action"),
    Chain(
        "batches",
        "batch_chain",
        ("batch_id",),
        ("batch_id", "name", "created_at", "created_by", "model_id", "n_items"),
        "batch",
    ),
    Chain(
        "batch_items",
        "batch_item_chain",
        ("batch_id", "item_index"),
        ("batch_id", "item_index", "case_id", "case_text"),
        "batch item",
    ),
    Chain(
        "batch_predictions",
        "batch_prediction_chain",
        ("batch_id", "item_index"),
        ("batch_id", "item_index", "created_at", "prediction"),
        "batch prediction",
    ),
    Chain(
        "batch_item_sources",
        "batch_item_source_chain",
        ("batch_id", "item_index"),
        ("batch_id", "item_index", "source_id"),
        "upload id of batch item",
    ),
    Chain("drafts", "draft_chain", ("draft_id",), ("draft_id", "created_at", "reviewer", "case_id", "draft"), "draft"),
    Chain(
        "exports",
        "export_chain",
        ("export_id",),
        ("export_id", "created_at", "exported_by", "out_dir", "meta"),
        "export log entry",
    ),
)
CHAINS: dict[str, Chain] = {c.table: c for c in _CHAIN_LIST}
# tables whose rows are never updated or deleted (r2d.review.store creates them; append_only_sql, the triggers)
APPEND_ONLY = (
    "reviews",
    "batches",
    "batch_items",
    "batch_predictions",
    "exports",
    "review_events",
    "drafts",
    "batch_item_sources",
)
PROTECTED_TRIGGERS = (
    tuple(f"{t}_no_{op}" for t in APPEND_ONLY for op in ("update", "delete"))
    + ("reviews_no_replace", "review_events_no_replace")
    + tuple(f"{c.chain_table}_no_{op}" for c in _CHAIN_LIST for op in ("update", "delete"))
)
SEALED_MARK = "audit_sealed"  # store_meta key: the chains are sealed, so a missing key file is an error


def _chain_table_sql(chain: Chain) -> str:
    if chain.legacy:
        columns = f"{chain.key[0]} INTEGER PRIMARY KEY REFERENCES {chain.table} ({chain.key[0]})"
    else:
        columns = "seq INTEGER PRIMARY KEY, row_key TEXT NOT NULL UNIQUE"
    return (
        f"CREATE TABLE IF NOT EXISTS {chain.chain_table} ({columns}, prev_hash TEXT NOT NULL, "
        f"row_hash TEXT NOT NULL);"
        + "".join(
            f"CREATE TRIGGER IF NOT EXISTS {chain.chain_table}_no_{op} BEFORE {op.upper()} ON "
            f"{chain.chain_table} BEGIN SELECT RAISE(ABORT, '{chain.chain_table} is append-only'); END;"
            for op in ("update", "delete")
        )
    )


SCHEMA = (
    "".join(_chain_table_sql(c) for c in _CHAIN_LIST)
    + """
CREATE TRIGGER IF NOT EXISTS reviews_no_replace BEFORE INSERT ON reviews
WHEN EXISTS (SELECT 1 FROM reviews WHERE review_id = NEW.review_id OR submission_id = NEW.submission_id)
BEGIN SELECT RAISE(ABORT, 'reviews is append-only: a review id or submission id cannot be reused'); END;
CREATE TRIGGER IF NOT EXISTS review_events_no_replace BEFORE INSERT ON review_events
WHEN EXISTS (SELECT 1 FROM review_events WHERE event_id = NEW.event_id)
BEGIN SELECT RAISE(ABORT, 'review_events is append-only: an event id cannot be reused'); END;
"""
)


def append_only_sql(tables: Iterable[str] = APPEND_ONLY) -> str:
    """The triggers that refuse UPDATE and DELETE on tables (created by r2d.review.store, checked by verify_chain)."""
    return "".join(
        f"CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t} BEGIN "
        f"SELECT RAISE(ABORT, '{t} is append-only: add a new row instead'); END;"
        f"CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} BEGIN "
        f"SELECT RAISE(ABORT, '{t} is append-only'); END;"
        for t in tables
    )


def row_hash(prev_hash: str, row: Mapping[str, Any], columns: tuple[str, ...] = REVIEW_COLUMNS) -> str:
    """sha256 of the previous hash and the row's chained columns (canonical JSON)."""
    payload = json.dumps({c: row[c] for c in columns}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode()).hexdigest()


def seal(audit_key: bytes, table: str, head: str) -> str:
    """The keyed seal of a chain's head: HMAC-SHA256 over the table's name and the head."""
    return hmac.new(audit_key, f"{table}\n{head}".encode(), hashlib.sha256).hexdigest()


def chain_head(conn: sqlite3.Connection, table: str = "reviews") -> str:
    """The newest hash of a table's chain (GENESIS when no row is chained yet)."""
    chain = CHAINS[table]
    row = conn.execute(f"SELECT row_hash FROM {chain.chain_table} ORDER BY {chain.order} DESC LIMIT 1").fetchone()
    return row[0] if row else GENESIS


def append_rows(conn: sqlite3.Connection, table: str, keys: Iterable[tuple], audit_key: bytes) -> str:
    """Chain just-inserted rows of table, given by their key values (call inside the transaction that inserted
    them), and reseal the chain; returns the new head."""
    chain = CHAINS[table]
    conn.row_factory = sqlite3.Row
    where = " AND ".join(f"{c} = ?" for c in chain.key)
    head = chain_head(conn, table)
    for values in keys:
        row = conn.execute(f"SELECT * FROM {table} WHERE {where}", tuple(values)).fetchone()
        digest = row_hash(head, row, chain.columns)
        if chain.legacy:
            conn.execute(f"INSERT INTO {chain.chain_table} VALUES (?, ?, ?)", (chain.row_key(row), head, digest))
        else:
            conn.execute(
                f"INSERT INTO {chain.chain_table} (row_key, prev_hash, row_hash) VALUES (?, ?, ?)",
                (chain.row_key(row), head, digest),
            )
        head = digest
    conn.execute(
        "INSERT OR REPLACE INTO store_meta VALUES (?, ?)", (f"chain_seal:{table}", seal(audit_key, table, head))
    )
    return head


def append_to_chain(conn: sqlite3.Connection, row_id: int, audit_key: bytes, table: str = "reviews") -> str:
    """Chain one just-inserted row given by its integer id; returns its hash."""
    return append_rows(conn, table, [(row_id,)], audit_key)


KEY_SUFFIX = ".audit-key"


def key_path(db_path: str | Path) -> Path:
    """Where the audit key of the database at db_path is kept: beside it."""
    return Path(f"{db_path}{KEY_SUFFIX}")


def read_key(path: str | Path) -> bytes | None:
    """The audit key in the file at path (32 bytes written as hex), or None when it is missing or unreadable."""
    try:
        key = bytes.fromhex(Path(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return key if len(key) == 32 else None


def _create_key(path: Path) -> bytes:
    key = secrets.token_bytes(32)
    tmp = path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE)
    try:
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # a kill mid-write leaves no half key where the key belongs
    return key


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM store_meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _unchained(conn: sqlite3.Connection, chain: Chain) -> list[tuple]:
    conn.row_factory = sqlite3.Row
    chained = {r[0] for r in conn.execute(f"SELECT {chain.entry_key} FROM {chain.chain_table}")}
    rows = conn.execute(f"SELECT {', '.join(chain.key)} FROM {chain.table} ORDER BY rowid").fetchall()
    return [tuple(r) for r in rows if chain.row_key(r) not in chained]


def start_chain(conn: sqlite3.Connection, db_path: str | Path) -> bytes:
    """Create the chain tables and triggers; returns the audit key. Needs an autocommit connection.

    The first time (a new database, or one made before the seal existed) the key file is created, rows stored
    before their chain existed are chained once, and every chain is sealed (recorded in store_meta). After
    that nothing is adopted or resealed on opening, so rows added outside the app stay reported, and a
    missing key is an error: the app refuses rather than seal an unchecked history with a new one.
    Raises FeedbackStoreError when the database is sealed and its key file is missing or unreadable.
    """
    conn.executescript(SCHEMA)
    conn.execute("BEGIN IMMEDIATE")  # two processes opening an old database must not both chain it
    try:
        audit_key = read_key(key_path(db_path))
        if _meta(conn, SEALED_MARK) is None:
            audit_key = audit_key or _create_key(key_path(db_path))
            for chain in _CHAIN_LIST:
                started = "chain_started" if chain.table == "reviews" else f"chain_started:{chain.table}"
                adopt = _unchained(conn, chain) if _meta(conn, started) is None else []
                append_rows(conn, chain.table, adopt, audit_key)
                conn.execute("INSERT OR IGNORE INTO store_meta VALUES (?, datetime('now'))", (started,))
            conn.execute("INSERT INTO store_meta VALUES (?, datetime('now'))", (SEALED_MARK,))
        elif audit_key is None:
            raise FeedbackStoreError(
                f"the audit key {key_path(db_path).name} beside {Path(db_path).name} is "
                "missing or unreadable: copy it back from where the database came from (it "
                "proves the review history was not rewritten)"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return audit_key


def is_sealed(conn: sqlite3.Connection) -> bool:
    """Whether the database's chains are sealed (opened at least once by an app that seals)."""
    try:
        return _meta(conn, SEALED_MARK) is not None
    except sqlite3.OperationalError:  # no store_meta: not a review database the app has opened
        return False


def _normal_sql(sql: str) -> str:
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())


@functools.lru_cache(maxsize=1)
def expected_triggers() -> dict[str, str]:
    """The SQL of every protected trigger as the app creates it (whitespace-normalised): this module's SCHEMA
    and append_only_sql, run on stand-in tables."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(
            "CREATE TABLE reviews (review_id, submission_id); CREATE TABLE review_events (event_id);"
            + "".join(f"CREATE TABLE {t} (x);" for t in APPEND_ONLY if t not in ("reviews", "review_events"))
            + "CREATE TABLE store_meta (key, value);"
            + SCHEMA
            + append_only_sql()
        )
        return {
            n: _normal_sql(sql) for n, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        }
    finally:
        conn.close()


def verify_chain(conn: sqlite3.Connection, audit_key: bytes | None = None) -> list[str]:
    """Every sign of tampering with the audited tables: changed, removed or added rows, missing triggers,
    triggers replaced by others of the same name (their SQL is compared, not only the name), and, given the
    audit key, chains whose heads no longer match their seals (rows forged or rewritten with their chain)."""
    conn.row_factory = sqlite3.Row
    triggers = {r[0]: r[1] or "" for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")}
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    expected = expected_triggers()
    problems = [
        f"trigger {t} is missing (dropped with a raw SQLite client?)"
        if t not in triggers
        else f"trigger {t} was replaced: its SQL is not the app's (a no-op of the same name?)"
        for t in PROTECTED_TRIGGERS
        if t not in triggers or _normal_sql(triggers[t]) != expected[t]
    ]
    for chain in _CHAIN_LIST:
        if not {chain.table, chain.chain_table} <= tables:
            problems.append(f"table {chain.table} or its chain {chain.chain_table} is missing")
            continue
        problems += _verify_table(conn, chain)
        if audit_key is not None:
            problems += _verify_seal(conn, chain, audit_key)
    return problems


def _verify_table(conn: sqlite3.Connection, chain: Chain) -> list[str]:
    what = chain.what
    rows = {chain.row_key(r): r for r in conn.execute(f"SELECT * FROM {chain.table}")}
    problems, prev = [], GENESIS
    for entry in conn.execute(f"SELECT * FROM {chain.chain_table} ORDER BY {chain.order}"):
        name = chain.label(entry[chain.entry_key])
        if entry["prev_hash"] != prev:
            problems.append(
                f"the audit chain is broken before {what} {name} (an entry was removed or the chain rewritten)"
            )
        row = rows.pop(entry[chain.entry_key], None)
        if row is None:
            problems.append(f"{what} {name} is in the audit chain but missing from {chain.table} (deleted)")
        elif row_hash(entry["prev_hash"], row, chain.columns) != entry["row_hash"]:
            problems.append(f"{what} {name} was changed after it was stored")
        prev = entry["row_hash"]
    problems += [f"{what} {chain.label(k)} is not in the audit chain (added outside the app)" for k in rows]
    return problems


def _verify_seal(conn: sqlite3.Connection, chain: Chain, audit_key: bytes) -> list[str]:
    stored = _meta(conn, f"chain_seal:{chain.table}")
    if stored is None:
        return [f"the {chain.what} chain has no seal (removed from store_meta?)"]
    if not hmac.compare_digest(stored, seal(audit_key, chain.table, chain_head(conn, chain.table))):
        return [
            f"the {chain.what} chain's head does not match its seal: {chain.what}s were appended, removed or "
            "rewritten outside the app together with their chain entries (or the audit key is not this "
            "database's)"
        ]
    return []


def verify_heads(conn: sqlite3.Connection, heads: Mapping[str, str], where: str) -> list[str]:
    """Chain heads recorded outside the database (an export's meta) must still be in its chains: a history
    cut short (the newest rows deleted with their chain rows) or rewritten from there on no longer holds
    them. where: what recorded them, for the message. Tables a meta does not name (older exports) are skipped."""
    problems = []
    for table, head in heads.items():
        if table not in CHAINS or head == GENESIS:
            continue
        chain = CHAINS[table]
        if conn.execute(f"SELECT 1 FROM {chain.chain_table} WHERE row_hash = ?", (head,)).fetchone() is None:
            problems.append(
                f"the {chain.what} chain head recorded in {where} is no longer in the chain "
                f"({chain.what}s up to it were deleted or rewritten)"
            )
    return problems


def make_private(db_path: Path) -> None:
    """Create the database file readable by its owner only (or narrow an existing one), with its WAL/SHM."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if not db_path.exists():
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, PRIVATE_MODE))
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), key_path(db_path)):
        if path.exists() and (path.stat().st_mode & 0o777) != PRIVATE_MODE:
            os.chmod(path, PRIVATE_MODE)


def file_modes(db_path: Path) -> dict[str, int]:
    """Permission bits of the database file, its WAL/SHM files and its audit key, those that exist."""
    return {
        p.name: p.stat().st_mode & 0o777
        for p in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), key_path(db_path))
        if p.exists()
    }

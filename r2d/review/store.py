"""The review store: a local SQLite database (WAL) that never loses or rewrites a nurse's work.

Every nurse action is one INSERT in its own short transaction, so a kill mid-write loses at
most the row being written and never a committed one. Review rows are append-only (triggers
refuse UPDATE and DELETE): a correction is a new row, and the current review of a case is its
latest row. Each review carries a client-made `submission_id` under a UNIQUE constraint, so a
double click or a retried request is stored once. Connections are opened per operation, so any
number of threads and processes can write at once; SQLite's busy timeout serialises them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from r2d import limits
from r2d.errors import FeedbackStoreError, ReviewActionError
from r2d.review import audit

logger = logging.getLogger(__name__)

# 2: every audited table chained and the chains sealed (r2d.review.audit); a version-1 database migrates on opening
SCHEMA_VERSION = 2
ACTIONS = ("accepted", "edited", "relabelled")
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    review_id INTEGER PRIMARY KEY AUTOINCREMENT,
    submission_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    case_id TEXT NOT NULL,
    case_text TEXT NOT NULL,
    batch_id TEXT,
    item_index INTEGER,
    model_id TEXT NOT NULL,
    quantization TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accepted', 'edited', 'relabelled')),
    model_label TEXT NOT NULL,
    model_rationale TEXT NOT NULL,
    model_probabilities TEXT NOT NULL,
    final_label TEXT NOT NULL,
    final_rationale TEXT NOT NULL,
    rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    consistency_label TEXT,
    time_on_task_s REAL
);
CREATE INDEX IF NOT EXISTS reviews_by_case ON reviews (case_id, review_id);
CREATE INDEX IF NOT EXISTS reviews_by_batch ON reviews (batch_id, item_index, review_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL,
    created_by TEXT NOT NULL, model_id TEXT NOT NULL, n_items INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batch_items (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id), item_index INTEGER NOT NULL,
    case_id TEXT NOT NULL, case_text TEXT NOT NULL, PRIMARY KEY (batch_id, item_index));
CREATE TABLE IF NOT EXISTS batch_predictions (
    batch_id TEXT NOT NULL, item_index INTEGER NOT NULL, created_at TEXT NOT NULL,
    prediction TEXT NOT NULL, PRIMARY KEY (batch_id, item_index),
    FOREIGN KEY (batch_id, item_index) REFERENCES batch_items (batch_id, item_index));
CREATE TABLE IF NOT EXISTS exports (
    export_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
    exported_by TEXT NOT NULL, out_dir TEXT NOT NULL, meta TEXT NOT NULL);
-- what a reviewer did besides saving: retract (undo a save), skip, flag, adjudicate (adopt a review for a case)
CREATE TABLE IF NOT EXISTS review_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    kind TEXT NOT NULL CHECK (kind IN ('retract', 'skip', 'flag', 'adjudicate')),
    case_id TEXT NOT NULL, review_id INTEGER REFERENCES reviews (review_id),
    batch_id TEXT, item_index INTEGER, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS events_by_case ON review_events (case_id, event_id);
-- unsaved work per reviewer and case; the newest row counts until a newer review of that reviewer replaces it
CREATE TABLE IF NOT EXISTS drafts (
    draft_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
    reviewer TEXT NOT NULL, case_id TEXT NOT NULL, draft TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS drafts_by_key ON drafts (reviewer, case_id, draft_id);
-- the id column of an uploaded file, kept so that an export names cases as the upload did
CREATE TABLE IF NOT EXISTS batch_item_sources (
    batch_id TEXT NOT NULL, item_index INTEGER NOT NULL, source_id TEXT NOT NULL,
    PRIMARY KEY (batch_id, item_index),
    FOREIGN KEY (batch_id, item_index) REFERENCES batch_items (batch_id, item_index));
"""
EVENT_KINDS = ("retract", "skip", "flag", "adjudicate")
# a review counts until its reviewer retracts it (retracting is itself a row: nothing is deleted)
_LIVE = "review_id NOT IN (SELECT review_id FROM review_events WHERE kind = 'retract' AND review_id IS NOT NULL)"


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds: sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def case_id_for(case_text: str) -> str:
    """Stable id of a case: the same text (up to whitespace) is the same case in every batch."""
    normalised = re.sub(r"\s+", " ", case_text).strip()
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ReviewRecord:
    """One nurse review: what the model said, what the nurse made of it, who, when and how long."""

    submission_id: str
    reviewer: str
    case_id: str
    case_text: str
    model_id: str
    quantization: str
    prompt_version: str
    action: str  # accepted | edited | relabelled
    model_label: str
    model_rationale: str
    model_probabilities: dict[str, float]
    final_label: str
    final_rationale: str
    rating: int | None = None
    comment: str = ""
    consistency_label: str | None = None  # label re-predicted from final_rationale alone
    time_on_task_s: float | None = None
    batch_id: str | None = None
    item_index: int | None = None
    created_at: str = ""  # set by the store
    review_id: int | None = None  # set by the store

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReviewRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def payload(self) -> dict[str, Any]:
        """The fields a submission is made of (the store-assigned ones left out)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("created_at", "review_id")}

    def differences(self, other: ReviewRecord) -> list[str]:
        """Fields whose content differs from other's; time on task is ignored (a retry is later by nature)."""
        mine, theirs = self.payload(), other.payload()
        return [k for k in mine if k != "time_on_task_s" and mine[k] != theirs[k]]


@dataclass(frozen=True)
class SubmitResult:
    record: ReviewRecord  # as stored (review_id and created_at filled in)
    created: bool  # False when this submission_id was already stored (a retry or a double click)


@dataclass(frozen=True)
class BatchInfo:
    batch_id: str
    name: str
    created_at: str
    created_by: str
    model_id: str
    n_items: int
    n_predicted: int = 0
    n_reviewed: int = 0


@dataclass(frozen=True)
class BatchItem:
    batch_id: str
    item_index: int
    case_id: str
    case_text: str
    prediction: dict[str, Any] | None = None  # Prediction.to_dict() once predicted
    review: ReviewRecord | None = None  # the latest review of this item, if any
    source_id: str | None = None  # the upload's own id of the case
    skipped: bool = False  # skipped by the reviewer the items were read for


@dataclass(frozen=True)
class ReviewEvent:
    """A reviewer action that is not a review: retract (undo a save), skip, flag, adjudicate."""

    event_id: int
    created_at: str
    reviewer: str
    kind: str
    case_id: str
    review_id: int | None = None  # the retracted or adopted review
    batch_id: str | None = None
    item_index: int | None = None
    note: str = ""


# free-text fields of a review: (field, most characters, may hold line breaks)
_TEXT_FIELDS = (
    ("submission_id", limits.MAX_ID_CHARS, False),
    ("reviewer", limits.MAX_NAME_CHARS, False),
    ("case_id", limits.MAX_ID_CHARS, False),
    ("case_text", limits.MAX_STORED_CASE_CHARS, True),
    ("model_label", limits.MAX_ID_CHARS, False),
    ("model_rationale", limits.MAX_RATIONALE_CHARS, True),
    ("final_label", limits.MAX_ID_CHARS, False),
    ("final_rationale", limits.MAX_RATIONALE_CHARS, True),
    ("comment", limits.MAX_COMMENT_CHARS, True),
)


def validate_review(record: ReviewRecord) -> None:
    """Raise ReviewActionError naming the first field a stored review cannot have."""
    # bounded plain text first: a 10 MB rationale or a NUL byte never reaches SQLite
    problems = [
        p
        for name, max_chars, multiline in _TEXT_FIELDS
        for p in limits.text_problems(name.replace("_", " "), getattr(record, name), max_chars, multiline)
    ]
    if problems:
        raise ReviewActionError("review not saved: " + "; ".join(problems))
    if not record.submission_id.strip():
        problems.append("submission_id is empty")
    if not record.reviewer.strip():
        problems.append("reviewer is empty: enter your name before submitting")
    if record.action not in ACTIONS:
        problems.append(f"action {record.action!r} is not one of {', '.join(ACTIONS)}")
    if record.rating is not None and not (isinstance(record.rating, int) and 1 <= record.rating <= 5):
        problems.append(f"rating must be 1-5 or empty, got {record.rating!r}")
    if not record.final_label.strip():
        problems.append("final label is empty: choose a label")
    if not record.final_rationale.strip():
        problems.append("final rationale is empty: write one (Stage 2 cannot learn from an empty rationale)")
    if not record.case_text.strip():
        problems.append("case text is empty")
    if problems:
        raise ReviewActionError("review not saved: " + "; ".join(problems))


class ReviewStore:
    """Append-only SQLite store of reviews, batches and exports. Safe across threads and processes."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0) -> None:
        """Open (creating if needed) the database at path. Raises FeedbackStoreError if unusable."""
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._check_file()
        self._create_schema()

    # --- connections -----------------------------------------------------------------------

    def _check_file(self) -> None:
        if self.path.is_dir():
            raise FeedbackStoreError(f"review database {self.path.name} is a directory; pass --db with a file path")
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open("rb") as f:
                header = f.read(len(_SQLITE_HEADER))
            if header != _SQLITE_HEADER:
                raise FeedbackStoreError(self._not_a_db_message())

    def _not_a_db_message(self) -> str:
        return (
            f"{self.path.name} is not a SQLite review database (or it is corrupt). Move it aside (do not "
            "delete it: "
            f"it may hold reviews) and start again, or pass --db with another path"
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are opened explicitly, one short one per write
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except (sqlite3.Error, OSError) as e:
            raise FeedbackStoreError(
                f"cannot open review database {self.path.name}: {e}; check the path and its "
                "permissions, or pass --db with another path"
            ) from e
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            # FULL: a committed review survives power loss too, not only a killed process
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise FeedbackStoreError(f"{self._not_a_db_message()} ({e})") from e
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        except sqlite3.OperationalError as e:
            raise FeedbackStoreError(f"reading {self.path.name} failed: {e}; try again") from e
        except sqlite3.DatabaseError as e:
            raise FeedbackStoreError(f"reading {self.path.name} failed: {e}. {self._not_a_db_message()}") from e
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short IMMEDIATE transaction: takes the write lock up front, so it never deadlocks on upgrade."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as e:
            raise FeedbackStoreError(f"{self.path.name} refused the write: {e}") from e
        except sqlite3.OperationalError as e:
            raise FeedbackStoreError(f"writing to {self.path.name} failed: {e}; nothing was saved, submit again") from e
        except sqlite3.DatabaseError as e:
            raise FeedbackStoreError(f"writing to {self.path.name} failed: {e}. {self._not_a_db_message()}") from e
        finally:
            conn.close()

    def _create_schema(self) -> None:
        audit.make_private(self.path)  # owner-only before SQLite writes a byte (its WAL/SHM copy this mode)
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise FeedbackStoreError(
                    f"{self.path.name}: cannot switch to WAL journaling (got {mode}); put the database on a local disk"
                )
            # the audit trail must not be rewritten, not even by a bug in this module
            conn.executescript(_SCHEMA + audit.append_only_sql())
            conn.execute("INSERT OR IGNORE INTO store_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._audit_key = audit.start_chain(conn, self.path)
            conn.execute(
                "UPDATE store_meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
                (str(SCHEMA_VERSION), SCHEMA_VERSION),
            )
            version = int(conn.execute("SELECT value FROM store_meta WHERE key='schema_version'").fetchone()[0])
        except sqlite3.OperationalError as e:
            raise FeedbackStoreError(
                f"cannot set up {self.path.name}: {e}; try again, or pass --db with another path"
            ) from e
        except sqlite3.DatabaseError as e:
            raise FeedbackStoreError(f"{self._not_a_db_message()} ({e})") from e
        finally:
            conn.close()
        audit.make_private(self.path)
        if version > SCHEMA_VERSION:
            raise FeedbackStoreError(
                f"{self.path.name} has schema version {version}, newer than this code "
                f"({SCHEMA_VERSION}); update Reason2Decide or use another --db"
            )

    # --- reviews -----------------------------------------------------------------------------

    def submit(self, record: ReviewRecord) -> SubmitResult:
        """Store one review, once per submission_id. Raises ReviewActionError if invalid, FeedbackStoreError if unsaved,
        or if the submission_id was already used for different content."""
        validate_review(record)
        row = record.payload()
        row["model_probabilities"] = json.dumps(record.model_probabilities)
        row["created_at"] = utc_now()
        columns = ", ".join(row)
        with self._write() as conn:
            # a retry finds its row; a trigger refuses any INSERT that reuses an id (r2d.review.audit)
            existing = conn.execute("SELECT * FROM reviews WHERE submission_id = ?", (record.submission_id,)).fetchone()
            created = existing is None
            if created:
                cur = conn.execute(
                    f"INSERT INTO reviews ({columns}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
                )
                audit.append_to_chain(conn, cur.lastrowid, self._audit_key)
                existing = conn.execute("SELECT * FROM reviews WHERE review_id = ?", (cur.lastrowid,)).fetchone()
            stored = self._row_to_review(existing)
        differences = [] if created else stored.differences(record)
        if differences:
            raise ReviewActionError(
                f"submission id {record.submission_id} was already used for a different review "
                f"(differs in {', '.join(differences)}); reload the case and submit again"
            )
        return SubmitResult(stored, created)

    @staticmethod
    def _row_to_review(row: sqlite3.Row) -> ReviewRecord:
        data = dict(row)
        data["model_probabilities"] = json.loads(data["model_probabilities"])
        return ReviewRecord.from_dict(data)

    def chain_heads(self) -> dict[str, str]:
        """The last hash of each audit chain: kept outside the database (in every export's meta), it shows
        later whether rows up to that point were rewritten, since the chain has no secret key."""
        with self._read() as conn:
            return {table: audit.chain_head(conn, table) for table in audit.CHAINS}

    def reviews(self, batch_id: str | None = None) -> list[ReviewRecord]:
        """Every review row (the full audit trail), oldest first; only one batch's if batch_id is given."""
        where, args = ("WHERE batch_id = ?", (batch_id,)) if batch_id is not None else ("", ())
        with self._read() as conn:
            rows = conn.execute(f"SELECT * FROM reviews {where} ORDER BY review_id", args).fetchall()
        return [self._row_to_review(r) for r in rows]

    def latest_reviews(self) -> list[ReviewRecord]:
        """The current review of each case (its latest row that is not retracted), oldest case first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT * FROM reviews WHERE review_id IN (SELECT MAX(review_id) FROM reviews "
                f"WHERE {_LIVE} GROUP BY case_id) ORDER BY review_id"
            ).fetchall()
        return [self._row_to_review(r) for r in rows]

    def reviewer_reviews(self, case_id: str | None = None) -> list[ReviewRecord]:
        """Every reviewer's current review of each case (one case's if case_id is given), oldest first."""
        where, args = ("AND case_id = ?", (case_id,)) if case_id is not None else ("", ())
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT * FROM reviews WHERE review_id IN (SELECT MAX(review_id) FROM reviews "
                f"WHERE {_LIVE} {where} GROUP BY case_id, reviewer) ORDER BY review_id",
                args,
            ).fetchall()
        return [self._row_to_review(r) for r in rows]

    # --- retract, skip, flag, adjudicate -------------------------------------------------------

    def add_event(
        self,
        reviewer: str,
        kind: str,
        case_id: str,
        review_id: int | None = None,
        batch_id: str | None = None,
        item_index: int | None = None,
        note: str = "",
    ) -> ReviewEvent:
        """Append one reviewer action. Raises ReviewActionError for an unknown kind or an empty name."""
        problems = limits.text_problems(
            "reviewer", reviewer, limits.MAX_NAME_CHARS, multiline=False
        ) + limits.text_problems("note", note, limits.MAX_COMMENT_CHARS)
        if problems:
            raise ReviewActionError("not saved: " + "; ".join(problems))
        if kind not in EVENT_KINDS:
            raise ReviewActionError(f"event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
        if not reviewer.strip():
            raise ReviewActionError("enter your name first: every action records who made it")
        row = (utc_now(), reviewer.strip(), kind, case_id, review_id, batch_id, item_index, note.strip())
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO review_events (created_at, reviewer, kind, case_id, review_id, batch_id, "
                "item_index, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            audit.append_to_chain(conn, cur.lastrowid, self._audit_key, "review_events")
        return ReviewEvent(cur.lastrowid, *row)

    def events(self, kind: str | None = None) -> list[ReviewEvent]:
        """Reviewer actions (one kind's if given), oldest first."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        with self._read() as conn:
            rows = conn.execute(f"SELECT * FROM review_events {where} ORDER BY event_id", args).fetchall()
        return [ReviewEvent(**dict(r)) for r in rows]

    def retract_last(self, reviewer: str) -> ReviewRecord | None:
        """Retract the reviewer's newest review that still counts (undo my last save); None if there is none."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT * FROM reviews WHERE reviewer = ? AND {_LIVE} ORDER BY review_id DESC LIMIT 1",
                (reviewer.strip(),),
            ).fetchone()
        if row is None:
            return None
        record = self._row_to_review(row)
        self.add_event(reviewer, "retract", record.case_id, record.review_id, record.batch_id, record.item_index)
        return record

    def adjudications(self) -> dict[str, int]:
        """case_id -> the review adopted for it by the newest adjudication that names a live review."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT case_id, review_id FROM review_events WHERE kind = 'adjudicate' AND "
                f"review_id IN (SELECT review_id FROM reviews WHERE {_LIVE}) "
                "ORDER BY event_id"
            ).fetchall()
        return {r["case_id"]: r["review_id"] for r in rows}

    # --- drafts --------------------------------------------------------------------------------

    def save_draft(self, reviewer: str, case_id: str, draft: Mapping[str, Any]) -> None:
        """Keep what a reviewer has typed but not saved (a new row each time; the newest counts)."""
        problems = limits.text_problems("reviewer", reviewer, limits.MAX_NAME_CHARS, multiline=False) + [
            p
            for key, value in draft.items()
            if isinstance(value, str)
            for p in limits.text_problems(f"draft {key}", value, limits.MAX_RATIONALE_CHARS)
        ]
        size = len(json.dumps(dict(draft), ensure_ascii=False)) if not problems else 0
        if size > limits.MAX_DRAFT_CHARS:
            problems.append(f"the draft has {size:,} characters; the limit is {limits.MAX_DRAFT_CHARS:,}")
        if problems:
            raise ReviewActionError("draft not kept: " + "; ".join(problems))
        if not reviewer.strip():
            return  # nobody to key it by; the UI asks for a name before anything can be saved
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO drafts (created_at, reviewer, case_id, draft) VALUES (?, ?, ?, ?)",
                (utc_now(), reviewer.strip(), case_id, json.dumps(dict(draft), ensure_ascii=False)),
            )
            audit.append_to_chain(conn, cur.lastrowid, self._audit_key, "drafts")

    def draft(self, reviewer: str, case_id: str | None = None) -> dict[str, Any] | None:
        """The reviewer's newest draft (of one case, or of any case) that is newer than their last save of it."""
        where, args = ("AND d.case_id = ?", (reviewer.strip(), case_id)) if case_id else ("", (reviewer.strip(),))
        with self._read() as conn:
            row = conn.execute(
                f"""
                SELECT d.* FROM drafts d WHERE d.reviewer = ? {where} AND d.created_at > coalesce(
                    (SELECT MAX(r.created_at) FROM reviews r WHERE r.reviewer = d.reviewer AND r.case_id = d.case_id
                     AND r.{_LIVE}), '')
                ORDER BY d.draft_id DESC LIMIT 1""",
                args,
            ).fetchone()
        return json.loads(row["draft"]) if row else None

    def is_live(self, review_id: int | None) -> bool:
        """Whether a stored review still counts (it exists and was not retracted)."""
        with self._read() as conn:
            return (
                conn.execute(f"SELECT 1 FROM reviews WHERE review_id = ? AND {_LIVE}", (review_id,)).fetchone()
                is not None
            )

    def count_reviews(self) -> int:
        """How many review rows (corrections included) the store holds."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])

    # --- batches -----------------------------------------------------------------------------

    def create_batch(
        self,
        name: str,
        case_texts: Sequence[str],
        created_by: str,
        model_id: str,
        source_ids: Sequence[str | None] | None = None,
    ) -> BatchInfo:
        """Persist an uploaded case list (before predicting, so a crash mid-batch can resume).

        source_ids: the upload's own id of each case (None where it had none), kept for the export.
        """
        if not case_texts:
            raise ReviewActionError("a batch needs at least one case")
        if source_ids is not None and len(source_ids) != len(case_texts):
            raise ReviewActionError(f"{len(source_ids)} ids for {len(case_texts)} cases")
        batch_id = f"b-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        created_at = utc_now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                (batch_id, name, created_at, created_by, model_id, len(case_texts)),
            )
            conn.executemany(
                "INSERT INTO batch_items VALUES (?, ?, ?, ?)",
                [(batch_id, i, case_id_for(t), t) for i, t in enumerate(case_texts)],
            )
            sources = [(batch_id, i, str(s)) for i, s in enumerate(source_ids or ()) if s not in (None, "")]
            conn.executemany("INSERT INTO batch_item_sources VALUES (?, ?, ?)", sources)
            audit.append_rows(conn, "batches", [(batch_id,)], self._audit_key)
            audit.append_rows(conn, "batch_items", [(batch_id, i) for i in range(len(case_texts))], self._audit_key)
            audit.append_rows(conn, "batch_item_sources", [s[:2] for s in sources], self._audit_key)
        return BatchInfo(batch_id, name, created_at, created_by, model_id, len(case_texts))

    def add_batch_predictions(self, batch_id: str, predictions: Mapping[int, Mapping[str, Any]]) -> None:
        """Store predictions of batch items; an item keeps its first prediction (retries are no-ops)."""
        now = utc_now()
        with self._write() as conn:
            added = [
                (batch_id, i)
                for i, p in predictions.items()
                if conn.execute(
                    "INSERT OR IGNORE INTO batch_predictions VALUES (?, ?, ?, ?)",
                    (batch_id, i, now, json.dumps(dict(p))),
                ).rowcount
                == 1
            ]
            audit.append_rows(conn, "batch_predictions", added, self._audit_key)

    def list_batches(self) -> list[BatchInfo]:
        """All batches, newest first, with how many items are predicted and reviewed."""
        with self._read() as conn:
            rows = conn.execute(f"""
                SELECT b.*, (SELECT COUNT(*) FROM batch_predictions p WHERE p.batch_id = b.batch_id) AS n_predicted,
                       (SELECT COUNT(DISTINCT r.item_index) FROM reviews r WHERE r.batch_id = b.batch_id
                        AND r.{_LIVE}) AS n_reviewed
                FROM batches b ORDER BY b.created_at DESC, b.batch_id DESC""").fetchall()
        return [BatchInfo(**dict(r)) for r in rows]

    def get_batch(self, batch_id: str) -> BatchInfo:
        """One batch by id. Raises ReviewActionError if there is none."""
        for info in self.list_batches():
            if info.batch_id == batch_id:
                return info
        raise ReviewActionError(f"no batch {batch_id!r} in {self.path.name}; upload the cases again")

    def batch_items(self, batch_id: str, reviewer: str | None = None) -> list[BatchItem]:
        """The items of a batch in upload order, each with its prediction and latest live review (if any).

        With reviewer: that reviewer's own latest review only (blind review), and whether they skipped the item.
        """
        self.get_batch(batch_id)
        mine, args = ("AND reviewer = ?", (batch_id, reviewer.strip())) if reviewer else ("", (batch_id,))
        with self._read() as conn:
            items = conn.execute(
                """
                SELECT i.*, p.prediction, s.source_id FROM batch_items i LEFT JOIN batch_predictions p
                ON p.batch_id = i.batch_id AND p.item_index = i.item_index
                LEFT JOIN batch_item_sources s ON s.batch_id = i.batch_id AND s.item_index = i.item_index
                WHERE i.batch_id = ? ORDER BY i.item_index""",
                (batch_id,),
            ).fetchall()
            reviews = conn.execute(
                f"SELECT * FROM reviews WHERE review_id IN (SELECT MAX(review_id) FROM reviews "
                f"WHERE batch_id = ? {mine} AND {_LIVE} GROUP BY item_index)",
                args,
            ).fetchall()
            skipped = {
                r[0]
                for r in conn.execute(
                    f"SELECT item_index FROM review_events WHERE kind = 'skip' AND batch_id = ? {mine}", args
                )
            }
        latest = {r["item_index"]: self._row_to_review(r) for r in reviews}
        return [
            BatchItem(
                batch_id,
                r["item_index"],
                r["case_id"],
                r["case_text"],
                json.loads(r["prediction"]) if r["prediction"] else None,
                latest.get(r["item_index"]),
                r["source_id"],
                r["item_index"] in skipped,
            )
            for r in items
        ]

    def source_ids(self) -> dict[str, str]:
        """case_id -> the id its upload gave it (the first upload's, when a case came in several)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT i.case_id, s.source_id FROM batch_item_sources s JOIN batch_items i "
                "ON i.batch_id = s.batch_id AND i.item_index = s.item_index "
                "ORDER BY s.rowid DESC"
            ).fetchall()
        return {r["case_id"]: r["source_id"] for r in rows}

    # --- exports and housekeeping ----------------------------------------------------------------

    def log_export(self, exported_by: str, out_dir: str | Path, meta: Mapping[str, Any]) -> None:
        """Record an export in the audit trail."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO exports (created_at, exported_by, out_dir, meta) VALUES (?, ?, ?, ?)",
                (utc_now(), exported_by, str(out_dir), json.dumps(meta, ensure_ascii=False)),
            )
            audit.append_to_chain(conn, cur.lastrowid, self._audit_key, "exports")

    def browser_secret(self) -> str:
        """A per-database secret for encrypting the browser's saved queue position; stable across restarts."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO store_meta VALUES ('browser_secret', ?)", (secrets.token_hex(16),))
            return str(conn.execute("SELECT value FROM store_meta WHERE key='browser_secret'").fetchone()[0])

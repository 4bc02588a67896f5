-- A review database of schema version 1 (before every table was chained and the chains sealed), made by
-- r2d.store at commit 4ef5612 and dumped with sqlite3's iterdump: 2 reviews, a flag, a batch of 2 items with
-- upload ids and a prediction, a draft and an export log entry. Its chain heads then were
-- reviews 883c2ac42b489d2a16bb268a2cc0568c77996abaf5af625ff3272d01095753e2
-- review_events 62c0eaabb576c84ec9d8a79cf03e16f193587f2aced34636f10de971a7714c89
BEGIN TRANSACTION;
CREATE TABLE batch_item_sources (
    batch_id TEXT NOT NULL, item_index INTEGER NOT NULL, source_id TEXT NOT NULL,
    PRIMARY KEY (batch_id, item_index),
    FOREIGN KEY (batch_id, item_index) REFERENCES batch_items (batch_id, item_index));
INSERT INTO "batch_item_sources" VALUES('b-20261204-212431-4cef58',0,'P-1');
INSERT INTO "batch_item_sources" VALUES('b-20261204-212431-4cef58',1,'P-2');
CREATE TABLE batch_items (
    batch_id TEXT NOT NULL REFERENCES batches (batch_id), item_index INTEGER NOT NULL,
    case_id TEXT NOT NULL, case_text TEXT NOT NULL, PRIMARY KEY (batch_id, item_index));
INSERT INTO "batch_items" VALUES('b-20261204-212431-4cef58',0,'ccdafaf085a9263b','Chest pain since 2 hours, BP 90/60, HR 120.');
INSERT INTO "batch_items" VALUES('b-20261204-212431-4cef58',1,'9b49010ab9911467','Ankle sprain, walking.');
CREATE TABLE batch_predictions (
    batch_id TEXT NOT NULL, item_index INTEGER NOT NULL, created_at TEXT NOT NULL,
    prediction TEXT NOT NULL, PRIMARY KEY (batch_id, item_index),
    FOREIGN KEY (batch_id, item_index) REFERENCES batch_items (batch_id, item_index));
INSERT INTO "batch_predictions" VALUES('b-20261204-212431-4cef58',0,'2026-12-04T21:24:31.078+00:00','{"label": "2"}');
CREATE TABLE batches (
    batch_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL,
    created_by TEXT NOT NULL, model_id TEXT NOT NULL, n_items INTEGER NOT NULL);
INSERT INTO "batches" VALUES('b-20261204-212431-4cef58','upload.csv','2026-12-04T21:24:31.037+00:00','Nurse A','fake-r2d',2);
CREATE TABLE drafts (
    draft_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
    reviewer TEXT NOT NULL, case_id TEXT NOT NULL, draft TEXT NOT NULL);
INSERT INTO "drafts" VALUES(1,'2026-12-04T21:24:31.199+00:00','Nurse A','ccdafaf085a9263b','{"rationale": "half"}');
CREATE TABLE event_chain (
    event_id INTEGER PRIMARY KEY REFERENCES review_events (event_id),
    prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
INSERT INTO "event_chain" VALUES(1,'0000000000000000000000000000000000000000000000000000000000000000','62c0eaabb576c84ec9d8a79cf03e16f193587f2aced34636f10de971a7714c89');
CREATE TABLE exports (
    export_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
    exported_by TEXT NOT NULL, out_dir TEXT NOT NULL, meta TEXT NOT NULL);
INSERT INTO "exports" VALUES(1,'2026-12-04T21:24:31.239+00:00','Nurse A','r2d_exports/export-1','{"counts": {"train": 1}}');
CREATE TABLE review_chain (
    review_id INTEGER PRIMARY KEY REFERENCES reviews (review_id),
    prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
INSERT INTO "review_chain" VALUES(1,'0000000000000000000000000000000000000000000000000000000000000000','bbfd669cd4f79930b5efec3013989d27ad63a26328fe7b9e5371aa5af74d2bcc');
INSERT INTO "review_chain" VALUES(2,'bbfd669cd4f79930b5efec3013989d27ad63a26328fe7b9e5371aa5af74d2bcc','883c2ac42b489d2a16bb268a2cc0568c77996abaf5af625ff3272d01095753e2');
CREATE TABLE review_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    kind TEXT NOT NULL CHECK (kind IN ('retract', 'skip', 'flag', 'adjudicate')),
    case_id TEXT NOT NULL, review_id INTEGER REFERENCES reviews (review_id),
    batch_id TEXT, item_index INTEGER, note TEXT NOT NULL DEFAULT '');
INSERT INTO "review_events" VALUES(1,'2026-12-04T21:24:31.174+00:00','Nurse A','flag','ccdafaf085a9263b',NULL,NULL,NULL,'check the BP');
CREATE TABLE reviews (
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
INSERT INTO "reviews" VALUES(1,'s-0','2026-12-04T21:24:31.111+00:00','Nurse A','ccdafaf085a9263b','Chest pain since 2 hours, BP 90/60, HR 120.','b-20261204-212431-4cef58',0,'fake-r2d','none','r2d-prompts-1','edited','2','Shock signs.','{"2": 0.9}','2','Hypotension with tachycardia.',NULL,'',NULL,NULL);
INSERT INTO "reviews" VALUES(2,'s-1','2026-12-04T21:24:31.142+00:00','Nurse A','ccdafaf085a9263b','Chest pain since 2 hours, BP 90/60, HR 120.',NULL,NULL,'fake-r2d','none','r2d-prompts-1','edited','2','Shock signs.','{"2": 0.9}','2','Hypotension with tachycardia.',NULL,'',NULL,NULL);
CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "store_meta" VALUES('schema_version','1');
INSERT INTO "store_meta" VALUES('chain_started','2026-12-04 21:24:31');
INSERT INTO "store_meta" VALUES('chain_started:review_events','2026-12-04 21:24:31');
CREATE INDEX reviews_by_case ON reviews (case_id, review_id);
CREATE INDEX reviews_by_batch ON reviews (batch_id, item_index, review_id);
CREATE INDEX events_by_case ON review_events (case_id, event_id);
CREATE INDEX drafts_by_key ON drafts (reviewer, case_id, draft_id);
CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews BEGIN SELECT RAISE(ABORT, 'reviews is append-only: add a new row instead'); END;
CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews BEGIN SELECT RAISE(ABORT, 'reviews is append-only'); END;
CREATE TRIGGER batches_no_update BEFORE UPDATE ON batches BEGIN SELECT RAISE(ABORT, 'batches is append-only: add a new row instead'); END;
CREATE TRIGGER batches_no_delete BEFORE DELETE ON batches BEGIN SELECT RAISE(ABORT, 'batches is append-only'); END;
CREATE TRIGGER batch_items_no_update BEFORE UPDATE ON batch_items BEGIN SELECT RAISE(ABORT, 'batch_items is append-only: add a new row instead'); END;
CREATE TRIGGER batch_items_no_delete BEFORE DELETE ON batch_items BEGIN SELECT RAISE(ABORT, 'batch_items is append-only'); END;
CREATE TRIGGER batch_predictions_no_update BEFORE UPDATE ON batch_predictions BEGIN SELECT RAISE(ABORT, 'batch_predictions is append-only: add a new row instead'); END;
CREATE TRIGGER batch_predictions_no_delete BEFORE DELETE ON batch_predictions BEGIN SELECT RAISE(ABORT, 'batch_predictions is append-only'); END;
CREATE TRIGGER exports_no_update BEFORE UPDATE ON exports BEGIN SELECT RAISE(ABORT, 'exports is append-only: add a new row instead'); END;
CREATE TRIGGER exports_no_delete BEFORE DELETE ON exports BEGIN SELECT RAISE(ABORT, 'exports is append-only'); END;
CREATE TRIGGER review_events_no_update BEFORE UPDATE ON review_events BEGIN SELECT RAISE(ABORT, 'review_events is append-only: add a new row instead'); END;
CREATE TRIGGER review_events_no_delete BEFORE DELETE ON review_events BEGIN SELECT RAISE(ABORT, 'review_events is append-only'); END;
CREATE TRIGGER drafts_no_update BEFORE UPDATE ON drafts BEGIN SELECT RAISE(ABORT, 'drafts is append-only: add a new row instead'); END;
CREATE TRIGGER drafts_no_delete BEFORE DELETE ON drafts BEGIN SELECT RAISE(ABORT, 'drafts is append-only'); END;
CREATE TRIGGER batch_item_sources_no_update BEFORE UPDATE ON batch_item_sources BEGIN SELECT RAISE(ABORT, 'batch_item_sources is append-only: add a new row instead'); END;
CREATE TRIGGER batch_item_sources_no_delete BEFORE DELETE ON batch_item_sources BEGIN SELECT RAISE(ABORT, 'batch_item_sources is append-only'); END;
CREATE TRIGGER reviews_no_replace BEFORE INSERT ON reviews
WHEN EXISTS (SELECT 1 FROM reviews WHERE review_id = NEW.review_id OR submission_id = NEW.submission_id)
BEGIN SELECT RAISE(ABORT, 'reviews is append-only: a review id or submission id cannot be reused'); END;
CREATE TRIGGER review_chain_no_update BEFORE UPDATE ON review_chain
BEGIN SELECT RAISE(ABORT, 'review_chain is append-only'); END;
CREATE TRIGGER review_chain_no_delete BEFORE DELETE ON review_chain
BEGIN SELECT RAISE(ABORT, 'review_chain is append-only'); END;
CREATE TRIGGER review_events_no_replace BEFORE INSERT ON review_events
WHEN EXISTS (SELECT 1 FROM review_events WHERE event_id = NEW.event_id)
BEGIN SELECT RAISE(ABORT, 'review_events is append-only: an event id cannot be reused'); END;
CREATE TRIGGER event_chain_no_update BEFORE UPDATE ON event_chain
BEGIN SELECT RAISE(ABORT, 'event_chain is append-only'); END;
CREATE TRIGGER event_chain_no_delete BEFORE DELETE ON event_chain
BEGIN SELECT RAISE(ABORT, 'event_chain is append-only'); END;
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('reviews',2);
INSERT INTO "sqlite_sequence" VALUES('review_events',1);
INSERT INTO "sqlite_sequence" VALUES('drafts',1);
INSERT INTO "sqlite_sequence" VALUES('exports',1);
COMMIT;

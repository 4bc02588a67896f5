"""Export to Stage 2: schema, splits, policy, sidecar, identifier scan, CSV injection (a Stage-2 run on an export:
test_training_smoke.py)."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from r2d.data import load_examples
from r2d.errors import ReviewActionError
from r2d.review.export import (
    EXPORT_FORMAT,
    EXPORT_META_FILENAME,
    PROVENANCE,
    RATIONALE_SOURCE,
    RESOLUTION,
    ExportPolicy,
    export_cases,
    export_stage2_dataset,
    findings_message,
    level_findings,
    pending_cases,
    preview_export,
    resolve,
    scan_identifiers,
    scan_reviews,
    select_reviews,
)
from r2d.review.store import ReviewRecord, ReviewStore, case_id_for


@pytest.fixture(scope="session")
def review(make_review):
    """review(i, label, action, rating, **overrides): case i of a distinct case text, a rationale naming its label."""

    def build(i: int, label: str = "2", action: str = "edited", rating: int | None = 4, **overrides) -> ReviewRecord:
        values = dict(
            case_text=f"case {i}: chest pain, HR {100 + i}, BP 90/60",
            action=action,
            model_label=label,
            model_rationale="model words",
            model_probabilities={str(k): 0.2 for k in range(1, 6)},
            final_label=label,
            final_rationale=f"Nurse rationale {i} for level {label}.",
            rating=rating,
            consistency_label=label,
            comment="",
            time_on_task_s=None,
        )
        return make_review(f"s-{i}-{label}-{action}", **{**values, **overrides})

    return build


@pytest.fixture()
def reviewed_store(store, review) -> ReviewStore:
    """The shared store with 20 reviews, four of each label."""
    for i in range(20):
        store.submit(review(i, label=str(i % 5 + 1)))
    return store


# --- identifier scan ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, found",
    [
        ("Seen with Mr. John Smith at the door.", "name", "Mr. John Smith"),
        ("Dr Patel agreed.", "name", "Dr Patel"),
        ("the patient named Maria Lopez arrived", "name", "patient named Maria Lopez"),
        ("Call back on 555-123-4567 tonight.", "phone", "555-123-4567"),
        ("Phone +44 20 7946 0958.", "phone", "+44 20 7946 0958"),
        ("Visit on 12/03/2024 for the same pain.", "date", "12/03/2024"),
        ("Born 1956-04-02.", "date", "1956-04-02"),
        ("Admitted 3 March 2021 with sepsis.", "date", "3 March 2021"),
        ("Seen March 3, 2021.", "date", "March 3, 2021"),
        ("MRN: 00123456 on file.", "id_number", "MRN: 00123456"),
        ("hospital number AB12345", "id_number", "hospital number AB12345"),
        ("Number 123456789 on the wristband.", "id_number", "123456789"),
        ("Email jane.doe@example.org later.", "email", "jane.doe@example.org"),
    ],
)
def test_scan_finds_likely_identifiers(text, kind, found):
    findings = scan_identifiers(text)
    assert [(f.kind, f.text) for f in findings] == [(kind, found)]
    assert text[findings[0].start : findings[0].end] == found


@pytest.mark.parametrize(
    "text",
    [
        "72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124",
        "SpO2 80 percent, RR 6, temperature 38.4, pain 6/10, GCS 14",
        "KTAS 2: Emergency. Dr. (not named) on call; level 3 in 30 min",
        "Hypotension with tachycardia and chest pain suggests shock; emergent care.",
    ],
)
def test_scan_does_not_flag_clinical_numbers(text):
    assert scan_identifiers(text) == []


def test_scan_reviews_reports_field_and_case(reviewed_store, review):
    flagged = review(99, final_rationale="Called Mrs. Brown on 555 123 4567.", case_text="fell at home on 01/02/2023")
    findings = scan_reviews([flagged])
    expected = {("rationale", "name"), ("rationale", "phone"), ("case_text", "date")}
    assert {(f.field, f.kind) for f in findings} == expected
    assert all(f.case_id == flagged.case_id for f in findings)


def test_preview_lists_rows_and_findings_before_anything_is_written(reviewed_store, tmp_path, review):
    reviewed_store.submit(review(77, final_rationale="Seen by Dr Patel.", label="1"))
    reviews, findings = preview_export(reviewed_store, ExportPolicy())
    assert len(reviews) == 21 and [f.text for f in findings] == ["Dr Patel"]
    assert "1 likely patient identifier" in findings_message(findings, len(reviews))
    assert findings_message([], 3).startswith("No likely patient identifiers found")
    with pytest.raises(ReviewActionError, match="no current review matches"):
        preview_export(reviewed_store, ExportPolicy(min_rating=5))


# --- policy ----------------------------------------------------------------------------------------


def test_policy_filters_actions_ratings_and_consistency(store, tmp_path, review):
    store.submit(review(1, action="accepted", rating=None))
    store.submit(review(2, action="edited", rating=2))
    store.submit(review(3, action="relabelled", rating=5, consistency_label="4"))
    ids = lambda policy: sorted(r.submission_id.split("-")[1] for r in select_reviews(store, policy))  # noqa: E731
    assert ids(ExportPolicy()) == ["1", "2", "3"]
    assert ids(ExportPolicy(actions=("accepted",))) == ["1"]
    assert ids(ExportPolicy(min_rating=3)) == ["3"]
    assert ids(ExportPolicy(require_consistent=True)) == ["1", "2"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"actions": ()}, "non-empty subset"),
        ({"actions": ("deleted",)}, "non-empty subset"),
        ({"min_rating": 6}, "min_rating must be 0-5"),
    ],
)
def test_bad_policies_are_refused(kwargs, message):
    with pytest.raises(ReviewActionError, match=message):
        ExportPolicy(**kwargs)


def test_only_the_latest_review_of_a_case_is_exported(store, tmp_path, review):
    store.submit(review(1, label="2"))
    store.submit(review(1, label="3", action="relabelled"))  # a correction of the same case
    store.submit(review(2))
    selected = select_reviews(store, ExportPolicy())
    assert len(selected) == 2
    assert {r.final_label for r in selected if r.case_text.startswith("case 1:")} == {"3"}


# --- files -------------------------------------------------------------------------------------------


def test_export_writes_the_stage2_schema(reviewed_store, tmp_path):
    result = export_stage2_dataset(reviewed_store, tmp_path / "out", ExportPolicy(), val_fraction=0.2, seed=1)
    assert set(result.files) == {"train", "val"}
    assert result.all_files[-1] == tmp_path / "out" / EXPORT_META_FILENAME and "train 15, val 5" in result.summary()
    train, val = load_examples(result.files["train"]), load_examples(result.files["val"])
    assert len(train) + len(val) == 20
    assert {e.label for e in val} == {"1", "2", "3", "4", "5"}  # stratified: every label held out
    assert {e.rationale_source for e in train + val} == {RATIONALE_SOURCE}
    assert {e.case_text for e in train}.isdisjoint({e.case_text for e in val})
    by_case = {r.case_text: r for r in reviewed_store.latest_reviews()}
    for e in train + val:
        assert (e.label, e.rationale) == (by_case[e.case_text].final_label, by_case[e.case_text].final_rationale)
        assert e.example_id == by_case[e.case_text].case_id
    row = json.loads(result.files["train"].read_text().splitlines()[0])
    assert set(row) == {"id", "question", "label", "rationale", "rationale_source", *PROVENANCE}
    assert (
        (row["reviewers"], row["action"], row["model_id"], row["resolution"])
        == (["Nurse A"], "edited", "fake-r2d", "single")
        and row["rating"] == 4
        and len(row["review_ids"]) == 1
    )


def test_export_loads_with_hf_datasets(reviewed_store, tmp_path):
    datasets = pytest.importorskip("datasets")
    result = export_stage2_dataset(reviewed_store, tmp_path / "out", ExportPolicy(), val_fraction=0.2)
    ds = datasets.load_dataset(
        "json", data_files={k: str(p) for k, p in result.files.items()}, cache_dir=str(tmp_path / "hf_cache")
    )
    assert ds["train"].num_rows + ds["val"].num_rows == 20
    assert {"question", "label", "rationale", "rationale_source", *PROVENANCE} <= set(ds["train"].column_names)
    assert all(isinstance(ids, list) and ids for ids in ds["train"]["review_ids"])


def test_sidecar_records_model_policy_counts_and_findings(reviewed_store, tmp_path, review):
    reviewed_store.submit(review(50, final_rationale="Spoke to Mr. Jones by phone.", label="1"))
    policy = ExportPolicy(min_rating=1)
    result = export_stage2_dataset(
        reviewed_store, tmp_path / "out", policy, val_fraction=0.2, exported_by="Nurse A", config={"app": {"port": 1}}
    )
    meta = json.loads((tmp_path / "out" / EXPORT_META_FILENAME).read_text())
    assert meta == result.meta
    assert meta["model_ids"] == ["fake-r2d"] and meta["prompt_versions"] == ["r2d-prompts-1"]
    assert meta["policy"] == policy.to_dict() and meta["exported_by"] == "Nurse A"
    assert meta["counts"]["selected"] == 21 == meta["counts"]["train"] + meta["counts"]["val"]
    assert meta["rationale_source"] == RATIONALE_SOURCE and meta["config"] == {"app": {"port": 1}}
    assert [f["text"] for f in meta["identifier_findings"]] == ["Mr. Jones"]
    assert sum(meta["labels"].values()) == 21
    with closing(sqlite3.connect(reviewed_store.path)) as conn:  # the store's audit trail logged the same export
        logged = conn.execute("SELECT exported_by, meta FROM exports ORDER BY export_id DESC LIMIT 1").fetchone()
    assert (logged[0], json.loads(logged[1])["counts"]) == ("Nurse A", meta["counts"])
    # the audit chains' heads leave the database with every export, so a later rewrite is visible
    # (every chain's, the exports log's as it was before this export's own entry)
    heads = reviewed_store.chain_heads()
    assert set(meta["audit_chain_heads"]) == set(heads) and len(meta["audit_chain_heads"]["reviews"]) == 64
    assert {t: h for t, h in meta["audit_chain_heads"].items() if t != "exports"} == {
        t: h for t, h in heads.items() if t != "exports"
    } and meta["audit_chain_heads"]["exports"] != heads["exports"]
    reviewed_store.submit(review(51))
    assert reviewed_store.chain_heads()["reviews"] != meta["audit_chain_heads"]["reviews"]


def test_test_csv_neutralises_formulas_and_round_trips(store, tmp_path, review):
    evil = '=HYPERLINK("http://evil","click")'
    for i in range(10):
        store.submit(
            review(i, label=str(i % 2 + 1), final_rationale=evil if i % 2 else "+1 for shock", case_text=f"@case {i}")
        )
    result = export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), val_fraction=0.2, test_csv=True, seed=3)
    assert set(result.files) == {"train", "val", "test"} and result.files["test"].suffix == ".csv"
    with result.files["test"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(not row[k].startswith(("=", "+", "-", "@")) for row in rows for k in row)
    assert any(row["rationale"].startswith("'=") or row["rationale"].startswith("'+") for row in rows)
    loaded = load_examples(result.files["test"])
    assert {e.rationale for e in loaded} <= {evil, "+1 for shock"}
    assert all(e.case_text.startswith("@case") for e in loaded)
    assert result.counts["train"] + result.counts["val"] + result.counts["test"] == 10


def test_tiny_exports_still_fill_every_split(store, tmp_path, review):
    for i in range(3):
        store.submit(review(i, label=str(i + 1)))  # one case per label: rounding alone would leave val empty
    result = export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), val_fraction=0.1, test_csv=True)
    assert all(len(load_examples(p)) >= 1 for p in result.files.values())


@pytest.mark.parametrize(
    "n_reviews, kwargs, message",
    [
        (0, {}, "only 0 review"),
        (1, {}, "need at least 2"),
        (2, {"test_csv": True}, "need at least 3"),
        (5, {"val_fraction": 0.0}, "must be in"),
        (5, {"val_fraction": 0.6, "test_csv": True}, "leave rows for training"),
    ],
)
def test_exports_that_cannot_work_are_refused(store, tmp_path, n_reviews, kwargs, message, review):
    for i in range(n_reviews):
        store.submit(review(i))
    with pytest.raises(ReviewActionError, match=message):
        export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), **kwargs)
    assert not (tmp_path / "out" / "train.jsonl").exists()


# --- an export that loses nothing ---------------------------------------------------------------


def rows_in(result) -> int:
    return sum(len(load_examples(p)) for p in result.files.values())


@pytest.mark.parametrize("n, test_csv", [(16, False), (16, True), (7, False), (3, True)])
def test_counts_equal_the_rows_in_the_files(store, tmp_path, n, test_csv, review):
    """16 reviews in, 15 rows out: a test split of fraction 0 took a row that no file held."""
    for i in range(n):
        store.submit(review(i, label=str(i % 5 + 1)))
    result = export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), val_fraction=0.1, test_csv=test_csv)
    meta = json.loads((tmp_path / "out" / EXPORT_META_FILENAME).read_text())
    assert rows_in(result) == n == meta["counts"]["selected"]
    assert meta["counts"]["test"] == (len(load_examples(result.files["test"])) if test_csv else 0)
    assert all(len(load_examples(result.out_dir / name)) == k for name, k in meta["rows_per_file"].items())


def test_uploaded_ids_are_kept(store, tmp_path, review):
    cases = [f"case {i}: chest pain, HR {100 + i}, BP 90/60" for i in range(4)]
    batch = store.create_batch("up.jsonl", cases, "Nurse A", "m", source_ids=["KTAS-001", "KTAS-002", None, "KTAS-004"])
    for i in range(4):
        store.submit(review(i, batch_id=batch.batch_id, item_index=i))
    result = export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), val_fraction=0.25)
    ids = {e.example_id for p in result.files.values() for e in load_examples(p)}
    assert ids == {"KTAS-001", "KTAS-002", case_id_for(cases[2]), "KTAS-004"}


def test_several_reviewers_are_resolved_by_the_named_policy(store, tmp_path, review):
    case = "case 0: chest pain, HR 100, BP 90/60"
    for who, label in (("A", "2"), ("B", "3"), ("C", "2")):  # a 2-1 split on the label is not settled by vote
        store.submit(review(0, label=label, reviewer=who, submission_id=f"m-{who}"))
    other = "case 1: chest pain, HR 101, BP 90/60"
    for who, label in (("A", "1"), ("B", "4")):
        store.submit(review(1, label=label, reviewer=who, submission_id=f"t-{who}"))
    chosen = {c.review.case_id: c.resolution for c in export_cases(store)}
    assert chosen == {case_id_for(case): "pending", case_id_for(other): "pending"}
    first = next(r for r in store.reviewer_reviews(case_id_for(other)) if r.reviewer == "A")
    store.add_event("Lead nurse", "adjudicate", first.case_id, review_id=first.review_id)
    assert {c.review.final_label: c.resolution for c in export_cases(store)} == {"2": "pending", "1": "adjudicated"}
    store.submit(review(2))
    for who in ("A", "B"):  # the same label and the same words: agreed
        store.submit(review(3, reviewer=who, submission_id=f"a-{who}"))
    result = export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), val_fraction=0.34)
    meta = result.meta
    assert meta["resolution_policy"] == RESOLUTION and meta["export_id"] == "out"
    assert meta["resolutions"] == {"adjudicated": 1, "single": 1, "agreed": 1}
    assert meta["counts"]["cases_with_several_reviewers"] == 2 and meta["counts"]["selected"] == 3
    assert meta["waiting_for_adjudication"] == [case_id_for(case)] and meta["counts"]["waiting_for_adjudication"] == 1
    assert "1 case(s) whose reviewers disagree wait for adjudication" in result.summary()
    rows = [json.loads(line) for p in result.files.values() for line in p.read_text().splitlines()]
    assert case not in {r["question"] for r in rows}
    adjudicated = next(r for r in rows if r["question"] == other)
    assert adjudicated["reviewers"] == ["A", "B"] and adjudicated["label"] == "1"
    assert len(adjudicated["review_ids"]) == 2


def test_resolve_one_review_agreement_and_a_tie(review):
    a, b = review(0, label="1", reviewer="A"), review(0, label="2", reviewer="B")
    assert resolve([a]) == (a, "single") and resolve([a, b]) == (b, "pending")
    same = review(0, label="1", reviewer="B", final_rationale="Nurse rationale 0  for level 1.")  # spacing only
    assert resolve([a, same]) == (same, "agreed")


def issue_case(review, who: str, **overrides):
    """The model wrote HR 109; nurse A corrected it to 135 and rated it, nurse B accepted it."""
    model = "Tachycardia HR 109/min with chest pain: emergency."
    values = dict(
        case_text="case 7: chest pain, HR 135, BP 90/60",
        reviewer=who,
        submission_id=f"i-{who}",
        model_rationale=model,
        final_rationale=model,
        action="accepted",
        rating=None,
        comment="",
    )
    return review(7, **{**values, **overrides})


def edited_by_a(review):
    return issue_case(
        review,
        "A",
        final_rationale="Tachycardia HR 135/min with chest pain: emergency.",
        action="edited",
        rating=4,
        comment="the model misread the HR",
    )


@pytest.mark.parametrize("order", ["edit first", "acceptance first"])
def test_an_edit_wins_over_an_unedited_acceptance(store, tmp_path, review, order):
    """A corrected the rationale, B then accepted the model's text with the same label. The export
    used to take B's uncorrected text by 'majority', count 0 edited and drop A's rating and comment."""
    a, b = edited_by_a(review), issue_case(review, "B")
    for r in [a, b] if order == "edit first" else [b, a]:
        store.submit(r)
    for i in range(3):
        store.submit(review(20 + i))
    [case] = [c for c in export_cases(store) if len(c.reviews) == 2]
    assert case.resolution == "edit" and case.review.reviewer == "A"
    result = export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), val_fraction=0.25)
    rows = {r["case_id"]: r for p in result.files.values() for r in map(json.loads, p.read_text().splitlines())}
    row = rows[a.case_id]
    assert row["rationale"] == "Tachycardia HR 135/min with chest pain: emergency." and row["action"] == "edited"
    assert (row["rating"], row["comment"]) == (4, "the model misread the HR")
    by_reviewer = dict(zip(row["reviewers"], zip(row["ratings"], row["comments"])))
    assert by_reviewer == {"A": (4, "the model misread the HR"), "B": (None, "")}
    assert result.meta["actions"] == {"edited": 4} and result.meta["reviewer_actions"] == {"edited": 4, "accepted": 1}
    assert result.meta["resolutions"] == {"edit": 1, "single": 3}


def test_two_different_edits_wait_for_adjudication(store, tmp_path, review):
    store.submit(edited_by_a(review))
    store.submit(issue_case(review, "B", final_rationale="HR 135, BP 90/60: shock risk.", action="edited"))
    store.submit(issue_case(review, "C"))
    [case] = export_cases(store)
    assert case.pending and [c.review.case_id for c in pending_cases(store)] == [case.review.case_id]
    assert select_reviews(store, ExportPolicy()) == []


def test_comments_travel_with_the_rows_and_are_scanned(store, tmp_path, review):
    store.submit(edited_by_a(review))
    store.submit(issue_case(review, "B", comment="ask Mrs. Brown, she saw it\nsecond; line"))
    for i in range(3):
        store.submit(review(30 + i, comment=""))
    reviews, findings = preview_export(store, ExportPolicy())
    assert [(f.field, f.text) for f in findings] == [("comment", "Mrs. Brown")]
    result = export_stage2_dataset(store, tmp_path / "out", ExportPolicy(), val_fraction=0.25, test_csv=True)
    assert [f.text for f in result.findings] == ["Mrs. Brown"]
    rows = [
        r
        for p in result.files.values()
        for r in (
            [json.loads(line) for line in p.read_text().splitlines()]
            if p.suffix == ".jsonl"
            else list(csv.DictReader(p.open(newline="")))
        )
    ]
    row = next(r for r in rows if r["case_id"] == reviews[0].case_id or r["question"].startswith("case 7"))
    comments = row["comments"] if isinstance(row["comments"], list) else json.loads(row["comments"])
    assert comments == ["the model misread the HR", "ask Mrs. Brown, she saw it\nsecond; line"]


def test_a_rationale_naming_another_level_is_flagged_before_export(store, tmp_path, review):
    """5 of 15 relabelled rows still said 'This fits KTAS x' for another level."""
    store.submit(review(0, label="2", action="relabelled", final_rationale="Chest pain with low BP. This fits KTAS 3."))
    store.submit(review(1, label="3", final_rationale="Chest pain, BP 90/60: KTAS 3."))
    reviews, findings = preview_export(store, ExportPolicy())
    assert [(f.kind, f.text) for f in findings] == [("names_another_level", "KTAS 3")]
    assert "1 rationale(s) naming another triage level" in findings_message(findings, len(reviews))
    assert level_findings([reviews[1]]) == []


def test_a_crash_while_writing_leaves_no_export_folder(tmp_path, reviewed_store, monkeypatch):
    from r2d.review import export

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_meta", crash)
    with pytest.raises(OSError, match="disk full"):
        export_stage2_dataset(reviewed_store, tmp_path / "exports" / "run1", ExportPolicy(), val_fraction=0.2)
    assert list((tmp_path / "exports").iterdir()) == []  # neither the folder nor a partial one
    monkeypatch.undo()
    result = export_stage2_dataset(reviewed_store, tmp_path / "exports" / "run1", ExportPolicy(), val_fraction=0.2)
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["run1"] and rows_in(result) == 20
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in result.all_files)
    with pytest.raises(ReviewActionError, match="already exists"):
        export_stage2_dataset(reviewed_store, tmp_path / "exports" / "run1", ExportPolicy(), val_fraction=0.2)


def test_a_half_export_is_never_offered_and_is_swept(tmp_path):
    """Kill -9 mid-export left .export-*.partial-* folders with train.jsonl but no meta."""
    import os

    from r2d.review.export import is_complete_export, sweep_partial_exports

    done, half, fresh = tmp_path / "export-1", tmp_path / ".export-2.partial-ab12", tmp_path / ".export-3.partial-cd34"
    for folder in (done, half, fresh):
        folder.mkdir()
        (folder / "train.jsonl").write_text('{"question": "q", "label": "2", "rationale": "r"}\n')
    (done / "export_meta.json").write_text("{}")
    (half / "export_meta.json").write_text("{}")  # even with its meta, a .partial folder never finished renaming
    nometa = tmp_path / "export-4"
    nometa.mkdir()
    (nometa / "train.jsonl").write_text("{}\n")
    assert [f.name for f in sorted(tmp_path.iterdir()) if is_complete_export(f)] == ["export-1"]
    os.utime(half, (0, 0))  # untouched for long; `fresh` may be an export in progress
    assert sweep_partial_exports(tmp_path) == 1 and not half.exists() and fresh.exists() and done.exists()


def test_the_fingerprint_changes_with_the_policy_or_any_finding():
    from r2d.review.export import RecordFinding, findings_fingerprint

    found = [RecordFinding("c1", "rationale", "phone", "555-0100")]
    policy = ExportPolicy()
    same = findings_fingerprint(policy, [RecordFinding("c1", "rationale", "phone", "555-0100")])
    assert findings_fingerprint(policy, found) == same and len(same) == 64
    assert findings_fingerprint(policy, []) != same
    assert findings_fingerprint(policy, [RecordFinding("c1", "rationale", "phone", "555-0101")]) != same
    assert findings_fingerprint(ExportPolicy(min_rating=3), found) != same


def test_an_export_writes_only_what_the_reviewer_saw_scanned(reviewed_store, tmp_path, review):
    from r2d.review.export import findings_fingerprint

    policy = ExportPolicy()
    _, findings = preview_export(reviewed_store, policy)
    seen = findings_fingerprint(policy, findings)
    reviewed_store.submit(review(99, final_rationale="Spoke to Mr. John Smith: level 2."))  # found since
    with pytest.raises(ReviewActionError, match="changed since the scan"):
        export_stage2_dataset(reviewed_store, tmp_path / "stale", policy, expect_fingerprint=seen)
    assert not (tmp_path / "stale").exists()
    _, findings = preview_export(reviewed_store, policy)
    result = export_stage2_dataset(
        reviewed_store, tmp_path / "seen", policy, expect_fingerprint=findings_fingerprint(policy, findings)
    )
    recorded = result.meta["identifier_findings"] + result.meta["level_findings"]
    assert recorded == [f.to_dict() for f in findings] and any("Smith" in f["text"] for f in recorded)


# --- what the mutation run showed unpinned --------------------------------------------------------------


def test_summary_says_where_the_rows_went_and_what_waits():
    from r2d.review.export import ExportResult

    files = {"train": Path("t"), "val": Path("v")}
    plain = ExportResult(Path("out"), files, {"selected": 3, "train": 2, "val": 1})
    assert plain.summary() == (
        "Exported 3 reviews to `out`: train 2, val 1. Add train.jsonl to `data.train_files` of the next Stage-2 run."
    )
    waiting = ExportResult(Path("out"), files, {"selected": 3, "train": 2, "val": 1, "waiting_for_adjudication": 2})
    assert waiting.summary() == (
        "Exported 3 reviews to `out`: train 2, val 1. 2 case(s) whose reviewers disagree wait for adjudication "
        "(Dashboard) and are not in it. Add train.jsonl to `data.train_files` of the next Stage-2 run."
    )


def test_a_minimum_rating_admits_that_rating(review):
    policy = ExportPolicy(min_rating=3)
    assert policy.admits(review(1, rating=3)) and not policy.admits(review(2, rating=2))
    assert not policy.admits(review(3, rating=None))
    with pytest.raises(ReviewActionError, match=r"^export policy actions must be a non-empty subset of accepted, "):
        ExportPolicy(actions=())


def test_agreeing_reviewers_export_the_edited_review(review):
    edited = review(1, action="edited", reviewer="Nurse A")
    accepted = replace(review(1, action="accepted"), reviewer="Nurse B", submission_id="s-b", review_id=2)
    assert resolve([edited, accepted]) == (edited, "agreed")  # same answer: the one a nurse wrote wins
    both = [replace(review(1, action="accepted"), reviewer=n, submission_id=n) for n in ("Nurse A", "Nurse B")]
    assert resolve(both) == (both[-1], "agreed")


def test_to_example_takes_a_review_or_a_case(review):
    from r2d.review.export import RATIONALE_SOURCE, to_example

    r = review(4, label="3")
    example = to_example(r)
    assert (example.case_text, example.label, example.rationale) == (r.case_text, "3", r.final_rationale)
    assert example.rationale_source == RATIONALE_SOURCE and example.example_id == r.case_id


def test_findings_name_the_case_and_the_field(store, review):
    from r2d.review.export import scan_comments

    wrong = review(5, label="2", final_rationale="Fits KTAS 4 at most.")
    [level] = level_findings([wrong])
    assert (level.case_id, level.field, level.kind) == (wrong.case_id, "rationale", "names_another_level")
    store.submit(review(6, comment="call Mr. John Smith back"))
    [case] = export_cases(store)
    [found] = scan_comments([case])
    assert (found.case_id, found.field, found.kind) == (case.review.case_id, "comment", "name")


def test_findings_message_counts_each_kind():
    from r2d.review.export import RecordFinding

    ident = RecordFinding("c", "rationale", "name", "John Smith")
    level = RecordFinding("c", "rationale", "names_another_level", "KTAS 4")
    tail = " in the 9 rows to export. Go back and save corrected reviews, or export anyway if they are fine."
    assert findings_message([ident, ident], 9) == "**⚠ 2 likely patient identifier(s)**" + tail
    assert findings_message([level], 9) == ("**⚠ 1 rationale(s) naming another triage level than their label**" + tail)
    assert findings_message([ident, level], 9) == (
        "**⚠ 1 likely patient identifier(s) and 1 rationale(s) naming another triage level than their label**" + tail
    )


def test_an_empty_selection_is_refused_whole(store):
    with pytest.raises(ReviewActionError) as refused:
        preview_export(store, ExportPolicy())
    assert str(refused.value) == "no current review matches this export policy; review cases or loosen the policy"


def test_the_seed_decides_the_split_and_is_recorded(reviewed_store, tmp_path):
    val = {}
    for seed in (1, 2, 1):
        result = export_stage2_dataset(reviewed_store, tmp_path / f"s{seed}-{len(val)}", val_fraction=0.3, seed=seed)
        assert result.meta["seed"] == seed
        val.setdefault(seed, []).append({json.loads(r)["question"] for r in result.files["val"].open()})
    assert val[1][0] == val[1][1] and val[1][0] != val[2][0]


def test_the_sidecar_records_the_run_and_its_defaults(reviewed_store, tmp_path):
    result = export_stage2_dataset(reviewed_store, tmp_path / "deep" / "er" / "out", test_csv=True, test_fraction=0.3)
    meta = result.meta
    assert (meta["seed"], meta["exported_by"], meta["val_fraction"], meta["test_fraction"]) == (0, "unknown", 0.1, 0.3)
    named = export_stage2_dataset(reviewed_store, tmp_path / "named", exported_by="Anaïs Müller").out_dir
    assert '"exported_by": "Anaïs Müller"' in (named / EXPORT_META_FILENAME).read_text(encoding="utf-8")
    assert (meta["format"], meta["provenance_fields"], meta["quantizations"]) == (
        EXPORT_FORMAT,
        list(PROVENANCE),
        ["none"],
    )
    assert (meta["counts"]["current_reviews"], meta["counts"]["review_rows"]) == (20, 20)
    written = (result.out_dir / EXPORT_META_FILENAME).read_text(encoding="utf-8")
    assert json.loads(written) == meta and written.startswith('{\n  "export_id"')  # indented by 2
    with closing(sqlite3.connect(reviewed_store.path)) as conn:
        logged = [row[0] for row in conn.execute("SELECT out_dir FROM exports ORDER BY rowid")]
    assert logged == [str(result.out_dir), str(named)]


def test_fractions_that_leave_no_training_rows_are_refused(reviewed_store, tmp_path):
    with pytest.raises(ReviewActionError) as refused:
        export_stage2_dataset(reviewed_store, tmp_path / "a", val_fraction=0.5, test_csv=True, test_fraction=0.5)
    assert str(refused.value) == (
        "val_fraction (0.5) and test_fraction (0.5) must be in (0, 1) and leave rows for training"
    )
    with pytest.raises(ReviewActionError) as refused:
        export_stage2_dataset(reviewed_store, tmp_path / "b", test_csv=True, test_fraction=0.0)
    assert str(refused.value) == "test_fraction must be above 0 when a test split is asked for"


def test_a_changed_scan_is_refused_whole(reviewed_store, tmp_path):
    with pytest.raises(ReviewActionError) as refused:
        export_stage2_dataset(reviewed_store, tmp_path / "x", expect_fingerprint="not what the scan finds")
    assert str(refused.value) == (
        "nothing was exported: the reviews or the policy changed since the scan you saw. "
        "Press 'Export for Stage 2' again and look at what it finds"
    )


def test_files_keep_non_ascii_text_and_test_csv_keeps_provenance(store, tmp_path, review):
    for i in range(6):
        store.submit(
            review(i, label=str(i % 2 + 1), case_text=f"Café patient {i}: chest pain", rating=None, comment="vu à 10 h")
        )
        store.submit(
            replace(
                review(i, label=str(i % 2 + 1), case_text=f"Café patient {i}: chest pain", rating=5),
                reviewer="Nurse B",
                submission_id=f"b-{i}",
            )
        )
    result = export_stage2_dataset(store, tmp_path / "out", val_fraction=0.2, test_csv=True, test_fraction=0.2)
    assert "Café" in result.files["train"].read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    with result.files["test"].open(newline="", encoding="utf-8") as f:
        [row, *_] = list(csv.DictReader(f))
    assert row["reviewers"] == "Nurse A;Nurse B" and row["ratings"] == ";5" and row["rating"] == "5"
    stored: dict[str, list[int]] = {}
    for r in store.reviewer_reviews():
        stored.setdefault(r.case_id, []).append(r.review_id)
    rows = [json.loads(line) for line in result.files["train"].open(encoding="utf-8")]
    assert rows and all(r["review_ids"] == stored[r["case_id"]] for r in rows)
    assert row["review_ids"] == ";".join(str(i) for i in stored[row["case_id"]])
    assert row["comments"] == '["vu à 10 h", ""]'


def test_a_partial_export_is_written_in_a_hidden_partial_folder(reviewed_store, tmp_path, monkeypatch):
    from r2d.review import export as export_module
    from r2d.review.export import PARTIAL_MARK, is_complete_export, sweep_partial_exports

    seen = []
    real = export_module._write_rows
    monkeypatch.setattr(
        export_module, "_write_rows", lambda path, cases: seen.append(path.parent.name) or real(path, cases)
    )
    export_stage2_dataset(reviewed_store, tmp_path / "exports" / "e1")
    assert seen and all(name.startswith(f".e1{PARTIAL_MARK}") for name in seen)
    for n in range(2):  # two killed exports: their folders have the files, not the finished name
        partial = tmp_path / "exports" / f".e{n}{PARTIAL_MARK}x"
        partial.mkdir()
        (partial / "train.jsonl").write_text("{}\n")
        (partial / EXPORT_META_FILENAME).write_text("{}")
        assert not is_complete_export(partial)
    assert sweep_partial_exports(tmp_path / "exports", min_age_s=0) == 2
    assert sweep_partial_exports(tmp_path / "nowhere") == 0


def test_an_unrated_review_has_an_empty_rating_cell(store, tmp_path, review):
    for i in range(6):
        store.submit(review(i, label=str(i % 2 + 1), rating=None))
    result = export_stage2_dataset(store, tmp_path / "out", val_fraction=0.2, test_csv=True, test_fraction=0.2)
    with result.files["test"].open(newline="", encoding="utf-8") as f:
        assert {row["rating"] for row in csv.DictReader(f)} == {""}


def test_only_visible_finished_folders_are_exports(tmp_path, caplog):
    from r2d.review.export import PARTIAL_MARK, is_complete_export, sweep_partial_exports

    for name in ("done", ".hidden", f"half{PARTIAL_MARK}1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.jsonl").write_text("{}\n")
        (tmp_path / name / EXPORT_META_FILENAME).write_text("{}")
    assert [is_complete_export(tmp_path / n) for n in ("done", ".hidden", f"half{PARTIAL_MARK}1")] == [
        True,
        False,
        False,
    ]
    (tmp_path / f".x{PARTIAL_MARK}2").mkdir()
    with caplog.at_level("WARNING", logger="r2d.review.export"):
        assert sweep_partial_exports(tmp_path, min_age_s=0) == 1
    assert caplog.messages == [f"deleted 1 unfinished export folder(s) in {tmp_path}"]


def test_an_empty_existing_folder_is_replaced(reviewed_store, tmp_path):
    (tmp_path / "out").mkdir()
    assert export_stage2_dataset(reviewed_store, tmp_path / "out").counts["selected"] == 20


def test_an_export_is_logged_with_its_size_and_place(reviewed_store, tmp_path, caplog):
    with caplog.at_level("INFO", logger="r2d.review.export"):
        result = export_stage2_dataset(reviewed_store, tmp_path / "out")
    assert f"exported 20 reviews to {result.out_dir} ({result.counts})" in caplog.messages


def test_new_export_folders_cannot_be_guessed_and_only_finished_ones_are_listed(reviewed_store, tmp_path):
    import re
    import time as clock

    from r2d.review.export import complete_exports, new_export_dir

    first = new_export_dir(tmp_path)
    assert first.parent == tmp_path and re.fullmatch(r"export-\d{8}-\d{6}-[0-9a-f]{16}", first.name)
    assert new_export_dir(tmp_path) != first
    assert complete_exports(tmp_path / "none") == []
    export_stage2_dataset(reviewed_store, tmp_path / "export-old")
    clock.sleep(0.01)
    export_stage2_dataset(reviewed_store, tmp_path / "export-new")
    (tmp_path / "export-half").mkdir()  # no meta: never finished
    assert complete_exports(tmp_path) == ["export-new", "export-old"]


def test_download_zips_are_private_and_only_the_newest_are_kept(reviewed_store, tmp_path):
    import stat
    import zipfile

    from r2d.review.export import DownloadZips

    result = export_stage2_dataset(reviewed_store, tmp_path / "exports" / "export-1")
    zips = DownloadZips(keep=2)
    made = [zips.add(result.out_dir, result.all_files, str(tmp_path / "cache")) for _ in range(3)]
    assert all(z.name == "export-1.zip" and z.is_relative_to(tmp_path / "cache") for z in made)
    assert not made[0].exists() and made[1].exists() and made[2].exists()  # the oldest folder is deleted
    assert stat.S_IMODE(made[2].stat().st_mode) == 0o600 and stat.S_IMODE(made[2].parent.stat().st_mode) == 0o700
    assert sorted(zipfile.ZipFile(made[2]).namelist()) == sorted(f.name for f in result.all_files)
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zipfile.ZipFile(made[2]).infolist())
    assert all(z.parent.name.startswith("r2d-download-") for z in made)  # the app's own folders, by name


def test_download_zips_make_a_private_cache_folder_and_survive_a_folder_already_gone(reviewed_store, tmp_path):
    import stat

    from r2d.review.export import DownloadZips

    result = export_stage2_dataset(reviewed_store, tmp_path / "exports" / "export-1")
    zips = DownloadZips()
    assert zips.keep == 4
    cache = tmp_path / "not" / "yet" / "there"  # its parents are made too, the cache itself private
    first = zips.add(result.out_dir, result.all_files, str(cache))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    shutil.rmtree(first.parent)  # a temporary-folder cleaner got there first: the next adds still work
    made = [zips.add(result.out_dir, result.all_files, str(cache)) for _ in range(4)]
    assert all(z.is_file() for z in made) and len(list(cache.iterdir())) == 4

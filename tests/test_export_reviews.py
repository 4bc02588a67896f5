"""The export CLI: same files as the app's button, blocked by likely identifiers unless told otherwise."""

from __future__ import annotations

import json

import pytest

from r2d.data import load_examples
from r2d.review.store import ReviewStore
from training import export_reviews


@pytest.fixture()
def fill(store, make_review):
    """fill(n, rationale): the shared store with n reviews of sore-throat cases, alternately accepted and edited."""

    def build(n: int = 6, rationale: str = "Stable vitals, minor complaint.") -> ReviewStore:
        for i in range(n):
            label = str(i % 2 + 4)
            store.submit(
                make_review(
                    f"s{i}",
                    case_text=f"case {i}: sore throat, HR {80 + i}",
                    action="accepted" if i % 2 else "edited",
                    model_label=label,
                    model_rationale=rationale,
                    model_probabilities={"4": 0.5, "5": 0.5},
                    final_label=label,
                    final_rationale=rationale,
                    rating=i % 5 + 1,
                    comment="",
                    consistency_label=None,
                    time_on_task_s=None,
                )
            )
        return store

    return build


def test_cli_writes_the_stage2_files(tmp_path, capsys, fill):
    store = fill()
    out = tmp_path / "export"
    assert export_reviews.main(["--db", str(store.path), "--out", str(out), "--test-csv", "--seed", "1"]) == 0
    assert {p.name for p in out.iterdir()} == {"train.jsonl", "val.jsonl", "test.csv", "export_meta.json"}
    rows = sum(len(load_examples(out / name)) for name in ("train.jsonl", "val.jsonl", "test.csv"))
    assert rows == 6
    meta = json.loads((out / "export_meta.json").read_text())
    assert meta["exported_by"] == "cli" and meta["seed"] == 1 and meta["counts"]["selected"] == 6
    assert "exported 6 reviews" in capsys.readouterr().out


def test_cli_policy_flags(tmp_path, fill):
    store = fill()
    out = tmp_path / "export"
    export_reviews.main(["--db", str(store.path), "--out", str(out), "--actions", "accepted", "--min-rating", "2"])
    meta = json.loads((out / "export_meta.json").read_text())
    assert meta["policy"] == {"actions": ["accepted"], "min_rating": 2, "require_consistent": False}
    assert meta["counts"]["selected"] == 2  # accepted: rows 1, 3, 5 rated 2, 4, 1
    assert set(meta["actions"]) == {"accepted"}


def test_identifiers_block_the_export_unless_allowed(tmp_path, capsys, fill):
    store = fill(rationale="Spoke with Mrs. Jones on 555-123-4567.")
    out = tmp_path / "export"
    assert export_reviews.main(["--db", str(store.path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Mrs. Jones" in err and "555-123-4567" in err and "--allow-identifiers" in err
    assert not out.exists()
    assert export_reviews.main(["--db", str(store.path), "--out", str(out), "--allow-identifiers"]) == 0
    assert json.loads((out / "export_meta.json").read_text())["identifier_findings"]


@pytest.mark.parametrize(
    "setup, argv_tail, message",
    [
        ("not_a_db", [], "not a SQLite review database"),
        ("empty", [], "no current review matches"),
        ("full", ["--min-rating", "9"], "min_rating must be 0-5"),
    ],
)
def test_cli_errors_exit_with_a_message(tmp_path, setup, argv_tail, message, fill):
    db = tmp_path / "r.sqlite3"
    if setup == "not_a_db":
        db.write_text("hello")
    elif setup == "full":
        db = fill().path
    with pytest.raises(SystemExit, match=f"error: .*{message}"):
        export_reviews.main(["--db", str(db), "--out", str(tmp_path / "export")] + argv_tail)


def test_a_rationale_naming_another_level_blocks_the_cli_unless_allowed(tmp_path, capsys, fill):
    store = fill(rationale="Sore throat, stable: this fits KTAS 2.")
    out = tmp_path / "export"
    assert export_reviews.main(["--db", str(store.path), "--out", str(out)]) == 2
    assert "--allow-other-levels" in capsys.readouterr().err and not out.exists()
    assert export_reviews.main(["--db", str(store.path), "--out", str(out), "--allow-other-levels"]) == 0
    meta = json.loads((out / "export_meta.json").read_text())
    assert len(meta["level_findings"]) == 6 and meta["counts"]["selected"] == 6


def test_cli_says_which_cases_wait_for_adjudication(tmp_path, capsys, fill, make_review):
    store = fill()
    for who, label in (("Nurse A", "4"), ("Nurse B", "5")):
        store.submit(make_review(f"d-{who}", reviewer=who, case_text="case 9: sore throat, HR 99", final_label=label))
    assert export_reviews.main(["--db", str(store.path), "--out", str(tmp_path / "export")]) == 0
    captured = capsys.readouterr()
    assert "exported 6 reviews" in captured.out and "1 case(s) whose reviewers disagree" in captured.err

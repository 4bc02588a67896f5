"""The team-written free-text evaluation set (assets/eval/): readable by the project's loaders, the counts its
README states, its own notes (not from examples/ or the KTAS data), and never read by a training path."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from r2d.data import load_examples
from r2d.sources import KTAS_LABELS
from training.evaluate import NOT_TRIAGE, TRIAGE, load_eval_rows

# the counts assets/eval/README.md states ("What is in it"); change both together
LEVEL_COUNTS = {"1": 15, "2": 17, "3": 17, "4": 15, "5": 14}
NOT_TRIAGE_COUNT = 4
OTHER_LANGUAGES = {"de": 1, "ko": 2, "es": 1, "fr": 1}
_LEVEL_MENTION = re.compile(r"\bKTAS ([1-5])\b")


@pytest.fixture(scope="module")
def eval_file(root):
    return root / "assets" / "eval" / "free_text_notes.jsonl"


@pytest.fixture(scope="module")
def raw_rows(eval_file):
    return [json.loads(line) for line in eval_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_the_project_loaders_read_every_row(eval_file, raw_rows):
    examples, kinds = load_eval_rows(eval_file)
    assert len(load_examples(eval_file)) == len(examples) == len(kinds) == len(raw_rows)
    assert [e.example_id for e in examples] == [r["id"] for r in raw_rows]


def test_counts_per_level_and_kind_match_the_readme(eval_file, root):
    examples, kinds = load_eval_rows(eval_file)
    triage = [e for e, k in zip(examples, kinds) if k == TRIAGE]
    others = [e for e, k in zip(examples, kinds) if k == NOT_TRIAGE]
    assert dict(Counter(e.label for e in triage)) == LEVEL_COUNTS
    assert len(others) == NOT_TRIAGE_COUNT and {e.label for e in others} == {"not_triage"}
    # at least 60 notes; enough emergencies for severe under-triage to mean something
    assert len(triage) >= 60 and min(LEVEL_COUNTS["1"], LEVEL_COUNTS["2"]) >= 8
    readme = (root / "assets" / "eval" / "README.md").read_text(encoding="utf-8")
    levels = " | ".join(str(n) for n in LEVEL_COUNTS.values())
    total = f"| **total** | {levels} | {NOT_TRIAGE_COUNT} | {len(examples)} |"
    assert total in readme


def test_every_row_has_its_provenance_and_a_reason(raw_rows):
    for row in raw_rows:
        assert row["source"] == "team-written" and row["rationale_source"] == "author", row["id"]
        assert row["kind"] in (TRIAGE, NOT_TRIAGE) and row["rationale"].strip(), row["id"]
        if row["kind"] == TRIAGE:
            assert row["label"] in KTAS_LABELS, row["id"]
            # the reason names the level it gives, and no other
            assert set(_LEVEL_MENTION.findall(row["rationale"])) == {row["label"]}, row["id"]
        else:
            assert row["label"] == "not_triage" and not _LEVEL_MENTION.search(row["rationale"]), row["id"]
    assert Counter(r["lang"] for r in raw_rows if r["lang"] != "en") == OTHER_LANGUAGES


def test_ids_and_notes_are_unique(raw_rows):
    assert len({r["id"] for r in raw_rows}) == len(raw_rows)
    assert len({_norm(r["question"]) for r in raw_rows}) == len(raw_rows)


def test_no_note_is_one_of_the_app_examples(raw_rows, examples_file):
    examples = {_norm(e.case_text) for e in load_examples(examples_file)}
    for row in raw_rows:
        note = _norm(row["question"])
        assert not any(note == case or case in note or note in case for case in examples), row["id"]


@pytest.mark.shared_data
def test_no_note_is_a_case_of_the_ktas_data(raw_rows, ktas_examples):
    cases = {_norm(e.case_text) for e in ktas_examples}
    assert len(cases) > 1000  # the whole public file was read
    for row in raw_rows:
        note = _norm(row["question"])
        assert note not in cases and not any(case in note for case in cases), row["id"]


def test_no_training_path_reads_the_evaluation_set(root):
    # training.evaluate names it (FREE_TEXT_SET: scoring is its job; the card and the GPU build's --eval-set
    # take it from there); every other module under training/ and r2d/ must not name it, nor the folder,
    # so that no data build can pick it up
    pattern = re.compile(r"free_text_notes|assets\W{1,8}eval\b")
    allowed = {root / "training" / "evaluate.py"}
    files = [
        p
        for folder in ("training", "r2d")
        for p in (root / folder).rglob("*")
        if p.is_file() and p.suffix in (".py", ".json", ".md", ".txt", ".yaml", ".yml", ".sh")
    ]
    assert len(files) > 10
    offenders = [
        str(p.relative_to(root))
        for p in files
        if p not in allowed and pattern.search(p.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == []

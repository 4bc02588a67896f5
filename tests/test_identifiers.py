"""Identifier scan: the kinds the issue found missing, the recall on tests/data/identifiers.jsonl, no clinical flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2d.checks.identifiers import scan_identifiers
from r2d.review.export import scan_identifiers as export_scan

DATA = Path(__file__).resolve().parent / "data" / "identifiers.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    "text, kind, found",
    [
        ("John Smith was brought in by his wife after a fall.", "name", "John Smith"),
        ("Brought in by her husband, Tom Hughes, who found her.", "name", "husband, Tom Hughes"),
        ("Mrs O'Brien denies any loss of consciousness.", "name", "Mrs O'Brien"),
        ("She was born on the 4th of March 1961.", "date", "4th of March 1961"),
        ("He was admitted on March 3rd with the same pain.", "date", "March 3rd"),
        ("Last seen in clinic on 14/3 for review.", "date", "14/3"),
        ("A 92-year-old woman with a fall.", "age_over_89", "92-year-old"),
        ("Frail man aged 95, drowsy.", "age_over_89", "aged 95"),
        ("Son on 07700 900123 any time.", "phone", "07700 900123"),
        ("Reachable at +33 1 42 68 53 00.", "phone", "+33 1 42 68 53 00"),
        ("MRN AB123456, known to cardiology.", "id_number", "MRN AB123456"),
        ("Record K-0045321 shows a stroke.", "id_number", "Record K-0045321"),
        ("Lives at 42 Elm Street with her partner.", "address", "42 Elm Street"),
        ("Postcode SW1A 1AA.", "postcode", "SW1A 1AA"),
        ("Email him at jsmith at example dot com today.", "email", "jsmith at example dot com"),
        ("Reply to maria[at]mail[dot]org if needed.", "email", "maria[at]mail[dot]org"),
        ("Blog at www.johnsmithblog.com.", "url", "www.johnsmithblog.com"),
        ("Plate AB12 CDE in the bay.", "vehicle", "AB12 CDE"),
    ],
)
def test_the_identifiers_the_old_scan_missed(text, kind, found):
    findings = scan_identifiers(text)
    assert [(f.kind, f.text) for f in findings] == [(kind, found)]
    assert text[findings[0].start : findings[0].end] == found


@pytest.mark.parametrize("text", [r["text"] for r in ROWS if not r["identifiers"] and r["split"] == "dev"])
def test_clinical_lines_are_not_flagged(text):
    assert scan_identifiers(text) == []


def _recall(scan, rows) -> float:
    found = total = 0
    for row in rows:
        spans = [(f.start, f.end) for f in scan(row["text"])]
        for ident in row["identifiers"]:
            start = row["text"].index(ident["text"])
            end = start + len(ident["text"])
            total += 1
            found += any(start < e and s < end for s, e in spans)
    return found / total


def test_the_export_scan_finds_most_identifiers_of_every_split():
    """The scan the export uses; heldout2 was written after the last change to a pattern (figures: eval script)."""
    for split, floor in (("dev", 0.95), ("heldout1", 0.9), ("heldout2", 0.8)):
        rows = [r for r in ROWS if r["split"] == split]
        assert len(rows) >= 40 and sum(len(r["identifiers"]) for r in rows) >= 29
        assert _recall(export_scan, rows) >= floor, split
    flagged = [r["text"] for r in ROWS if not r["identifiers"] and export_scan(r["text"])]
    assert len(flagged) <= 2, flagged  # of 90 clinical lines


def test_the_data_covers_the_safe_harbor_types():
    kinds = {i["kind"] for r in ROWS for i in r["identifiers"]}
    assert {
        "name",
        "date",
        "age_over_89",
        "phone",
        "fax",
        "email",
        "ssn",
        "mrn",
        "health_plan",
        "account",
        "license",
        "vehicle",
        "device",
        "url",
        "ip",
        "address",
        "postcode",
    } <= kinds
    assert sum(len(r["identifiers"]) for r in ROWS) >= 40 and sum(not r["identifiers"] for r in ROWS) >= 40


def test_the_hard_set_is_found_with_no_clinical_line_flagged():
    """heldout3: names in any case and order, towns, employers, plates, serials, look-alike characters.
    Committed before the scanner was changed for it (27/69 then); see benchmarks/eval_identifiers.py."""
    rows = [r for r in ROWS if r["split"] == "heldout3"]
    clinical = [r["text"] for r in rows if not r["identifiers"]]
    assert sum(len(r["identifiers"]) for r in rows) >= 60 and len(clinical) >= 60
    assert _recall(scan_identifiers, [r for r in rows if r["identifiers"]]) >= 0.95
    assert [t for t in clinical if scan_identifiers(t)] == []


@pytest.mark.parametrize(
    "text, found",
    [
        ("Email j.barnes\uff20outlook.com today.", "j.barnes\uff20outlook.com"),
        ("Mum on 07700\u2009900\u2009456.", "07700\u2009900\u2009456"),
        ("Seen on 03\u221511\u22152023 again.", "03\u221511\u22152023"),
        ("Seen with Mr Ro\u200bbert Fleming today.", "Mr Ro\u200bbert Fleming"),
    ],
)
def test_look_alike_characters_are_read_as_written_and_reported_as_given(text, found):
    """NFKC, folded slashes and dropped zero-width characters for the scan; the finding is the text as given."""
    findings = scan_identifiers(text)
    assert [f.text for f in findings] == [found]
    assert text[findings[0].start : findings[0].end] == found

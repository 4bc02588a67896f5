"""examples/triage_cases.jsonl: loads with the project loader, covers every level, reads like the KTAS narratives."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from r2d.checks.rules import KTAS_LABEL_NAMES
from r2d.data import load_examples

# the sentence frame of r2d.sources.ktas_case_text: the KTAS-trained model reads exactly this shape
NARRATIVE = re.compile(
    r"^(\d+-year-old (woman|man|girl|boy|patient)|(Woman|Man|Patient), age not recorded), "
    r"(walked in|arrived by [a-z ]+|arrival not recorded)( with an injury|, not an injury|, injury not recorded)\. "
    r"(Chief complaint: [^?]+\.|Chief complaint not recorded\.) "
    r"Mental status: (alert|responds to voice|responds to pain|unresponsive|not recorded)\. "
    r"(No pain|Pain score \d+/10|Pain present, score not recorded|Pain not recorded)\. "
    r"(Vital signs not recorded|(Blood pressure|Systolic blood pressure|Diastolic blood pressure) [^?]+)\.$"
)


@pytest.fixture(scope="module")
def cases(examples_file):
    return load_examples(examples_file)


def test_examples_load_and_cover_every_level(cases):
    assert 15 <= len(cases) <= 20
    counts = Counter(e.label for e in cases)
    assert set(counts) == set(KTAS_LABEL_NAMES)
    assert min(counts.values()) >= 2
    assert len({e.example_id for e in cases}) == len(cases)
    assert {e.rationale_source for e in cases} == {"nurse"}


def test_example_rationales_conclude_with_their_level(cases):
    for e in cases:
        assert e.rationale.endswith(f"This fits KTAS {e.label} ({KTAS_LABEL_NAMES[e.label].lower()}).")
        assert len(e.rationale.split()) <= 60


def test_examples_use_the_ktas_narrative_frame(cases):
    for e in cases:
        assert NARRATIVE.match(e.case_text), e.case_text
        assert 20 <= len(e.case_text.split()) <= 80


def test_examples_include_a_child_and_missing_vitals(cases):
    assert any(re.match(r"\d+-year-old (girl|boy)", e.case_text) for e in cases)
    assert sum("not recorded" in e.case_text for e in cases) >= 3


@pytest.mark.shared_data
def test_ktas_adapter_output_fits_the_same_frame(shared_data, cases):
    from r2d.sources import load_ktas

    ktas = load_ktas(shared_data / "ktas" / "data.csv")
    assert all(NARRATIVE.match(e.case_text) for e in ktas)
    assert not {e.case_text for e in cases} & {e.case_text for e in ktas}  # written, not copied

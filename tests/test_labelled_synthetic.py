"""Synthetic Stage-2 cases labelled by KTAS first-order modifiers (training.corpus.labelled_synthetic)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from r2d.checks.factcheck import parse_case
from r2d.checks.rules import urgency_floor
from training.corpus.labelled_synthetic import modifier_labelled_examples
from training.corpus.synthetic import sample_facts

COMPLAINTS = ["chest pain", "dyspnea", "abdominal pain", "headache"]


def test_labels_are_the_non_pain_floor_of_the_facts_the_note_states():
    rows = modifier_labelled_examples(200, COMPLAINTS, seed=3)
    assert len(rows) == 200 and set(Counter(r.label for r in rows)) == {"1", "2"}
    for row in rows:
        facts = parse_case(row.case_text)  # what the note itself says, read back by the fact check
        assert urgency_floor(replace(facts, pain_score=None)) == row.label, row.case_text
        assert row.rationale and row.rationale_source == "rules"


def test_deterministic_per_seed_and_different_across_seeds():
    a = modifier_labelled_examples(20, COMPLAINTS, seed=1)
    assert a == modifier_labelled_examples(20, COMPLAINTS, seed=1)
    assert a != modifier_labelled_examples(20, COMPLAINTS, seed=2)


def test_a_sampler_without_critical_cases_fails_loudly(monkeypatch):
    import training.corpus.labelled_synthetic as ls

    monkeypatch.setattr(
        ls,
        "sample_facts",
        lambda rng, complaints: replace(
            sample_facts(rng, complaints), mental=None, sbp=None, dbp=None, heart_rate=None, spo2=None, resp_rate=None
        ),
    )
    with pytest.raises(RuntimeError, match="only 0 of 5"):
        ls.modifier_labelled_examples(5, COMPLAINTS, seed=0, max_draws=50)

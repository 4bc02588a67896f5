"""training.synthetic: sampled triage facts that cover every rule clause, written so the fact check reads them back."""
from __future__ import annotations

import random

import pytest

from r2d.factcheck import check_rationale, parse_case
from r2d.rules import MENTAL_STATES, NORMAL_RANGES, THRESHOLDS, write_rationale
from training.synthetic import STYLES, case_text, sample_facts, synthetic_examples, training_complaints

COMPLAINTS = ["abd pain", "dyspnea", "chest pain", "open wound"]


@pytest.fixture(scope="module")
def facts():
    rng = random.Random(0)
    return [sample_facts(rng, COMPLAINTS) for _ in range(3000)]


def test_deterministic_per_seed():
    a = list(synthetic_examples(50, COMPLAINTS, seed=1))
    assert a == list(synthetic_examples(50, COMPLAINTS, seed=1))
    assert a != list(synthetic_examples(50, COMPLAINTS, seed=2))


def test_covers_every_mental_state_pain_score_and_missing_values(facts):
    assert {f.mental for f in facts} == set(MENTAL_STATES) | {None}
    assert {f.pain_score for f in facts} == set(range(11)) | {None}
    for vital in ("sbp", "heart_rate", "resp_rate", "temperature", "spo2"):
        assert any(getattr(f, vital) is None for f in facts), vital
    assert any(f.is_paediatric for f in facts) and any(f.age is None for f in facts)


def test_covers_normal_raised_and_critical_bands(facts):
    for vital, (low, high) in NORMAL_RANGES.items():
        values = [getattr(f, vital) for f in facts if getattr(f, vital) is not None]
        assert any(low <= v <= high for v in values), vital
        assert any(v < low or v > high for v in values), vital
    for t in THRESHOLDS:  # every critical finding of the rule writer occurs
        op = {"<": float.__lt__, ">": float.__gt__, ">=": float.__ge__}[t.op]
        assert any(getattr(f, t.vital) is not None and op(getattr(f, t.vital), float(t.limit)) for f in facts), t


def test_complaints_come_only_from_the_given_list(facts):
    for f in facts:
        if f.chief_complaint is not None:
            assert any(f.chief_complaint.startswith(c) for c in COMPLAINTS)
            assert all(part in COMPLAINTS or " for " in part or " since " in part
                       for part in f.chief_complaint.split(", "))


@pytest.mark.parametrize("style", STYLES)
def test_every_style_is_read_back_by_the_fact_check(facts, style):
    rng = random.Random(1)
    for f in facts[:300]:
        text = case_text(rng, f, style)
        parsed = parse_case(text)
        for field in ("mental", "sbp", "dbp", "heart_rate", "resp_rate", "temperature", "spo2", "chief_complaint"):
            assert getattr(parsed, field) == getattr(f, field), (field, text)
        check = check_rationale(text, write_rationale(f))
        assert check.faithful and check.critical_named, (text, check.problems, check.missing_critical)


def test_free_text_uses_nurse_notation():
    rng = random.Random(3)
    texts = [e.case_text for e in synthetic_examples(300, COMPLAINTS, seed=3, style_weights=(0, 0, 1))]
    assert any("BP " in t and "HR " in t and "sats " in t for t in texts)
    assert all("Mental status:" not in t for t in texts)
    assert case_text(rng, sample_facts(rng, COMPLAINTS), "ktas").endswith(".")
    with pytest.raises(ValueError):
        case_text(rng, sample_facts(rng, COMPLAINTS), "poetry")


def test_examples_carry_the_label_free_rule_rationale():
    for e in synthetic_examples(100, COMPLAINTS, seed=4):
        assert e.rationale and "KTAS" not in e.rationale and e.label == "" and e.rationale_source == "rules"


def test_training_complaints_reads_the_narrative():
    from r2d.data import Example
    examples = [Example("60-year-old man, walked in, not an injury. Chief complaint: abd. pain. Mental status: "
                        "alert. No pain. Vital signs not recorded.", "3"),
                Example("Chief complaint not recorded. Mental status: alert.", "4")]
    assert training_complaints(examples) == ["abd. pain"]

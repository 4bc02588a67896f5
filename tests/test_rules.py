"""r2d.rules: adult thresholds at their boundaries, pain bands, and what a rationale may and must say."""
from __future__ import annotations

import random
import re

import pytest

from r2d.errors import InvalidCaseError
from r2d.rules import (ARRIVAL_MODES, KTAS_LABEL_NAMES, MENTAL_STATES, THRESHOLDS, TriageFacts, abnormal_vitals,
                       find_abnormal, format_value, pain_band, write_rationale)

NORMAL = dict(age=40, sex="female", arrival="walking", injury=False, chief_complaint="sore throat", mental="alert",
              pain=True, pain_score=2, sbp=120, dbp=80, heart_rate=80, resp_rate=16, temperature=36.8, spo2=98)


def make_facts(**overrides) -> TriageFacts:
    return TriageFacts(**{**NORMAL, **overrides})


def numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"(?<![A-Za-z])\d+(?:\.\d+)?", text)}  # not the 2 of SpO2


@pytest.mark.parametrize("vital, value, abnormal", [
    ("spo2", 91, True), ("spo2", 92, False),
    ("resp_rate", 25, True), ("resp_rate", 24, False), ("resp_rate", 9, True), ("resp_rate", 10, False),
    ("sbp", 89, True), ("sbp", 90, False), ("sbp", 181, True), ("sbp", 180, False),
    ("heart_rate", 121, True), ("heart_rate", 120, False), ("heart_rate", 49, True), ("heart_rate", 50, False),
    ("temperature", 38.0, True), ("temperature", 37.9, False),
    ("temperature", 34.9, True), ("temperature", 35.0, False),
])
def test_threshold_boundaries(vital, value, abnormal):
    facts = make_facts(**{vital: value})
    found = abnormal_vitals(facts)
    assert len(found) == (1 if abnormal else 0)
    rationale = write_rationale(facts, "3")
    if abnormal:
        assert format_value(vital, value) in found[0].phrase
        assert format_value(vital, value) in rationale
    else:
        assert rationale.startswith("Vital signs within adult limits")


def test_every_threshold_names_a_real_field():
    fields = set(TriageFacts.__dataclass_fields__)
    assert {t.vital for t in THRESHOLDS} <= fields
    assert all(t.op in ("<", ">", ">=") for t in THRESHOLDS)


@pytest.mark.parametrize("score, band", [(0, "no"), (1, "mild"), (3, "mild"), (4, "moderate"), (6, "moderate"),
                                         (7, "severe"), (10, "severe")])
def test_pain_bands(score, band):
    assert pain_band(score) == band


@pytest.mark.parametrize("score", [-1, 11])
def test_pain_band_rejects_out_of_range(score):
    with pytest.raises(InvalidCaseError, match="0-10"):
        pain_band(score)


def test_severe_pain_is_a_finding_mild_pain_is_not():
    assert [f.system for f in find_abnormal(make_facts(pain_score=7))] == ["pain"]
    assert find_abnormal(make_facts(pain_score=6)) == []


@pytest.mark.parametrize("label", sorted(KTAS_LABEL_NAMES))
def test_rationale_ends_with_the_level(label):
    rationale = write_rationale(make_facts(), label)
    assert rationale.endswith(f"This fits KTAS {label} ({KTAS_LABEL_NAMES[label].lower()}).")
    assert 1 <= rationale.count(". ") + 1 <= 3


def test_critical_case_names_its_findings():
    facts = make_facts(mental="unresponsive", arrival="public ambulance", spo2=84, pain=None, pain_score=None)
    rationale = write_rationale(facts, "1")
    assert rationale.startswith("Unresponsive")
    for text in ("SpO2 84%", "below 92%", "arrived by ambulance", "breathing", "KTAS 1 (resuscitation)"):
        assert text in rationale


def test_normal_case_says_so_honestly():
    rationale = write_rationale(make_facts(), "4")
    assert rationale == ("Vital signs within adult limits, alert, mild pain 2/10: no sign of an immediate threat. "
                         "This fits KTAS 4 (less urgent).")


def test_high_level_without_findings_points_at_the_complaint():
    rationale = write_rationale(make_facts(chief_complaint="chest pain"), "2")
    assert "chief complaint, chest pain" in rationale
    assert "KTAS 2 (emergency)" in rationale


def test_low_level_with_a_critical_finding_still_states_it():
    rationale = write_rationale(make_facts(heart_rate=125), "4")
    assert "heart rate 125/min (tachycardia, above 120/min)" in rationale.lower()
    assert "KTAS 4" in rationale


def test_missing_vitals_are_said_missing_never_invented():
    facts = make_facts(sbp=None, dbp=None, spo2=None)
    rationale = write_rationale(facts, "4")
    assert "not recorded" in rationale and "SpO2" in rationale
    none_recorded = write_rationale(make_facts(**{v: None for v in ("sbp", "dbp", "heart_rate", "resp_rate",
                                                                    "temperature", "spo2")}), "5")
    assert none_recorded.startswith("Vital signs not recorded")


def test_paediatric_case_sets_adult_limits_aside():
    child = make_facts(age=6, heart_rate=150, resp_rate=34, temperature=39.4)
    assert abnormal_vitals(child) == []
    rationale = write_rationale(child, "2")
    assert rationale.startswith("Child aged 6") and "do not apply" in rationale
    assert "above 120" not in rationale


def random_facts(rng: random.Random) -> TriageFacts:
    maybe = lambda value: None if rng.random() < 0.15 else value  # noqa: E731
    return TriageFacts(
        age=maybe(rng.randint(1, 99)), sex=maybe(rng.choice(["female", "male"])),
        arrival=maybe(rng.choice(ARRIVAL_MODES)),
        injury=maybe(rng.random() < 0.2), chief_complaint=maybe("abd pain"), mental=maybe(rng.choice(MENTAL_STATES)),
        pain=maybe(True), pain_score=maybe(rng.randint(0, 10)), sbp=maybe(rng.randint(50, 240)),
        dbp=maybe(rng.randint(30, 140)), heart_rate=maybe(rng.randint(30, 170)), resp_rate=maybe(rng.randint(6, 36)),
        temperature=maybe(round(rng.uniform(34.0, 41.0), 1)), spo2=maybe(rng.randint(60, 100)))


def test_rationale_numbers_come_from_the_case_or_the_threshold_table():
    rng = random.Random(0)
    allowed_constants = {float(t.limit) for t in THRESHOLDS} | {10.0}
    for _ in range(300):
        facts = random_facts(rng)
        label = rng.choice(sorted(KTAS_LABEL_NAMES))
        case_numbers = {float(v) for v in (facts.age, facts.pain_score, facts.sbp, facts.dbp, facts.heart_rate,
                                           facts.resp_rate, facts.temperature, facts.spo2) if v is not None}
        rationale = write_rationale(facts, label)
        assert numbers(rationale) <= case_numbers | allowed_constants | {float(label)}, (facts, rationale)
        assert rationale == write_rationale(facts, label)  # deterministic


@pytest.mark.parametrize("label", ["0", "6", "", "urgent", " 3"])
def test_rejects_labels_outside_ktas(label):
    with pytest.raises(InvalidCaseError, match="1-5"):
        write_rationale(make_facts(), label)


@pytest.mark.parametrize("field, value", [("sex", "f"), ("arrival", "helicopter"), ("mental", "drowsy"),
                                          ("pain_score", 11), ("age", -1)])
def test_facts_reject_unknown_values(field, value):
    with pytest.raises(InvalidCaseError, match=field):
        make_facts(**{field: value})

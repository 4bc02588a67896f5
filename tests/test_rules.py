"""r2d.checks.rules: adult thresholds and normal ranges at their boundaries, pain bands, and what a rationale may and
must say (it never sees or names the label)."""

from __future__ import annotations

import random
import re

import pytest

from r2d.checks.rules import (
    ARRIVAL_MODES,
    MENTAL_STATES,
    NORMAL_RANGES,
    THRESHOLDS,
    Modifier,
    TriageFacts,
    abnormal_vitals,
    critical_findings,
    find_abnormal,
    first_order_modifiers,
    format_value,
    pain_band,
    urgency_floor,
    write_rationale,
)
from r2d.errors import InvalidCaseError

NORMAL = dict(
    age=40,
    sex="female",
    arrival="walking",
    injury=False,
    chief_complaint="sore throat",
    mental="alert",
    pain=True,
    pain_score=2,
    sbp=120,
    dbp=80,
    heart_rate=80,
    resp_rate=16,
    temperature=36.8,
    spo2=98,
)


def make_facts(**overrides) -> TriageFacts:
    return TriageFacts(**{**NORMAL, **overrides})


def numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"(?<![A-Za-z])\d+(?:\.\d+)?", text)}  # not the 2 of SpO2


@pytest.mark.parametrize(
    "vital, value, abnormal",
    [
        ("spo2", 91, True),
        ("spo2", 92, False),
        ("resp_rate", 25, True),
        ("resp_rate", 24, False),
        ("resp_rate", 9, True),
        ("resp_rate", 10, False),
        ("sbp", 89, True),
        ("sbp", 90, False),
        ("sbp", 181, True),
        ("sbp", 180, False),
        ("heart_rate", 121, True),
        ("heart_rate", 120, False),
        ("heart_rate", 49, True),
        ("heart_rate", 50, False),
        ("temperature", 38.0, True),
        ("temperature", 37.9, False),
        ("temperature", 34.9, True),
        ("temperature", 35.0, False),
    ],
)
def test_threshold_boundaries(vital, value, abnormal):
    facts = make_facts(**{vital: value})
    named = [f for f in abnormal_vitals(facts) if "(raised" not in f.phrase and "(low" not in f.phrase]
    assert len(named) == (1 if abnormal else 0)
    if abnormal:
        assert format_value(vital, value) in named[0].phrase
        assert format_value(vital, value) in write_rationale(facts)


@pytest.mark.parametrize(
    "vital, value, normal",
    [
        ("sbp", 160, True),
        ("sbp", 161, False),
        ("sbp", 175, False),
        ("dbp", 100, True),
        ("dbp", 101, False),
        ("dbp", 49, False),
        ("heart_rate", 100, True),
        ("heart_rate", 101, False),
        ("heart_rate", 115, False),
        ("resp_rate", 20, True),
        ("resp_rate", 21, False),
        ("resp_rate", 24, False),
        ("spo2", 95, True),
        ("spo2", 94, False),
        ("temperature", 37.9, True),
        ("temperature", 35.0, True),
    ],
)
def test_within_adult_limits_is_only_said_when_true(vital, value, normal):
    """The old writer called SBP 160-180, HR 101-120 and RR 21-24 'within adult limits'."""
    facts = make_facts(**{vital: value})
    rationale = write_rationale(facts)
    assert ("within adult limits" in rationale) == normal, rationale
    if not normal:
        assert format_value(vital, value) in rationale


def test_normal_ranges_sit_inside_the_thresholds():
    for t in THRESHOLDS:
        low, high = NORMAL_RANGES[t.vital]
        assert (t.limit <= low) if t.op == "<" else (t.limit > high), t


def test_every_threshold_names_a_real_field():
    fields = set(TriageFacts.__dataclass_fields__)
    assert {t.vital for t in THRESHOLDS} <= fields
    assert all(t.op in ("<", ">", ">=") for t in THRESHOLDS)


@pytest.mark.parametrize(
    "score, band",
    [(0, "no"), (1, "mild"), (3, "mild"), (4, "moderate"), (6, "moderate"), (7, "severe"), (10, "severe")],
)
def test_pain_bands(score, band):
    assert pain_band(score) == band


@pytest.mark.parametrize("score", [-1, 11])
def test_pain_band_rejects_out_of_range(score):
    with pytest.raises(InvalidCaseError, match="0-10"):
        pain_band(score)


def test_severe_pain_is_a_finding_mild_pain_is_not():
    assert [f.system for f in find_abnormal(make_facts(pain_score=7))] == ["pain"]
    assert find_abnormal(make_facts(pain_score=6)) == []


def test_rationale_never_names_a_level():
    for facts in (make_facts(), make_facts(mental="unresponsive", spo2=80), make_facts(heart_rate=125)):
        rationale = write_rationale(facts)
        assert "KTAS" not in rationale and not re.search(r"\blevel\b", rationale)
        assert 1 <= rationale.count(". ") + 1 <= 3


def test_critical_case_names_its_findings():
    facts = make_facts(mental="unresponsive", arrival="public ambulance", spo2=84, pain=None, pain_score=None)
    rationale = write_rationale(facts)
    assert rationale.startswith("Chief complaint: sore throat. Unresponsive")
    for text in ("SpO2 84%", "below 92%", "arrived by ambulance", "breathing is at risk", "consciousness is impaired"):
        assert text in rationale
    assert [f.field for f in critical_findings(facts)] == ["mental", "spo2"]


def test_normal_case_says_so_honestly():
    assert write_rationale(make_facts()) == (
        "Chief complaint: sore throat. Vital signs within adult limits, alert, mild pain 2/10: "
        "no sign of an immediate threat in the recorded findings."
    )


def test_complaint_is_restated_and_absent_complaint_is_not_invented():
    assert "Chief complaint: chest pain." in write_rationale(make_facts(chief_complaint="chest pain"))
    assert "complaint" not in write_rationale(make_facts(chief_complaint=None)).lower()


def test_mildly_abnormal_vital_is_named_but_not_critical():
    facts = make_facts(heart_rate=110)
    assert "Heart rate 110/min (raised, above 100/min)" in write_rationale(facts)
    assert critical_findings(facts) == []


def test_critical_finding_is_stated_whatever_the_rest():
    rationale = write_rationale(make_facts(heart_rate=125))
    assert "heart rate 125/min (tachycardia, above 120/min)" in rationale.lower()
    assert "circulation is at risk" in rationale


def test_missing_vitals_are_said_missing_never_invented():
    facts = make_facts(sbp=None, dbp=None, spo2=None)
    rationale = write_rationale(facts)
    assert "not recorded" in rationale and "SpO2" in rationale
    none_recorded = write_rationale(
        make_facts(**{v: None for v in ("sbp", "dbp", "heart_rate", "resp_rate", "temperature", "spo2")})
    )
    assert "Vital signs not recorded" in none_recorded


def test_paediatric_case_sets_adult_limits_aside():
    child = make_facts(age=6, heart_rate=150, resp_rate=34, temperature=39.4)
    assert abnormal_vitals(child) == []
    rationale = write_rationale(child)
    assert rationale.startswith("Child aged 6") and "do not apply" in rationale
    assert "above 120" not in rationale


def random_facts(rng: random.Random) -> TriageFacts:
    maybe = lambda value: None if rng.random() < 0.15 else value  # noqa: E731
    return TriageFacts(
        age=maybe(rng.randint(1, 99)),
        sex=maybe(rng.choice(["female", "male"])),
        arrival=maybe(rng.choice(ARRIVAL_MODES)),
        injury=maybe(rng.random() < 0.2),
        chief_complaint=maybe("abd pain"),
        mental=maybe(rng.choice(MENTAL_STATES)),
        pain=maybe(True),
        pain_score=maybe(rng.randint(0, 10)),
        sbp=maybe(rng.randint(50, 240)),
        dbp=maybe(rng.randint(30, 140)),
        heart_rate=maybe(rng.randint(30, 170)),
        resp_rate=maybe(rng.randint(6, 36)),
        temperature=maybe(round(rng.uniform(34.0, 41.0), 1)),
        spo2=maybe(rng.randint(60, 100)),
    )


def test_rationale_numbers_come_from_the_case_or_the_limit_tables():
    rng = random.Random(0)
    allowed_constants = {float(t.limit) for t in THRESHOLDS} | {float(x) for r in NORMAL_RANGES.values() for x in r}
    for _ in range(300):
        facts = random_facts(rng)
        case_numbers = {
            float(v)
            for v in (
                facts.age,
                facts.pain_score,
                facts.sbp,
                facts.dbp,
                facts.heart_rate,
                facts.resp_rate,
                facts.temperature,
                facts.spo2,
            )
            if v is not None
        }
        rationale = write_rationale(facts)
        assert numbers(rationale) <= case_numbers | allowed_constants | {10.0}, (facts, rationale)
        assert rationale == write_rationale(facts)  # deterministic


@pytest.mark.parametrize(
    "field, value", [("sex", "f"), ("arrival", "helicopter"), ("mental", "drowsy"), ("pain_score", 11), ("age", -1)]
)
def test_facts_reject_unknown_values(field, value):
    with pytest.raises(InvalidCaseError, match=field):
        make_facts(**{field: value})


# --- KTAS first-order modifiers ------------------------------------------------------------------------

QUIET = dict(NORMAL, pain_score=0)  # no modifier applies


@pytest.mark.parametrize(
    "field, value, level, finding",
    [
        ("mental", "alert", None, None),
        ("mental", "verbal", "2", "responds only to voice"),
        ("mental", "pain", "2", "responds only to pain"),
        ("mental", "unresponsive", "1", "unresponsive"),
        ("sbp", 79, "1", "systolic BP 79 mmHg (< 80 mmHg)"),
        ("sbp", 80, "2", "systolic BP 80 mmHg (< 90 mmHg)"),
        ("sbp", 89, "2", "systolic BP 89 mmHg (< 90 mmHg)"),
        ("sbp", 90, None, None),
        ("heart_rate", 131, "2", "heart rate 131/min (> 130/min)"),
        ("heart_rate", 130, None, None),
        ("heart_rate", 39, "2", "heart rate 39/min (< 40/min)"),
        ("heart_rate", 40, None, None),
        ("heart_rate", 0, "1", "heart rate 0/min (no pulse)"),
        ("spo2", 89, "1", "SpO2 89% (< 90%)"),
        ("spo2", 90, "2", "SpO2 90% (< 92%)"),
        ("spo2", 91, "2", "SpO2 91% (< 92%)"),
        ("spo2", 92, "3", "SpO2 92% (< 95%)"),
        ("spo2", 94, "3", "SpO2 94% (< 95%)"),
        ("spo2", 95, None, None),
        ("resp_rate", 36, "1", "respiratory rate 36/min (>= 36/min)"),
        ("resp_rate", 35, None, None),
        ("resp_rate", 7, "1", "respiratory rate 7/min (< 8/min)"),
        ("resp_rate", 8, None, None),
        ("pain_score", 10, "2", "pain 10/10 (8-10)"),
        ("pain_score", 8, "2", "pain 8/10 (8-10)"),
        ("pain_score", 7, "3", "pain 7/10 (4-7)"),
        ("pain_score", 4, "3", "pain 4/10 (4-7)"),
        ("pain_score", 3, None, None),
    ],
)
def test_each_modifier_at_its_boundary(field, value, level, finding):
    facts = TriageFacts(**{**QUIET, field: value})
    modifiers = first_order_modifiers(facts)
    assert modifiers == ([Modifier(level, finding)] if level else [])
    assert urgency_floor(facts) == level


def test_floor_is_the_most_urgent_modifier_and_findings_come_in_order():
    facts = TriageFacts(**{**QUIET, "mental": "verbal", "sbp": 75, "spo2": 93, "pain_score": 9})
    assert [m.finding.split(" (")[0] for m in first_order_modifiers(facts)] == [
        "responds only to voice",
        "systolic BP 75 mmHg",
        "SpO2 93%",
        "pain 9/10",
    ]
    assert urgency_floor(facts) == "1"
    assert urgency_floor(TriageFacts(**{**QUIET, "spo2": 93, "pain_score": 9})) == "2"


def test_one_vital_gives_one_modifier_its_most_urgent():
    facts = TriageFacts(**{**QUIET, "heart_rate": 0})  # also < 40, but only "no pulse" is named
    assert [m.level for m in first_order_modifiers(facts)] == ["1"]


@pytest.mark.parametrize("age, applies", [(15, False), (16, True), (None, True)])
def test_modifiers_are_adult_only(age, applies):
    facts = TriageFacts(**{**QUIET, "age": age, "mental": "unresponsive", "spo2": 80})
    assert bool(first_order_modifiers(facts)) == applies
    assert urgency_floor(facts) == ("1" if applies else None)


def test_no_facts_no_floor():
    assert first_order_modifiers(TriageFacts()) == [] and urgency_floor(TriageFacts()) is None

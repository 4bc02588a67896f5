"""training.corpus.synthetic: sampled triage facts covering every rule clause, which the fact check reads back."""

from __future__ import annotations

import random
import re

import pytest

from r2d.checks.factcheck import check_rationale, read_case
from r2d.checks.rules import MENTAL_STATES, NORMAL_RANGES, THRESHOLDS, find_abnormal, in_normal_range, write_rationale
from training.corpus import synthetic
from training.corpus.synthetic import (
    DEFAULT_STYLE_WEIGHTS,
    STYLES,
    case_text,
    sample_facts,
    style_facts,
    synthetic_examples,
    training_complaints,
)

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
            assert all(
                part in COMPLAINTS or " for " in part or " since " in part for part in f.chief_complaint.split(", ")
            )


VITAL_FIELDS = ("sbp", "dbp", "heart_rate", "resp_rate", "temperature", "spo2")
# the complaint of a note is read back verbatim, abbreviations and punctuation included
ROUND_TRIP_COMPLAINTS = COMPLAINTS + [
    "abd. pain",
    "SOB",
    "pain, chest",
    "HA - headache",
    "arm pain, lt",
    "d - diarrhea",
    "fever",
    "head trauma",
    "RLQ pain",
    "f/c, c/s",
]


def round_trip_problems(complaints, style: str, n: int, seed: int) -> list:
    """What a note of `style` loses or invents: each sampled fact the note states must be read back by
    r2d.checks.factcheck (vitals said to be "normal" must be normal), and the rule rationale must pass the fact check
    with every critical finding named."""
    rng, problems = random.Random(seed), []
    for _ in range(n):
        facts = style_facts(rng, sample_facts(rng, complaints), style)
        text = case_text(rng, facts, style)
        case = read_case(text)
        for field in VITAL_FIELDS + ("mental", "chief_complaint", "age"):
            want, got = getattr(facts, field), getattr(case.facts, field)
            if field in case.normal_vitals and got is None:
                if not (want is not None and in_normal_range(field, want)):
                    problems.append((field, "said normal", want, text))
            elif got != want:
                problems.append((field, want, got, text))
        if (case.facts.pain_score or None) != (facts.pain_score or None):  # "no pain" for a score of 0
            problems.append(("pain_score", facts.pain_score, case.facts.pain_score, text))
        if facts.by_ambulance != case.facts.by_ambulance:
            problems.append(("arrival", facts.arrival, case.facts.arrival, text))
        check = check_rationale(text, write_rationale(facts))
        if not (check.faithful and check.critical_named):
            problems.append(("fact check", check.problems, check.missing_critical, text))
    return problems


@pytest.mark.parametrize("style", STYLES)
def test_every_style_round_trips_through_the_fact_check(style):
    """The key test: 600 notes of each style, complaints with abbreviations, commas and capitals."""
    assert round_trip_problems(ROUND_TRIP_COMPLAINTS, style, 600, seed=11) == []


@pytest.mark.shared_data
@pytest.mark.parametrize("style", STYLES)
def test_every_style_round_trips_with_the_ktas_training_complaints(ktas_examples, style):
    complaints = training_complaints(ktas_examples)
    assert len(complaints) > 300
    assert round_trip_problems(complaints, style, 400, seed=12) == []


def nurse_notes(n: int = 1500, seed: int = 3) -> list[str]:
    return [
        e.case_text
        for e in synthetic_examples(n, ROUND_TRIP_COMPLAINTS, seed, style_weights={"nurse": 0.7, "brief": 0.3})
    ]


def test_notes_are_written_as_nurses_write_them():
    texts = nurse_notes()
    joined = "\n".join(texts)
    for notation in (
        "c/o",
        "BIBA",
        "EMS",
        "y/o",
        " yo ",
        "sats",
        "% RA",
        "on room air",
        "GCS",
        "AVPU",
        "A&Ox3",
        "bpm",
        "mmHg",
        "°C",
        "/min",
        "hx",
        "NKDA",
        "pain 0/10",
        "no sats",
        "temp not taken",
        "afebrile",
        "febrile 3",
        "fever 3",
    ):
        assert notation.lower() in joined.lower(), notation
    assert any(re.match(r"\d{1,2}[MF]\b", t) for t in texts)  # "55M"
    assert all("Mental status:" not in t and "not recorded" not in t for t in texts)
    assert sum("\n" in t for t in texts) > 100  # one line per fact
    assert any(
        re.match(r"[A-Z][a-z]", t)
        and "c/o" not in t.split(".")[0]
        and re.search(r"^(?:Abd\. pain|Pain, chest|Fever|Head trauma)\.", t)
        for t in texts
    )  # opens with its complaint
    assert any(re.search(r"\bGCS (?:[3-9]|1[0-4])\b", t) for t in texts) and "GCS 15" in joined
    lengths = sorted(len(t) for t in texts)
    assert lengths[0] < 40 and lengths[len(lengths) // 10] < 90  # short notes ...
    assert lengths[-len(lengths) // 10] > 170 and lengths[-1] > 220  # ... and long ones


def test_vital_orders_vary():
    orders = set()
    for t in nurse_notes(400):
        found = [(t.find(k), k) for k in ("BP", "HR", "RR", "T ") if k in t]
        orders.add(tuple(k for _, k in sorted(found)))
    assert len(orders) > 12


def test_typos_fall_in_remarks_only():
    texts = nurse_notes()
    remarks = {r.lower() for r in synthetic._REMARKS}
    sentences = {s.strip(" .").lower() for t in texts for s in re.split(r"[.;\n]", t)}
    typos = [
        s
        for s in sentences
        if s not in remarks
        and any(len(s) == len(r) - 1 and s.split()[0] in (r.split()[0], r.split()[0][:-1]) for r in remarks)
    ]
    assert len(typos) > 10, typos
    assert synthetic._typo(random.Random(0), "family at bedside") in (
        "famly at bedside",
        "faily at bedside",
        "fmily at bedside",
        "famil at bedside",
        "family at bdside",
        "family at beside",
        "family at bedide",
        "family at bedsde",
        "family at bedsie",
        "family at bedsid",
    )


def test_normal_vitals_are_said_without_numbers_only_when_every_vital_is_normal():
    rng, said = random.Random(5), 0
    for _ in range(3000):
        facts = sample_facts(rng, COMPLAINTS)
        text = case_text(rng, facts, "nurse")
        normal = read_case(text).normal_vitals
        assert all(in_normal_range(v, getattr(facts, v)) for v in normal)  # "afebrile": the temperature alone
        if normal != set(VITAL_FIELDS):
            continue
        said += 1
        assert not facts.is_paediatric
        rationale = write_rationale(facts)
        # the rule writer names the vitals as within limits unless another finding leads (it then leaves them out)
        assert "ital signs within adult limits" in rationale or find_abnormal(facts)
        assert not re.search(r"\d", re.sub(r"\d+/10", "", rationale.replace(facts.chief_complaint or "", "")))
        assert not re.search(r"\b(?:BP|HR|RR|sats|SpO2|T) \d", text), text
    assert said > 30


def test_brief_notes_state_fewer_facts_and_the_rationale_follows():
    rng = random.Random(6)
    full = [sample_facts(rng, COMPLAINTS) for _ in range(500)]
    brief = [style_facts(rng, f, "brief") for f in full]
    stated = lambda fs: sum(v is not None for f in fs for v in vars(f).values())  # noqa: E731
    assert stated(brief) < 0.85 * stated(full)
    assert [style_facts(rng, f, "nurse") for f in full] == full


def test_default_stream_is_half_ktas_narrative_and_half_free_text():
    texts = [e.case_text for e in synthetic_examples(4000, COMPLAINTS, seed=8)]
    ktas = sum("Mental status:" in t for t in texts) / len(texts)
    assert 0.45 < ktas < 0.55
    assert abs(sum(DEFAULT_STYLE_WEIGHTS.values()) - 1) < 1e-9 and set(DEFAULT_STYLE_WEIGHTS) == set(STYLES)


def test_style_weights_are_checked():
    with pytest.raises(ValueError, match="3 style weights"):
        list(synthetic_examples(1, COMPLAINTS, 0, style_weights=(0, 0, 1)))
    with pytest.raises(ValueError, match="unknown style"):
        list(synthetic_examples(1, COMPLAINTS, 0, style_weights={"poetry": 1}))
    assert {
        e.case_text.count("Mental status:") for e in synthetic_examples(50, COMPLAINTS, 0, style_weights={"ktas": 1})
    } == {1}


def test_free_text_uses_nurse_notation():
    rng = random.Random(3)
    texts = [e.case_text for e in synthetic_examples(300, COMPLAINTS, seed=3, style_weights={"terse": 1})]
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

    examples = [
        Example(
            "60-year-old man, walked in, not an injury. Chief complaint: abd. pain. Mental status: "
            "alert. No pain. Vital signs not recorded.",
            "3",
        ),
        Example("Chief complaint not recorded. Mental status: alert.", "4"),
    ]
    assert training_complaints(examples) == ["abd. pain"]

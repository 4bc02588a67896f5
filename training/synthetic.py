"""A synthetic triage corpus for Stage 1: sampled triage facts, written as case texts, with rule rationales.

The paper's point is that machine-written rationales are enough for Stage 1. KTAS has 886 training
cases, far too few for a T5 trained from scratch to learn to *read* a case rather than recite a
template, so Stage 1 also sees cases made here: `TriageFacts` sampled to cover the normal and the
abnormal ranges of every vital sign (the bands between a normal range and a critical threshold too),
every mental state, every pain score, missing values, children, and the chief complaints of the KTAS
training split (never val or test), written as the KTAS narrative (r2d.sources.ktas_case_text) or in
free-text notations ("BP 90/60, HR 120, RR 24, T 38.5, sats 91% on air, pain 7/10"), each with the
label-free rationale of r2d.rules.write_rationale. No label is sampled: Stage 1 needs none.
"""
from __future__ import annotations

import random
from typing import Iterator, Sequence

from r2d.data import Example
from r2d.rules import ARRIVAL_MODES, MENTAL_STATES, TriageFacts, write_rationale
from r2d.sources import ktas_case_text

# (low, high, weight) bands per vital: the normal range (r2d.rules.NORMAL_RANGES), the bands up to the
# critical thresholds (r2d.rules.THRESHOLDS) and beyond them, so that every rule clause is exercised
VITAL_BANDS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sbp": ((90, 160, 0.6), (161, 180, 0.1), (181, 240, 0.12), (50, 89, 0.18)),
    "heart_rate": ((50, 100, 0.55), (101, 120, 0.15), (121, 190, 0.18), (25, 49, 0.12)),
    "resp_rate": ((10, 20, 0.6), (21, 24, 0.15), (25, 45, 0.15), (4, 9, 0.1)),
    "temperature": ((35.0, 37.9, 0.65), (38.0, 41.5, 0.25), (31.0, 34.9, 0.1)),
    "spo2": ((95, 100, 0.6), (92, 94, 0.15), (60, 91, 0.25)),
}
# how often a vital is not recorded (SpO2 is missing in about half of the KTAS file)
MISSING = {"bp": 0.08, "heart_rate": 0.06, "resp_rate": 0.08, "temperature": 0.08, "spo2": 0.4}
STYLES = ("ktas", "notes", "terse")
DURATIONS = ("for 1 hour", "for 2 hours", "for 6 hours", "since this morning", "for 1 day", "for 2 days",
             "for 3 days", "for 1 week")


def _pick(rng: random.Random, options: Sequence, weights: Sequence[float]):
    return rng.choices(options, weights=weights)[0]


def _vital(rng: random.Random, name: str) -> float:
    low, high, _ = _pick(rng, VITAL_BANDS[name], [b[2] for b in VITAL_BANDS[name]])
    if name == "temperature":
        return round(rng.uniform(low, high), 1)
    return float(rng.randint(int(low), int(high)))


def sample_complaint(rng: random.Random, complaints: Sequence[str]) -> str | None:
    """A training-split complaint; sometimes two joined or one with a duration (so copying, not recall, pays)."""
    r = rng.random()
    if r < 0.04 or not complaints:
        return None
    first = rng.choice(complaints)
    if r < 0.8:
        return first
    if r < 0.9:
        return f"{first} {rng.choice(DURATIONS)}"
    return f"{first}, {rng.choice(complaints)}"


def _pain(rng: random.Random) -> tuple[bool | None, int | None]:
    r = rng.random()
    if r < 0.04:
        return None, None
    if r < 0.3:
        return False, rng.choice((None, 0))  # KTAS leaves the score empty when there is no pain
    return True, (None if rng.random() < 0.1 else rng.randint(1, 10))


def sample_facts(rng: random.Random, complaints: Sequence[str]) -> TriageFacts:
    """One random case: every field drawn independently, each sometimes missing."""
    age = None if rng.random() < 0.02 else (rng.randint(1, 15) if rng.random() < 0.06 else rng.randint(16, 96))
    pain, score = _pain(rng)
    vitals: dict[str, float | None] = {v: None if rng.random() < MISSING[v] else _vital(rng, v)
                                       for v in ("heart_rate", "resp_rate", "temperature", "spo2")}
    sbp = dbp = None
    if rng.random() >= MISSING["bp"]:
        sbp = _vital(rng, "sbp")
        dbp = float(max(20, min(sbp - 10, round(sbp * rng.uniform(0.5, 0.75)))))
    return TriageFacts(
        age=age, sex=_pick(rng, ("female", "male", None), (0.48, 0.48, 0.04)),
        arrival=_pick(rng, ARRIVAL_MODES + (None,), (0.3, 0.22, 0.32, 0.08, 0.05, 0.03)),
        injury=_pick(rng, (True, False, None), (0.3, 0.66, 0.04)),
        chief_complaint=sample_complaint(rng, complaints),
        mental=_pick(rng, MENTAL_STATES + (None,), (0.72, 0.09, 0.08, 0.08, 0.03)),
        pain=pain, pain_score=score, sbp=sbp, dbp=dbp, **vitals)


# --- free-text notations ---------------------------------------------------------------------------

# AVPU words and GCS as r2d.factcheck reads them (GCS 15 A, 13-14 V, 9-12 P, 3-8 U)
_MENTAL_WORDS = {"alert": ("alert", "A on AVPU", "GCS 15"), "verbal": ("responds to voice", "V on AVPU", "GCS 14"),
                 "pain": ("responds to pain", "P on AVPU", "GCS 10"), "unresponsive": ("unresponsive", "GCS 6")}
_ARRIVAL_WORDS = {"walking": "walked in", "public ambulance": "arrived by public ambulance",
                  "private ambulance": "arrived by private ambulance", "private vehicle": "by private vehicle",
                  "other": "arrived by other transport"}


def _who(rng: random.Random, f: TriageFacts) -> str | None:
    if f.age is None:
        return None if f.sex is None else ("Female" if f.sex == "female" else "Male")
    if f.sex is None:
        return f"{f.age}-year-old"
    letter = "F" if f.sex == "female" else "M"
    return rng.choice((f"{f.age}{letter}", f"{f.age} y/o {f.sex}", f"{f.age}-year-old {f.sex}"))


def _vital_items(rng: random.Random, f: TriageFacts, terse: bool) -> list[str]:
    items = []
    if f.sbp is not None:
        items.append(f"BP {f.sbp:g}/{f.dbp:g}" + ("" if terse else " mmHg"))
    names = ({"heart_rate": "HR", "resp_rate": "RR", "temperature": "T", "spo2": "sats"} if terse else
             {"heart_rate": "pulse", "resp_rate": "resp rate", "temperature": "temp", "spo2": "SpO2"})
    for vital, name in names.items():
        value = getattr(f, vital)
        if value is None:
            continue
        if vital == "temperature":
            items.append(f"{name} {value:.1f}" + ("" if terse else " C"))
        elif vital == "spo2":
            items.append(f"{name} {value:g}%" + (" on air" if rng.random() < 0.5 else ""))
        else:
            items.append(f"{name} {value:g}")
    return items


def _pain_words(f: TriageFacts) -> str | None:
    if f.pain_score is not None:
        return "no pain" if f.pain_score == 0 else f"pain {f.pain_score}/10"
    return {None: None, True: "pain present, score not given", False: "no pain"}[f.pain]


def free_text(rng: random.Random, f: TriageFacts, terse: bool) -> str:
    """A nurse's note of the same facts: 'BP 90/60, HR 120, RR 24, T 38.5, sats 91% on air, pain 7/10'."""
    head = [p for p in (_who(rng, f), _ARRIVAL_WORDS.get(f.arrival)) if p]
    if f.injury:
        head.append("injured")
    parts = [", ".join(head)] if head else []
    if f.chief_complaint:
        parts.append(f"{rng.choice(('CC', 'Complaint', 'Chief complaint'))}: {f.chief_complaint}")
    if f.mental:
        parts.append(rng.choice(_MENTAL_WORDS[f.mental]))
    vitals = _vital_items(rng, f, terse)
    if vitals:
        parts.append(", ".join(vitals))
    pain = _pain_words(f)
    if pain:
        parts.append(pain)
    return ". ".join(p[0].upper() + p[1:] for p in parts) + "."


def case_text(rng: random.Random, facts: TriageFacts, style: str) -> str:
    """The facts as the KTAS narrative ('ktas') or a free-text note ('notes', 'terse')."""
    if style == "ktas":
        return ktas_case_text(facts)
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return free_text(rng, facts, terse=style == "terse")


def synthetic_examples(n: int, complaints: Sequence[str], seed: int,
                       style_weights: Sequence[float] = (0.7, 0.15, 0.15)) -> Iterator[Example]:
    """n synthetic cases with rule rationales, deterministic per seed. The label field is unused ("")."""
    rng = random.Random(seed)
    for i in range(n):
        facts = sample_facts(rng, complaints)
        style = _pick(rng, STYLES, style_weights)
        yield Example(case_text(rng, facts, style), "", write_rationale(facts), "rules", f"synthetic-{seed}-{i}")


def training_complaints(examples: Sequence[Example]) -> list[str]:
    """The distinct chief complaints of KTAS training examples, sorted (read back from their case text)."""
    found = set()
    for e in examples:
        marker = "Chief complaint: "
        if marker in e.case_text:
            found.add(e.case_text.split(marker, 1)[1].split(". Mental status:", 1)[0])
    return sorted(found)

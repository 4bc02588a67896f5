"""A synthetic triage corpus for Stage 1: sampled triage facts, written as case texts, with rule rationales.

The paper's point is that machine-written rationales are enough for Stage 1. KTAS has 886 training
cases, far too few for a T5 trained from scratch to learn to *read* a case rather than recite a
template, so Stage 1 also sees cases made here: `TriageFacts` sampled to cover the normal and the
abnormal ranges of every vital sign (the bands between a normal range and a critical threshold too),
every mental state, every pain score, missing values, children, and the chief complaints of the KTAS
training split (never val or test), written as the KTAS narrative (r2d.sources.ktas_case_text), in
structured free-text notations ("BP 90/60, HR 120, RR 24, T 38.5, sats 91% on air, pain 7/10") or as nurses
write ("55M BIBA c/o chest pain. HR 124bpm BP 90/60 sats 91% RA. GCS 14. Hx HTN, DM." and briefer notes; see
nurse_note), each with the label-free rationale of r2d.checks.rules.write_rationale. No label is sampled: Stage 1
needs none. DEFAULT_STYLE_WEIGHTS make half the stream the KTAS narrative and half free text. r2d.checks.factcheck
reads every style back (tests/test_synthetic.py: the sampled facts, and the rule rationale passes the check).
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cache
from itertools import accumulate

from r2d.checks.rules import ARRIVAL_MODES, MENTAL_STATES, VITALS, TriageFacts, in_normal_range, write_rationale
from r2d.data import Example
from r2d.sources import ktas_case_text

# (low, high, weight) bands per vital: the normal range (r2d.checks.rules.NORMAL_RANGES), the bands up to the
# critical thresholds (r2d.checks.rules.THRESHOLDS) and beyond them, so that every rule clause is exercised
VITAL_BANDS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sbp": ((90, 160, 0.6), (161, 180, 0.1), (181, 240, 0.12), (50, 89, 0.18)),
    "heart_rate": ((50, 100, 0.55), (101, 120, 0.15), (121, 190, 0.18), (25, 49, 0.12)),
    "resp_rate": ((10, 20, 0.6), (21, 24, 0.15), (25, 45, 0.15), (4, 9, 0.1)),
    "temperature": ((35.0, 37.9, 0.65), (38.0, 41.5, 0.25), (31.0, 34.9, 0.1)),
    "spo2": ((95, 100, 0.6), (92, 94, 0.15), (60, 91, 0.25)),
}
# how often a vital is not recorded (SpO2 is missing in about half of the KTAS file)
MISSING = {"bp": 0.08, "heart_rate": 0.06, "resp_rate": 0.08, "temperature": 0.08, "spo2": 0.4}
STYLES = ("ktas", "notes", "terse", "nurse", "brief")
# half the stream is the KTAS narrative, half free text (mostly notes as nurses write them)
DEFAULT_STYLE_WEIGHTS = {"ktas": 0.5, "notes": 0.075, "terse": 0.075, "nurse": 0.25, "brief": 0.1}
DURATIONS = (
    "for 1 hour",
    "for 2 hours",
    "for 6 hours",
    "since this morning",
    "for 1 day",
    "for 2 days",
    "for 3 days",
    "for 1 week",
)


@cache
def _cumulative(weights: tuple[float, ...]) -> tuple[list[float], float]:
    cumulative = list(accumulate(weights))
    return cumulative, cumulative[-1] + 0.0


def _pick(rng: random.Random, options: Sequence, weights: Sequence[float]):
    """rng.choices(options, weights)[0], the same draw, without rebuilding the cumulative weights each call."""
    cumulative, total = _cumulative(tuple(weights))
    return options[bisect(cumulative, rng.random() * total, 0, len(cumulative) - 1)]


_BAND_WEIGHTS = {name: tuple(b[2] for b in bands) for name, bands in VITAL_BANDS.items()}


def _vital(rng: random.Random, name: str) -> float:
    low, high, _ = _pick(rng, VITAL_BANDS[name], _BAND_WEIGHTS[name])
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
    vitals: dict[str, float | None] = {
        v: None if rng.random() < MISSING[v] else _vital(rng, v)
        for v in ("heart_rate", "resp_rate", "temperature", "spo2")
    }
    sbp = dbp = None
    if rng.random() >= MISSING["bp"]:
        sbp = _vital(rng, "sbp")
        dbp = float(max(20, min(sbp - 10, round(sbp * rng.uniform(0.5, 0.75)))))
    return TriageFacts(
        age=age,
        sex=_pick(rng, ("female", "male", None), (0.48, 0.48, 0.04)),
        arrival=_pick(rng, ARRIVAL_MODES + (None,), (0.3, 0.22, 0.32, 0.08, 0.05, 0.03)),
        injury=_pick(rng, (True, False, None), (0.3, 0.66, 0.04)),
        chief_complaint=sample_complaint(rng, complaints),
        mental=_pick(rng, MENTAL_STATES + (None,), (0.72, 0.09, 0.08, 0.08, 0.03)),
        pain=pain,
        pain_score=score,
        sbp=sbp,
        dbp=dbp,
        **vitals,
    )


# --- free-text notations ---------------------------------------------------------------------------

# AVPU words and GCS as r2d.checks.factcheck reads them (GCS 15 A, 13-14 V, 9-12 P, 3-8 U)
_MENTAL_WORDS = {
    "alert": ("alert", "A on AVPU", "GCS 15"),
    "verbal": ("responds to voice", "V on AVPU", "GCS 14"),
    "pain": ("responds to pain", "P on AVPU", "GCS 10"),
    "unresponsive": ("unresponsive", "GCS 6"),
}
_ARRIVAL_WORDS = {
    "walking": "walked in",
    "public ambulance": "arrived by public ambulance",
    "private ambulance": "arrived by private ambulance",
    "private vehicle": "by private vehicle",
    "other": "arrived by other transport",
}


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
    names = (
        {"heart_rate": "HR", "resp_rate": "RR", "temperature": "T", "spo2": "sats"}
        if terse
        else {"heart_rate": "pulse", "resp_rate": "resp rate", "temperature": "temp", "spo2": "SpO2"}
    )
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


# --- notes as nurses write them ------------------------------------------------------------------------
# Every fact the rule rationale states is written into the note (the complaint verbatim, every recorded vital,
# the mental state, the pain, arrival by ambulance, an injury, a child's age); nothing else the note says is a
# triage fact (history, remarks). Vital numbers are left out only as "vitals normal", and only when all six are
# recorded and inside NORMAL_RANGES for an adult: the rationale then says "vital signs within adult limits"
# and cites no number. Typos (a dropped letter) fall in the remarks only, never in a fact.

_NURSE_ARRIVAL = {
    "public ambulance": (
        "BIBA",
        "brought in by ambulance",
        "via EMS",
        "BIBA (EMS)",
        "arrived by ambulance",
        "EMS brought in",
    ),
    "private ambulance": ("by private ambulance", "private ambulance transfer"),
    "private vehicle": ("by private car", "brought by family by car", "private vehicle"),
    "walking": ("walked in", "walk-in", "self-presented"),
    "other": ("arrived by other transport",),
}
_NURSE_MENTAL = {
    "alert": ("alert", "A&Ox3", "alert and oriented", "AVPU A", "AVPU: A", "A on AVPU"),
    "verbal": ("responds to voice", "V on AVPU", "AVPU V", "AVPU: V"),
    "pain": ("responds to pain", "P on AVPU", "AVPU P", "AVPU: P"),
    "unresponsive": ("unresponsive", "unconscious", "U on AVPU", "AVPU U"),
}
_GCS_RANGE = {"alert": (15, 15), "verbal": (13, 14), "pain": (9, 12), "unresponsive": (3, 8)}
_NORMAL_PHRASES = (
    "vitals normal",
    "obs stable",
    "vitals WNL",
    "VSS",
    "obs within normal limits",
    "vital signs normal",
    "observations normal",
    "vitals stable",
)
_HISTORY = (
    "hx HTN, DM",
    "PMH: asthma",
    "PMHx COPD, AF",
    "background IHD, CKD",
    "NKDA",
    "hx: nil",
    "on warfarin",
    "meds: metformin, ramipril",
    "hx epilepsy",
    "PMH HTN",
    "hx T2DM",
    "lives alone",
)
_REMARKS = (
    "family at bedside",
    "patient anxious",
    "seen by GP yesterday",
    "speaking in full sentences",
    "skin warm and dry",
    "lives with daughter",
    "independent at home",
    "not eating well today",
    "wife concerned",
    "appears uncomfortable",
    "awaiting assessment",
    "friend brought belongings",
)
_COMPLAINT_LEAD = (
    "c/o ",
    "C/O ",
    "complaining of ",
    "presenting with ",
    "presents with ",
    "CC: ",
    "Complaint: ",
    "PC: ",
)
_INLINE_LEAD = ("c/o ", "c/o ", "complaining of ", "presenting with ", "CC ")


def _typo(rng: random.Random, text: str) -> str:
    """Drop one inner letter of one longer word (remarks only, never a fact)."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return text
    i = rng.choice(long)
    j = rng.randrange(1, len(words[i]) - 1)
    words[i] = words[i][:j] + words[i][j + 1 :]
    return " ".join(words)


def _nurse_who(rng: random.Random, f: TriageFacts) -> str:
    sex, age = f.sex, f.age
    if age is None:
        return rng.choice(("Pt", "Patient") if sex is None else (f"{sex.capitalize()} pt", sex.capitalize()))
    if sex is None:
        return rng.choice((f"{age} yo", f"{age} y/o", f"Pt aged {age}", f"{age}-year-old"))
    letter = "F" if sex == "female" else "M"
    child = ("girl" if sex == "female" else "boy") if f.is_paediatric else sex
    return rng.choice(
        (
            f"{age}{letter}",
            f"{age} yo {letter}",
            f"{age}yo {letter}",
            f"{age} y/o {child}",
            f"Pt {age}{letter}",
            f"{age}-year-old {child}",
            f"{age} yo {child}",
        )
    )


def _nurse_vital(rng: random.Random, vital: str, f: TriageFacts) -> str:
    value = getattr(f, vital)
    if vital == "sbp":
        return rng.choice(("BP {}/{}", "BP {}/{} mmHg", "BP {}/{}mmHg", "B/P {}/{}", "BP: {}/{}")).format(
            f"{f.sbp:g}", f"{f.dbp:g}"
        )
    if vital == "temperature":
        r = rng.random()
        if r < 0.12 and in_normal_range(vital, value):
            return "afebrile"  # read as a normal temperature with no number; the rationale cites none
        if r < 0.25 and value >= 38.0:
            return f"{rng.choice(('fever', 'febrile'))} {value:.1f}"
        number = f"{value:.1f}" if rng.random() < 0.7 else f"{value:g}"
        return rng.choice(("T {}", "T {}C", "T {} °C", "temp {}", "Temp {}°C", "T: {}")).format(number)
    form = {
        "heart_rate": ("HR {}", "HR {} bpm", "HR {}bpm", "HR {}/min", "pulse {}", "HR: {}"),
        "resp_rate": ("RR {}", "RR {}/min", "resp {}", "RR: {}"),
        "spo2": (
            "sats {}%",
            "sats {}% RA",
            "SpO2 {}%",
            "SpO2 {}% on room air",
            "O2 sats {}%",
            "sat {}% RA",
            "SpO2 {}",
            "{}% RA",
            "sats {}% on RA",
        ),
    }[vital]
    return rng.choice(form).format(f"{value:g}")


def _nurse_vitals(rng: random.Random, f: TriageFacts) -> str | None:
    recorded = [v for v in ("sbp", "heart_rate", "resp_rate", "temperature", "spo2") if getattr(f, v) is not None]
    normal = (
        len(recorded) == 5
        and f.dbp is not None
        and not f.is_paediatric
        and all(in_normal_range(v, getattr(f, v)) for v in VITALS)
    )
    if normal and rng.random() < 0.4:
        return rng.choice(_NORMAL_PHRASES)
    if not recorded:
        return rng.choice(("no obs yet", None, None))
    rng.shuffle(recorded)
    items = [_nurse_vital(rng, v, f) for v in recorded]
    if len(recorded) < 5 and rng.random() < 0.2:
        gone = rng.choice([v for v in ("temperature", "spo2", "resp_rate") if getattr(f, v) is None] or [None])
        if gone:
            items.append({"temperature": "temp not taken", "spo2": "no sats", "resp_rate": "RR not done"}[gone])
    prefix = rng.choice(("", "", "Obs: ", "Vitals: ", "VS: ", "Obs "))
    return prefix + rng.choice((", ", " ", "; ", ", ")).join(items)


def _nurse_pain(rng: random.Random, f: TriageFacts) -> str | None:
    if f.pain_score:
        return rng.choice(("pain {}/10", "{}/10 pain", "NRS {}/10", "pain score {}/10")).format(f.pain_score)
    if f.pain_score == 0:
        return rng.choice(("pain 0/10", "no pain", "denies pain"))
    return {
        None: None,
        True: rng.choice(("pain present", "pain present, not scored")),
        False: rng.choice(("no pain", "denies pain", "pain free")),
    }[f.pain]


def _nurse_mental(rng: random.Random, f: TriageFacts) -> str | None:
    if f.mental is None:
        return None
    if rng.random() < 0.35:
        low, high = _GCS_RANGE[f.mental]
        gcs = rng.randint(low, high)
        return f"GCS {gcs}/15" if rng.random() < 0.2 else f"GCS {gcs}"
    return rng.choice(_NURSE_MENTAL[f.mental])


def _sentence(part: str) -> str:
    return part[0].upper() + part[1:]


def nurse_note(rng: random.Random, f: TriageFacts, brief: bool = False) -> str:
    """A note as a nurse writes it: '55M BIBA c/o chest pain. HR 124 BP 90/60 sats 91% RA. GCS 14. Pain 7/10.'
    `brief`: telegraphic, no history or remarks. Every fact of `f` the rule rationale states is written."""
    arrival = rng.choice(_NURSE_ARRIVAL[f.arrival]) if f.arrival and (f.by_ambulance or rng.random() < 0.5) else None
    who = _nurse_who(rng, f)
    head = who + rng.choice((" ", ", ")) + arrival if who and arrival else who or arrival or ""
    lead = [head] if head and head not in ("Pt", "Patient") else []  # a bare "Pt." says nothing
    if f.chief_complaint:
        r = rng.random()
        if r < 0.3:  # the note opens with the complaint
            lead.insert(0, f.chief_complaint)
        elif r < 0.45 and f.age is not None and f.sex is not None and not arrival:  # "55M chest pain."
            letter = "F" if f.sex == "female" else "M"
            lead = [
                rng.choice((f"{f.age}{letter} ", f"{f.age} yo {letter} ", f"{f.age}{letter}, ")) + f.chief_complaint
            ]
        elif head and rng.random() < 0.6:  # "55M BIBA c/o chest pain."
            lead = [f"{head} {rng.choice(_INLINE_LEAD)}{f.chief_complaint}"]
        else:
            lead.append(rng.choice(_COMPLAINT_LEAD) + f.chief_complaint)
    body = [rng.choice(("injured", "trauma", "with an injury"))] if f.injury else []
    body += [p for p in (_nurse_mental(rng, f), _nurse_vitals(rng, f), _nurse_pain(rng, f)) if p]
    rng.shuffle(body)
    if not brief:
        for history in rng.sample(_HISTORY, rng.choice((0, 0, 1, 1, 2))):
            body.insert(rng.randint(0, len(body)), history)
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            remark = rng.choice(_REMARKS)
            body.insert(rng.randint(0, len(body)), _typo(rng, remark) if rng.random() < 0.3 else remark)
    sentences = [_sentence(p) for p in lead + body]
    end = rng.choice((". ", ". ", ". ", ".\n", "; ") if not brief else (". ", ". ", "\n"))
    return end.join(sentences) + ("." if rng.random() < 0.7 else "")


def style_facts(rng: random.Random, facts: TriageFacts, style: str) -> TriageFacts:
    """The facts a note of `style` states: 'brief' notes leave some out (the rationale then leaves them out too)."""
    if style != "brief":
        return facts
    drop = {
        name: None
        for name, p in (
            ("mental", 0.4),
            ("pain", 0.5),
            ("temperature", 0.4),
            ("resp_rate", 0.4),
            ("spo2", 0.2),
            ("sex", 0.3),
            ("injury", 0.3),
        )
        if rng.random() < p
    }
    if "pain" in drop:
        drop["pain_score"] = None
    if facts.age is not None and not facts.is_paediatric and rng.random() < 0.3:
        drop["age"] = None
    return replace(facts, **drop)


def case_text(rng: random.Random, facts: TriageFacts, style: str) -> str:
    """The facts as the KTAS narrative ('ktas'), a structured note ('notes', 'terse') or as nurses write
    ('nurse', 'brief'; see nurse_note). For 'brief', pass the facts through style_facts first."""
    if style == "ktas":
        return ktas_case_text(facts)
    if style in ("nurse", "brief"):
        return nurse_note(rng, facts, brief=style == "brief")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return free_text(rng, facts, terse=style == "terse")


def _weights(style_weights: Sequence[float] | Mapping[str, float] | None) -> list[float]:
    if style_weights is None:
        return [DEFAULT_STYLE_WEIGHTS[s] for s in STYLES]
    if isinstance(style_weights, Mapping):
        unknown = set(style_weights) - set(STYLES)
        if unknown:
            raise ValueError(f"unknown style(s) {sorted(unknown)}; styles are {STYLES}")
        return [float(style_weights.get(s, 0.0)) for s in STYLES]
    if len(style_weights) != len(STYLES):
        raise ValueError(f"{len(style_weights)} style weights for the {len(STYLES)} styles {STYLES}")
    return list(style_weights)


def synthetic_examples(
    n: int, complaints: Sequence[str], seed: int, style_weights: Sequence[float] | Mapping[str, float] | None = None
) -> Iterator[Example]:
    """n synthetic cases with rule rationales, deterministic per seed. The label field is unused ("").
    style_weights: one per STYLES entry, or {style: weight}; None = DEFAULT_STYLE_WEIGHTS."""
    rng = random.Random(seed)
    weights = _weights(style_weights)
    for i in range(n):
        style = _pick(rng, STYLES, weights)
        facts = style_facts(rng, sample_facts(rng, complaints), style)
        yield Example(case_text(rng, facts, style), "", write_rationale(facts), "rules", f"synthetic-{seed}-{i}")


def training_complaints(examples: Sequence[Example]) -> list[str]:
    """The distinct chief complaints of KTAS training examples, sorted (read back from their case text)."""
    found = set()
    for e in examples:
        marker = "Chief complaint: "
        if marker in e.case_text:
            found.add(e.case_text.split(marker, 1)[1].split(". Mental status:", 1)[0])
    return sorted(found)

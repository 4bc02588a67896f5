"""A transparent, rule-based rationale writer for KTAS triage.

The KTAS data set has no rationale text, so Stage 1 and Stage 2 learn from rationales written here
from the triage facts alone. Every sentence states a fact of the case (a vital sign against a named
adult threshold, the mental state, the pain score, arrival by ambulance, an injury) and ends with the
expert's level. The writer is conditioned on the gold label: it explains the label it is given and
never invents a finding; when nothing is abnormal it says so. It is deterministic.
"""
from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from typing import Callable

from r2d.errors import InvalidCaseError

logger = logging.getLogger(__name__)

KTAS_LABEL_NAMES = {"1": "Resuscitation", "2": "Emergency", "3": "Urgent", "4": "Less urgent", "5": "Non-urgent"}
ARRIVAL_MODES = ("walking", "public ambulance", "private vehicle", "private ambulance", "other")
MENTAL_STATES = ("alert", "verbal", "pain", "unresponsive")  # AVPU
PAEDIATRIC_AGE = 16  # below this, adult vital-sign limits do not apply (KTAS has a separate paediatric scale)


@dataclass(frozen=True)
class TriageFacts:
    """What is known about a patient at triage. None = not recorded (never guessed)."""

    age: int | None = None
    sex: str | None = None               # "female" | "male"
    arrival: str | None = None           # one of ARRIVAL_MODES
    injury: bool | None = None           # True = the visit is for an injury
    chief_complaint: str | None = None
    mental: str | None = None            # one of MENTAL_STATES
    pain: bool | None = None             # the patient reports pain
    pain_score: int | None = None        # numeric rating scale 0-10
    sbp: float | None = None             # mmHg
    dbp: float | None = None             # mmHg
    heart_rate: float | None = None      # beats/min
    resp_rate: float | None = None       # breaths/min
    temperature: float | None = None     # °C
    spo2: float | None = None            # %

    def __post_init__(self) -> None:
        for name, allowed in (("sex", ("female", "male")), ("arrival", ARRIVAL_MODES), ("mental", MENTAL_STATES)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise InvalidCaseError(f"TriageFacts.{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.pain_score is not None and not 0 <= self.pain_score <= 10:
            raise InvalidCaseError(f"TriageFacts.pain_score must be 0-10, got {self.pain_score}")
        if self.age is not None and not 0 <= self.age <= 130:
            raise InvalidCaseError(f"TriageFacts.age must be 0-130, got {self.age}")

    @property
    def is_paediatric(self) -> bool:
        """Younger than PAEDIATRIC_AGE: adult vital-sign limits do not apply."""
        return self.age is not None and self.age < PAEDIATRIC_AGE

    @property
    def by_ambulance(self) -> bool:
        """Arrived by public or private ambulance."""
        return self.arrival in ("public ambulance", "private ambulance")


@dataclass(frozen=True)
class Threshold:
    """One adult vital-sign limit: `vital <op> limit` is abnormal."""

    vital: str         # a TriageFacts field
    op: str            # "<", ">" or ">="
    limit: float
    finding: str       # the clinical name of the abnormality
    system: str        # what it threatens; drives the concern clause


# Adult limits as round bedside cut-offs. Sources: NEWS2 (Royal College of Physicians 2017) scores 3
# ("red") at SpO2 <= 91, RR <= 8 or >= 25, SBP <= 90, HR <= 40 or >= 131, T <= 35.0; the KTAS/CTAS
# first-order modifiers use shock (SBP < 90), hypoxia (SpO2 < 92) and fever (>= 38.0); ACC/AHA call
# SBP > 180 severe hypertension. HR (> 120, < 50) and low RR (< 10) sit inside NEWS2's red bands so that
# what a triage nurse calls tachycardia or bradycardia is named. They explain a label; they are not a
# clinical standard.
THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("spo2", "<", 92, "hypoxaemia", "breathing"),
    Threshold("resp_rate", ">", 24, "tachypnoea", "breathing"),
    Threshold("resp_rate", "<", 10, "bradypnoea", "breathing"),
    Threshold("sbp", "<", 90, "hypotension", "circulation"),
    Threshold("heart_rate", ">", 120, "tachycardia", "circulation"),
    Threshold("heart_rate", "<", 50, "bradycardia", "circulation"),
    Threshold("sbp", ">", 180, "severe hypertension", "blood pressure"),
    Threshold("temperature", ">=", 38.0, "fever", "infection"),
    Threshold("temperature", "<", 35.0, "hypothermia", "body temperature"),
)
# pain bands on the 0-10 numeric rating scale: (lowest score, band)
PAIN_BANDS = ((7, "severe"), (4, "moderate"), (1, "mild"), (0, "no"))

_OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, ">": operator.gt, ">=": operator.ge}
_RELATION = {"<": "below", ">": "above", ">=": "at or above"}
_VITAL_NAMES = {"spo2": "SpO2", "resp_rate": "respiratory rate", "sbp": "systolic BP",
                "heart_rate": "heart rate", "temperature": "temperature", "dbp": "diastolic BP"}
_UNITS = {"spo2": "%", "resp_rate": "/min", "sbp": " mmHg", "dbp": " mmHg", "heart_rate": "/min", "temperature": " °C"}
_MENTAL_FINDINGS = {"verbal": "responds only to voice", "pain": "responds only to pain", "unresponsive": "unresponsive"}
# the systems that make a case time-critical (KTAS 1-2 territory), in the order they are named
_CRITICAL_SYSTEMS = ("consciousness", "breathing", "circulation")
_CONCERNS = {"blood pressure": "the blood pressure needs prompt control", "infection": "the fever suggests infection",
             "body temperature": "the low body temperature needs attention", "pain": "the pain needs prompt relief"}
VITALS = ("sbp", "dbp", "heart_rate", "resp_rate", "temperature", "spo2")


@dataclass(frozen=True)
class Finding:
    """One abnormal fact of a case, phrased for a rationale."""

    phrase: str        # e.g. "SpO2 84% (hypoxaemia, below 92%)"
    system: str        # "consciousness", "breathing", "circulation", "blood pressure", ...

    @property
    def critical(self) -> bool:
        """Threatens consciousness, breathing or circulation (KTAS 1-2 territory)."""
        return self.system in _CRITICAL_SYSTEMS


def format_value(vital: str, value: float) -> str:
    """A vital sign as the case text and rationales print it: '36.6 °C', '84/min', '100%'."""
    number = f"{value:.1f}" if vital == "temperature" else (f"{value:g}" if value % 1 else str(int(value)))
    return number + _UNITS[vital]


def pain_band(score: int) -> str:
    """'severe' (7-10), 'moderate' (4-6), 'mild' (1-3) or 'no' (0). Raises InvalidCaseError outside 0-10."""
    if not 0 <= score <= 10:
        raise InvalidCaseError(f"pain score must be 0-10, got {score}")
    return next(band for lowest, band in PAIN_BANDS if score >= lowest)


def abnormal_vitals(facts: TriageFacts) -> list[Finding]:
    """Vital signs outside the adult THRESHOLDS, in table order. Empty for children (adult limits do not apply)."""
    if facts.is_paediatric:
        return []
    found = []
    for t in THRESHOLDS:
        value = getattr(facts, t.vital)
        if value is not None and _OPS[t.op](value, t.limit):
            phrase = (f"{_VITAL_NAMES[t.vital]} {format_value(t.vital, value)} "
                      f"({t.finding}, {_RELATION[t.op]} {format_value(t.vital, t.limit)})")
            found.append(Finding(phrase, t.system))
    return found


def find_abnormal(facts: TriageFacts) -> list[Finding]:
    """Every finding that raises urgency: impaired consciousness, abnormal vitals, severe pain."""
    found = []
    if facts.mental in _MENTAL_FINDINGS:
        found.append(Finding(_MENTAL_FINDINGS[facts.mental], "consciousness"))
    found += abnormal_vitals(facts)
    if facts.pain_score is not None and pain_band(facts.pain_score) == "severe":
        found.append(Finding(f"severe pain {facts.pain_score}/10", "pain"))
    return found


def _pain_phrase(facts: TriageFacts) -> str | None:
    if facts.pain_score is not None:
        band = pain_band(facts.pain_score)
        return "no pain" if band == "no" else f"{band} pain {facts.pain_score}/10"
    if facts.pain is None:
        return None
    return "pain (score not recorded)" if facts.pain else "no pain"


def _vitals_phrase(facts: TriageFacts) -> str:
    missing = [_VITAL_NAMES[v] for v in VITALS if getattr(facts, v) is None]
    if len(missing) == len(VITALS):
        return "vital signs not recorded"
    if not missing:
        return "vital signs within adult limits"
    return f"recorded vital signs within adult limits ({', '.join(missing)} not recorded)"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _concern_clause(findings: list[Finding]) -> str:
    systems = list(dict.fromkeys(f.system for f in findings))
    clauses = []
    if "consciousness" in systems:
        clauses.append("consciousness is impaired")
    at_risk = [s for s in ("breathing", "circulation") if s in systems]
    if at_risk:
        clauses.append(f"{_join(at_risk)} {'are' if len(at_risk) > 1 else 'is'} at risk")
    clauses += [_CONCERNS[s] for s in systems if s in _CONCERNS]
    return _join(clauses)


def _no_finding_clause(facts: TriageFacts, level: int) -> str:
    complaint = facts.chief_complaint
    if level <= 2:
        if not complaint:
            return "the recorded findings alone do not explain this level"
        vitals_recorded = any(getattr(facts, v) is not None for v in VITALS) and not facts.is_paediatric
        return f"the urgency comes from the chief complaint, {complaint}" + (
            ", rather than the vital signs" if vitals_recorded else "")
    if level == 3:
        return f"the chief complaint, {complaint}, still needs timely assessment" if complaint else \
            "the presentation still needs timely assessment"
    return "no sign of an immediate threat"


def _context(facts: TriageFacts, findings: list[Finding]) -> list[str]:
    context = []
    if facts.mental == "alert" and not any(f.system == "consciousness" for f in findings):
        context.append("alert")
    pain = _pain_phrase(facts)
    if pain and not any(f.system == "pain" for f in findings):
        context.append(pain)
    if facts.by_ambulance:
        context.append("arrived by ambulance")
    if facts.injury:
        context.append("injured")
    return context


def write_rationale(facts: TriageFacts, label: str) -> str:
    """A 1-3 sentence rationale that names the findings driving urgency and ends with the KTAS level.

    Conditioned on `label` (the expert's level "1".."5"); only facts present in `facts` are stated.
    Raises InvalidCaseError for a label outside 1-5.
    """
    if label not in KTAS_LABEL_NAMES:
        raise InvalidCaseError(f"KTAS label must be one of 1-5, got {label!r}")
    level = int(label)
    findings = find_abnormal(facts)
    sentences = []
    if facts.is_paediatric:
        sentences.append(f"Child aged {facts.age}: adult vital-sign limits do not apply, so the vital signs "
                         "need paediatric review.")
    context = _context(facts, findings)
    if findings:
        head = ", ".join([f.phrase for f in findings] + context)
        critical = any(f.critical for f in findings)
        if level >= 4 and critical:
            clause = "despite this, the overall presentation was judged stable"
        elif level >= 4:
            clause = "no sign of an immediate threat"
        else:
            clause = _concern_clause(findings)
    else:
        vitals = [] if facts.is_paediatric else [_vitals_phrase(facts)]
        head = ", ".join(vitals + context) or "no abnormal finding recorded"
        clause = _no_finding_clause(facts, level)
    sentences.append(f"{head[0].upper()}{head[1:]}: {clause}.")
    sentences.append(f"This fits KTAS {label} ({KTAS_LABEL_NAMES[label].lower()}).")
    return " ".join(sentences)


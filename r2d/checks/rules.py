"""A transparent, rule-based rationale writer for KTAS triage.

The KTAS data set has no rationale text, so Stage 1 and Stage 2 learn from rationales written here
from the triage facts alone. Every statement is a fact of the case (the chief complaint, a vital sign
against a named adult limit, the mental state, the pain score, arrival by ambulance, an injury) or what
those facts imply (which systems are at risk). It is deterministic.

The writer never sees the label. An earlier version ended every rationale with "This fits KTAS <gold>"
and chose its closing clause by the gold level, so a model could "explain" by copying the label, and
consistency/sufficiency measured that copying. Now the same case always gets the same rationale, so in
Stage 2 the `given label: y, explain: x` target no longer depends on y: the explain task teaches the model
to restate the case, the predict task alone carries the label, and a label read back from a rationale
(consistency, sufficiency) has to come from the facts it states.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass

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
    sex: str | None = None  # "female" | "male"
    arrival: str | None = None  # one of ARRIVAL_MODES
    injury: bool | None = None  # True = the visit is for an injury
    chief_complaint: str | None = None
    mental: str | None = None  # one of MENTAL_STATES
    pain: bool | None = None  # the patient reports pain
    pain_score: int | None = None  # numeric rating scale 0-10
    sbp: float | None = None  # mmHg
    dbp: float | None = None  # mmHg
    heart_rate: float | None = None  # beats/min
    resp_rate: float | None = None  # breaths/min
    temperature: float | None = None  # °C
    spo2: float | None = None  # %

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

    vital: str  # a TriageFacts field
    op: str  # "<", ">" or ">="
    limit: float
    finding: str  # the clinical name of the abnormality
    system: str  # what it threatens; drives the concern clause


# Adult limits as round bedside cut-offs. Sources: NEWS2 (Royal College of Physicians 2017) scores 3
# ("red") at SpO2 <= 91, RR <= 8 or >= 25, SBP <= 90, HR <= 40 or >= 131, T <= 35.0; the KTAS/CTAS
# first-order modifiers use shock (SBP < 90), hypoxia (SpO2 < 92) and fever (>= 38.0); ACC/AHA call
# SBP > 180 severe hypertension. HR (> 120, < 50) and low RR (< 10) sit inside NEWS2's red bands so that
# what a triage nurse calls tachycardia or bradycardia is named. They explain a case; they are not a
# clinical standard. The first six are the *critical* findings (breathing, circulation).
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

# The adult range a value must lie in (inclusive) to be called "within adult limits". Between a range
# and a THRESHOLD a value is named as mildly abnormal ("heart rate 110/min (raised, above 100/min)"), so
# "within adult limits" is never said of SBP 170, HR 110 or RR 22. Resting adult norms: HR 50-100, RR
# 10-20 (NEWS2 scores RR 21-24 and HR 91-110 / 111-130), SpO2 >= 95%, SBP 90-160 / DBP 50-100 (above
# 160/100 is stage-2 hypertension territory), temperature 35.0-37.9 °C.
NORMAL_RANGES: dict[str, tuple[float, float]] = {
    "sbp": (90, 160),
    "dbp": (50, 100),
    "heart_rate": (50, 100),
    "resp_rate": (10, 20),
    "temperature": (35.0, 37.9),
    "spo2": (95, 100),
}
# pain bands on the 0-10 numeric rating scale: (lowest score, band)
PAIN_BANDS = ((7, "severe"), (4, "moderate"), (1, "mild"), (0, "no"))

_OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, ">": operator.gt, ">=": operator.ge}
_RELATION = {"<": "below", ">": "above", ">=": "at or above"}
VITAL_NAMES = {
    "spo2": "SpO2",
    "resp_rate": "respiratory rate",
    "sbp": "systolic BP",
    "heart_rate": "heart rate",
    "temperature": "temperature",
    "dbp": "diastolic BP",
}
_UNITS = {"spo2": "%", "resp_rate": "/min", "sbp": " mmHg", "dbp": " mmHg", "heart_rate": "/min", "temperature": " °C"}
MENTAL_FINDINGS = {"verbal": "responds only to voice", "pain": "responds only to pain", "unresponsive": "unresponsive"}
# the systems that make a case time-critical (KTAS 1-2 territory), in the order they are named
CRITICAL_SYSTEMS = ("consciousness", "breathing", "circulation")
_CONCERNS = {
    "blood pressure": "the blood pressure needs prompt control",
    "infection": "the fever suggests infection",
    "body temperature": "the low body temperature needs attention",
    "pain": "the pain needs prompt relief",
    "vital signs": "the vital signs outside adult limits need reassessment",
}
VITALS = ("sbp", "dbp", "heart_rate", "resp_rate", "temperature", "spo2")


@dataclass(frozen=True)
class ClinicalFinding:
    """One abnormal fact of a case, phrased for a rationale."""

    phrase: str  # e.g. "SpO2 84% (hypoxaemia, below 92%)"
    system: str  # "consciousness", "breathing", "circulation", "blood pressure", ...
    field: str = ""  # the TriageFacts field it reads ("mental", "spo2", "pain_score", ...)

    @property
    def critical(self) -> bool:
        """Threatens consciousness, breathing or circulation (KTAS 1-2 territory)."""
        return self.system in CRITICAL_SYSTEMS


def format_value(vital: str, value: float) -> str:
    """A vital sign as the case text and rationales print it: '36.6 °C', '84/min', '100%'."""
    number = f"{value:.1f}" if vital == "temperature" else (f"{value:g}" if value % 1 else str(int(value)))
    return number + _UNITS[vital]


def pain_band(score: int) -> str:
    """'severe' (7-10), 'moderate' (4-6), 'mild' (1-3) or 'no' (0). Raises InvalidCaseError outside 0-10."""
    if not 0 <= score <= 10:
        raise InvalidCaseError(f"pain score must be 0-10, got {score}")
    return next(band for lowest, band in PAIN_BANDS if score >= lowest)


def in_normal_range(vital: str, value: float) -> bool:
    """Inside the adult NORMAL_RANGES (inclusive)."""
    low, high = NORMAL_RANGES[vital]
    return low <= value <= high


def _mild_phrase(vital: str, value: float) -> str:
    low, high = NORMAL_RANGES[vital]
    if value > high:
        relation = f"raised, above {format_value(vital, high)}"
    else:
        relation = f"low, below {format_value(vital, low)}"
    return f"{VITAL_NAMES[vital]} {format_value(vital, value)} ({relation})"


def abnormal_vitals(facts: TriageFacts) -> list[ClinicalFinding]:
    """Vital signs outside adult limits: THRESHOLDS crossed first (table order), then values merely outside
    NORMAL_RANGES (VITALS order). Empty for children (adult limits do not apply)."""
    if facts.is_paediatric:
        return []
    found, named = [], set()
    for t in THRESHOLDS:
        value = getattr(facts, t.vital)
        if value is not None and _OPS[t.op](value, t.limit) and t.vital not in named:
            named.add(t.vital)
            phrase = (
                f"{VITAL_NAMES[t.vital]} {format_value(t.vital, value)} "
                f"({t.finding}, {_RELATION[t.op]} {format_value(t.vital, t.limit)})"
            )
            found.append(ClinicalFinding(phrase, t.system, t.vital))
    for vital in VITALS:
        value = getattr(facts, vital)
        if value is not None and vital not in named and not in_normal_range(vital, value):
            found.append(ClinicalFinding(_mild_phrase(vital, value), "vital signs", vital))
    return found


def find_abnormal(facts: TriageFacts) -> list[ClinicalFinding]:
    """Every finding that raises urgency: impaired consciousness, abnormal vitals, severe pain."""
    found = []
    if facts.mental in MENTAL_FINDINGS:
        found.append(ClinicalFinding(MENTAL_FINDINGS[facts.mental], "consciousness", "mental"))
    found += abnormal_vitals(facts)
    if facts.pain_score is not None and pain_band(facts.pain_score) == "severe":
        found.append(ClinicalFinding(f"severe pain {facts.pain_score}/10", "pain", "pain_score"))
    return found


def critical_findings(facts: TriageFacts) -> list[ClinicalFinding]:
    """The findings that threaten consciousness, breathing or circulation."""
    return [f for f in find_abnormal(facts) if f.critical]


def _pain_phrase(facts: TriageFacts) -> str | None:
    if facts.pain_score is not None:
        band = pain_band(facts.pain_score)
        return "no pain" if band == "no" else f"{band} pain {facts.pain_score}/10"
    if facts.pain is None:
        return None
    return "pain (score not recorded)" if facts.pain else "no pain"


def _vitals_phrase(facts: TriageFacts) -> str:
    """Said only when no vital is outside adult limits (abnormal_vitals is empty)."""
    missing = [VITAL_NAMES[v] for v in VITALS if getattr(facts, v) is None]
    if len(missing) == len(VITALS):
        return "vital signs not recorded"
    if not missing:
        return "vital signs within adult limits"
    return f"recorded vital signs within adult limits ({', '.join(missing)} not recorded)"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _concern_clause(findings: list[ClinicalFinding]) -> str:
    systems = list(dict.fromkeys(f.system for f in findings))
    clauses = []
    if "consciousness" in systems:
        clauses.append("consciousness is impaired")
    at_risk = [s for s in ("breathing", "circulation") if s in systems]
    if at_risk:
        clauses.append(f"{_join(at_risk)} {'are' if len(at_risk) > 1 else 'is'} at risk")
    clauses += [_CONCERNS[s] for s in systems if s in _CONCERNS]
    return _join(clauses)


def _context(facts: TriageFacts, findings: list[ClinicalFinding]) -> list[str]:
    context = []
    if facts.mental == "alert":
        context.append("alert")
    pain = _pain_phrase(facts)
    if pain and not any(f.system == "pain" for f in findings):
        context.append(pain)
    if facts.by_ambulance:
        context.append("arrived by ambulance")
    if facts.injury:
        context.append("injured")
    return context


def write_rationale(facts: TriageFacts) -> str:
    """A 1-3 sentence rationale that restates the chief complaint and the findings, and what they imply.

    Label-free (see the module docstring); only facts present in `facts` are stated.
    """
    findings = find_abnormal(facts)
    sentences = []
    if facts.is_paediatric:
        sentences.append(
            f"Child aged {facts.age}: adult vital-sign limits do not apply, so the vital signs need paediatric review."
        )
    if facts.chief_complaint:
        sentences.append(f"Chief complaint: {facts.chief_complaint}.")
    context = _context(facts, findings)
    if findings:
        head = ", ".join([f.phrase for f in findings] + context)
        clause = _concern_clause(findings)
    else:
        vitals = [] if facts.is_paediatric else [_vitals_phrase(facts)]
        head = ", ".join(vitals + context) or "no abnormal finding recorded"
        clause = "no sign of an immediate threat in the recorded findings"
    sentences.append(f"{head[0].upper()}{head[1:]}: {clause}.")
    return " ".join(sentences)


# --- KTAS first-order modifiers: the most urgent level a single finding calls for --------------------


@dataclass(frozen=True)
class Modifier:
    """One first-order modifier that applies to a case."""

    level: str  # "1".."5": the most urgent KTAS level this finding alone calls for
    finding: str  # what in the case triggers it, e.g. "unresponsive", "SpO2 84% (< 90%)"


# (vital, op, limit, level), most urgent first: for each vital the first row that matches applies.
# Adult first-order modifiers of CTAS (Bullard et al., "Revisions to the Canadian Emergency Department Triage
# and Acuity Scale (CTAS) adult guidelines", CJEM 2017, the 2016 revision) as adopted by KTAS (Korean Society
# of Emergency Medicine, 2012; Kwon et al., CEEM 2019). CTAS states haemodynamics and breathing in words
# ("shock", "severe respiratory distress"); the numbers below are the bedside cut-offs commonly used for them:
#   circulation  no pulse (HR 0) -> 1; shock, SBP < 80 -> 1; SBP 80-89 -> 2; HR > 130 or HR < 40 -> 2
#   breathing    SpO2 < 90 -> 1; SpO2 90-91 -> 2; SpO2 92-94 -> 3; RR >= 36 or RR < 8 -> 1
# They are a floor for a suggestion, not a clinical standard; fever/sepsis (which needs SIRS criteria or immune
# status the case does not record) and the paediatric scale are not encoded.
VITAL_MODIFIERS: tuple[tuple[str, str, float, str], ...] = (
    ("heart_rate", "<=", 0, "1"),
    ("heart_rate", ">", 130, "2"),
    ("heart_rate", "<", 40, "2"),
    ("sbp", "<", 80, "1"),
    ("sbp", "<", 90, "2"),
    ("spo2", "<", 90, "1"),
    ("spo2", "<", 92, "2"),
    ("spo2", "<", 95, "3"),
    ("resp_rate", ">=", 36, "1"),
    ("resp_rate", "<", 8, "1"),
)
# AVPU: unresponsive ~ GCS 3-9 -> 1; responds to pain or voice ~ GCS 10-13 -> 2 (CTAS level of consciousness).
MENTAL_MODIFIERS = {"unresponsive": "1", "pain": "2", "verbal": "2"}
# (lowest score, level) on the 0-10 scale: CTAS severe central pain 8-10 -> 2, moderate 4-7 -> 3. The case does
# not say central or peripheral, so the more urgent (central) row applies.
PAIN_MODIFIERS = ((8, "2"), (4, "3"))
_MODIFIER_OPS: dict[str, Callable[[float, float], bool]] = {**_OPS, "<=": operator.le}


def _vital_modifiers(facts: TriageFacts) -> list[Modifier]:
    found, named = [], set()
    for vital, op, limit, level in VITAL_MODIFIERS:
        value = getattr(facts, vital)
        if value is None or vital in named or not _MODIFIER_OPS[op](value, limit):
            continue
        named.add(vital)
        cut = "no pulse" if op == "<=" else f"{op} {format_value(vital, limit)}"
        found.append(Modifier(level, f"{VITAL_NAMES[vital]} {format_value(vital, value)} ({cut})"))
    return found


def first_order_modifiers(facts: TriageFacts) -> list[Modifier]:
    """The KTAS/CTAS adult first-order modifiers the case's own facts trigger (consciousness, circulation,
    breathing, pain; tables above), in that order. Empty for a child (the adult scale does not apply)."""
    if facts.is_paediatric:
        return []
    found = []
    if facts.mental in MENTAL_MODIFIERS:
        found.append(Modifier(MENTAL_MODIFIERS[facts.mental], MENTAL_FINDINGS[facts.mental]))
    found += _vital_modifiers(facts)
    if facts.pain_score is not None:
        band = next((i for i, (lowest, _) in enumerate(PAIN_MODIFIERS) if facts.pain_score >= lowest), None)
        if band is not None:
            lowest, level = PAIN_MODIFIERS[band]
            highest = PAIN_MODIFIERS[band - 1][0] - 1 if band else 10
            found.append(Modifier(level, f"pain {facts.pain_score}/10 ({lowest}-{highest})"))
    return found


def urgency_floor(facts: TriageFacts) -> str | None:
    """The most urgent KTAS level any first-order modifier calls for ("1" is most urgent); None if none applies."""
    return min((m.level for m in first_order_modifiers(facts)), key=int, default=None)

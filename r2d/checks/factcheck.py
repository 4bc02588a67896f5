"""Does a rationale restate its case correctly? A fact check in pure Python (no torch).

BLEU and BERTScore reward a rationale that *sounds* like the reference; a nurse needs one that states the
patient's own facts. `check_rationale(case, rationale, label)` lists every statement of the rationale the
case contradicts or does not support, with its character span, and the critical findings of the case the
rationale leaves out:

- a number that is not in the case (a vital sign, an age, a duration), or a vital the case does not record;
- a vital called normal that is abnormal ("within adult limits" with SpO2 84%), or the reverse
  ("tachycardia" with HR 80);
- a wrong mental state (AVPU), pain score or pain band, chief complaint, arrival or injury;
- a KTAS level other than the label shown; an empty or one-word rationale.

Both sides are read with the same extractor, which knows the project's KTAS narrative (r2d.sources) and notes
as nurses write them (training.corpus.synthetic writes both): vitals in any order with units or none (BP 90/60 mmHg,
HR 120 bpm, RR 24, T 38.5C or 101.3F, sats 91% RA), "vitals normal" / "obs stable" / "VSS" without numbers,
GCS 3-15, AVPU words and letters ("AVPU: V", A&Ox3), pain 7/10, ages as 55M / 55 yo F, BIBA / EMS, and the
complaint after "c/o", "presenting with", "CC:" or as the sentence a note opens with. Complaint words are
compared with abbreviations written out (_ABBREVIATIONS: "Abd. pain" = "abdominal pain", SOB).
Limits are r2d.checks.rules' NORMAL_RANGES (normal/abnormal claims) and THRESHOLDS (critical findings); adult
limits are not applied to children, as in the rule writer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from r2d.checks.rules import (
    MENTAL_FINDINGS,
    NORMAL_RANGES,
    PAEDIATRIC_AGE,
    THRESHOLDS,
    VITAL_NAMES,
    VITALS,
    ClinicalFinding,
    TriageFacts,
    critical_findings,
    format_value,
    in_normal_range,
    pain_band,
)

KINDS = (
    "empty",
    "number_not_in_case",
    "normal_called_abnormal",
    "abnormal_called_normal",
    "wrong_mental_state",
    "wrong_pain",
    "wrong_complaint",
    "wrong_context",
    "wrong_level",
)
LABEL_MASK = "[LABEL]"
_SEP = r"[^\S\n]*(?:of|was|is|at|=|:)?[^\S\n]*"  # never across a line break

# how a case or rationale names each vital sign (one home: the value patterns below and value_slot read them)
_VITAL_NAMES = {
    # "RR 150/90" is a blood pressure (Riva-Rocci, as German notes write it), not a respiratory rate
    "bp": r"blood pressure|BP|B/P|RR",
    "sbp": r"systolic(?: blood pressure| BP)?|SBP",
    "dbp": r"diastolic(?: blood pressure| BP)?|DBP",
    "heart_rate": r"heart rate|HR|pulse(?: rate)?|PR",
    "resp_rate": r"respiratory rate|resp(?:iratory)?\.? rate|RR|resps?|breathing rate",
    "temperature": r"temperature|temp|T",
    "spo2": r"SpO2|SpO₂|SaO2|O2 sat(?:uration)?s?|sats?|saturations?|oxygen saturation",
}


def _named(vital: str) -> str:
    return r"\b(?:" + _VITAL_NAMES[vital] + ")" + _SEP


# one pattern per way of writing a vital sign; group 1 (and 2 for BP) hold the value(s)
_VITAL_PATTERNS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (v, re.compile(p, re.I))
    for v, p in (
        ("bp", _named("bp") + r"(\d{2,3})\s*/\s*(\d{2,3})(?:\s*mm\s*Hg)?"),
        ("sbp", _named("sbp") + r"(\d{2,3})(?:\s*mm\s*Hg)?"),
        ("dbp", _named("dbp") + r"(\d{2,3})(?:\s*mm\s*Hg)?"),
        ("heart_rate", _named("heart_rate") + r"(\d{2,3})(?:\s*(?:/\s*min|bpm|beats/min))?"),
        ("resp_rate", _named("resp_rate") + r"(\d{1,2})(?!\d)(?:\s*(?:/\s*min|breaths/min))?"),
        ("fahrenheit", _named("temperature") + r"(\d{2,3}(?:\.\d)?)\s*°?\s*F\b"),
        ("fahrenheit", r"(?<![\d.])(\d{2,3}(?:\.\d)?)\s*°\s*F\b"),
        ("temperature", _named("temperature") + r"(\d{2}(?:\.\d)?)\s*(?:°\s*C|degrees(?: C)?|C\b)?"),
        ("temperature", r"(?<![\d.])(\d{2}\.\d)\s*°\s*C"),
        ("temperature", r"\b(?:fever|febrile|pyrexi\w*)" + _SEP + r"(\d{2}\.\d)\b"),  # "fever 39.5"
        ("spo2", _named("spo2") + r"(\d{2,3})\s*%?"),
        ("spo2", r"(?<![\d.])(\d{2,3})\s*%\s*(?:on\s+)?(?:RA|room air)\b"),  # "91% RA"
    )
)
_GCS = re.compile(r"\bGCS" + _SEP + r"(\d{1,2})\b", re.I)
_PAIN_SCORE = re.compile(
    r"\b(?:(no|mild|moderate|severe)\s+)?(?:pain(?: score)?|NRS(?: pain)?)"
    + _SEP
    + r"(\d{1,2})\s*/\s*10\b|(?<![\d.])(\d{1,2})\s*/\s*10\s+pain\b",
    re.I,
)
_PAIN_BAND = re.compile(r"\b(no|mild|moderate|severe)\s+pain\b(?!\s*(?:score\s*)?\d)", re.I)
_NOT_RECORDED = re.compile(
    r"\(([^()]*?) not recorded\)|\b(SpO2|heart rate|respiratory rate|temperature|"
    r"blood pressure|systolic BP|diastolic BP|systolic blood pressure|diastolic blood "
    r"pressure|vital signs|pain(?: score)?) not recorded",
    re.I,
)
_WITHIN_LIMITS = re.compile(
    r"\b(other |recorded )?(?:vital signs|vitals|observations|obs)(?: are| were)? "
    r"(?:within (?:adult|normal) limits|normal|unremarkable)\b|\bnormal vital signs\b",
    re.I,
)
_LEVEL = re.compile(r"\b(?<!pain )(?:KTAS|level|category|triage)\s*(?:level\s*)?([1-5])\b", re.I)
# "Chief complaint: X." (KTAS narrative, rule rationale) or "the chief complaint, X," (prose)
# where a free-text fact starts: a complaint written before one ends at the comma ("c/o chest pain, HR 120")
_FACT_START = (
    r"(?:BP|B/P|HR|RR|SpO2|O2 sats?|sats?|GCS|AVPU|pulse|resp\w*|temp\w*|T\s*\d+|BIBA|EMS|via|"
    r"brought|arrived|walked|alert|A&O|pain(?: score)?\s*\d+|\d{1,2}/10|no pain|denies|hx|PMH\w*|NKDA|"
    r"vitals|obs|VSS?|injured|trauma|afebrile|apyrexial)\b"
)
# a sentence end, not the dot of "abd." or "ant."
_END = r"(?=\.\s+(?-i:[A-Z0-9])|\.\s*$|;|\n|$|,\s*" + _FACT_START + ")"
_COMPLAINT = re.compile(
    r"\b(?:chief complaint|presenting complaint|complaint|c/c|(?-i:CC|PC))"
    r"\s*(?::\s*(?P<a>[^;\n]+?)" + _END + r"|,\s*(?P<b>[^;,\n]+?)(?=,|\.\s+(?-i:[A-Z])|\.\s*$|;|$))"
    r"|(?:\bc/o|\bcomplain(?:s|ing) of|\bpresent(?:s|ing) with|(?-i:\b(?:CC|PC)))"
    r"(?::\s*|\s+)(?P<c>[^;\n]+?)" + _END,
    re.I,
)
# a note that opens with its complaint ("Chest pain since this morning. 55M, BIBA ..."), after an optional
# "55M " / "Pt 55 yo F, "; the sentence must hold no other triage fact (see _leading_complaint)
_LEADING = re.compile(
    r"\s*(?:(?:pt|patient)\.?[ \t]+)?(?:\d{1,3}[ \t]*(?:yo[ \t]*|y/o[ \t]*)?(?-i:[MF])\b[ \t,:]*)?"
    r"(?P<c>[^\W_][^;\n]*?)" + _END,
    re.I,
)
# what a sentence that is not a complaint says (besides a vital, GCS, AVPU, pain, arrival or age)
_NOT_A_COMPLAINT = re.compile(
    r"^(?:injured|trauma|with an injury)$|\binjured\b|\bnot (?:taken|done|recorded)\b|"
    r"\bno (?:obs|sats)\b|\b(?:hx|PMH\w*|NKDA|background|meds|complaint|pt|patient|"
    r"male|female|man|woman|boy|girl)\b|\?|\d+/\d+|%",
    re.I,
)
# one home for the abbreviations a complaint is written with: a paraphrase is not a different complaint
_ABBREVIATIONS = {
    "abd": "abdominal",
    "abdo": "abdominal",
    "abdomen": "abdominal",
    "sob": "shortness breath",
    "dyspnea": "shortness breath",
    "dyspnoea": "shortness breath",
    "cp": "chest pain",
    "l": "left",
    "r": "right",
    "ha": "headache",
    "loc": "loss consciousness",
    "fb": "foreign body",
    "lac": "laceration",
    "fx": "fracture",
    "dz": "dizziness",
    "lbp": "low back pain",
    "n": "nausea",
    "v": "vomiting",
    "uti": "urinary tract infection",
    "sx": "symptom",
    "symptoms": "symptom",
    "sz": "seizure",
    "seizures": "seizure",
}
_NUMBER = re.compile(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?")
_LIMIT_CONTEXT = re.compile(r"(?:below|above|under|over|at or above|at or below|<|>|>=|<=)\s*$", re.I)
_NEGATION = re.compile(r"\b(?:no|not|without|denies|nil)[^\S\n]+(?:\w+[^\S\n]+){0,2}$", re.I)
_WORD = re.compile(r"[a-z0-9]+")
# how far back _LIMIT_CONTEXT and _NEGATION look (their matches end where a value starts): searching the whole
# text before every value made the check quadratic (100k characters: 174 s)
_LOOKBACK = 200

# abnormality words -> (vital, direction): "high" = above the normal range, "low" = below it
_ABNORMAL_WORDS: dict[str, tuple[str, str]] = {
    "hypoxaemia": ("spo2", "low"),
    "hypoxemia": ("spo2", "low"),
    "hypoxic": ("spo2", "low"),
    "hypoxia": ("spo2", "low"),
    "desaturat": ("spo2", "low"),
    "tachypnoea": ("resp_rate", "high"),
    "tachypnea": ("resp_rate", "high"),
    "tachypnoeic": ("resp_rate", "high"),
    "tachypneic": ("resp_rate", "high"),
    "bradypnoea": ("resp_rate", "low"),
    "bradypnea": ("resp_rate", "low"),
    "hypotension": ("sbp", "low"),
    "hypotensive": ("sbp", "low"),
    "shock": ("sbp", "low"),
    "hypertension": ("sbp", "high"),
    "hypertensive": ("sbp", "high"),
    "tachycardia": ("heart_rate", "high"),
    "tachycardic": ("heart_rate", "high"),
    "bradycardia": ("heart_rate", "low"),
    "bradycardic": ("heart_rate", "low"),
    "fever": ("temperature", "high"),
    "febrile": ("temperature", "high"),
    "pyrexia": ("temperature", "high"),
    "pyrexial": ("temperature", "high"),
    "hypothermia": ("temperature", "low"),
    "hypothermic": ("temperature", "low"),
}
_ABNORMAL_RE = re.compile(r"\b(" + "|".join(sorted(_ABNORMAL_WORDS, key=len, reverse=True)) + r")\w*", re.I)
_NORMAL_WORDS = {
    "afebrile": "temperature",
    "apyrexial": "temperature",
    "normotensive": "sbp",
    "normocardic": "heart_rate",
}
_NORMAL_RE = re.compile(r"\b(" + "|".join(_NORMAL_WORDS) + r")\b", re.I)
_NORMAL_CASE_WORDS = {
    "afebrile": ("temperature",),
    "apyrexial": ("temperature",),
    "normotensive": ("sbp", "dbp"),
    "normocardic": ("heart_rate",),
}  # a case that says so gives that vital as normal
_AVPU = r"\bAVPU\s*(?:[:=-]\s*)?(?-i:"  # "AVPU: V", its letter in capitals
# AVPU, in the words the KTAS narrative, the rule writer and nurses use
_MENTAL_RE: tuple[tuple[str, re.Pattern], ...] = tuple(
    (state, re.compile(p, re.I))
    for state, p in (
        (
            "unresponsive",
            r"\b(?:unresponsive|unconscious|comatose|responds to nothing)\b|\bU on AVPU\b|" + _AVPU + r"U)\b",
        ),
        ("pain", r"\bresponds?(?: only)? to pain(?:ful stimuli)?\b|\bP on AVPU\b|" + _AVPU + r"P)\b"),
        ("verbal", r"\bresponds?(?: only)? to (?:voice|verbal stimuli)\b|\bV on AVPU\b|" + _AVPU + r"V)\b"),
        ("alert", r"\balert\b|\bA on AVPU\b|" + _AVPU + r"A)\b|(?-i:\bA\s*[&+]\s*O)(?:\s*x\s*[1-4])?\b"),
    )
)
_NARRATIVE_MENTAL = {
    "alert": "alert",
    "responds to voice": "verbal",
    "responds to pain": "pain",
    "unresponsive": "unresponsive",
}
_SEX = re.compile(
    r"(?<![\d.])\d{1,3}\s*(?:yo|y/o|-year-old)?\s*(?-i:(M|F))\b|\b(male|female|man|woman|boy|girl)\b", re.I
)
_SEX_WORDS = {
    "m": "male",
    "f": "female",
    "male": "male",
    "female": "female",
    "man": "male",
    "woman": "female",
    "boy": "male",
    "girl": "female",
}
_AGE = re.compile(r"\b(\d{1,3})[- ](?:year|yr)s?[- ]old\b|\baged? (\d{1,3})\b|\b(\d{1,3}) ?(?:yo|y/o|M|F)\b", re.I)
_AMBULANCE = re.compile(
    r"\b(?:arrived|brought in|came|transported) by (?:\w+ )?ambulance\b|\bby ambulance\b|"
    r"\bBIBA\b|\bEMS\b|\bvia ambulance\b|\bambulance transfer\b",
    re.I,
)
# arrival modes other than a public ambulance, as r2d.checks.rules.ARRIVAL_MODES names them
_ARRIVAL_RE = (
    ("private ambulance", re.compile(r"\bprivate ambulance\b", re.I)),
    ("public ambulance", _AMBULANCE),
    ("private vehicle", re.compile(r"\bprivate (?:vehicle|car)\b|\bby (?:\w+ )?car\b", re.I)),
    ("walking", re.compile(r"\bwalked in\b|\bwalk-in\b|\bself-presented\b", re.I)),
    ("other", re.compile(r"\barrived by other transport\b", re.I)),
)
# "vitals normal", "obs stable", "VSS": the vital signs are normal, with no number given
_VITALS_NORMAL = re.compile(
    r"\b(?:vitals?|vital signs|obs|observations|VS)\s*(?:are |were |all |:\s*)?"
    r"(?:normal|stable|WNL|within normal limits|unremarkable)\b|\bVSS\b|"
    r"\bnormal (?:vitals|vital signs|obs)\b",
    re.I,
)
_STOPWORDS = frozenset("a an the and or of with to in on at for lt rt left right is was x".split())


@dataclass(frozen=True)
class Problem:
    """One statement of the rationale that the case contradicts or does not support."""

    kind: str  # one of KINDS
    message: str  # plain English for the nurse
    start: int  # character span in the rationale
    end: int


@dataclass(frozen=True)
class CaseFacts:
    """What the fact check read from a case text."""

    facts: TriageFacts
    gcs: int | None
    numbers: frozenset[float]
    complaint_words: frozenset[str]
    found: tuple[str, ...]  # which triage facts were found ("heart_rate", "mental", "chief_complaint", ...)
    normal_vitals: frozenset[str] = frozenset()  # vitals said to be normal with no number ("vitals normal")


@dataclass(frozen=True)
class FactCheck:
    problems: tuple[Problem, ...]
    missing_critical: tuple[str, ...]  # critical findings of the case the rationale does not name
    case_has_facts: bool  # False: none of the triage facts the model was trained on
    n_critical: int = 0  # critical findings the case has
    case_facts: tuple[str, ...] = field(default=())

    @property
    def faithful(self) -> bool:
        """No statement of the rationale is contradicted or unsupported by the case."""
        return not self.problems

    @property
    def critical_named(self) -> bool:
        """Every critical finding of the case is named (True when the case has none)."""
        return not self.missing_critical


# --- reading a text ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mention:
    vital: str
    value: float
    start: int
    end: int


def _vital_mentions(text: str) -> list[_Mention]:
    """Every vital sign written with a value, left to right; BP 90/60 gives an sbp and a dbp mention."""
    found: list[_Mention] = []
    taken = bytearray(len(text))  # 1 where a mention was read
    for vital, pattern in _VITAL_PATTERNS:
        for m in pattern.finditer(text):
            if any(taken[m.start() : m.end()]):
                continue  # "systolic BP 80" is read once, not also as "BP 80"
            if _LIMIT_CONTEXT.search(text[max(0, m.start() - _LOOKBACK) : m.start()]):
                continue  # "(fever, at or above 38.0 °C)" quotes a limit, not the patient's value
            taken[m.start() : m.end()] = b"\1" * (m.end() - m.start())
            if vital == "bp":
                found += [
                    _Mention("sbp", float(m.group(1)), m.start(), m.end()),
                    _Mention("dbp", float(m.group(2)), m.start(), m.end()),
                ]
            elif vital == "fahrenheit":  # read as °C, the unit of the rules and the rationales
                found.append(_Mention("temperature", round((float(m.group(1)) - 32) * 5 / 9, 1), m.start(), m.end()))
            else:
                found.append(_Mention(vital, float(m.group(1)), m.start(), m.end()))
    return sorted(found, key=lambda x: x.start)


_SLOT_TAIL = 40  # characters before a number that decide what it states
_PAIN_NAME = r"\b(?:pain(?: score)?|NRS(?: pain)?)" + _SEP
# (slot, the text that ends right before a number stating it); the first match wins, so "systolic BP" is an sbp,
# "pain 7/" is the pain scale's 10 and "RR" alone a respiratory rate
_SLOTS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (slot, re.compile(p + "$", re.I))
    for slot, p in (
        ("limit", _LIMIT_CONTEXT.pattern.removesuffix("$")),
        ("pain_scale", _PAIN_NAME + r"\d{1,2}\s*/\s*"),
        ("dbp", _named("bp") + r"\d{2,3}\s*/\s*"),
        ("gcs", r"\bGCS" + _SEP),
        ("pain", _PAIN_NAME),
        *((vital, _named(vital)) for vital in ("sbp", "dbp", "heart_rate", "resp_rate", "temperature", "spo2")),
        ("sbp", _named("bp")),
    )
)


def value_slot(before: str) -> str | None:
    """What a number written right after `before` states, as this module reads text: a vital sign ("sbp",
    "dbp", "heart_rate", "resp_rate", "temperature", "spo2"), "pain", "pain_scale" (the 10 of x/10), "gcs",
    "limit" (a rule limit quoted as one: "above 160"), or None (nothing in particular)."""
    tail = before[-_SLOT_TAIL:]
    return next((slot for slot, pattern in _SLOTS if pattern.search(tail)), None)


def _mental_state(text: str) -> tuple[str, int, int] | None:
    m = re.search(r"\bMental status:\s*([a-z ]+?)\.", text, re.I)
    if m and m.group(1).lower() in _NARRATIVE_MENTAL:
        return _NARRATIVE_MENTAL[m.group(1).lower()], m.start(1), m.end(1)
    for state, pattern in _MENTAL_RE:
        for hit in pattern.finditer(text):
            if not _NEGATION.search(text[: hit.start()]):
                return state, hit.start(), hit.end()
    return None


def _gcs_state(gcs: int) -> str:
    """AVPU from GCS, as commonly mapped: 15 A, 13-14 V, 9-12 P, 3-8 U."""
    return "alert" if gcs >= 15 else "verbal" if gcs >= 13 else "pain" if gcs >= 9 else "unresponsive"


def _complaint_match(text: str) -> tuple[str, int, int] | None:
    """The complaint a marker introduces ("Chief complaint: X.", "c/o X", "presenting with X")."""
    m = _COMPLAINT.search(text)
    if not m:
        return None
    group = next(g for g in ("a", "b", "c") if m.group(g) is not None)
    return m.group(group).strip(), m.start(group), m.end(group)


def _states_a_fact(sentence: str) -> bool:
    return bool(
        _NOT_A_COMPLAINT.search(sentence.strip())
        or _vital_mentions(sentence)
        or _GCS.search(sentence)
        or _mental_state(sentence)
        or _pain(sentence) != (None, None)
        or _AGE.search(sentence)
        or _VITALS_NORMAL.search(sentence)
        or _NORMAL_RE.search(sentence)
        or any(p.search(sentence) for _, p in _ARRIVAL_RE)
    )


def _leading_complaint(text: str) -> str | None:
    """The first sentence of a note that opens with its complaint ("Chest pain x2 days. 55M, BIBA, HR 120"):
    read only when it states no other fact and the rest of the note states one."""
    m = _LEADING.match(text)
    if not m or len(m.group("c").split()) > 12 or _states_a_fact(m.group("c")):
        return None
    rest = text[m.end("c") :]
    if not (
        _vital_mentions(rest)
        or _GCS.search(rest)
        or _mental_state(rest)
        or _pain(rest) != (None, None)
        or _VITALS_NORMAL.search(rest)
        or _AMBULANCE.search(rest)
    ):
        return None
    said = m.group("c").strip()
    first = re.match(r"[A-Za-z]*", said).group(0)
    # the note capitalised its first word ("Abd. pain", "D - diarrhea"), not an acronym ("HA - headache")
    return said[0].lower() + said[1:] if len(first) == 1 or first[1:].islower() else said


def _complaint(text: str) -> str | None:
    found = _complaint_match(text)
    if found:
        return None if found[0].lower().startswith("not recorded") else found[0]
    if re.search(r"\bcomplaint not recorded\b", text, re.I):
        return None
    return _leading_complaint(text)


def _words(text: str) -> set[str]:
    """The content words of a complaint, abbreviations written out ("Abd. pain" = "abdominal pain")."""
    words = set()
    for w in _WORD.findall(text.lower()):
        words.update(_ABBREVIATIONS.get(w, w).split())
    return words - _STOPWORDS


def _numbers(text: str) -> set[float]:
    return {float(n) for n in _NUMBER.findall(text)}


def _pain(text: str) -> tuple[bool | None, int | None]:
    score = _PAIN_SCORE.search(text)
    if score:
        return True, int(score.group(2) or score.group(3))
    if re.search(r"\bno pain\b|\bpain[- ]free\b|\bdenies pain\b", text, re.I):
        return False, None
    if re.search(r"\bpain present\b", text, re.I):
        return True, None
    return None, None


def _outside(pattern: re.Pattern, text: str, mentions: list[_Mention]) -> re.Match | None:
    """The first match of `pattern` that is not part of a vital sign."""
    return next(
        (m for m in pattern.finditer(text) if not any(v.start < m.end() and m.start() < v.end for v in mentions)), None
    )


def read_case(text: str) -> CaseFacts:
    """The triage facts of a case text (KTAS narrative or free text); what is not written stays None."""
    values: dict[str, float] = {}
    mentions = _vital_mentions(text)
    for mention in mentions:
        values.setdefault(mention.vital, mention.value)
    gcs_match = _GCS.search(text)
    gcs = int(gcs_match.group(1)) if gcs_match and 3 <= int(gcs_match.group(1)) <= 15 else None
    mental = _mental_state(text)
    state = mental[0] if mental else (_gcs_state(gcs) if gcs is not None else None)
    pain, pain_score = _pain(text)
    age_match = _outside(_AGE, text, mentions)  # not the "101F" of a temperature
    age = next((int(g) for g in age_match.groups() if g), None) if age_match else None
    complaint = _complaint(text)
    arrival = next((mode for mode, pattern in _ARRIVAL_RE if pattern.search(text)), None)
    sex_match = _outside(_SEX, text, mentions)
    sex = _SEX_WORDS[(sex_match.group(1) or sex_match.group(2)).lower()] if sex_match else None
    normal = (
        frozenset(VITALS)
        if _VITALS_NORMAL.search(text)
        else frozenset(v for m in _NORMAL_RE.finditer(text) for v in _NORMAL_CASE_WORDS[m.group(1).lower()])
    )
    normal -= values.keys()
    injury = (
        True
        if re.search(r"\bwith an injury\b|\binjured\b|\btrauma\b", text, re.I)
        else False
        if re.search(r"\bnot an injury\b", text, re.I)
        else None
    )
    facts = TriageFacts(
        age=age if age is not None and age <= 130 else None,
        sex=sex,
        arrival=arrival,
        injury=injury,
        chief_complaint=complaint,
        mental=state,
        pain=pain,
        pain_score=pain_score if pain_score is not None and pain_score <= 10 else None,
        **{v: values.get(v) for v in VITALS},
    )
    found = (
        tuple(name for name in (*VITALS, "mental", "pain_score", "chief_complaint") if getattr(facts, name) is not None)
        + (("gcs",) if gcs is not None else ())
        + (("vitals_normal",) if normal else ())
    )
    return CaseFacts(facts, gcs, frozenset(_numbers(text)), frozenset(_words(complaint or "")), found, normal)


def parse_case(text: str) -> TriageFacts:
    """The TriageFacts of a case text (see read_case)."""
    return read_case(text).facts


def case_has_triage_facts(text: str) -> bool:
    """True when the case states at least one vital sign, mental state, pain score or chief complaint."""
    return bool(read_case(text).found)


# --- checking a rationale against its case ----------------------------------------------------------


def _is_adult(case: CaseFacts) -> bool:
    return case.facts.age is None or case.facts.age >= PAEDIATRIC_AGE


def _check_vitals(case: CaseFacts, mentions: list[_Mention]) -> list[Problem]:
    problems = []
    for m in mentions:
        recorded = getattr(case.facts, m.vital)
        name = VITAL_NAMES[m.vital]
        if recorded is None:
            gives = (
                "gives no number for it (it says the vital signs are normal)"
                if m.vital in case.normal_vitals
                else f"does not record {name}"
            )
            problems.append(
                Problem(
                    "number_not_in_case",
                    f"Says {name} {format_value(m.vital, m.value)}; the case {gives}.",
                    m.start,
                    m.end,
                )
            )
        elif abs(recorded - m.value) > 0.05:
            problems.append(
                Problem(
                    "number_not_in_case",
                    f"Says {name} {format_value(m.vital, m.value)}; the case "
                    f"records {format_value(m.vital, recorded)}.",
                    m.start,
                    m.end,
                )
            )
    return problems


def _claims_direction(case: CaseFacts, vital: str, direction: str) -> bool | None:
    """Is the case's value outside the normal range in `direction`? None when not recorded."""
    value = getattr(case.facts, vital)
    if value is None:
        return None
    low, high = NORMAL_RANGES[vital]
    return value > high if direction == "high" else value < low


def _check_abnormal_words(case: CaseFacts, case_text: str, rationale: str) -> list[Problem]:
    problems = []
    for m in _ABNORMAL_RE.finditer(rationale):
        vital, direction = _ABNORMAL_WORDS[m.group(1).lower()]
        if re.search(r"\b" + re.escape(m.group(1)), case_text, re.I):
            continue  # the case itself says it ("Chief complaint: fever"): restating it is supported
        if _NEGATION.search(rationale[max(0, m.start() - _LOOKBACK) : m.start()]):
            value = getattr(case.facts, vital)
            if _claims_direction(case, vital, direction) and _is_adult(case):
                problems.append(
                    Problem(
                        "abnormal_called_normal",
                        f"Says no {m.group(0).lower()}; the case records "
                        f"{VITAL_NAMES[vital]} {format_value(vital, value)}.",
                        m.start(),
                        m.end(),
                    )
                )
            continue
        holds = _claims_direction(case, vital, direction)
        if holds is None and vital in case.normal_vitals:
            problems.append(
                Problem(
                    "normal_called_abnormal",
                    f"Says {m.group(0).lower()}; the case says the vital signs are normal.",
                    m.start(),
                    m.end(),
                )
            )
        elif holds is None:
            problems.append(
                Problem(
                    "normal_called_abnormal",
                    f"Says {m.group(0).lower()}; the case does not record {VITAL_NAMES[vital]}.",
                    m.start(),
                    m.end(),
                )
            )
        elif not holds and _is_adult(case):
            value = getattr(case.facts, vital)
            problems.append(
                Problem(
                    "normal_called_abnormal",
                    f"Says {m.group(0).lower()}; the case records "
                    f"{VITAL_NAMES[vital]} {format_value(vital, value)}, which is not "
                    f"{'raised' if direction == 'high' else 'low'}.",
                    m.start(),
                    m.end(),
                )
            )
    for m in _NORMAL_RE.finditer(rationale):
        vital = _NORMAL_WORDS[m.group(1).lower()]
        value = getattr(case.facts, vital)
        if value is not None and not in_normal_range(vital, value) and _is_adult(case):
            problems.append(
                Problem(
                    "abnormal_called_normal",
                    f"Says {m.group(0).lower()}; the case records {VITAL_NAMES[vital]} {format_value(vital, value)}.",
                    m.start(),
                    m.end(),
                )
            )
    return problems


def _vital_from_name(name: str) -> str | None:
    name = name.strip().lower()
    for vital, label in VITAL_NAMES.items():
        if name in (label.lower(), label.lower().replace("bp", "blood pressure")):
            return vital
    return {"blood pressure": "sbp"}.get(name)


def _check_within_limits(case: CaseFacts, rationale: str, mentions: list[_Mention]) -> list[Problem]:
    """'(recorded|other) vital signs within adult limits (X, Y not recorded)' must be true of the case."""
    problems = []
    named = {m.vital for m in mentions}
    for m in _WITHIN_LIMITS.finditer(rationale):
        if not _is_adult(case):
            continue
        exclude = named if (m.group(1) or "").strip().lower() == "other" else set()
        outside = [
            v
            for v in VITALS
            if v not in exclude
            and getattr(case.facts, v) is not None
            and not in_normal_range(v, getattr(case.facts, v))
        ]
        if outside:
            listed = ", ".join(f"{VITAL_NAMES[v]} {format_value(v, getattr(case.facts, v))}" for v in outside)
            problems.append(
                Problem(
                    "abnormal_called_normal",
                    f"Says the vital signs are within adult limits; the case records {listed}.",
                    m.start(),
                    m.end(),
                )
            )
        elif not any(getattr(case.facts, v) is not None for v in VITALS) and not case.normal_vitals:
            problems.append(
                Problem(
                    "abnormal_called_normal",
                    "Says the vital signs are within adult limits; the case records no vital sign.",
                    m.start(),
                    m.end(),
                )
            )
    for m in _NOT_RECORDED.finditer(rationale):
        names = re.split(r",\s*|\s+and\s+", m.group(1) or m.group(2))
        for name in names:
            if name.strip().lower() == "vital signs" and (
                any(getattr(case.facts, v) is not None for v in VITALS) or case.normal_vitals
            ):
                problems.append(
                    Problem(
                        "wrong_context",
                        "Says the vital signs were not recorded; the case records some.",
                        m.start(),
                        m.end(),
                    )
                )
            vital = _vital_from_name(name)
            if vital in case.normal_vitals:
                problems.append(
                    Problem(
                        "wrong_context",
                        f"Says {VITAL_NAMES[vital]} was not recorded; the case says the vital signs are normal.",
                        m.start(),
                        m.end(),
                    )
                )
            if vital and getattr(case.facts, vital) is not None:
                problems.append(
                    Problem(
                        "wrong_context",
                        f"Says {VITAL_NAMES[vital]} was not recorded; the case "
                        f"records {format_value(vital, getattr(case.facts, vital))}.",
                        m.start(),
                        m.end(),
                    )
                )
    return problems


def _check_mental(case: CaseFacts, rationale: str) -> list[Problem]:
    claimed = _mental_state(rationale)
    gcs = _GCS.search(rationale)
    problems = []
    if gcs and case.gcs is not None and int(gcs.group(1)) != case.gcs:
        problems.append(
            Problem(
                "wrong_mental_state",
                f"Says GCS {gcs.group(1)}; the case records GCS {case.gcs}.",
                gcs.start(),
                gcs.end(),
            )
        )
    if claimed is None:
        return problems
    state, start, end = claimed
    actual = case.facts.mental
    words = {
        "alert": "alert",
        "verbal": "responding only to voice",
        "pain": "responding only to pain",
        "unresponsive": "unresponsive",
    }
    if actual is None:
        problems.append(
            Problem(
                "wrong_mental_state", f"Says {words[state]}; the case does not record the mental state.", start, end
            )
        )
    elif state != actual:
        problems.append(
            Problem("wrong_mental_state", f"Says {words[state]}; the case records {words[actual]}.", start, end)
        )
    return problems


def _check_pain(case: CaseFacts, rationale: str) -> list[Problem]:
    problems = []
    actual = case.facts.pain_score
    for m in _PAIN_SCORE.finditer(rationale):
        said = int(m.group(2) or m.group(3))
        if actual is None:
            problems.append(
                Problem("wrong_pain", f"Says pain {said}/10; the case records no pain score.", m.start(), m.end())
            )
        elif said != actual:
            problems.append(
                Problem("wrong_pain", f"Says pain {said}/10; the case records {actual}/10.", m.start(), m.end())
            )
        elif m.group(1) and pain_band(said) != m.group(1).lower():
            problems.append(
                Problem(
                    "wrong_pain",
                    f"Calls {said}/10 {m.group(1).lower()} pain; it is {pain_band(said)}.",
                    m.start(),
                    m.end(),
                )
            )
    for m in _PAIN_BAND.finditer(rationale):
        band = m.group(1).lower()
        if actual is not None and pain_band(actual) != band:
            problems.append(
                Problem(
                    "wrong_pain",
                    f"Says {band} pain; the case records pain {actual}/10 ({pain_band(actual)}).",
                    m.start(),
                    m.end(),
                )
            )
        elif actual is None and band == "no" and case.facts.pain:
            problems.append(Problem("wrong_pain", "Says no pain; the case records pain.", m.start(), m.end()))
        elif actual is None and band != "no" and case.facts.pain is not True:
            problems.append(
                Problem("wrong_pain", f"Says {band} pain; the case records no pain score.", m.start(), m.end())
            )
    return problems


def _check_complaint(case: CaseFacts, case_text: str, rationale: str) -> list[Problem]:
    found = _complaint_match(rationale)
    if not found:
        return []
    said, start, end = found
    extra = _words(said) - (case.complaint_words or _words(case_text))
    if not extra:
        return []
    recorded = f'"{case.facts.chief_complaint}"' if case.facts.chief_complaint else "no chief complaint"
    return [Problem("wrong_complaint", f'Names the complaint "{said}"; the case records {recorded}.', start, end)]


def _check_context(case: CaseFacts, rationale: str) -> list[Problem]:
    problems = []
    amb = _AMBULANCE.search(rationale)
    if amb and case.facts.arrival is not None and not case.facts.by_ambulance:
        problems.append(
            Problem(
                "wrong_context",
                "Says the patient arrived by ambulance; the case says otherwise.",
                amb.start(),
                amb.end(),
            )
        )
    inj = re.search(r"\binjured\b|\bwith an injury\b", rationale, re.I)
    if inj and case.facts.injury is False:
        problems.append(
            Problem(
                "wrong_context", "Says the patient is injured; the case says not an injury.", inj.start(), inj.end()
            )
        )
    return problems


def _check_level(rationale: str, label: str | None) -> list[Problem]:
    if label is None:
        return []
    return [
        Problem("wrong_level", f"Names KTAS {m.group(1)}; the label shown is {label}.", m.start(), m.end())
        for m in _LEVEL.finditer(rationale)
        if m.group(1) != label
    ]


def _allowed_constant(rationale: str, start: int, value: float) -> bool:
    """A limit from the rule tables quoted as a limit ('below 92%'), or the 10 of 'x/10'."""
    before = rationale[max(0, start - _LOOKBACK) : start]
    if before.rstrip().endswith("/") and value == 10:
        return True
    limits = {float(t.limit) for t in THRESHOLDS} | {float(x) for r in NORMAL_RANGES.values() for x in r}
    return value in limits and bool(_LIMIT_CONTEXT.search(before))


def _check_numbers(case: CaseFacts, rationale: str, covered: list[tuple[int, int]]) -> list[Problem]:
    """Every other number in the rationale must be in the case (or be a quoted limit)."""
    problems = []
    inside = bytearray(len(rationale))  # 1 inside a covered span
    for s, e in covered:
        inside[s:e] = b"\1" * (e - s)
    for m in _NUMBER.finditer(rationale):
        if inside[m.start()]:
            continue
        value = float(m.group(0))
        if value in case.numbers or _allowed_constant(rationale, m.start(), value):
            continue
        problems.append(
            Problem("number_not_in_case", f"The number {m.group(0)} is not in the case.", m.start(), m.end())
        )
    return problems


def _names(finding: ClinicalFinding, rationale: str, mentions: list[_Mention]) -> bool:
    """Does the rationale name this critical finding (the vital with a value, its name or its abnormality)?"""
    if finding.field == "mental":
        claimed = _mental_state(rationale)
        return (claimed is not None and claimed[0] != "alert") or bool(_GCS.search(rationale))
    if any(m.vital == finding.field for m in mentions):
        return True
    words = [w for w, (vital, _) in _ABNORMAL_WORDS.items() if vital == finding.field]
    return any(re.search(r"\b" + w, rationale, re.I) for w in words)


def _critical_phrase(finding: ClinicalFinding) -> str:
    return finding.phrase.split(" (")[0] + (
        f" ({finding.phrase.split(' (')[1].split(',')[0]})" if " (" in finding.phrase else ""
    )


def check_rationale(case_text: str, rationale: str, label: str | None = None) -> FactCheck:
    """Every statement of `rationale` that `case_text` contradicts or does not support, and the critical
    findings of the case it leaves out. `label`: the label shown beside the rationale (KTAS level check)."""
    case = read_case(case_text)
    criticals = critical_findings(case.facts)
    text = rationale.strip()
    if len(text.split()) <= 1:
        problems = [
            Problem("empty", "The rationale is empty or a single word; it explains nothing.", 0, len(rationale))
        ]
        missing = tuple(_critical_phrase(f) for f in criticals)
        return FactCheck(tuple(problems), missing, bool(case.found), len(criticals), case.found)
    mentions = _vital_mentions(rationale)
    covered = [(m.start, m.end) for m in mentions]
    covered += [
        (m.start(), m.end())
        for m in (*_PAIN_SCORE.finditer(rationale), *_LEVEL.finditer(rationale), *_GCS.finditer(rationale))
    ]
    problems = (
        _check_vitals(case, mentions)
        + _check_abnormal_words(case, case_text, rationale)
        + _check_within_limits(case, rationale, mentions)
        + _check_mental(case, rationale)
        + _check_pain(case, rationale)
        + _check_complaint(case, case_text, rationale)
        + _check_context(case, rationale)
        + _check_level(rationale, label)
        + _check_numbers(case, rationale, covered)
    )
    missing = tuple(_critical_phrase(f) for f in criticals if not _names(f, rationale, mentions))
    ordered = tuple(sorted(problems, key=lambda p: (p.start, p.kind)))
    return FactCheck(ordered, missing, bool(case.found), len(criticals), case.found)


# --- figures over a data set ---------------------------------------------------------------------------


def least_contradicted(case_text: str, candidates: Sequence[str], label: str | None = None) -> int:
    """Index of the candidate rationale with the fewest problems, then the fewest critical findings left out;
    ties go to the earlier candidate (the decoder's own ranking). Raises ValueError for no candidates."""
    if not candidates:
        raise ValueError("no candidate rationales to choose from")
    checks = [check_rationale(case_text, c, label) for c in candidates]
    return min(range(len(candidates)), key=lambda i: (len(checks[i].problems), len(checks[i].missing_critical), i))


def fidelity_summary(
    cases: Sequence[str], rationales: Sequence[str], labels: Sequence[str | None] | None = None
) -> dict:
    """fidelity = share of rationales with no problem; critical_named = share of the cases that have a
    critical finding whose rationale names all of them (None when no case has one); counts per kind."""
    if len(cases) != len(rationales):
        raise ValueError(f"{len(cases)} cases but {len(rationales)} rationales")
    labels = labels if labels is not None else [None] * len(cases)
    checks = [check_rationale(c, r, lab) for c, r, lab in zip(cases, rationales, labels)]
    with_critical = [fc for fc in checks if fc.n_critical]
    kinds = {k: sum(any(p.kind == k for p in fc.problems) for fc in checks) for k in KINDS}
    return {
        "fidelity": sum(fc.faithful for fc in checks) / len(checks) if checks else None,
        "critical_named": (
            sum(fc.critical_named for fc in with_critical) / len(with_critical) if with_critical else None
        ),
        "n": len(checks),
        "n_with_critical": len(with_critical),
        "cases_without_facts": sum(not fc.case_has_facts for fc in checks),
        "rationales_with_problem": {k: v for k, v in kinds.items() if v},
    }


def mask_label_mentions(text: str, label_names: Iterable[str] = ()) -> str:
    """Replace every mention of a level ("KTAS 3", "level 2") and the given label names with [LABEL], as
    the Reason2Decide-C data masks labels, so consistency/sufficiency measure the facts a rationale states
    rather than a copied label."""
    masked = _LEVEL.sub(LABEL_MASK, text)
    for name in sorted({n for n in label_names if n}, key=len, reverse=True):
        masked = re.sub(r"\b" + re.escape(name) + r"\b", LABEL_MASK, masked, flags=re.I)
    return masked


def explain(fc: FactCheck) -> list[str]:
    """The problems and omissions as short lines, for a log or a report."""
    lines = [p.message for p in fc.problems]
    lines += [f"Leaves out a critical finding: {m}." for m in fc.missing_critical]
    if not fc.case_has_facts:
        lines.append("The case holds none of the triage facts the model was trained on.")
    return lines


__all__ = [
    "KINDS",
    "LABEL_MASK",
    "Problem",
    "CaseFacts",
    "FactCheck",
    "read_case",
    "parse_case",
    "case_has_triage_facts",
    "check_rationale",
    "fidelity_summary",
    "mask_label_mentions",
    "explain",
    "MENTAL_FINDINGS",
]

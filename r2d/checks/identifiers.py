"""Likely patient identifiers in free text, screened before reviews are exported for training.

The reference list is HIPAA Safe Harbor's 18 identifier types. Phone and fax numbers are found by
Google's libphonenumber (the `phonenumbers` package: UK, US and international formats); the other
types by patterns written for triage notes: names after titles, relations and "named"/"my name
is", dates with or without a year ("born on the 4th of March 1961", "admitted on March 3rd"),
ages over 89, labelled record/plan/account/licence/device numbers (letters allowed), SSNs, street
addresses, UK postcodes and US ZIP codes, e-mail (also "name at host dot com"), URLs, IP addresses,
vehicle plates and VINs (also labelled: "plate KX-482-TB"), towns after "lives in"/"from"/"in", employers after
"works at"/"employed by", names in any case after strong cues ("SURNAME, First", "mrs. begum", "name: nguyen thi
hoa"). The text is first NFKC-normalised with zero-width and bidi characters dropped and division slashes and
dashes folded, so a fullwidth @, a thin-space phone number or a date with U+2215 slashes is read as written.
Clinical notation (BP 120/80, pain 7/10, 1/52, GCS 15, eponyms such as
Parkinson's) is not flagged. `benchmarks/eval_identifiers.py` measures recall and false positives
on tests/data/identifiers.jsonl against other libraries. A screen, not de-identification: a human
decides, and the export records what was found.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

# regions whose national formats are read without a "+" prefix (the app's users: UK and US)
PHONE_REGIONS = ("GB", "US")

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEPT?|"
    r"OCT|NOV|DEC)"
)
_ORD = r"(?:st|nd|rd|th)"
# a capitalised name word: Smith, O'Brien, Lopez-Garcia
_WORD = r"[A-Z][a-z]*(?:['’-][A-Z]?[a-z]+)*\b"
_NAME = rf"{_WORD}(?:\s+{_WORD})?"
_RELATIONS = (
    r"patient|husband|wife|partner|son|daughter|mother|father|mum|dad|brother|sister|friend|carer|"
    r"neighbour|neighbor|paramedic|GP|nurse|grandson|granddaughter|uncle|aunt|cousin|fiancée?|nephew|niece"
)
# capitalised words that follow "patient"/relations in notes but are not names ("Patient Group Direction")
_NOT_NAMES = frozenset(
    "Group Direction Directions Team Unit Department Service Services Ward Clinic Centre Center "
    "Hospital Trust Health Care Liaison Mental Emergency Medical Surgical Acute Transport "
    "Scale Score Syndrome Disease Criteria Protocol Pathway Bay Resus Triage Advice".split()
)
_VERBS = (
    r"was|is|has|had|reports|reported|presents|presented|states|says|said|arrived|came|denies|complains|"
    r"fell|collapsed|attends|attended"
)
_ID_LABELS = (
    r"MRN|NHS(?:\s+(?:no|number))?|SSN|social\s+security\s+(?:no|number)|patient\s+(?:no|number|id)|"
    r"hospital\s+(?:no|number)|record(?:\s+(?:no|number))?|(?:insurance\s+)?member\s+id|"
    r"(?:insurance|policy|plan)\s+(?:no|number|id)|account(?:\s+(?:no|number))?|"
    r"medicare(?:\s+(?:no|number|id))?|medicaid(?:\s+(?:no|number|id))?|"
    r"(?:driving\s+|driver'?s\s+)?licen[cs]e(?:\s+(?:no|number))?|serial(?:\s+(?:no|number))?|"
    r"VIN|ID|(?:case\s+)?ref(?:erence)?(?:\s+(?:no|number))?|registration(?:\s+(?:no|number))?|s/n"
)
_ID_VALUE = r"(?:\d{3}\s\d{3}\s\d{4}|[A-Z0-9]+(?:[-/][A-Z0-9]+)*)"
_STREET = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Close|Way|Court|Ct|Place|Crescent|Terrace|Boulevard|"
    r"Blvd|Square|Gardens|Grove|Hill|Row|Mews|Walk|Parade|Approach"
)
# street names unlikely to end anything but a street, so no house number is needed: "lives on Ferndale Road"
_STREET_ALONE = r"Street|Road|Avenue|Lane|Drive|Crescent|Terrace|Boulevard|Approach|Gardens|Mews|Parade"
# a place or organisation word: Tonypandy, Ashby-de-la-Zouch, Hood's, St
_PLACE_WORD = r"[A-Z][a-z]+(?:['’]s)?(?:-[a-z]+)*(?:-[A-Z][a-z]+)*\b"
_PLACE = rf"{_PLACE_WORD}(?:\s+{_PLACE_WORD}){{0,2}}"
# a name word in any case after a strong cue: david, O'NEILL, mcallister
_ANY_WORD = r"[A-Za-z][A-Za-z]*(?:['’-][A-Za-z]+)*\b"
# capitalised words after "in"/"at" that are places in a hospital or times, not towns or employers
_NOT_PLACES = frozenset(
    "Resus Majors Minors Triage Hospital Ward Unit Clinic Department Theatre Theatres Christmas "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May "
    "June July August September October November December".split()
)
# look-alikes that NFKC keeps: division and fraction slashes, hyphens, dashes and the minus sign
_FOLD = str.maketrans(
    {
        "\u2215": "/",
        "\u2044": "/",
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
    }
)


_DOT = r"\s*(?:\[dot\]|\(dot\)|\s+dot\s+)\s*"  # an e-mail written out to dodge filters: "jo at host dot com"


def _p(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Order matters: earlier kinds claim their span first (a labelled MRN is not also a phone number).
# These come before libphonenumber, so that it does not read an e-mail, a labelled number or a date as a phone.
_BEFORE_PHONES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", _p(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    (
        "email",
        _p(
            rf"\b[\w.+-]+\s*(?:\[at\]|\(at\)|\s+at\s+)\s*[\w-]+(?:{_DOT}[\w-]+)*{_DOT}"
            r"(?:com|org|net|edu|gov|uk|us|io|nhs|info|co)\b",
            re.IGNORECASE,
        ),
    ),
    ("url", _p(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]", re.IGNORECASE)),
    ("ip_address", _p(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    # a label, then a value with at least one digit: "MRN: 00123456", "hospital number AB12345"
    ("id_number", _p(rf"\b(?i:{_ID_LABELS})\.?\s*[:#]?\s*(?=[A-Z0-9 -]*\d){_ID_VALUE}\b")),
    ("id_number", _p(r"\b\d{3}-\d{2}-\d{4}\b")),  # SSN shape
    (
        "vehicle",
        _p(
            r"\b(?i:plate|reg(?:istration)?)(?:\s+(?i:no|number))?\.?\s*[:#]?\s*"
            r"(?P<v>(?=[A-Z0-9 -]*\d)[A-Z0-9]{1,8}(?:[ -][A-Z0-9]{1,4}){0,2})\b"
        ),
    ),
    (
        "date",
        _p(
            rf"\b(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})|\d{{4}}-\d{{2}}-\d{{2}}|"
            rf"\d{{1,2}}{_ORD}?(?:\s+of)?\s+{_MONTH}\.?(?:,?\s+\d{{4}})?|"
            rf"{_MONTH}\.?\s+(?:the\s+)?\d{{1,2}}{_ORD}?(?:,?\s+\d{{4}})?)\b"
        ),
    ),
    # day/month without a year only after a word that introduces a date: "on 14/3" (not "pain 7/10")
    ("date", _p(r"\b(?:on|since|from|until|dated|date|seen)\s+(?P<v>\d{1,2}/\d{1,2})\b(?!/)", re.IGNORECASE)),
)
_AFTER_PHONES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "age_over_89",
        _p(r"\b(?:9\d|1[0-2]\d)\s*-?\s*(?:years?[\s-]old|year-old|yrs?\s+old|yo|y/o|y\.o\.)(?!\w)", re.IGNORECASE),
    ),
    ("age_over_89", _p(r"\bage[ds]?\s*:?\s*(?:9\d|1[0-2]\d)\b", re.IGNORECASE)),
    ("age_over_89", _p(r"\b(?:9\d|1[0-2]\d)\s+years?\s+of\s+age\b", re.IGNORECASE)),
    (
        "age_over_89",
        _p(
            r"\b(?:ninety|a\s+hundred|one\s+hundred)(?:[\s-](?:and[\s-])?(?:one|two|three|four|five|six|"
            r"seven|eight|nine))?[\s-]years?[\s-]old\b",
            re.IGNORECASE,
        ),
    ),
    ("date", _p(rf"\b{_MONTH}\.?,?\s+(?:19|20)\d{{2}}\b")),  # month and year: "in August 2022"
    ("id_number", _p(r"\b(?:\d{4}[ -]){3}\d{1,7}\b")),  # payment card number
    ("id_number", _p(r"\b\d[A-Z][A-Z\d]\d-?[A-Z][A-Z\d]\d-?[A-Z]{2}\d{2}\b")),  # US Medicare MBI
    ("social_handle", _p(r"(?<![\w@.])@[A-Za-z0-9_]{3,15}\b")),
    ("address", _p(rf"\b\d{{1,5}}[A-Za-z]?,?\s+(?:{_WORD}\s+){{1,3}}(?:{_STREET})\b\.?")),
    ("postcode", _p(r"\b(?:GIR\s?0AA|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2})\b")),  # UK
    (
        "postcode",
        _p(
            r"\b(?:(?i:zip(?:\s+code)?|postcode|post\s+code)\s*:?\s*\d{5}(?:-\d{4})?|"
            r"(?<=[A-Z]{2} )\d{5}(?:-\d{4})?)\b"
        ),
    ),  # US ZIP, labelled or after a state code
    ("vehicle", _p(r"\b(?=[A-HJ-NPR-Z0-9]*\d)(?=[A-HJ-NPR-Z0-9]*[A-Z])[A-HJ-NPR-Z0-9]{17}\b")),  # VIN
    ("vehicle", _p(r"\b[A-Z]{2}\d{2}\s?[A-Z]{3}\b")),  # UK number plate
    ("id_number", _p(r"\b[A-Z9]{5}\d{6}[A-Z9]{2}\d[A-Z]{2}\b")),  # UK driving licence
    ("name", _p(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sr|Sister)\.?\s+{_NAME}")),
    (
        "name",
        _p(
            rf"\b(?i:patient\s+named|patient\s+is|named|called|name\s+is|name\s*:|(?:{_RELATIONS})\s*,?)"
            rf"\s*\(?\s*{_NAME}"
        ),
    ),
    ("name", _p(rf"\b{_NAME}(?=,?\s+(?i:his|her|their|the\s+patient's)\s+(?i:{_RELATIONS})\b)")),
    ("name", _p(rf"(?:^|(?<=[.!?]\s))(?:{_WORD}\s+){{1,2}}{_WORD}(?=\s+(?:{_VERBS})\b)")),
    # names in any case after strong cues, and "SURNAME, First" / "SURNAME First" before "(", "," or the end
    (
        "name",
        _p(
            rf"\b(?i:surname|forenames?|first\s+name|last\s+name|given\s+names?|family\s+name|name\s+is|"
            rf"name\s*:|named|known\s+as)\s*:?\s*(?P<v>['\u2018]?{_ANY_WORD}(?:['\u2019]?\s+{_ANY_WORD}){{0,2}})"
        ),
    ),
    (
        "name",
        _p(
            r"\b(?:(?:MR|MRS|MS|MISS|DR)\.?\s+[A-Z]{2,}(?:['\u2019-][A-Z]+)*(?:\s+[A-Z]{2,}\b)?|"
            r"(?:mr|mrs|ms|miss|mx)\.?\s+[a-z]+(?:['\u2019-][a-z]+)*)"
        ),
    ),
    ("name", _p(r"\b[A-Z]{3,}(?:['\u2019-][A-Z]+)*,?\s+[A-Z][a-z]+\b(?=\s*(?:[(,.;]|$))")),
    (
        "name",
        _p(
            rf"\b(?i:(?:{_RELATIONS}),|pt\s+is|patient\s+is)\s+"
            rf"(?P<v>[a-z]{{2,}}\s+[a-z]{{2,}}(?:['\u2019-][a-z]+)*)(?=\s*[,.)])"
        ),
    ),
    ("address", _p(rf"\b(?:{_WORD}\s+){{1,2}}(?:{_STREET_ALONE})\b")),
    (
        "place",
        _p(
            rf"\b(?i:lives?\s+(?:in|at|near)|living\s+in|home\s+in|from|outside|near|in|"
            rf"town|village|city)\s*:?\s+(?P<v>{_PLACE})"
        ),
    ),
    ("place", _p(rf"(?<=, )(?P<v>{_PLACE})(?=\s+[A-Z]{{1,2}}\d[A-Z\d]?\s?\d[A-Z]{{2}}\b|\s*[.;]|\s*$)")),
    (
        "employer",
        _p(
            rf"\b(?i:works?\s+(?:at|for)|working\s+(?:at|for)|employed\s+(?:by|at)|employer\s*:?|at)\s+"
            rf"(?:the\s+)?(?P<v>{_PLACE_WORD}(?:\s+(?:&\s+)?{_PLACE_WORD}){{0,3}})"
        ),
    ),
    ("id_number", _p(r"\b[A-Z]{1,3}-?\d{5,}[A-Z]?\b")),  # record-like codes: AB123456, K-0045321
    ("id_number", _p(r"\b\d{7,}\b")),
)


@dataclass(frozen=True)
class IdentifierMatch:
    """A likely patient identifier in a text: its kind, the matched text and where it is."""

    # name | date | age_over_89 | phone | email | url | ip_address | id_number | address | postcode | vehicle
    # | social_handle | place | employer
    kind: str
    text: str
    start: int
    end: int


def _phone_spans(text: str) -> list[tuple[int, int]]:
    """Phone/fax numbers as libphonenumber reads them, kept only when shaped like a dialled number.

    POSSIBLE leniency accepts numbers by length (fictional 07700 900xxx and 555 numbers too), so a
    match must carry a '+' or '(' or a separator, have 9-15 digits and no '/' (BP 120/80, 2 x 500).
    """
    spans = set()
    for region in PHONE_REGIONS:
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            raw, digits = m.raw_string, sum(c.isdigit() for c in m.raw_string)
            if "/" not in raw and " x " not in raw and 9 <= digits <= 15 and re.search(r"[+(\s.-]", raw):
                spans.add((m.start, m.end))
    return sorted(spans)


def _value_span(m: re.Match[str]) -> tuple[int, int]:
    """The identifier itself: group "v" where a pattern matches context around it, else the whole match."""
    return m.span("v") if "v" in m.re.groupindex else m.span()


def scan_identifiers(text: str) -> list[IdentifierMatch]:
    """Likely patient identifiers in text, in order of position; each span is reported once.

    A heuristic screen, not de-identification: it errs towards flagging, and a human decides.
    """
    findings: list[IdentifierMatch] = []
    taken: list[tuple[int, int]] = []

    plain, where = normalise(text)

    def claim(kind: str, start: int, end: int) -> None:
        words = plain[start:end].split()
        if (kind == "name" and _NOT_NAMES.intersection(words)) or (
            kind in ("place", "employer") and (not words or words[0] in _NOT_PLACES or words[0] in _NOT_NAMES)
        ):
            return
        if start < end and not any(start < e and s < end for s, e in taken):
            taken.append((start, end))
            first, last = where[start], where[end - 1] + 1  # the span in the text as given
            findings.append(IdentifierMatch(kind, text[first:last], first, last))

    for kind, pattern in _BEFORE_PHONES:
        for m in pattern.finditer(plain):
            claim(kind, *_value_span(m))
    for start, end in _phone_spans(plain):
        claim("phone", start, end)
    for kind, pattern in _AFTER_PHONES:
        for m in pattern.finditer(plain):
            claim(kind, *_value_span(m))
    return sorted(findings, key=lambda f: f.start)


def normalise(text: str) -> tuple[str, list[int]]:
    """text as the scan reads it: NFKC per character, look-alike slashes and dashes folded, format characters
    (zero-width, bidi controls, soft hyphen) dropped; with the index in text of each character it returns."""
    if text.isascii():
        return text, list(range(len(text)))
    out, where = [], []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) == "Cf":
            continue
        for c in unicodedata.normalize("NFKC", ch).translate(_FOLD):
            out.append(c)
            where.append(i)
    return "".join(out), where

"""Adapters from the public data sets to `Example`s. Each loader reads a path the caller gives.

KTAS (`ktas/data.csv`, Moon et al., PLOS ONE 2019; Kaggle "Emergency Service - Triage Application").
`;`-separated, CRLF, cp1254 (Windows Turkish), decimal commas. Missing = empty, `#BOŞ!` (Excel #NULL!)
or `??`; Korean free text did not survive the cp1254 export and is a run of `?`, so a chief complaint
containing `?` is unreadable and treated as not recorded. Codes, checked against the 1,267 rows:

    Sex           1 female, 2 male (all pregnancy/vaginal diagnoses are 1, all prostate ones 2)
    Arrival mode  1 walking, 2 public ambulance, 3 private vehicle, 4 private ambulance, 5-7 other
    Injury        1 not an injury, 2 injury (lacerations, open wounds, eye trauma are 2)
    Mental        1 alert, 2 verbal response, 3 pain response, 4 unresponsive (all 13 are KTAS 1)
    Pain          1 pain, 0 none; NRS_pain 1-10 is `#BOŞ!` whenever Pain is 0 (and on 3 pain rows)
    SBP, DBP, HR, RR, BT (body temperature °C), Saturation (SpO2 %, never recorded by Group 1, the local ED)
    KTAS_expert   the label, 1-5 on every row (26/220/487/459/75); KTAS_RN is the triage nurse's level

Only those triage columns reach the case text. Diagnosis in ED, Disposition, Length of stay, KTAS_RN,
Error_group, mistriage, KTAS duration, patients per hour and Group are never read into it. Age is 16-96
in this file: there are no paediatric rows. Note that SpO2 being "not recorded" coincides with Group 1.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from r2d.checks.rules import KTAS_LABEL_NAMES, TriageFacts, format_value, write_rationale
from r2d.data import Example, iter_jsonl, load_examples, require_rationales
from r2d.errors import DatasetSchemaError, InvalidCaseError

logger = logging.getLogger(__name__)

__all__ = [
    "KTAS_LABEL_NAMES",
    "KTAS_LABELS",
    "KTAS_TASK",
    "ktas_meta",
    "KTAS_TRIAGE_COLUMNS",
    "KTAS_POST_TRIAGE_COLUMNS",
    "ktas_case_text",
    "clean_chief_complaint",
    "load_ktas",
    "load_ktas_nurse_labels",
    "load_pubmedqa",
    "load_medreason",
    "load_medmcqa",
    "strip_answer_prefix",
]

KTAS_TASK = "ktas-triage"
KTAS_LABELS = tuple(KTAS_LABEL_NAMES)  # "1" (resuscitation) ... "5" (non-urgent)
KTAS_TRIAGE_COLUMNS = (
    "Sex",
    "Age",
    "Arrival mode",
    "Injury",
    "Chief_complain",
    "Mental",
    "Pain",
    "NRS_pain",
    "SBP",
    "DBP",
    "HR",
    "RR",
    "BT",
    "Saturation",
)
# known only after triage (or about the site / the nurse): never part of a case text
KTAS_POST_TRIAGE_COLUMNS = (
    "Group",
    "Patients number per hour",
    "KTAS_RN",
    "Diagnosis in ED",
    "Disposition",
    "Error_group",
    "Length of stay_min",
    "KTAS duration_min",
    "mistriage",
)
_KTAS_MISSING = {"", "#BOŞ!"}
_SEX = {"1": "female", "2": "male"}
_ARRIVAL = {
    "1": "walking",
    "2": "public ambulance",
    "3": "private vehicle",
    "4": "private ambulance",
    "5": "other",
    "6": "other",
    "7": "other",
}
_INJURY = {"1": False, "2": True}
_MENTAL = {"1": "alert", "2": "verbal", "3": "pain", "4": "unresponsive"}
_PAIN = {"0": False, "1": True}
_VITAL_COLUMNS = {
    "sbp": "SBP",
    "dbp": "DBP",
    "heart_rate": "HR",
    "resp_rate": "RR",
    "temperature": "BT",
    "spo2": "Saturation",
}


def ktas_meta() -> dict[str, Any]:
    """What a KTAS model and its data manifest record about the labels (task, ordinal, label_names): a new,
    JSON-ready dict each call, for `ModelMeta(**...)`-style keyword arguments."""
    return {"task": KTAS_TASK, "ordinal": True, "label_names": dict(KTAS_LABEL_NAMES)}


def _require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DatasetSchemaError(f"{what} file {p} does not exist; pass the path to the downloaded file")
    return p


# --- KTAS: cells -> TriageFacts -> case text ------------------------------------------------------


def _cell(row: dict[str, str], column: str) -> str | None:
    value = row[column].strip()
    if value in _KTAS_MISSING or set(value) <= {"?", " "}:
        return None
    return value


def _code(row: dict[str, str], column: str, codes: dict[str, Any], where: str) -> Any:
    value = _cell(row, column)
    if value is None:
        return None
    if value not in codes:
        raise DatasetSchemaError(f"{where}: {column} code {value!r} is not one of {', '.join(codes)}")
    return codes[value]


def _number(row: dict[str, str], column: str, where: str) -> float | None:
    value = _cell(row, column)
    if value is None:
        return None
    try:
        return float(value.replace(",", "."))
    except ValueError as e:
        raise DatasetSchemaError(f"{where}: {column} {value!r} is not a number") from e


def _integer(row: dict[str, str], column: str, where: str) -> int | None:
    value = _number(row, column, where)
    if value is not None and value % 1:
        raise DatasetSchemaError(f"{where}: {column} {value:g} is not a whole number")
    return None if value is None else int(value)


def clean_chief_complaint(text: str | None) -> str | None:
    """Tidy a recorded chief complaint; None when absent or unreadable (lost characters shown as '?').

    Lower-cases words (acronyms such as RUQ, LOC stay), drops SNOMED tags like '(finding)', collapses
    spaces and trailing full stops, so the same complaint always reads the same way.
    """
    if text is None or "?" in text:
        return None
    text = re.sub(r"\s*\((finding|disorder)\)", "", text)
    text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip()
    if not text:
        return None
    words = text.split(" ")
    shouting = len(words) > 1 and text.upper() == text
    return " ".join(w if (len(w) > 1 and w.isupper() and not shouting) else w.lower() for w in words)


def _ktas_facts(row: dict[str, str], where: str) -> TriageFacts:
    vitals = {name: _number(row, column, where) for name, column in _VITAL_COLUMNS.items()}
    try:
        return TriageFacts(
            age=_integer(row, "Age", where),
            sex=_code(row, "Sex", _SEX, where),
            arrival=_code(row, "Arrival mode", _ARRIVAL, where),
            injury=_code(row, "Injury", _INJURY, where),
            chief_complaint=clean_chief_complaint(_cell(row, "Chief_complain")),
            mental=_code(row, "Mental", _MENTAL, where),
            pain=_code(row, "Pain", _PAIN, where),
            pain_score=_integer(row, "NRS_pain", where),
            **vitals,
        )
    except InvalidCaseError as e:
        raise DatasetSchemaError(f"{where}: {e}") from e


def _who(facts: TriageFacts) -> str:
    if facts.sex is None:
        noun = "patient"
    elif facts.is_paediatric:
        noun = "girl" if facts.sex == "female" else "boy"
    else:
        noun = "woman" if facts.sex == "female" else "man"
    return f"{facts.age}-year-old {noun}" if facts.age is not None else f"{noun.capitalize()}, age not recorded"


def _arrival_sentence(facts: TriageFacts) -> str:
    arrival = {None: "arrival not recorded", "walking": "walked in", "other": "arrived by other transport"}.get(
        facts.arrival, f"arrived by {facts.arrival}"
    )
    if facts.injury is None:
        return f"{_who(facts)}, {arrival}, injury not recorded."
    if facts.injury:
        return f"{_who(facts)}, {arrival} with an injury."
    return f"{_who(facts)}, {arrival}, not an injury."


def _pain_sentence(facts: TriageFacts) -> str:
    if facts.pain_score is not None:
        return f"Pain score {facts.pain_score}/10." if facts.pain_score else "No pain."
    return {None: "Pain not recorded.", True: "Pain present, score not recorded.", False: "No pain."}[facts.pain]


def _vitals_sentence(facts: TriageFacts) -> str:
    if facts.sbp is not None and facts.dbp is not None:
        bp = f"blood pressure {facts.sbp:g}/{format_value('dbp', facts.dbp)}"
    elif facts.sbp is not None or facts.dbp is not None:
        which, value = ("systolic", "sbp") if facts.sbp is not None else ("diastolic", "dbp")
        bp = f"{which} blood pressure {format_value(value, getattr(facts, value))}"
    else:
        bp = None
    items = {"blood pressure": bp}
    for vital, name in (
        ("heart_rate", "heart rate"),
        ("resp_rate", "respiratory rate"),
        ("temperature", "temperature"),
        ("spo2", "SpO2"),
    ):
        value = getattr(facts, vital)
        items[name] = None if value is None else f"{name} {format_value(vital, value)}"
    if all(v is None for v in items.values()):
        return "Vital signs not recorded."
    text = ", ".join(v if v is not None else f"{k} not recorded" for k, v in items.items())
    return text[0].upper() + text[1:] + "."


def ktas_case_text(facts: TriageFacts) -> str:
    """The case narrative the model reads, from triage facts only; missing facts say 'not recorded'.

    e.g. "71-year-old man, arrived by private vehicle with an injury. Chief complaint: right ocular pain.
    Mental status: alert. Pain score 2/10. Blood pressure 160/100 mmHg, heart rate 84/min, ..."
    """
    complaint = (
        f"Chief complaint: {facts.chief_complaint}." if facts.chief_complaint else "Chief complaint not recorded."
    )
    mental = {None: "not recorded", "verbal": "responds to voice", "pain": "responds to pain"}.get(
        facts.mental, facts.mental
    )
    return " ".join(
        [
            _arrival_sentence(facts),
            complaint,
            f"Mental status: {mental}.",
            _pain_sentence(facts),
            _vitals_sentence(facts),
        ]
    )


# --- KTAS: the file -----------------------------------------------------------------------------


def _ktas_rows(path: str | Path, encoding: str, needed: tuple[str, ...]) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Yield (data row number, "file:line", row) with every `needed` column present. Raises DatasetSchemaError."""
    p = _require_file(path, "KTAS")
    try:
        with p.open(encoding=encoding, newline="") as f:
            reader = csv.reader(f, delimiter=";")
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in needed if c not in header]
            if missing:
                raise DatasetSchemaError(f"{p}:1: header lacks column(s) {', '.join(missing)}; is this ktas/data.csv?")
            for number, cells in enumerate(reader, start=1):
                where = f"{p}:{reader.line_num}"
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise DatasetSchemaError(f"{where}: {len(cells)} cells, the header has {len(header)}")
                yield number, where, dict(zip(header, cells))
    except UnicodeDecodeError as e:
        raise DatasetSchemaError(f"{p}: not {encoding} text ({e.reason} at byte {e.start})") from e


def _ktas_level(row: dict[str, str], column: str, where: str) -> str:
    value = row[column].strip()
    if value not in KTAS_LABEL_NAMES:
        raise DatasetSchemaError(f"{where}: {column} {value!r} is not a KTAS level 1-5")
    return value


def load_ktas(path: str | Path, encoding: str = "cp1254") -> list[Example]:
    """KTAS rows as Examples: templated triage narrative, label = KTAS_expert, rationale from r2d.checks.rules.

    example_id is "ktas-<n>" for the n-th data row (file line n+1). Raises DatasetSchemaError for a
    missing file, a missing column, an unknown code or a KTAS_expert outside 1-5 (with file:line).
    """
    examples = []
    for number, where, row in _ktas_rows(path, encoding, KTAS_TRIAGE_COLUMNS + ("KTAS_expert",)):
        label = _ktas_level(row, "KTAS_expert", where)
        facts = _ktas_facts(row, where)
        examples.append(Example(ktas_case_text(facts), label, write_rationale(facts), "rules", f"ktas-{number}"))
    if not examples:
        raise DatasetSchemaError(f"{path}: no data rows")
    logger.info("read %d KTAS rows from %s", len(examples), path)
    return examples


def load_ktas_nurse_labels(path: str | Path, encoding: str = "cp1254") -> dict[str, str]:
    """example_id -> the triage nurse's level (KTAS_RN), to compare nurses with the expert label.

    Raises DatasetSchemaError as load_ktas does.
    """
    return {
        f"ktas-{number}": _ktas_level(row, "KTAS_RN", where)
        for number, where, row in _ktas_rows(path, encoding, ("KTAS_RN",))
    }


# --- PubMedQA -----------------------------------------------------------------------------------

_PUBMEDQA_LABELS = ("yes", "no", "maybe")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetSchemaError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


def _pubmedqa_example(pmid: str, item: Any, where: str) -> Example:
    if not isinstance(item, dict):
        raise DatasetSchemaError(f"{where}: PMID {pmid} is not an object")
    missing = [k for k in ("QUESTION", "CONTEXTS", "final_decision", "LONG_ANSWER") if not item.get(k)]
    if missing:
        raise DatasetSchemaError(f"{where}: PMID {pmid} lacks {', '.join(missing)}")
    if item["final_decision"] not in _PUBMEDQA_LABELS:
        raise DatasetSchemaError(
            f"{where}: PMID {pmid} final_decision {item['final_decision']!r} "
            f"is not one of {', '.join(_PUBMEDQA_LABELS)}"
        )
    contexts = item["CONTEXTS"]
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise DatasetSchemaError(f"{where}: PMID {pmid} CONTEXTS must be a list of strings")
    case_text = f"{item['QUESTION'].strip()} Context: {' '.join(c.strip() for c in contexts)}"
    return Example(case_text, item["final_decision"], item["LONG_ANSWER"].strip(), "author", pmid)


def load_pubmedqa(path_dir: str | Path) -> dict[str, list[Example]]:
    """PubMedQA PQA-L: {"train": 500, "test": 500} Examples; the test PMIDs are test_ground_truth.json's.

    Case text = question + "Context:" + the joined contexts; label = final_decision; rationale =
    LONG_ANSWER (source "author"); id = PMID. Raises DatasetSchemaError for a missing file, a malformed
    item or a test label that disagrees with ori_pqal.json.
    """
    d = Path(path_dir)
    items_path = _require_file(d / "ori_pqal.json", "PubMedQA")
    truth_path = _require_file(d / "test_ground_truth.json", "PubMedQA test split")
    items, truth = _read_json(items_path), _read_json(truth_path)
    if not isinstance(items, dict) or not isinstance(truth, dict):
        raise DatasetSchemaError(f"{d}: ori_pqal.json and test_ground_truth.json must map PMID -> item")
    unknown = sorted(set(truth) - set(items))
    if unknown:
        raise DatasetSchemaError(f"{truth_path}: {len(unknown)} test PMID(s) not in ori_pqal.json (first {unknown[0]})")
    splits: dict[str, list[Example]] = {"train": [], "test": []}
    for pmid, item in items.items():
        example = _pubmedqa_example(pmid, item, str(items_path))
        if pmid in truth and truth[pmid] != example.label:
            raise DatasetSchemaError(
                f"{truth_path}: PMID {pmid} is {truth[pmid]!r} here but {example.label!r} in ori_pqal.json"
            )
        splits["test" if pmid in truth else "train"].append(example)
    return splits


# --- MedReason (Reason2Decide-C processing) ------------------------------------------------------


def load_medreason(path: str | Path) -> list[Example]:
    """MedReason val.jsonl or test.csv (question/label/rationale) as Examples with rationale_source "llm".

    The rationales are LLM-written; about 69% mask the answer as the literal "[LABEL]". The text is kept
    as is. ids are "medreason-<file stem>-<row>". Raises DatasetSchemaError for a missing file, a
    malformed row (file:line) or an empty rationale.
    """
    p = _require_file(path, "MedReason")
    examples = [
        replace(e, rationale_source="llm", example_id=e.example_id or f"medreason-{p.stem}-{i}")
        for i, e in enumerate(load_examples(p), start=1)
    ]
    require_rationales(examples, str(p))
    return examples


# --- MedMCQA ------------------------------------------------------------------------------------

_OPTION_KEYS = ("opa", "opb", "opc", "opd")
# "Ans: A.", "Answer- b.", "Ans. is 'd' i.e.,", "Ans.B", "Option A-": the marker word, then the letter
_ANSWER_WORD = re.compile(r"^\s*(?:ans(?:wer)?\b[\s\-.:]*(?:is\b\s*)?|option\s+(?=[a-d]\b))", re.IGNORECASE)
_ANSWER_LETTER = re.compile(
    r"""^[('"]?([a-dA-D])[)'"]?(?:(?=[^A-Za-z])|(?<=[A-D])(?=[A-Z])|$)"""
    r"""(?:\s*i\.?\s*e\.?,?)?[\s\-.:)]*"""
)
_LEADING_REF = re.compile(r"^\(\s*ref\b[^)]*\)[\s.:]*", re.IGNORECASE)
_INVISIBLE = re.compile("[\u200b\ufeff]")


def strip_answer_prefix(explanation: str, answer: str) -> str:
    """Remove a leading "Ans: A." style marker, the answer text it restates and a "(Ref ...)" citation.

    Also turns no-break spaces into spaces and drops zero-width ones. Text without a marker is kept.
    """
    text = _INVISIBLE.sub("", explanation.replace("\xa0", " "))
    match = _ANSWER_WORD.match(text)
    if match:
        text = text[match.end() :]
        letter = _ANSWER_LETTER.match(text)
        if letter:
            text = text[letter.end() :]
        if answer and text.lower().startswith(answer.lower()):
            text = text[len(answer) :]
        text = text.lstrip(" \t\n-.:;,)")
    return _LEADING_REF.sub("", text.strip()).strip()


def _medmcqa_example(row: Any, where: str) -> Example | None:
    if not isinstance(row, dict):
        raise DatasetSchemaError(f"{where}: expected an object")
    question, cop = row.get("question"), row.get("cop")
    options = [row.get(k) for k in _OPTION_KEYS]
    if not isinstance(question, str) or not question.strip():
        raise DatasetSchemaError(f"{where}: question is missing or empty")
    if not all(isinstance(o, str) for o in options):
        raise DatasetSchemaError(f"{where}: options {', '.join(_OPTION_KEYS)} must all be text")
    if cop not in (1, 2, 3, 4):
        raise DatasetSchemaError(f"{where}: cop {cop!r} must be 1-4 (1 = opa)")
    answer = options[cop - 1].strip()
    explanation = strip_answer_prefix(row.get("exp") or "", answer)
    if not explanation or not answer:
        return None
    choices = "\n".join(f"{letter}. {o.strip()}" for letter, o in zip("ABCD", options))
    return Example(
        f"{question.strip()} Answer Choices:\n{choices}", answer, explanation, "author", str(row.get("id") or where)
    )


def load_medmcqa(path: str | Path) -> list[Example]:
    """MedMCQA (JSON lines): question + options as case text, label = the correct option's text.

    Only rows whose `exp` is non-empty after stripping its "Ans-a." prefix are kept (rationale source
    "author"). Raises DatasetSchemaError for a missing file or a malformed row (file:line).
    """
    p = _require_file(path, "MedMCQA")
    examples, skipped = [], 0
    for where, row in iter_jsonl(p):
        example = _medmcqa_example(row, where)
        if example is None:
            skipped += 1
        else:
            examples.append(example)
    if not examples:
        raise DatasetSchemaError(f"{p}: no row has an explanation")
    logger.info("read %d MedMCQA rows from %s (%d without an explanation skipped)", len(examples), p, skipped)
    return examples

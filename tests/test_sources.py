"""r2d.sources: the public-data adapters on the real files, and on small broken copies written in tmp_path."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from r2d.checks.rules import TriageFacts
from r2d.data import label_counts
from r2d.errors import DatasetSchemaError
from r2d.sources import (
    KTAS_LABEL_NAMES,
    KTAS_POST_TRIAGE_COLUMNS,
    clean_chief_complaint,
    ktas_case_text,
    load_ktas,
    load_ktas_nurse_labels,
    load_medmcqa,
    load_medreason,
    load_pubmedqa,
    strip_answer_prefix,
)

KTAS_HEADER = (
    "Group;Sex;Age;Patients number per hour;Arrival mode;Injury;Chief_complain;Mental;Pain;NRS_pain;SBP;DBP;"
    "HR;RR;BT;Saturation;KTAS_RN;Diagnosis in ED;Disposition;KTAS_expert;Error_group;Length of stay_min;"
    "KTAS duration_min;mistriage"
)
GOOD_ROW = "2;1;54;6;4;1;fever;1;1;3;140;90;94;20;38,1;98;3;Fever, unspecified;2;4;1;9246;2,00;1"


def write_ktas(path: Path, rows: list[str], header: str = KTAS_HEADER) -> Path:
    """A KTAS-format file: ;-separated, CRLF, cp1254, like the published one."""
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("cp1254"))
    return path


def read_raw_ktas(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="cp1254", newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


@pytest.fixture(scope="module")
def ktas_path(shared_data) -> Path:
    return shared_data / "ktas" / "data.csv"


@pytest.fixture(scope="module")
def ktas(ktas_path):
    return load_ktas(ktas_path)


# --- KTAS on the real file -----------------------------------------------------------------------


@pytest.mark.shared_data
def test_ktas_counts_labels_and_ids(ktas):
    assert len(ktas) == 1267
    assert label_counts(ktas) == {"1": 26, "2": 220, "3": 487, "4": 459, "5": 75}
    assert [e.example_id for e in ktas] == [f"ktas-{i}" for i in range(1, 1268)]
    assert {e.rationale_source for e in ktas} == {"rules"}
    for e in ktas:  # the rule rationale restates the facts and never names the gold level
        assert "KTAS" not in e.rationale and KTAS_LABEL_NAMES[e.label].lower() not in e.rationale.lower()


@pytest.mark.shared_data
def test_ktas_case_texts_are_compact_and_clean(ktas):
    for e in ktas:
        assert 15 <= len(e.case_text.split()) <= 80
        for junk in ("?", "#BO", "None", "nan", "Å", "Ã", "  "):
            assert junk not in e.case_text, (e.example_id, e.case_text)


@pytest.mark.shared_data
def test_no_post_triage_text_in_ktas_cases(ktas, ktas_path):
    rows = read_raw_ktas(ktas_path)
    checked = 0
    for row, e in zip(rows, ktas, strict=True):
        diagnosis = row["Diagnosis in ED"].strip().lower()
        # a diagnosis may repeat the complaint itself ("fever"); only text not in the complaint can leak
        if len(diagnosis) > 6 and diagnosis not in row["Chief_complain"].lower():
            assert diagnosis not in e.case_text.lower(), (e.example_id, diagnosis)
            checked += 1
    assert checked > 1000


@pytest.mark.shared_data
def test_post_triage_columns_do_not_change_the_case_text(ktas_path, tmp_path):
    rows = read_raw_ktas(ktas_path)[:60]
    scrambled = []
    for i, row in enumerate(rows):
        other = rows[(i + 7) % len(rows)]  # another patient's outcome, nurse level, site...
        scrambled.append({**row, **{c: other[c] for c in KTAS_POST_TRIAGE_COLUMNS}})
    header = list(rows[0])
    lines = [";".join(r[c] for c in header) for r in scrambled]
    original = [";".join(r[c] for c in header) for r in rows]
    a = load_ktas(write_ktas(tmp_path / "a.csv", original, ";".join(header)))
    b = load_ktas(write_ktas(tmp_path / "b.csv", lines, ";".join(header)))
    assert [e.case_text for e in a] == [e.case_text for e in b]
    assert [e.rationale for e in a] == [e.rationale for e in b]


@pytest.mark.shared_data
def test_ktas_missing_values_read_as_not_recorded(ktas, ktas_path):
    rows = read_raw_ktas(ktas_path)
    assert any(r["NRS_pain"] == "#BOŞ!" for r in rows)  # cp1254 decoded: Ş is 0xDE there
    for row, e in zip(rows, ktas):
        if row["Saturation"].strip() in ("", "??"):
            assert "SpO2 not recorded" in e.case_text or "Vital signs not recorded." in e.case_text
        if row["Pain"] == "0":
            assert "No pain." in e.case_text
        if set(row["Chief_complain"]) <= {"?", " "}:
            assert "Chief complaint not recorded." in e.case_text


@pytest.mark.shared_data
def test_ktas_nurse_labels(ktas, ktas_path):
    nurse = load_ktas_nurse_labels(ktas_path)
    assert set(nurse) == {e.example_id for e in ktas}
    assert Counter(nurse.values()) == {"1": 18, "2": 214, "3": 447, "4": 501, "5": 87}
    agree = sum(nurse[e.example_id] == e.label for e in ktas)
    assert 0 < agree < len(ktas)


# --- KTAS on small files --------------------------------------------------------------------------


def test_ktas_small_file_decodes_cp1254_and_decimal_commas(tmp_path):
    missing_row = "1;2;30;3;1;2;baş ağrısı;1;0;#BOŞ!;??;??;??;??;??;;2;x;1;5;0;1;1;0"
    path = write_ktas(tmp_path / "k.csv", [GOOD_ROW, missing_row])
    first, second = load_ktas(path)
    assert "temperature 38.1 °C" in first.case_text and first.label == "4"
    assert "Chief complaint: baş ağrısı." in second.case_text
    assert "Vital signs not recorded." in second.case_text and "No pain." in second.case_text
    assert second.example_id == "ktas-2"


@pytest.mark.parametrize(
    "bad_row, message",
    [
        (GOOD_ROW.replace(";4;1;9246", ";6;1;9246"), "KTAS_expert '6'"),
        (GOOD_ROW.replace(";4;1;9246", ";??;1;9246"), "KTAS_expert '\\?\\?'"),
        (GOOD_ROW.replace(";4;1;9246", ";;1;9246"), "KTAS_expert ''"),
        (GOOD_ROW.replace("2;1;54", "2;3;54", 1), "Sex code '3'"),
        (GOOD_ROW.replace(";140;90;", ";abc;90;"), "SBP 'abc' is not a number"),
        (GOOD_ROW.replace(";1;1;3;140", ";1;1;13;140"), "pain_score must be 0-10"),
        (GOOD_ROW + ";extra", "25 cells, the header has 24"),
    ],
)
def test_ktas_bad_rows_name_file_and_line(tmp_path, bad_row, message):
    path = write_ktas(tmp_path / "bad.csv", [GOOD_ROW, bad_row])
    with pytest.raises(DatasetSchemaError, match=f"bad.csv:3: .*{message}"):
        load_ktas(path)


def test_ktas_nurse_label_bad_row(tmp_path):
    path = write_ktas(tmp_path / "bad.csv", [GOOD_ROW.replace("98;3;Fever", "98;0;Fever")])
    with pytest.raises(DatasetSchemaError, match="bad.csv:2: KTAS_RN '0'"):
        load_ktas_nurse_labels(path)


def test_ktas_file_errors(tmp_path):
    with pytest.raises(DatasetSchemaError, match="does not exist"):
        load_ktas(tmp_path / "missing.csv")
    with pytest.raises(DatasetSchemaError, match=":1: header lacks column.*KTAS_expert"):
        load_ktas(write_ktas(tmp_path / "h.csv", [GOOD_ROW], KTAS_HEADER.replace("KTAS_expert", "KTAS")))
    (tmp_path / "bytes.csv").write_bytes(KTAS_HEADER.encode() + b"\r\n\x81\x8d;1\r\n")
    with pytest.raises(DatasetSchemaError, match="not cp1254 text"):
        load_ktas(tmp_path / "bytes.csv")
    with pytest.raises(DatasetSchemaError, match="no data rows"):
        load_ktas(write_ktas(tmp_path / "empty.csv", []))


def test_ktas_case_text_template():
    facts = TriageFacts(
        age=71,
        sex="male",
        arrival="private vehicle",
        injury=True,
        chief_complaint="right ocular pain",
        mental="alert",
        pain=True,
        pain_score=2,
        sbp=160,
        dbp=100,
        heart_rate=84,
        resp_rate=18,
        temperature=36.6,
        spo2=100,
    )
    assert ktas_case_text(facts) == (
        "71-year-old man, arrived by private vehicle with an injury. Chief complaint: right ocular pain. "
        "Mental status: alert. Pain score 2/10. Blood pressure 160/100 mmHg, heart rate 84/min, "
        "respiratory rate 18/min, temperature 36.6 °C, SpO2 100%."
    )
    empty = ktas_case_text(TriageFacts())
    assert "None" not in empty and empty.count("not recorded") == 7
    assert ktas_case_text(TriageFacts(age=6, sex="female", sbp=100)).startswith("6-year-old girl")


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("??", None),
        ("??? ??", None),
        ("Pain, ?nus", None),
        ("  ", None),
        (None, None),
        ("Abdominal pain (finding)", "abdominal pain"),
        ("LOC - Loss of consciousness", "LOC - loss of consciousness"),
        ("VOIDING PAIN", "voiding pain"),
        ("finger lac.", "finger lac"),
        ("For  IV injection", "for IV injection"),
    ],
)
def test_clean_chief_complaint(raw, clean):
    assert clean_chief_complaint(raw) == clean


# --- PubMedQA ------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_pubmedqa_official_split(shared_data):
    splits = load_pubmedqa(shared_data / "pubmedqa")
    assert {k: len(v) for k, v in splits.items()} == {"train": 500, "test": 500}
    truth = json.loads((shared_data / "pubmedqa" / "test_ground_truth.json").read_text())
    assert {e.example_id for e in splits["test"]} == set(truth)
    assert not {e.example_id for e in splits["train"]} & set(truth)
    assert label_counts(splits["train"] + splits["test"]) == {"maybe": 110, "no": 338, "yes": 552}
    for e in splits["test"][:20]:
        assert e.rationale and e.rationale_source == "author" and " Context: " in e.case_text


def write_pubmedqa(d: Path, items: dict, truth: dict) -> Path:
    d.mkdir()
    (d / "ori_pqal.json").write_text(json.dumps(items))
    (d / "test_ground_truth.json").write_text(json.dumps(truth))
    return d


ITEM = {
    "QUESTION": "Does it work?",
    "CONTEXTS": ["It was tried.", "It worked."],
    "final_decision": "yes",
    "LONG_ANSWER": "It works.",
}


def test_pubmedqa_errors(tmp_path):
    with pytest.raises(DatasetSchemaError, match="does not exist"):
        load_pubmedqa(tmp_path / "nowhere")
    d = write_pubmedqa(tmp_path / "a", {"1": ITEM, "2": ITEM}, {"2": "no"})
    with pytest.raises(DatasetSchemaError, match="PMID 2 is 'no' here but 'yes'"):
        load_pubmedqa(d)
    d = write_pubmedqa(tmp_path / "b", {"1": {**ITEM, "LONG_ANSWER": ""}}, {})
    with pytest.raises(DatasetSchemaError, match="PMID 1 lacks LONG_ANSWER"):
        load_pubmedqa(d)
    d = write_pubmedqa(tmp_path / "c", {"1": ITEM}, {"9": "yes"})
    with pytest.raises(DatasetSchemaError, match="not in ori_pqal.json"):
        load_pubmedqa(d)
    splits = load_pubmedqa(write_pubmedqa(tmp_path / "d", {"1": ITEM, "2": ITEM}, {"2": "yes"}))
    assert splits["train"][0].case_text == "Does it work? Context: It was tried. It worked."


# --- MedReason / MedMCQA -------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["val.jsonl", "test.csv"])
def test_medreason(shared_data, name):
    examples = load_medreason(shared_data / "medreason_r2dc" / name)
    assert len(examples) == 1504
    assert {e.rationale_source for e in examples} == {"llm"}
    assert len({e.example_id for e in examples}) == 1504
    masked = sum("[LABEL]" in e.rationale for e in examples) / len(examples)
    assert 0.6 < masked < 0.75  # kept as published


def test_medreason_bad_row(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text('{"question": "q", "label": "a", "rationale": "r"}\n{"question": "q", "rationale": "r"}\n')
    with pytest.raises(DatasetSchemaError, match="val.jsonl:2: column 'label'"):
        load_medreason(path)
    path.write_text('{"question": "q", "label": "a", "rationale": ""}\n')
    with pytest.raises(DatasetSchemaError, match="no rationale"):
        load_medreason(path)


@pytest.mark.shared_data
def test_medmcqa(shared_data):
    examples = load_medmcqa(shared_data / "medmcqa" / "dev.json")
    assert 2100 < len(examples) <= 2206  # rows with a non-empty explanation
    for e in examples:
        assert e.rationale and not e.rationale.lower().startswith(("ans:", "ans.", "answer-"))
        assert f". {e.label}\n" in e.case_text + "\n" and e.rationale_source == "author"


def test_medmcqa_bad_rows(tmp_path):
    row = {
        "question": "Q?",
        "exp": "Ans: A. yes. Because.",
        "cop": 1,
        "opa": "yes",
        "opb": "no",
        "opc": "x",
        "opd": "y",
        "id": "m1",
    }
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "cop": 5}) + "\n")
    with pytest.raises(DatasetSchemaError, match="dev.json:2: cop 5"):
        load_medmcqa(path)
    path.write_text(json.dumps(row) + "\n{not json\n")
    with pytest.raises(DatasetSchemaError, match="dev.json:2: not valid JSON"):
        load_medmcqa(path)
    path.write_text(json.dumps(row) + "\n")
    (example,) = load_medmcqa(path)
    assert (example.label, example.rationale) == ("yes", "Because.")


@pytest.mark.parametrize(
    "exp, answer, expected",
    [
        ("Ans: A. Pupil dilationRef: x", "Pupil dilation", "Ref: x"),
        ("Ans. is 'd' i.e., hemangiosarcomaSmall cells", "Hemangiosarcoma", "Small cells"),
        ("Ans.BConcussion: It is common", "Concussion", "It is common"),
        ("Answer- C (Ref Harper 30/e)Because so", "none", "Because so"),
        ("Ans. All are true about digoxin", "x", "All are true about digoxin"),
        ("The answer is A, because", "x", "The answer is A, because"),
        ("Ans. A. Naloxone", "Naloxone", ""),
        ("Gold\xa0is ductile\u200b", "x", "Gold is ductile"),
    ],
)
def test_strip_answer_prefix(exp, answer, expected):
    assert strip_answer_prefix(exp, answer) == expected

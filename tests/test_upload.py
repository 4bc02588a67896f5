"""r2d.review.upload: case texts and ids from uploaded .csv/.jsonl files, sniffed separators, the column mapping
step, the raw KTAS file, and errors naming the file, the line and the cause."""

from __future__ import annotations

import json

import pytest

from r2d.errors import DatasetSchemaError
from r2d.review import upload


def test_load_cases_from_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text('{"question": "chest pain", "label": "2"}\n\n{"case_text": "sore throat"}\n')
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text('case,extra\n"fever, cough",1\nankle sprain,2\n')
    assert upload.load_cases(jsonl, 100, 1000) == ["chest pain", "sore throat"]
    assert upload.load_cases(csv_file, 100, 1000) == ["fever, cough", "ankle sprain"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("broken.csv", 'question\n"ok"\n"too","many"\n', r"broken.csv:3: the row has a different number of cells"),
        ("empty.csv", 'question\nfirst\n""\n', r"empty.csv:3: the case text \(question\) is empty"),
        ("nocol.csv", "text\nsomething\n", r"nocol.csv:1: no case text column .*the columns are text: choose"),
        ("bad.jsonl", '{"question": "ok"}\n{not json\n', r"bad.jsonl:2: not valid JSON"),
        ("list.jsonl", '["a list"]\n', r"list.jsonl:1: expected an object"),
        ("cases.txt", "chest pain\n", r"upload a .csv or .jsonl"),
        ("none.jsonl", "\n\n", r"none.jsonl: no cases"),
    ],
)
def test_bad_uploads_name_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetSchemaError, match=message):
        upload.load_cases(path, 100, 1000)


def test_huge_cases_and_too_many_rows_are_refused(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"question": "x" * 1_000_000}) + "\n")
    with pytest.raises(DatasetSchemaError, match=r"big.jsonl:1: the case text has 1,000,000 characters"):
        upload.load_cases(big, 100, 4000)
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"question": f"case {i}"}) + "\n" for i in range(11)))
    with pytest.raises(DatasetSchemaError, match="11 cases; the limit is 10"):
        upload.load_cases(many, 10, 4000)


def test_non_utf8_upload(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("question\nB\u00f6brek a\u011fr\u0131s\u0131\n".encode("cp1254"))
    with pytest.raises(DatasetSchemaError, match="not UTF-8"):
        upload.load_cases(path, 100, 1000)


def test_load_upload_keeps_ids(tmp_path):
    path = tmp_path / "up.csv"
    path.write_text("id,question\nK-1,chest pain\n,sore throat\n")
    assert upload.load_upload(path, 10, 100) == (["chest pain", "sore throat"], ["K-1", None])


@pytest.mark.parametrize(
    "content, message",
    [
        ('id,question\n1,"chest pain\n2,sore throat\n', r"cases.csv:2: not readable CSV.*quote is never closed"),
        ("id,question,question\n1,chest pain,sore throat\n", r"cases.csv:1: .*question more than once"),
        ("id,question\n" + "7" * 201 + ",chest pain\n", r"cases.csv:2: id has 201 characters; the limit is 200"),
        ("id,question\nA\x1b[31m,chest pain\n", r"cases.csv:2: id contains a control character \(U\+001B\)"),
        ("id,question\nA\u202e12,chest pain\n", r"cases.csv:2: id contains a text-direction control \(U\+202E\)"),
    ],
)
def test_an_upload_that_would_corrupt_silently_is_refused(tmp_path, content, message):
    """An unclosed quote merged two patients' notes; a duplicated column silently won; ids of any
    length or holding ESC/U+202E were stored, shown and exported."""
    path = tmp_path / "cases.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetSchemaError, match=message):
        upload.load_upload(path, max_rows=10, max_chars=4000)


@pytest.mark.parametrize(
    "content",
    [
        'id;question\nK-1;"chest pain, BP 88/50; HR 124"\nK-2;sore throat, walked in\n',
        "id\tquestion\nK-1\tchest pain, BP 88/50; HR 124\nK-2\tsore throat, walked in\n",
        "id|question\nK-1|chest pain, BP 88/50; HR 124\nK-2|sore throat, walked in\n",
        'id,question\nK-1,"chest pain, BP 88/50; HR 124"\nK-2,"sore throat, walked in"\n',
    ],
)
def test_the_cell_separator_is_sniffed(tmp_path, content):
    path = tmp_path / "cases.csv"
    path.write_text(content)
    assert upload.load_upload(path, 10, 1000) == (
        ["chest pain, BP 88/50; HR 124", "sore throat, walked in"],
        ["K-1", "K-2"],
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "question\nchest pain, BP 88/50\n",
            r"cases.csv:2: .*more cells than its 1 column\(s\), separated by commas; "
            r"a cell holding commas must be in double quotes",
        ),
        (
            "id;question\nK-1;chest pain;BP 88/50\n",
            r"cases.csv:2: .*more cells than its 2 column\(s\), separated by "
            r"semicolons",
        ),
    ],
)
def test_a_ragged_row_names_its_line_and_the_separator(tmp_path, content, message):
    path = tmp_path / "cases.csv"
    path.write_text(content)
    with pytest.raises(DatasetSchemaError, match=message):
        upload.load_upload(path, 10, 1000)


@pytest.mark.parametrize(
    "name, content",
    [
        ("notes.csv", "mrn;triage note;ward\nA-1;chest pain, BP 88/50;ED\nA-2;sore throat;ED\n"),
        (
            "notes.jsonl",
            '{"mrn": "A-1", "triage note": "chest pain, BP 88/50"}\n{"mrn": "A-2", "triage note": "sore throat"}\n',
        ),
    ],
)
def test_without_a_case_column_the_reviewer_chooses_one(tmp_path, name, content):
    """A file naming no case column was refused; the reviewer now picks the column (and the id's)."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(upload.CaseColumnNeeded, match=rf"{name}:1: no case text column") as needed:
        upload.load_upload(path, 10, 1000)
    assert needed.value.columns[:2] == ["mrn", "triage note"]
    assert upload.load_upload(path, 10, 1000, case_column="triage note", id_column="mrn") == (
        ["chest pain, BP 88/50", "sore throat"],
        ["A-1", "A-2"],
    )
    assert upload.load_upload(path, 10, 1000, case_column="triage note")[1] == [None, None]
    for chosen in ({"case_column": "notes"}, {"case_column": "triage note", "id_column": "MRN"}):
        with pytest.raises(DatasetSchemaError, match=rf"{name}:1: no column '(notes|MRN)'; the columns are mrn"):
            upload.load_upload(path, 10, 1000, **chosen)


@pytest.mark.shared_data
def test_the_raw_ktas_file_is_read_as_its_templated_cases(shared_data, ktas_examples):
    """The raw KTAS CSV (semicolons, Turkish code page) was refused with a message about quotes."""
    cases, ids = upload.load_upload(shared_data / "ktas" / "data.csv", 2000, 4000)
    assert cases == [e.case_text for e in ktas_examples] and ids == [e.example_id for e in ktas_examples]
    with pytest.raises(DatasetSchemaError, match=r"^data.csv: 1,267 cases; the limit is 1,000"):
        upload.load_upload(shared_data / "ktas" / "data.csv", 1000, 4000)


def test_a_broken_ktas_file_names_the_file_not_its_server_path(tmp_path):
    from r2d.sources import KTAS_TRIAGE_COLUMNS

    header = ";".join(KTAS_TRIAGE_COLUMNS + ("KTAS_expert",))
    path = tmp_path / "ktas.csv"
    path.write_text(header + "\n" + ";".join(["1"] * len(KTAS_TRIAGE_COLUMNS)) + ";9\n", encoding="cp1254")
    with pytest.raises(DatasetSchemaError, match=r"^ktas.csv:2: KTAS_expert '9' is not a KTAS level") as refused:
        upload.load_upload(path, 10, 4000)
    assert str(tmp_path) not in str(refused.value)

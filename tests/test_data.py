"""The on-disk schema: JSONL/CSV read and write, malformed rows rejected with file:line."""

from __future__ import annotations

import json

import pytest

from r2d.data import (
    Example,
    escape_csv_cell,
    label_counts,
    label_set,
    load_examples,
    require_rationales,
    stratified_split,
    write_examples,
)
from r2d.errors import DatasetSchemaError


def make_example(**overrides) -> Example:
    fields = dict(
        case_text="45-year-old, chest pain",
        label="2",
        rationale="Chest pain with tachycardia.",
        rationale_source="nurse",
        example_id="c1",
    )
    return Example(**{**fields, **overrides})


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_round_trip(tmp_path, suffix):
    examples = [
        make_example(),
        make_example(
            example_id="c2",
            case_text='line1\nline2, with "quotes"',
            label="5",
            rationale="",
            rationale_source="unknown",
        ),
    ]
    path = write_examples(tmp_path / f"d{suffix}", examples)
    assert load_examples(path) == examples


def test_csv_formula_injection_is_neutralised_and_reversible(tmp_path):
    nasty = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "'quoted"]
    assert escape_csv_cell("\tTAB") == "'\tTAB"
    examples = [make_example(example_id=str(i), rationale=r) for i, r in enumerate(nasty)]
    path = write_examples(tmp_path / "d.csv", examples)
    text = path.read_text(encoding="utf-8")
    for r in nasty:
        assert escape_csv_cell(r).startswith("'")
    assert "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text
    assert [e.rationale for e in load_examples(path)] == nasty


def test_jsonl_is_one_object_per_line_in_the_authors_schema(tmp_path):
    path = write_examples(tmp_path / "d.jsonl", [make_example()])
    row = json.loads(path.read_text().splitlines()[0])
    assert {"question", "label", "rationale", "rationale_source"} <= set(row)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "x", "label": ""}', "'label' is missing or empty"),
        ('{"label": "1"}', "'question' is missing or empty"),
        ('{"question": "x", "label": "1", "rationale_source": "robot"}', "rationale_source 'robot'"),
        ('{"question": 3, "label": "1"}', "'question' is missing or empty"),
        ('["question", "label"]', "expected an object"),
        ('{"question": "x", "label": ', "not valid JSON"),
    ],
)
def test_bad_jsonl_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "ok", "label": "1"}\n\n' + line + "\n")
    with pytest.raises(DatasetSchemaError) as err:
        load_examples(path)
    assert f"{path}:3" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    "body, where, message",
    [
        ("question,label\nok,1\nonly-one-cell\n", ":3", "fewer cells"),
        ("question,label\nok,1\na,b,c\n", ":3", "more cells"),
        ("question,rationale\nok,r\n", ":1", "header lacks column(s) label"),
        ("question,label\nok,1\n,2\n", ":3", "'question' is missing"),
    ],
)
def test_bad_csv_rows_name_file_and_line(tmp_path, body, where, message):
    path = tmp_path / "d.csv"
    path.write_text(body)
    with pytest.raises(DatasetSchemaError) as err:
        load_examples(path)
    assert f"{path}{where}" in str(err.value) and message in str(err.value)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(DatasetSchemaError, match="does not exist"):
        load_examples(tmp_path / "none.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetSchemaError, match="unknown data file type"):
        load_examples(tmp_path / "d.txt")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DatasetSchemaError, match="no rows"):
        load_examples(tmp_path / "e.jsonl")
    (tmp_path / "f.csv").write_bytes("question,label\nçay,1\n".encode("cp1254"))
    with pytest.raises(DatasetSchemaError, match="not UTF-8"):
        load_examples(tmp_path / "f.csv")


def test_label_set_orders_numbers_numerically():
    examples = [make_example(label=x) for x in ["10", "2", "1", "2"]]
    assert label_set(examples) == ["1", "2", "10"]
    assert label_counts(examples) == {"1": 1, "2": 2, "10": 1}
    assert label_set([make_example(label=x) for x in ["yes", "no", "maybe"]]) == ["maybe", "no", "yes"]


def test_require_rationales():
    require_rationales([make_example()], "train")
    with pytest.raises(DatasetSchemaError, match="1 example"):
        require_rationales([make_example(), make_example(rationale="")], "train")


def test_stratified_split_is_deterministic_disjoint_and_proportional():
    examples = [make_example(example_id=str(i), label=str(i % 3)) for i in range(300)]
    a = stratified_split(examples, [0.7, 0.1, 0.2], seed=1)
    b = stratified_split(examples, [0.7, 0.1, 0.2], seed=1)
    assert a == b
    ids = [e.example_id for part in a for e in part]
    assert sorted(ids) == sorted(e.example_id for e in examples)
    assert [len(p) for p in a] == [210, 30, 60]
    assert label_counts(a[1]) == {"0": 10, "1": 10, "2": 10}
    with pytest.raises(DatasetSchemaError):
        stratified_split(examples, [0.5, 0.2])


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = write_examples(tmp_path / "d.jsonl", [make_example()])
    before = path.read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("r2d.data.os.replace", crash)
    with pytest.raises(OSError):
        write_examples(path, [make_example(label="4")])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]

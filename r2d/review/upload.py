"""Batch uploads: the case texts (and ids) of an uploaded .csv or .jsonl file.

A CSV may separate its cells with commas, semicolons, tabs or vertical bars (sniffed: r2d.data.sniff_delimiter).
The case text is the `question`, `case_text` or `case` column, or the column the reviewer chooses when the file
names none of them (CaseColumnNeeded lists the columns to choose from). The raw public KTAS file (its own
header, semicolons, Turkish code page) is read as r2d.sources reads it: each row's templated case text, with
the row's "ktas-<n>" id. Every error names the file (never its server path) and line, and the cause.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from r2d.data import iter_csv, iter_jsonl, sniff_delimiter
from r2d.errors import DatasetSchemaError
from r2d.limits import MAX_ID_CHARS, text_problems
from r2d.sources import KTAS_TRIAGE_COLUMNS, load_ktas

# column names a case upload may use for the case text (the project schema's first, then plain names)
CASE_COLUMNS = ("question", "case_text", "case")
ID_COLUMN = "id"


class CaseColumnNeeded(DatasetSchemaError):
    """The upload names no case text column: the reviewer chooses one of `columns` (and maybe an id column)."""

    def __init__(self, message: str, columns: Sequence[str]) -> None:
        super().__init__(message)
        self.columns = list(columns)


def _case_from_row(row: Mapping[str, Any], where: str, chosen: str | None, max_chars: int) -> str:
    if not isinstance(row, Mapping):
        raise DatasetSchemaError(f"{where}: expected an object with a case text column")
    # a JSONL row may name its case column its own way; a chosen column is every row's
    column = chosen or next((c for c in CASE_COLUMNS if c in row), None)
    if column is None or column not in row:
        raise DatasetSchemaError(f"{where}: no case text column; use one of {', '.join(CASE_COLUMNS)}")
    text = row[column]
    if not isinstance(text, str) or not text.strip():
        raise DatasetSchemaError(f"{where}: the case text ({column}) is empty")
    if len(text) > max_chars:
        raise DatasetSchemaError(f"{where}: the case text has {len(text):,} characters; the limit is {max_chars:,}")
    return text.strip()


def _header(path: Path, delimiter: str) -> list[str]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        return [h.strip() for h in next(csv.reader(f, delimiter=delimiter), [])]


def _ktas_cases(path: Path) -> tuple[list[str], list[str | None]]:
    try:
        examples = load_ktas(path)
    except DatasetSchemaError as e:  # its messages name the path: the reviewer sees the file's name only
        raise DatasetSchemaError(str(e).replace(str(path), path.name)) from e
    return [e.case_text for e in examples], [e.example_id for e in examples]


def _case_rows(path: Path) -> list[tuple[str, Any]]:
    """(file:line, row) of every case in an upload, read by r2d.data's readers under the file's name only."""
    if path.suffix.lower() in (".jsonl", ".json"):
        return list(iter_jsonl(path, path.name))
    if path.suffix.lower() == ".csv":
        return list(iter_csv(path, path.name, delimiter=sniff_delimiter(path)))
    kind = path.suffix or "a file without extension"
    raise DatasetSchemaError(f"{path.name}: upload a .csv or .jsonl file, not {kind}")


def _check_column(rows: list[tuple[str, Any]], name: str, chosen: str | None) -> None:
    """A chosen column must be in the file's first row (a CSV's header); without one, that row must name a
    case text column. Raises CaseColumnNeeded listing the columns when it names none of CASE_COLUMNS."""
    where, first = rows[0]
    if not isinstance(first, Mapping):
        raise DatasetSchemaError(f"{where}: expected an object with a case text column")
    columns = [str(c) for c in first]
    if chosen:
        if chosen not in columns:
            raise DatasetSchemaError(f"{name}:1: no column {chosen!r}; the columns are {', '.join(columns)}")
        return
    if not any(c in columns for c in CASE_COLUMNS):
        where = where if name.lower().endswith((".jsonl", ".json")) else f"{name}:1"  # a CSV's header line
        raise CaseColumnNeeded(
            f"{where}: no case text column ({', '.join(CASE_COLUMNS)}); the columns are "
            f"{', '.join(columns) or 'none'}: choose the one that holds the case text",
            columns,
        )


def _ids(rows: list[tuple[str, Any]], column: str) -> list[str | None]:
    ids: list[str | None] = []
    for where, row in rows:
        value = row.get(column)
        source_id = None if value in (None, "") else str(value).strip() or None
        # an id is shown to reviewers and exported: one line of plain text, no direction controls, bounded
        problems = [] if source_id is None else text_problems("id", source_id, MAX_ID_CHARS, multiline=False)
        if problems:
            raise DatasetSchemaError(f"{where}: {problems[0]}")
        ids.append(source_id)
    return ids


def is_ktas_file(path: Path) -> bool:
    """Whether a .csv is the raw public KTAS file (its header holds every KTAS triage column)."""
    return path.suffix.lower() == ".csv" and set(KTAS_TRIAGE_COLUMNS) <= set(_header(path, sniff_delimiter(path)))


def _check_count(name: str, n_rows: int, max_rows: int) -> None:
    if not n_rows:
        raise DatasetSchemaError(f"{name}: no cases")
    if n_rows > max_rows:
        raise DatasetSchemaError(f"{name}: {n_rows:,} cases; the limit is {max_rows:,} per upload, split the file")


def load_upload(
    path: str | Path, max_rows: int, max_chars: int, case_column: str | None = None, id_column: str | None = None
) -> tuple[list[str], list[str | None]]:
    """Case texts and each one's id (None where it has none), from `case_column` and `id_column` when given,
    else from the named columns (or the raw KTAS file's own). Raises CaseColumnNeeded when no case column is
    named or given, and DatasetSchemaError naming file:line for a broken row, an empty or too long case, too
    many rows, or a column chosen that the file lacks."""
    p = Path(path)
    try:
        if not case_column and is_ktas_file(p):
            texts, ids = _ktas_cases(p)  # templated from coded fields: a few hundred characters each
            _check_count(p.name, len(texts), max_rows)
            return texts, ids
        rows = _case_rows(p)
    except UnicodeDecodeError as e:
        raise DatasetSchemaError(f"{p.name}: not UTF-8 text (byte {e.start}); re-save it as UTF-8") from e
    except csv.Error as e:
        raise DatasetSchemaError(f"{p.name}: not a readable CSV file ({e})") from e
    _check_count(p.name, len(rows), max_rows)
    _check_column(rows, p.name, case_column)
    texts = [_case_from_row(row, where, case_column, max_chars) for where, row in rows]
    if id_column:
        _check_column(rows, p.name, id_column)
    return texts, _ids(rows, id_column or ID_COLUMN)


def load_cases(path: str | Path, max_rows: int, max_chars: int) -> list[str]:
    """Case texts from an uploaded .csv/.jsonl (labels and rationales, if present, are ignored).

    Raises DatasetSchemaError naming file:line for a broken row, an empty or too long case, too many rows.
    """
    return load_upload(path, max_rows, max_chars)[0]

"""The on-disk schema and its loaders: the only place that knows the column name `question`.

A data file is JSONL or CSV with the columns of the authors' code, `question`, `label`, `rationale`,
plus `rationale_source` (who wrote the rationale) and an optional `id`. Rows that do not fit are
rejected with the file and line number, never skipped or patched: a silently dropped row is a
training set nobody asked for.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2d.errors import DatasetSchemaError

# Who wrote the rationale. nurse_post_processed = a model rationale reviewed and corrected by a nurse.
RATIONALE_SOURCES = ("llm", "nurse", "nurse_post_processed", "rules", "author", "unknown")
COLUMNS = ("id", "question", "label", "rationale", "rationale_source")
REQUIRED = ("question", "label")
# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


@dataclass(frozen=True)
class Example:
    """One labelled case: the unit of every training set, export and evaluation."""

    case_text: str
    label: str
    rationale: str = ""
    rationale_source: str = "unknown"
    example_id: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "id": self.example_id,
            "question": self.case_text,
            "label": self.label,
            "rationale": self.rationale,
            "rationale_source": self.rationale_source,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any], where: str = "row") -> Example:
        """Validate one on-disk row. Raises DatasetSchemaError naming `where` (file:line)."""
        if not isinstance(row, dict):
            raise DatasetSchemaError(
                f"{where}: expected an object with {', '.join(REQUIRED)}, got {type(row).__name__}"
            )
        for key in REQUIRED:
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DatasetSchemaError(f"{where}: column {key!r} is missing or empty")
        for key in ("rationale", "rationale_source", "id"):
            if row.get(key) is not None and not isinstance(row[key], (str, int)):
                raise DatasetSchemaError(f"{where}: column {key!r} must be text")
        source = str(row.get("rationale_source") or "unknown")
        if source not in RATIONALE_SOURCES:
            raise DatasetSchemaError(
                f"{where}: rationale_source {source!r} is not one of {', '.join(RATIONALE_SOURCES)}"
            )
        example_id = row.get("id")
        return cls(
            case_text=row["question"].strip(),
            label=row["label"].strip(),
            rationale=str(row.get("rationale") or "").strip(),
            rationale_source=source,
            example_id=None if example_id in (None, "") else str(example_id),
        )


# --- reading ------------------------------------------------------------------------------------


def iter_jsonl(path: Path, name: str | None = None) -> Iterator[tuple[str, Any]]:
    """(where, parsed row) for each non-blank line; where = "name:line" (name: the path unless given).

    Raises DatasetSchemaError on bad JSON.
    """
    name = str(path) if name is None else name
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield f"{name}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetSchemaError(f"{name}:{lineno}: not valid JSON ({e.msg})") from e


# the cell separators an uploaded CSV may use (spreadsheets write ";" where "," is the decimal mark, as in KTAS)
DELIMITERS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}
SNIFF_BYTES = 65536


def sniff_delimiter(path: Path) -> str:
    """The cell separator of a CSV file: csv.Sniffer's choice among DELIMITERS when the header line holds it,
    else the one the header line holds most, else a comma (a one-column file)."""
    with path.open("rb") as f:
        sample = f.read(SNIFF_BYTES).decode("utf-8-sig", errors="replace")  # the header is what matters
    header = sample.splitlines()[0] if sample.strip() else ""
    try:
        found = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:  # no separator consistent over the sample lines: a one-column file, or a ragged one
        found = ""
    if found and found in header:
        return found
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def iter_csv(
    path: Path, name: str | None = None, required: Sequence[str] = (), delimiter: str = ","
) -> Iterator[tuple[str, dict]]:
    """(where, row as read) for each CSV row; where = "name:line" (name: the path unless given).

    Raises DatasetSchemaError when the header lacks a `required` column or names one twice, a row's cells do
    not match the header, or a quote is never closed (strict parsing: an unclosed quote once merged two
    patients' notes into one case), naming the line.
    """
    name = str(path) if name is None else name
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, strict=True, delimiter=delimiter)
        ended = 0  # the line the last good row ended on: a broken row starts after it
        try:
            for where, row in _csv_rows(reader, name, required):
                ended = reader.line_num
                yield where, row
        except csv.Error as e:
            hint = "; a quote is never closed" if "end of data" in str(e) else ""
            raise DatasetSchemaError(f"{name}:{max(ended, 1) + 1}: not readable CSV ({e}){hint}") from e


def _csv_rows(reader: csv.DictReader, name: str, required: Sequence[str]) -> Iterator[tuple[str, dict]]:
    header = reader.fieldnames or []
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # DictReader keeps the last of them silently
        raise DatasetSchemaError(f"{name}:1: the header names column(s) {', '.join(twice)} more than once")
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetSchemaError(
            f"{name}:1: header lacks column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}"
        )
    separators = DELIMITERS.get(reader.reader.dialect.delimiter, repr(reader.reader.dialect.delimiter))
    for row in reader:
        # line_num is the physical line the row ended on (quoted cells may span lines)
        where = f"{name}:{reader.line_num}"
        if None in row or any(v is None for v in row.values()):
            extent = "more" if None in row else "fewer"
            raise DatasetSchemaError(
                f"{where}: the row has a different number of cells than the header "
                f"({extent} cells than its {len(header)} column(s), separated by {separators}; "
                f"a cell holding {separators} must be in double quotes)"
            )
        yield where, row


def _read_jsonl(path: Path) -> list[Example]:
    return [Example.from_dict(row, where) for where, row in iter_jsonl(path)]


def _unescape_cell(value: str | None) -> str | None:
    # undo escape_csv_cell: exactly one leading apostrophe was added in front of a formula start
    if value and value.startswith("'") and value[1:2] in _FORMULA_STARTS:
        return value[1:]
    return value


def _read_csv(path: Path) -> list[Example]:
    return [
        Example.from_dict({k: _unescape_cell(v) for k, v in row.items()}, where)
        for where, row in iter_csv(path, required=REQUIRED)
    ]


def load_examples(path: str | Path) -> list[Example]:
    """Read a .jsonl/.json (one object per line) or .csv data file.

    Raises DatasetSchemaError for a missing file, an unknown extension or any malformed row.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetSchemaError(f"data file {p} does not exist")
    try:
        if p.suffix.lower() in (".jsonl", ".json"):
            examples = _read_jsonl(p)
        elif p.suffix.lower() == ".csv":
            examples = _read_csv(p)
        else:
            raise DatasetSchemaError(f"{p}: unknown data file type {p.suffix!r}; use .jsonl or .csv")
    except UnicodeDecodeError as e:
        raise DatasetSchemaError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from e
    if not examples:
        raise DatasetSchemaError(f"{p}: no rows")
    return examples


# --- writing ------------------------------------------------------------------------------------


def escape_csv_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (=, +, -, @ ...) with a leading apostrophe; reversible on load."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _rows(examples: Iterable[Example]) -> list[dict[str, str | None]]:
    return [e.to_dict() for e in examples]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to path via a temporary file and os.replace: a crash never leaves half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; keep an existing file's mode, else the usual 0644
        os.chmod(tmp, p.stat().st_mode & 0o777 if p.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_examples(path: str | Path, examples: Sequence[Example]) -> Path:
    """Write examples as .jsonl or .csv (chosen by extension), atomically."""
    p = Path(path)
    if p.suffix.lower() in (".jsonl", ".json"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows(examples))
    elif p.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS)
        writer.writeheader()
        for row in _rows(examples):
            writer.writerow({k: escape_csv_cell(v or "") for k, v in row.items()})
        text = buf.getvalue()
    else:
        raise DatasetSchemaError(f"{p}: unknown data file type {p.suffix!r}; use .jsonl or .csv")
    return atomic_write_text(p, text)


# --- label sets and splits ---------------------------------------------------------------------


def _label_key(label: str) -> tuple[int, float | str]:
    # numbers in numeric order ("2" before "10"), then text in alphabetical order
    return (0, float(label)) if re.fullmatch(r"-?\d+(\.\d+)?", label) else (1, label)


def label_set(examples: Iterable[Example]) -> list[str]:
    """Sorted distinct labels (numeric labels in numeric order)."""
    return sorted({e.label for e in examples}, key=_label_key)


def require_rationales(examples: Sequence[Example], what: str) -> None:
    """Raise DatasetSchemaError if any example lacks the rationale a rationale task needs."""
    missing = [e.example_id or str(i) for i, e in enumerate(examples) if not e.rationale]
    if missing:
        raise DatasetSchemaError(
            f"{what}: {len(missing)} example(s) have no rationale (first: {missing[:5]}); "
            "rationale training needs one on every row"
        )


def stratified_split(examples: Sequence[Example], fractions: Sequence[float], seed: int = 0) -> list[list[Example]]:
    """Split into len(fractions) parts with each label spread in proportion. Deterministic per seed."""
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise DatasetSchemaError(f"split fractions must sum to 1, got {list(fractions)}")
    by_label: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_label[e.label].append(e)
    rng = random.Random(seed)
    parts: list[list[Example]] = [[] for _ in fractions]
    for label in label_set(examples):
        group = by_label[label][:]
        rng.shuffle(group)
        start = 0
        for i, frac in enumerate(fractions):
            end = len(group) if i == len(fractions) - 1 else start + round(frac * len(group))
            parts[i].extend(group[start:end])
            start = end
    for part in parts:
        rng.shuffle(part)
    return parts


def label_counts(examples: Iterable[Example]) -> dict[str, int]:
    """Label -> count, in label_set order."""
    counts = Counter(e.label for e in examples)
    return {label: counts[label] for label in sorted(counts, key=_label_key)}

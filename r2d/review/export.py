"""Export nurse reviews as a Stage-2 training set, after scanning them for patient identifiers.

The export is the project schema (question/label/rationale/rationale_source/id) with
rationale_source="nurse_post_processed": train.jsonl, val.jsonl and, if asked, test.csv. Each row also
carries its provenance (case_id, reviewers, action, rating, model_id, review_ids, resolution) in extra
fields that `r2d.data.load_examples` ignores and `datasets.load_dataset("json")` reads. The id is the one
the upload gave the case, else the case id. A sidecar export_meta.json says which model produced the
rationales, which reviews counted (the policy), how each case with several reviewers was resolved, how
many rows went where (equal to the rows in the files), and what the scans found.

A case reviewed by several people is resolved by RESOLUTION, so that a nurse's correction is never lost:
1. an adjudicated review wins (the Dashboard's adjudication, see r2d.review.adjudication);
2. else, when every reviewer chose the same label and the same rationale (up to whitespace), they agree;
3. else, when they chose the same label and exactly one rationale was written by hand (edited or relabelled),
   that edit wins over the unedited acceptances of the model's text;
4. else (labels differ, or two different rationales were written) the case waits for adjudication: it is
   not exported, and export_meta.json lists it. Agreement on the label is not agreement on the rationale.
The folder is written under a temporary name and renamed into place, so a crash never leaves half an export.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r2d.checks.factcheck import check_rationale
from r2d.checks.identifiers import scan_identifiers
from r2d.data import COLUMNS, Example, escape_csv_cell, label_counts, stratified_split
from r2d.errors import ReviewActionError
from r2d.review.store import ACTIONS, ReviewRecord, ReviewStore, utc_now

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "r2d-export-2"
RESOLUTION = "adjudicated > agreed > edit over acceptance > waits for adjudication"
PENDING = "pending"  # the resolution of a case that waits for adjudication (never exported)
# provenance fields of every row, after the schema's columns (Stage 2 ignores them); ratings and comments are
# every reviewer's, in the order of reviewers (a rating not given is null, a comment not given is "")
PROVENANCE = (
    "case_id",
    "reviewers",
    "action",
    "rating",
    "comment",
    "model_id",
    "review_ids",
    "ratings",
    "comments",
    "resolution",
)
EXPORT_META_FILENAME = "export_meta.json"
TRAIN_FILENAME, VAL_FILENAME, TEST_CSV_FILENAME = "train.jsonl", "val.jsonl", "test.csv"
RATIONALE_SOURCE = "nurse_post_processed"


@dataclass(frozen=True)
class RecordFinding:
    """A flagged span of one exported row: an identifier (r2d.checks.identifiers) or a level named in the rationale."""

    case_id: str
    field: str  # "rationale" or "case_text"
    kind: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class ExportPolicy:
    """Which current reviews count as training data."""

    actions: tuple[str, ...] = ACTIONS  # accepted, edited and relabelled reviews by default
    min_rating: int = 0  # 0 = any rating (an unrated review counts); 1-5 = rated at least this
    require_consistent: bool = False  # only rows whose rationale alone re-predicts the final label

    def __post_init__(self) -> None:
        unknown = sorted(set(self.actions) - set(ACTIONS))
        if unknown or not self.actions:
            raise ReviewActionError(
                f"export policy actions must be a non-empty subset of {', '.join(ACTIONS)}; got {list(self.actions)}"
            )
        if not 0 <= self.min_rating <= 5:
            raise ReviewActionError(f"export policy min_rating must be 0-5, got {self.min_rating}")

    def admits(self, review: ReviewRecord) -> bool:
        """Whether a (current) review counts as training data under this policy."""
        if review.action not in self.actions:
            return False
        if self.min_rating and (review.rating is None or review.rating < self.min_rating):
            return False
        return not (self.require_consistent and review.consistency_label != review.final_label)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "actions": list(self.actions)}


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    files: dict[str, Path]  # split name -> file
    counts: dict[str, int]
    findings: list[RecordFinding] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def all_files(self) -> list[Path]:
        """The data files and the sidecar."""
        return list(self.files.values()) + [self.out_dir / EXPORT_META_FILENAME]

    def summary(self) -> str:
        """One line for the reviewer: how many rows went where."""
        c = self.counts
        splits = ", ".join(f"{name} {c[name]}" for name in self.files)
        waiting = c.get("waiting_for_adjudication", 0)
        return (
            f"Exported {c['selected']} reviews to `{self.out_dir}`: {splits}. "
            + (
                f"{waiting} case(s) whose reviewers disagree wait for adjudication (Dashboard) and are not in it. "
                if waiting
                else ""
            )
            + "Add train.jsonl to `data.train_files` of the next Stage-2 run."
        )


@dataclass(frozen=True)
class ExportCase:
    """One case to export: the review that counts, every reviewer's current review, and how it was chosen."""

    review: ReviewRecord
    reviews: tuple[ReviewRecord, ...]  # every reviewer's current review of the case, oldest first
    resolution: str  # single | adjudicated | agreed | edit | pending (waits for adjudication, not exported)
    source_id: str | None = None  # the id the upload gave the case

    def provenance(self) -> dict[str, Any]:
        """The row's extra fields, one type each (lists of str / int, int or null), as datasets wants them."""
        return {
            "case_id": self.review.case_id,
            "reviewers": [r.reviewer for r in self.reviews],
            "action": self.review.action,
            "rating": self.review.rating,
            "comment": self.review.comment,
            "model_id": self.review.model_id,
            "review_ids": [int(r.review_id or 0) for r in self.reviews],
            "ratings": [r.rating for r in self.reviews],
            "comments": [r.comment for r in self.reviews],
            "resolution": self.resolution,
        }

    @property
    def pending(self) -> bool:
        """The reviewers disagree and nobody has adjudicated: not exported until someone does."""
        return self.resolution == PENDING


def _answer(review: ReviewRecord) -> tuple[str, str]:
    return review.final_label, " ".join(review.final_rationale.split())


def resolve(reviews: Sequence[ReviewRecord], adjudicated: int | None = None) -> tuple[ReviewRecord, str]:
    """The review that counts for one case under RESOLUTION, and which rule chose it: single, adjudicated,
    agreed, edit, or PENDING (then the latest review is returned, for display only: it is not exported)."""
    if len(reviews) == 1:
        return reviews[0], "single"
    chosen = next((r for r in reviews if adjudicated is not None and r.review_id == adjudicated), None)
    if chosen is not None:
        return chosen, "adjudicated"
    if len({_answer(r) for r in reviews}) == 1:
        edited = [r for r in reviews if r.action != "accepted"]
        return (edited or list(reviews))[-1], "agreed"
    written = [r for r in reviews if r.action != "accepted"]
    if len({r.final_label for r in reviews}) == 1 and len({_answer(r) for r in written}) == 1:
        return written[-1], "edit"  # one hand-written rationale against unedited acceptances: the edit wins
    return reviews[-1], PENDING


def export_cases(store: ReviewStore) -> list[ExportCase]:
    """Every reviewed case, resolved across its reviewers, oldest case first."""
    by_case: dict[str, list[ReviewRecord]] = defaultdict(list)
    for r in store.reviewer_reviews():
        by_case[r.case_id].append(r)
    adjudicated, sources = store.adjudications(), store.source_ids()
    cases = []
    for case_id, reviews in by_case.items():
        chosen, how = resolve(reviews, adjudicated.get(case_id))
        cases.append(ExportCase(chosen, tuple(reviews), how, sources.get(case_id)))
    return cases


def pending_cases(store: ReviewStore) -> list[ExportCase]:
    """The cases whose reviewers disagree (label or rationale) and that nobody has adjudicated yet."""
    return [c for c in export_cases(store) if c.pending]


def select_cases(store: ReviewStore, policy: ExportPolicy) -> list[ExportCase]:
    """The resolved cases whose chosen review the policy admits (a case waiting for adjudication never is)."""
    return [c for c in export_cases(store) if not c.pending and policy.admits(c.review)]


def select_reviews(store: ReviewStore, policy: ExportPolicy) -> list[ReviewRecord]:
    """The review that counts for each case that the policy admits, oldest case first."""
    return [c.review for c in select_cases(store, policy)]


def to_example(case: ExportCase | ReviewRecord) -> Example:
    """A case as a Stage-2 training row: the nurse's label and rationale, under the upload's id if it had one."""
    review = case.review if isinstance(case, ExportCase) else case
    source = case.source_id if isinstance(case, ExportCase) else None
    return Example(
        case_text=review.case_text,
        label=review.final_label,
        rationale=review.final_rationale,
        rationale_source=RATIONALE_SOURCE,
        example_id=source or review.case_id,
    )


def level_findings(reviews: Sequence[ReviewRecord]) -> list[RecordFinding]:
    """Rationales that name a triage level other than their final label (a relabel that kept the old text)."""
    found = []
    for review in reviews:
        for problem in check_rationale(review.case_text, review.final_rationale, review.final_label).problems:
            if problem.kind == "wrong_level":
                found.append(
                    RecordFinding(
                        review.case_id,
                        "rationale",
                        "names_another_level",
                        review.final_rationale[problem.start : problem.end],
                    )
                )
    return found


def scan_reviews(reviews: Sequence[ReviewRecord]) -> list[RecordFinding]:
    """Identifier findings in the rationales and case texts that would be exported."""
    found = []
    for review in reviews:
        for name, text in (("rationale", review.final_rationale), ("case_text", review.case_text)):
            found += [RecordFinding(review.case_id, name, f.kind, f.text) for f in scan_identifiers(text)]
    return found


def scan_comments(cases: Sequence[ExportCase]) -> list[RecordFinding]:
    """Identifier findings in the comments that travel with the rows (every reviewer's, not just the chosen one's)."""
    return [
        RecordFinding(c.review.case_id, "comment", f.kind, f.text)
        for c in cases
        for r in c.reviews
        for f in scan_identifiers(r.comment)
    ]


def preview_export(store: ReviewStore, policy: ExportPolicy) -> tuple[list[ReviewRecord], list[RecordFinding]]:
    """The reviews an export would write, and what a human should see first: likely identifiers, then
    rationales that name another triage level.

    Raises ReviewActionError when no current review matches the policy.
    """
    cases = select_cases(store, policy)
    reviews = [c.review for c in cases]
    if not reviews:
        raise ReviewActionError("no current review matches this export policy; review cases or loosen the policy")
    return reviews, scan_reviews(reviews) + scan_comments(cases) + level_findings(reviews)


def findings_fingerprint(policy: ExportPolicy, findings: Sequence[RecordFinding]) -> str:
    """What an 'Export anyway' confirms: this policy with exactly these findings (a digest that changes when a
    review, the policy or what the scans find changes)."""
    seen = json.dumps([policy.to_dict(), [f.to_dict() for f in findings]], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(seen.encode("utf-8")).hexdigest()


def findings_message(findings: Sequence[RecordFinding], n_rows: int) -> str:
    """What the reviewer is told before deciding to export anyway or go back."""
    if not findings:
        return "No likely patient identifiers found, and no rationale names another triage level."
    levels = sum(f.kind == "names_another_level" for f in findings)
    parts = [f"{len(findings) - levels} likely patient identifier(s)"] if len(findings) > levels else []
    parts += [f"{levels} rationale(s) naming another triage level than their label"] if levels else []
    return (
        f"**⚠ {' and '.join(parts)}** in the {n_rows} rows to export. Go back and save corrected reviews, "
        "or export anyway if they are fine."
    )


def _split(cases: list[ExportCase], val_fraction: float, test_fraction: float, seed: int) -> list[list[ExportCase]]:
    """train/val(/test), stratified by label, with at least one row in each requested held-out split.

    Only the requested splits are drawn: a split of fraction 0 would otherwise take the rounding remainder.
    """
    fractions = [1.0 - val_fraction - test_fraction, val_fraction] + ([test_fraction] if test_fraction > 0 else [])
    if len(cases) < len(fractions):
        raise ReviewActionError(
            f"only {len(cases)} review(s) match the export policy; need at least "
            f"{len(fractions)} for the requested splits (review more cases or loosen the policy)"
        )
    examples = [to_example(c) for c in cases]
    index = {id(e): c for e, c in zip(examples, cases)}  # stratified_split returns the same Example objects
    parts = [[index[id(e)] for e in part] for part in stratified_split(examples, fractions, seed=seed)]
    for i in range(1, len(parts)):
        # a tiny export can round a held-out split to nothing; move one row so that every file loads
        if not parts[i]:
            donor = max(range(len(parts)), key=lambda j: len(parts[j]))
            parts[i].append(parts[donor].pop())
    return parts + [[]] * (3 - len(parts))


def _rows(cases: Sequence[ExportCase]) -> list[dict[str, Any]]:
    return [{**to_example(c).to_dict(), **c.provenance()} for c in cases]


def _csv_cell(column: str, value: Any) -> str:
    """A provenance list as 'a;b' (a missing rating is empty); comments, free text, as a JSON list."""
    if column == "comments":
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return ";".join("" if v is None else str(v) for v in value)
    return "" if value is None else str(value)


def _write_rows(path: Path, cases: Sequence[ExportCase]) -> Path:
    """JSONL, or CSV with the provenance lists as _csv_cell writes them (cells neutralised against formulas)."""
    rows = _rows(cases)
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS + PROVENANCE)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: escape_csv_cell(_csv_cell(k, v)) for k, v in row.items()})
        text = buf.getvalue()
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)  # case texts: owner-only, like the review database
    return path


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished temporary folder into place (an empty existing folder is replaced)."""
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise ReviewActionError(f"{out} already exists and is not empty; choose a new export folder")
        out.rmdir()
    os.rename(tmp, out)


PARTIAL_MARK = ".partial-"  # in the name of a folder an export is still being written to (see export_stage2_dataset)


def is_complete_export(folder: Path) -> bool:
    """Whether folder is a finished export: renamed into place and holding its export_meta.json (written last)."""
    return (
        not folder.name.startswith(".")
        and PARTIAL_MARK not in folder.name
        and (folder / EXPORT_META_FILENAME).is_file()
        and (folder / TRAIN_FILENAME).is_file()
    )


def sweep_partial_exports(parent: str | Path, min_age_s: float = 60.0) -> int:
    """Delete the temporary folders of exports that never finished (the app or CLI was killed) in parent,
    those untouched for min_age_s (an export in progress elsewhere is left alone). Returns how many."""
    root, swept = Path(parent), 0
    if not root.is_dir():
        return 0
    for folder in root.glob(f".*{PARTIAL_MARK}*"):
        if folder.is_dir() and time.time() - folder.stat().st_mtime >= min_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            swept += 1
    if swept:
        logger.warning("deleted %d unfinished export folder(s) in %s", swept, root)
    return swept


def complete_exports(parent: str | Path) -> list[str]:
    """The names of the finished exports in parent, newest first (a killed export is left out)."""
    root = Path(parent)
    found = [p for p in root.iterdir() if is_complete_export(p)] if root.is_dir() else []
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def new_export_dir(parent: str | Path) -> Path:
    """A new export folder in parent whose name nobody can guess (timestamped names alone were guessed)."""
    return Path(parent) / f"export-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(8)}"


class DownloadZips:
    """Zips of exports for a download component to hand out, each in its own private folder (mode 0700).
    The component keeps its own copy of what it hands out, so only the newest `keep` zips are kept here."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._folders: list[Path] = []  # oldest first

    def add(self, out_dir: Path, files: Sequence[Path], parent: str | None = None) -> Path:
        """A zip (mode 0600) of the export's files, named after the export, in a new folder under parent
        (default: the system temporary folder)."""
        while len(self._folders) >= self.keep:
            shutil.rmtree(self._folders.pop(0), ignore_errors=True)
        if parent:
            Path(parent).mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="r2d-download-", dir=parent))
        self._folders.append(folder)
        archive = folder / f"{out_dir.name}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f.name)
        archive.chmod(0o600)
        return archive


def export_stage2_dataset(
    store: ReviewStore,
    out_dir: str | Path,
    policy: ExportPolicy = ExportPolicy(),
    val_fraction: float = 0.1,
    test_csv: bool = False,
    seed: int = 0,
    test_fraction: float | None = None,
    exported_by: str = "unknown",
    config: dict[str, Any] | None = None,
    expect_fingerprint: str | None = None,
) -> ExportResult:
    """Write train.jsonl, val.jsonl (and test.csv if test_csv) plus export_meta.json into out_dir.

    test_fraction defaults to val_fraction when test_csv is set. Identifier findings are recorded
    in the sidecar, not removed: scan first (preview_export) and let a human decide. With expect_fingerprint
    (findings_fingerprint of what that human saw) nothing is written unless this export's own scan, the one
    it records, finds exactly that.
    Raises ReviewActionError for a bad fraction, too few reviews for the policy, or a changed fingerprint.
    """
    test_fraction = (val_fraction if test_fraction is None else test_fraction) if test_csv else 0.0
    if not (0.0 < val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ReviewActionError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and leave rows for training"
        )
    if test_csv and test_fraction <= 0:
        raise ReviewActionError("test_fraction must be above 0 when a test split is asked for")
    cases = select_cases(store, policy)
    reviews = [c.review for c in cases]
    identifiers, levels = scan_reviews(reviews) + scan_comments(cases), level_findings(reviews)  # once per export
    if expect_fingerprint is not None and expect_fingerprint != findings_fingerprint(policy, identifiers + levels):
        raise ReviewActionError(
            "nothing was exported: the reviews or the policy changed since the scan you saw. "
            "Press 'Export for Stage 2' again and look at what it finds"
        )
    splits = dict(zip(("train", "val", "test"), _split(cases, val_fraction, test_fraction, seed)))
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL_MARK}", dir=out.parent))  # mode 0700
    try:
        names = {"train": TRAIN_FILENAME, "val": VAL_FILENAME} | ({"test": TEST_CSV_FILENAME} if test_csv else {})
        for split, name in names.items():
            _write_rows(tmp / name, splits[split])
        meta = {
            "export_id": out.name,
            **_meta(store, cases, splits, names, policy, seed, val_fraction, test_fraction, exported_by, config),
            "identifier_findings": [f.to_dict() for f in identifiers],
            "level_findings": [f.to_dict() for f in levels],
            "audit_chain_heads": store.chain_heads(),
        }
        _write_meta(tmp / EXPORT_META_FILENAME, meta)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    store.log_export(exported_by, out, {k: meta[k] for k in ("created_at", "policy", "counts", "model_ids", "files")})
    logger.info("exported %d reviews to %s (%s)", len(cases), out, meta["counts"])
    findings = [RecordFinding(**f) for f in meta["identifier_findings"] + meta["level_findings"]]
    return ExportResult(out, {k: out / n for k, n in names.items()}, meta["counts"], findings, meta)


def _meta(
    store: ReviewStore,
    cases: Sequence[ExportCase],
    splits: dict[str, list[ExportCase]],
    names: dict[str, str],
    policy: ExportPolicy,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    exported_by: str,
    config: dict[str, Any] | None,
) -> dict[str, Any]:
    """The sidecar: counts are those of the rows written, per file."""
    reviews = [c.review for c in cases]
    written = [c for split in names for c in splits[split]]
    waiting = pending_cases(store)
    counts = {
        "selected": len(written),
        **{split: len(splits[split]) for split in ("train", "val", "test")},
        "cases_with_several_reviewers": sum(len(c.reviews) > 1 for c in cases),
        "waiting_for_adjudication": len(waiting),
        "current_reviews": len(store.latest_reviews()),
        "review_rows": store.count_reviews(),
    }
    return {
        "format": EXPORT_FORMAT,
        "created_at": utc_now(),
        "exported_by": exported_by,
        "rationale_source": RATIONALE_SOURCE,
        "policy": policy.to_dict(),
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "resolution_policy": RESOLUTION,
        "resolutions": dict(Counter(c.resolution for c in cases)),
        "provenance_fields": list(PROVENANCE),
        "model_ids": sorted({r.model_id for r in reviews}),
        "quantizations": sorted({r.quantization for r in reviews}),
        "prompt_versions": sorted({r.prompt_version for r in reviews}),
        "counts": counts,
        "actions": dict(Counter(r.action for r in reviews)),  # of the rows written: the review that counts
        "reviewer_actions": dict(Counter(r.action for c in cases for r in c.reviews)),  # every reviewer's
        "waiting_for_adjudication": [c.review.case_id for c in waiting],
        "labels": label_counts([to_example(c) for c in written]),
        "files": {split: name for split, name in names.items()},
        "rows_per_file": {name: len(splits[split]) for split, name in names.items()},
        "config": config or {},
    }


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(path, 0o600)

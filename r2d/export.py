"""Export nurse reviews as a Stage-2 training set, after scanning them for patient identifiers.

The export is the project schema (question/label/rationale/rationale_source/id, written by
`r2d.data.write_examples`) with rationale_source="nurse_post_processed": train.jsonl, val.jsonl and,
if asked, test.csv. A sidecar export_meta.json says which model produced the rationales, which
reviews counted (the policy), how many rows went where, and what the identifier scan found.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from r2d.data import Example, atomic_write_text, label_counts, stratified_split, write_examples
from r2d.errors import FeedbackStoreError
from r2d.identifiers import Finding, scan_identifiers  # noqa: F401 (re-exported)
from r2d.store import ACTIONS, ReviewRecord, ReviewStore, utc_now

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "r2d-export-1"
META_FILENAME = "export_meta.json"
RATIONALE_SOURCE = "nurse_post_processed"


@dataclass(frozen=True)
class RecordFinding:
    """A Finding located in one exported row."""

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
            raise FeedbackStoreError(f"export policy actions must be a non-empty subset of {', '.join(ACTIONS)}; "
                                     f"got {list(self.actions)}")
        if not 0 <= self.min_rating <= 5:
            raise FeedbackStoreError(f"export policy min_rating must be 0-5, got {self.min_rating}")

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
        return list(self.files.values()) + [self.out_dir / META_FILENAME]

    def summary(self) -> str:
        """One line for the reviewer: how many rows went where."""
        c = self.counts
        splits = ", ".join(f"{name} {c[name]}" for name in self.files)
        return (f"Exported {c['selected']} reviews to `{self.out_dir}`: {splits}. "
                "Add train.jsonl to `data.train_files` of the next Stage-2 run.")


def select_reviews(store: ReviewStore, policy: ExportPolicy) -> list[ReviewRecord]:
    """The current review of each case that the policy admits, oldest first."""
    return [r for r in store.latest_reviews() if policy.admits(r)]


def to_example(review: ReviewRecord) -> Example:
    """A review as a Stage-2 training row: the nurse's label and rationale for the case."""
    return Example(case_text=review.case_text, label=review.final_label, rationale=review.final_rationale,
                   rationale_source=RATIONALE_SOURCE, example_id=review.case_id)


def scan_reviews(reviews: Sequence[ReviewRecord]) -> list[RecordFinding]:
    """Identifier findings in the rationales and case texts that would be exported."""
    found = []
    for review in reviews:
        for name, text in (("rationale", review.final_rationale), ("case_text", review.case_text)):
            found += [RecordFinding(review.case_id, name, f.kind, f.text) for f in scan_identifiers(text)]
    return found


def preview_export(store: ReviewStore, policy: ExportPolicy) -> tuple[list[ReviewRecord], list[RecordFinding]]:
    """The reviews an export would write and the likely identifiers in them, for a human to see first.

    Raises FeedbackStoreError when no current review matches the policy.
    """
    reviews = select_reviews(store, policy)
    if not reviews:
        raise FeedbackStoreError("no current review matches this export policy; review cases or loosen the policy")
    return reviews, scan_reviews(reviews)


def findings_message(findings: Sequence[RecordFinding], n_rows: int) -> str:
    """What the reviewer is told before deciding to export anyway or go back."""
    if not findings:
        return "No likely patient identifiers found."
    return (f"**⚠ {len(findings)} likely patient identifier(s)** in the {n_rows} rows to export. Go back and save "
            "corrected reviews, or export anyway if they are not identifiers.")


def _split(examples: list[Example], val_fraction: float, test_fraction: float, seed: int) -> list[list[Example]]:
    """train/val/test, stratified by label, with at least one row in each requested held-out split."""
    fractions = [1.0 - val_fraction - test_fraction, val_fraction, test_fraction]
    needed = 1 + sum(f > 0 for f in fractions[1:])
    if len(examples) < needed:
        raise FeedbackStoreError(f"only {len(examples)} review(s) match the export policy; need at least {needed} "
                                 "for the requested splits (review more cases or loosen the policy)")
    parts = stratified_split(examples, fractions, seed=seed)
    for i in (1, 2):
        # a tiny export can round a held-out split to nothing; move one row so that every file loads
        if fractions[i] > 0 and not parts[i]:
            donor = max((0, 1, 2), key=lambda j: len(parts[j]))
            parts[i].append(parts[donor].pop())
    return parts


def export_stage2_dataset(store: ReviewStore, out_dir: str | Path, policy: ExportPolicy = ExportPolicy(),
                          val_fraction: float = 0.1, test_csv: bool = False, seed: int = 0,
                          test_fraction: float | None = None, exported_by: str = "unknown",
                          config: dict[str, Any] | None = None) -> ExportResult:
    """Write train.jsonl, val.jsonl (and test.csv if test_csv) plus export_meta.json into out_dir.

    test_fraction defaults to val_fraction when test_csv is set. Identifier findings are recorded
    in the sidecar, not removed: scan first (scan_reviews) and let a human decide.
    Raises FeedbackStoreError for a bad fraction or when too few reviews match the policy.
    """
    test_fraction = (val_fraction if test_fraction is None else test_fraction) if test_csv else 0.0
    if not (0.0 < val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise FeedbackStoreError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
                                 "and leave rows for training")
    reviews = select_reviews(store, policy)
    train, val, test = _split([to_example(r) for r in reviews], val_fraction, test_fraction, seed)
    out = Path(out_dir)
    files = {"train": write_examples(out / "train.jsonl", train), "val": write_examples(out / "val.jsonl", val)}
    if test_csv:
        files["test"] = write_examples(out / "test.csv", test)
    findings = scan_reviews(reviews)
    counts = {"selected": len(reviews), "train": len(train), "val": len(val), "test": len(test),
              "current_reviews": len(store.latest_reviews()), "review_rows": store.count_reviews()}
    meta = {
        "format": EXPORT_FORMAT, "created_at": utc_now(), "exported_by": exported_by,
        "rationale_source": RATIONALE_SOURCE, "policy": policy.to_dict(), "seed": seed,
        "val_fraction": val_fraction, "test_fraction": test_fraction,
        "model_ids": sorted({r.model_id for r in reviews}), "quantizations": sorted({r.quantization for r in reviews}),
        "prompt_versions": sorted({r.prompt_version for r in reviews}), "counts": counts,
        "actions": dict(Counter(r.action for r in reviews)), "labels": label_counts(train + val + test),
        "files": {k: p.name for k, p in files.items()},
        "identifier_findings": [f.to_dict() for f in findings], "config": config or {},
    }
    atomic_write_text(out / META_FILENAME, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    store.log_export(exported_by, out, {k: meta[k] for k in ("created_at", "policy", "counts", "model_ids", "files")})
    logger.info("exported %d reviews to %s (%s)", len(reviews), out, counts)
    return ExportResult(out, files, counts, findings, meta)

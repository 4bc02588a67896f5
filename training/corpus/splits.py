"""Turn a public data set into train/val/test JSONL files plus a manifest that says how they were made
(the library behind `python -m training.prepare_data`).

KTAS and PubMedQA have a small closed label set and are split stratified by label (r2d.data.stratified_split);
KTAS is split by group: visits with the same case text (5 pairs in the file) land in the same split, so
no test case is a copy of a training case.
PubMedQA keeps its official 500-item test set and carves val out of the rest. MedReason and MedMCQA labels
are answer texts, nearly all distinct, so stratifying by them would put everything in train: they get a
seeded shuffle split instead. Every split is deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from r2d.data import Example, atomic_write_text, label_counts, stratified_split, write_examples
from r2d.errors import ConfigError, DatasetSchemaError
from r2d.sources import ktas_meta, load_ktas, load_medmcqa, load_medreason, load_pubmedqa

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_TEST = 0.2  # the test fraction of the data sets split here (KTAS, MedMCQA)
MANIFEST = "manifest.json"
# a label set larger than this is free text: the manifest counts distinct labels instead of listing them
MAX_LISTED_LABELS = 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks: the data provenance every manifest and report records."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_fractions(val: float, test: float) -> list[float]:
    """[train, val, test] fractions. Raises ConfigError unless 0 <= val, test and val + test < 1."""
    if val < 0 or test < 0 or val + test >= 1:
        raise ConfigError(f"--val {val} and --test {test} must be >= 0 and sum to less than 1")
    return [1.0 - val - test, val, test]


def shuffle_split(examples: Sequence[Example], fractions: Sequence[float], seed: int) -> list[list[Example]]:
    """Seeded shuffle split for free-text labels (where stratifying by label is meaningless)."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    parts, start = [], 0
    for i, frac in enumerate(fractions):
        end = len(order) if i == len(fractions) - 1 else start + round(frac * len(order))
        parts.append(order[start:end])
        start = end
    return parts


# --- one function per data set: (source, seed, val, test) -> ({split: examples}, [source files], extra manifest
# fields); `test` is None for the data sets that come with their own test split ---


Prepared = tuple[dict[str, list[Example]], list[Path], dict[str, Any]]


def grouped_stratified_split(examples: Sequence[Example], fractions: Sequence[float], seed: int) -> list[list[Example]]:
    """stratified_split over groups of identical case texts: a group never straddles two parts.

    Each group is split as one item labelled by its first member, then expanded in place.
    """
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(e.case_text, []).append(e)
    firsts = [members[0] for members in groups.values()]
    return [
        [m for first in part for m in groups[first.case_text]]
        for part in stratified_split(firsts, fractions, seed=seed)
    ]


def prepare_ktas(source: Path, seed: int, val: float, test: float | None) -> Prepared:
    """KTAS: stratified train/val/test of the whole file, duplicated visits kept together."""
    fractions = split_fractions(val, _fraction(test, "ktas"))
    parts = grouped_stratified_split(load_ktas(source), fractions, seed=seed)
    return dict(zip(SPLITS, parts)), [Path(source)], ktas_meta()


def prepare_pubmedqa(source: Path, seed: int, val: float, test: float | None = None) -> Prepared:
    """PubMedQA: the official test split; val is a stratified fraction of the other 500."""
    official = load_pubmedqa(source)
    train, val_part = stratified_split(official["train"], split_fractions(val, 0.0)[:2], seed=seed)
    files = [Path(source) / "ori_pqal.json", Path(source) / "test_ground_truth.json"]
    return {"train": train, "val": val_part, "test": official["test"]}, files, {"task": "pubmedqa", "ordinal": False}


def prepare_medreason(source: Path, seed: int, val: float, test: float | None = None) -> Prepared:
    """MedReason (R2D-C processing): val.jsonl -> train/val, test.csv -> test."""
    source = Path(source)
    train, val_part = shuffle_split(load_medreason(source / "val.jsonl"), split_fractions(val, 0.0)[:2], seed)
    return (
        {"train": train, "val": val_part, "test": load_medreason(source / "test.csv")},
        [source / "val.jsonl", source / "test.csv"],
        {"task": "medreason", "ordinal": False},
    )


def prepare_medmcqa(source: Path, seed: int, val: float, test: float | None) -> Prepared:
    """MedMCQA dev (rows with an explanation): seeded shuffle train/val/test."""
    fractions = split_fractions(val, _fraction(test, "medmcqa"))
    parts = shuffle_split(load_medmcqa(source), fractions, seed)
    return dict(zip(SPLITS, parts)), [Path(source)], {"task": "medmcqa", "ordinal": False}


def _fraction(test: float | None, dataset: str) -> float:
    if test is None:
        raise ConfigError(f"{dataset} is split into train/val/test here: give the test fraction (--test)")
    return test


PREPARERS: dict[str, Callable[[Path, int, float, float | None], Prepared]] = {
    "ktas": prepare_ktas,
    "pubmedqa": prepare_pubmedqa,
    "medreason": prepare_medreason,
    "medmcqa": prepare_medmcqa,
}
# the data sets that bring their own test split take no --test fraction
OWN_TEST_SPLIT = ("pubmedqa", "medreason")


def _split_counts(examples: list[Example]) -> dict[str, Any]:
    counts = label_counts(examples)
    if len(counts) > MAX_LISTED_LABELS:
        return {"total": len(examples), "distinct_labels": len(counts)}
    return {"total": len(examples), "labels": counts}


def build_manifest(
    dataset: str,
    source: Path,
    seed: int,
    val: float,
    test: float | None,
    splits: dict[str, list[Example]],
    files: list[Path],
    extra: dict[str, Any],
    command: str,
) -> dict[str, Any]:
    """Everything needed to reproduce or audit the split: source hashes, seed, fractions, counts."""
    labels = list(label_counts(e for split in SPLITS for e in splits[split]))
    return {
        "dataset": dataset,
        "source": str(source),
        "source_files": {str(f): file_sha256(f) for f in files},
        "seed": seed,
        "val": val,
        "test": test,
        "label_set": labels if len(labels) <= MAX_LISTED_LABELS else None,
        **extra,
        "counts": {split: _split_counts(splits[split]) for split in SPLITS},
        "command": command,
    }


def run(
    dataset: str,
    source: Path,
    out: Path,
    *,
    seed: int = 42,
    val: float = 0.1,
    test: float | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Load `dataset` from `source`, split it and write train/val/test.jsonl and manifest.json under `out`.

    `test` is the test fraction (KTAS, MedMCQA; None for the data sets with their own test split);
    `command` is recorded in the manifest. Raises R2DError (ConfigError for an unknown data set).
    """
    if dataset not in PREPARERS:
        raise ConfigError(f"unknown data set {dataset!r}; choose one of {', '.join(PREPARERS)}")
    splits, files, extra = PREPARERS[dataset](Path(source), seed, val, test)
    out = Path(out)
    for split in SPLITS:
        write_examples(out / f"{split}.jsonl", splits[split])
    manifest = build_manifest(dataset, source, seed, val, test, splits, files, extra, command)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def prepare_missing(out: str | Path, source: str | Path, dataset: str = "ktas") -> dict[str, Any] | None:
    """Make `out` a prepared folder (the CLI's defaults) when it lacks any split; its manifest, or None when
    every split was already there. Raises DatasetSchemaError naming the source when it is missing."""
    out, source = Path(out), Path(source)
    if all((out / f"{split}.jsonl").is_file() for split in SPLITS):
        return None
    if not source.exists():
        raise DatasetSchemaError(
            f"the original data folder {out} lacks its splits and the {dataset} source "
            f"{source} to prepare them from is missing: ask whoever runs the app to set "
            "app.improve_source"
        )
    logger.info("preparing %s from %s into %s", dataset, source, out)
    return run(
        dataset,
        source,
        out,
        test=None if dataset in OWN_TEST_SPLIT else DEFAULT_TEST,
        command=f"python -m training.prepare_data {dataset} --source {source} --out {out}",
    )

"""A linear baseline for KTAS: logistic regression on the triage facts the model reads.

    python -m training.baselines --data data/ktas [--out runs/baseline.json]

Features are read from each case text by r2d.checks.factcheck.read_case (the same reading the fact check uses):
TF-IDF of the chief complaint plus the numeric triage facts (age, blood pressure, heart and respiratory
rate, temperature, SpO2, pain score) with a missing-value indicator each, and the AVPU mental state,
arrival by ambulance and injury. C is chosen on the validation split by macro-F1; the test split is
scored once with it. It is deterministic (lbfgs), so one run is the whole figure. It is the bar a
rationale model's label should clear: a small T5 that scores below it has not learned the triage facts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2d.checks.factcheck import read_case
from r2d.checks.rules import MENTAL_STATES, VITALS
from r2d.data import Example, atomic_write_text, load_examples
from r2d.errors import DatasetSchemaError, R2DError
from r2d.eval import metrics
from training.cli import setup_logging

logger = logging.getLogger(__name__)

C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
NUMERIC = ("age", *VITALS, "pain_score")


@dataclass(frozen=True)
class BaselineResult:
    c: float  # chosen on val
    val_macro_f1: dict[float, float]  # every C tried
    predictions: list[str]  # on the test examples, in order


def _rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    rows = []
    for e in examples:
        facts = read_case(e.case_text).facts
        row: dict[str, Any] = {"complaint": facts.chief_complaint or ""}
        for name in NUMERIC:
            value = getattr(facts, name)
            row[name] = float(value) if value is not None else float("nan")
            row[f"{name}_missing"] = float(value is None)
        row.update({f"mental_{s}": float(facts.mental == s) for s in MENTAL_STATES})
        row.update(ambulance=float(facts.by_ambulance), injury=float(bool(facts.injury)))
        rows.append(row)
    return rows


def _pipeline(c: float):
    # scikit-learn is imported here: the app never needs it
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import StandardScaler

    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    flags = [f"{n}_missing" for n in NUMERIC] + [f"mental_{s}" for s in MENTAL_STATES] + ["ambulance", "injury"]
    features = ColumnTransformer(
        [
            ("complaint", TfidfVectorizer(ngram_range=(1, 2), min_df=1), "complaint"),
            ("numeric", numeric, list(NUMERIC)),
            ("flags", "passthrough", flags),
        ]
    )
    return Pipeline(
        [("features", features), ("model", LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))]
    )


def fit_predict(
    train: Sequence[Example], val: Sequence[Example], test: Sequence[Example], c_grid: Sequence[float] = C_GRID
) -> BaselineResult:
    """Fit on train for every C, keep the best val macro-F1, predict test. Raises DatasetSchemaError
    when a split is empty."""
    for name, split in (("train", train), ("val", val), ("test", test)):
        if not split:
            raise DatasetSchemaError(f"the {name} split is empty; the baseline needs train, val and test")
    import pandas as pd

    x_train, x_val, x_test = (pd.DataFrame(_rows(s)) for s in (train, val, test))
    y_train, y_val = [e.label for e in train], [e.label for e in val]
    scores, fitted = {}, {}
    for c in c_grid:
        fitted[c] = _pipeline(c).fit(x_train, y_train)
        scores[c] = metrics.macro_f1(y_val, list(fitted[c].predict(x_val)))
    best = max(c_grid, key=lambda c: (scores[c], -c))
    return BaselineResult(best, scores, [str(p) for p in fitted[best].predict(x_test)])


def run(data_dir: Path) -> dict[str, Any]:
    """The baseline on data_dir/{train,val,test}.jsonl (a prepare_data output): its test metrics."""
    train, val, test = (load_examples(data_dir / f"{split}.jsonl") for split in ("train", "val", "test"))
    result = fit_predict(train, val, test)
    gold = [e.label for e in test]
    labels = sorted({e.label for e in train + val + test})
    triage = metrics.triage_errors(gold, result.predictions, ordinal=True)
    return {
        "method": "logistic regression (TF-IDF complaint + triage facts)",
        "c": result.c,
        "val_macro_f1_by_c": {str(c): v for c, v in result.val_macro_f1.items()},
        "metrics": {
            "accuracy": metrics.accuracy(gold, result.predictions),
            "macro_f1": metrics.macro_f1(gold, result.predictions, labels),
            "under_triage_rate": triage.under_triage_rate,
            "over_triage_rate": triage.over_triage_rate,
        },
        "n_test": len(test),
        "predictions": dict(zip([e.example_id for e in test], result.predictions)),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    setup_logging("INFO")
    p = argparse.ArgumentParser(prog="python -m training.baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="directory with train/val/test.jsonl (prepare_data)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = p.parse_args(argv)
    try:
        report = run(args.data)
    except R2DError as e:
        sys.exit(f"error: {e}")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    m = report["metrics"]
    print(
        f"linear baseline (C={report['c']}): test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
        f"under-triage {m['under_triage_rate']:.4f} (n={report['n_test']})"
    )
    return report


if __name__ == "__main__":
    main()

"""training.baselines: the linear baseline learns what the triage facts say, and refuses empty splits."""

from __future__ import annotations

import random

import pytest

from r2d.checks.rules import TriageFacts
from r2d.data import Example, write_examples
from r2d.errors import DatasetSchemaError
from r2d.sources import ktas_case_text
from training import baselines


def synthetic(n: int, seed: int) -> list[Example]:
    """Level 2 exactly when SpO2 < 92, else 4: a rule a linear model on the facts must find."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        spo2 = rng.randint(80, 100)
        facts = TriageFacts(
            age=rng.randint(20, 90),
            sex="male",
            chief_complaint=rng.choice(["cough", "fall"]),
            mental="alert",
            pain_score=rng.randint(0, 10),
            sbp=rng.randint(100, 150),
            dbp=70,
            heart_rate=rng.randint(60, 100),
            resp_rate=16,
            temperature=36.8,
            spo2=spo2,
        )
        out.append(Example(ktas_case_text(facts), "2" if spo2 < 92 else "4", "", "rules", f"s-{seed}-{i}"))
    return out


def test_learns_a_rule_written_in_the_facts():
    result = baselines.fit_predict(synthetic(200, 0), synthetic(60, 1), synthetic(100, 2))
    gold = [e.label for e in synthetic(100, 2)]
    accuracy = sum(p == g for p, g in zip(result.predictions, gold)) / len(gold)
    assert accuracy >= 0.9
    assert set(result.val_macro_f1) == set(baselines.C_GRID) and result.c in baselines.C_GRID


def test_run_reads_a_prepared_directory(tmp_path):
    for split, seed, n in (("train", 0, 150), ("val", 1, 40), ("test", 2, 50)):
        write_examples(tmp_path / f"{split}.jsonl", synthetic(n, seed))
    report = baselines.run(tmp_path)
    assert report["n_test"] == 50 and report["metrics"]["accuracy"] >= 0.9
    assert len(report["predictions"]) == 50


def test_empty_split_is_refused():
    with pytest.raises(DatasetSchemaError, match="val split is empty"):
        baselines.fit_predict(synthetic(20, 0), [], synthetic(5, 1))

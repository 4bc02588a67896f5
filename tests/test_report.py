"""The evaluation report: rendering from run reports, the nurse yardstick, caching of finished runs."""
from __future__ import annotations

import json

import pytest

from training import report

LABELS = ["1", "2", "3", "4", "5"]


def fake_run(macro_f1: float, accuracy: float) -> dict:
    per_class = {label: {"f1": macro_f1, "precision": 0.0, "recall": 0.0, "support": 1, "predicted": 1} for label in LABELS}
    return {"metrics": {"accuracy": accuracy, "macro_f1": macro_f1, "under_triage_rate": 0.1, "over_triage_rate": 0.2,
                        "bleu": 0.5, "consistency": 0.9, "sufficiency": 0.6},
            "per_class": per_class, "rationale": {}, "skipped": {"bertscore": "no scoring model"},
            "predictions": [{"rationale": "3"}, {"rationale": "Hypotension with a fast pulse."}]}


NURSE = {"accuracy": 0.85, "macro_f1": 0.8, "under_triage_rate": 0.05, "over_triage_rate": 0.1, "n": 253}


def test_render_means_and_sds_over_seeds():
    results = {"r2d": {0: fake_run(0.5, 0.6), 1: fake_run(0.7, 0.8)}, "sft": {0: fake_run(0.4, 0.5)}}
    text = report.render(results, ["dss seed 0"], NURSE, "python -m training.report", (400, 400),
                         report._bertscore_note(results))
    r2d_row = next(line for line in text.splitlines() if line.startswith("| Reason2Decide |"))
    assert "| 2 |" in r2d_row and "0.600 ± 0.141" in r2d_row  # mean and sample SD of 0.5, 0.7
    sft_row = next(line for line in text.splitlines() if line.startswith("| SFT"))
    assert "0.400" in sft_row and "±" not in sft_row.split("|")[4]
    assert "macro-F1 0.800" in text and "60.58" in text
    assert "dss seed 0" in text  # missing runs are named, never silently left out
    assert "Best macro-F1 here:** Reason2Decide (0.600)" in text
    assert "skipped: no scoring model" in text
    assert r2d_row.rstrip(" |").endswith("0.500 ± 0.000")  # in each run one of two rationales is just a label


def test_finished_runs_are_not_trained_again(tmp_path, monkeypatch):
    out = report.run_dir(tmp_path, "sft", 3)
    out.mkdir(parents=True)
    (out / "eval_report.json").write_text(json.dumps(fake_run(0.3, 0.4)))

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")
    monkeypatch.setattr("training.stage2.train_stage2", no_training)
    result = report.train_and_evaluate(report.METHODS["sft"], 3, None, {}, tmp_path, (1, 1))
    assert result["metrics"]["macro_f1"] == 0.3


@pytest.mark.shared_data
def test_nurse_baseline_on_the_real_test_split(tmp_path, shared_data):
    from training.default_model import prepare_splits
    files = prepare_splits(shared_data / "ktas" / "data.csv", tmp_path, report.DATA_SEED)
    nurse = report.nurse_baseline(shared_data / "ktas" / "data.csv", files["test"])
    assert nurse["n"] == 253
    assert 0.0 < nurse["macro_f1"] <= 1.0 and 0.0 < nurse["accuracy"] <= 1.0
    assert nurse["under_triage_rate"] + nurse["over_triage_rate"] == pytest.approx(1 - nurse["accuracy"])

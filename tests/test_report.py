"""The evaluation report: rendering from run reports, the nurse yardstick, caching of finished runs."""
from __future__ import annotations

import json

import pytest

from r2d.data import load_examples
from training import report

LABELS = ["1", "2", "3", "4", "5"]


def fake_run(macro_f1: float, accuracy: float, fidelity: float | None = None) -> dict:
    per_class = {label: {"f1": macro_f1, "precision": 0.0, "recall": 0.0, "support": 1, "predicted": 1} for label in LABELS}
    m = {"accuracy": accuracy, "macro_f1": macro_f1, "under_triage_rate": 0.1, "over_triage_rate": 0.2,
         "bleu": 0.5, "consistency": 0.9, "sufficiency": 0.6}
    if fidelity is not None:
        m["fidelity"] = fidelity
    return {"metrics": m, "per_class": per_class, "rationale": {}, "skipped": {"bertscore": "no scoring model"},
            "predictions": [{"rationale": "3"}, {"rationale": "Hypotension with a fast pulse."}]}


NURSE = {"accuracy": 0.85, "macro_f1": 0.8, "under_triage_rate": 0.05, "over_triage_rate": 0.1, "n": 253}
BASELINE = {"metrics": {"accuracy": 0.7, "macro_f1": 0.55, "under_triage_rate": 0.1, "over_triage_rate": 0.2}}


def _row(text: str, section: str, title: str) -> str:
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return next(line for line in part.splitlines() if line.startswith(f"| {title}"))


def test_render_both_initialisations_with_means_and_sds_over_seeds():
    results = {"stage1": {"r2d": {0: fake_run(0.5, 0.6, 0.9), 1: fake_run(0.7, 0.8, 0.7)},
                          "sft": {0: fake_run(0.4, 0.5)}},
               "random": {"r2d": {0: fake_run(0.3, 0.4)}}}
    text = report.render(results, ["dss (random) seed 0"], NURSE, "python -m training.report", (400, 400),
                         report._bertscore_note(results), BASELINE, "2 runs in 1.0 minutes")
    r2d_row = _row(text, report.INITS["stage1"].title, "Reason2Decide |")
    assert "| 2 |" in r2d_row and "0.600 ± 0.141" in r2d_row  # mean and sample SD of 0.5, 0.7
    assert "0.800 ± 0.141" in r2d_row  # fidelity, where the evaluation has it
    assert r2d_row.rstrip(" |").endswith("0.500 ± 0.000")  # in each run one of two rationales is just a label
    sft_row = _row(text, report.INITS["stage1"].title, "SFT")
    assert "0.400" in sft_row and "±" not in sft_row.split("|")[4] and "n/a" in sft_row  # no fidelity: n/a
    assert "0.300" in _row(text, report.INITS["random"].title, "Reason2Decide |")
    assert "0.550" in _row(text, report.INITS["random"].title, "Linear baseline")
    assert "800 optimiser steps" in text and "400 Stage-2 steps for each method" in text
    assert "800 Stage-2 steps for each method from the random T5" in text
    assert "macro-F1 0.800" in text and "60.58" in text
    assert "dss (random) seed 0" in text  # missing runs are named, never silently left out
    assert "Best macro-F1 here:** Reason2Decide, every method from the same stage-1 checkpoint (0.600)" in text
    assert "skipped: no scoring model" in text and "Budget: 2 runs in 1.0 minutes" in text
    assert "DSS `explain: {case}`" in text  # each method decoded with its own training prompt


def test_finished_runs_are_not_trained_again(tmp_path, monkeypatch):
    out = report.run_dir(tmp_path, "random", "sft", 3)
    out.mkdir(parents=True)
    (out / "eval_report.json").write_text(json.dumps(fake_run(0.3, 0.4)))

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")
    monkeypatch.setattr("training.stage2.train_stage2", no_training)
    result = report.train_and_evaluate(report.METHODS["sft"], report.INITS["random"], 3, None, {}, tmp_path, (1, 1))
    assert result["metrics"]["macro_f1"] == 0.3


def test_every_method_gets_the_same_start_and_total_steps(tmp_path, monkeypatch):
    # from Stage 1: one shared checkpoint, stage2-steps each; from random weights: no init, the sum of both
    calls = []
    monkeypatch.setattr("training.stage1.train_stage1",
                        lambda cfg, init, out, **kw: calls.append(("stage1", cfg.optim.max_steps, init)) or
                        (out.mkdir(parents=True), (out / "r2d_model.json").write_text("{}")))
    monkeypatch.setattr("training.stage2.train_stage2",
                        lambda cfg, init, out, **kw: calls.append((cfg.stage2.method, cfg.optim.max_steps, init))
                        or type("R", (), {"out_dir": out})())
    monkeypatch.setattr(report, "evaluate_run", lambda model_dir, test, out: {})
    files = {k: tmp_path / f"{k}.jsonl" for k in ("train", "val", "test")}
    cfg = report.load_config(report.ROOT / "training" / "configs" / "ktas_cpu.json")
    for init in ("stage1", "random"):
        for name in ("sft", "dss", "r2d"):
            report.train_and_evaluate(report.METHODS[name], report.INITS[init], 0, cfg, files, tmp_path, (30, 20))
    stage1_dir = str(tmp_path / "seed0" / "stage1")
    assert calls == [("stage1", 30, None), ("sft", 20, stage1_dir), ("dss", 20, stage1_dir), ("r2d", 20, stage1_dir),
                     ("sft", 50, None), ("dss", 50, None), ("r2d", 50, None)]


@pytest.mark.shared_data
def test_nurse_baseline_on_the_real_test_split(tmp_path, shared_data):
    from training.default_model import prepare_splits
    files = prepare_splits(shared_data / "ktas" / "data.csv", tmp_path, report.DATA_SEED)
    nurse = report.nurse_baseline(shared_data / "ktas" / "data.csv", files["test"])
    assert nurse["n"] == len(load_examples(files["test"])) > 200  # every test case has the nurse's level
    assert 0.0 < nurse["macro_f1"] <= 1.0 and 0.0 < nurse["accuracy"] <= 1.0
    assert nurse["under_triage_rate"] + nurse["over_triage_rate"] == pytest.approx(1 - nurse["accuracy"])

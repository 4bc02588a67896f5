"""The evaluation report: rendering from run reports, the nurse yardstick, caching of finished runs."""

from __future__ import annotations

import json

import pytest

from r2d.data import load_examples
from r2d.sources import KTAS_LABELS
from training import report


def fake_run(macro_f1: float, accuracy: float, fidelity: float | None = None) -> dict:
    scores = {"f1": macro_f1, "precision": 0.0, "recall": 0.0, "support": 1, "predicted": 1}
    per_class = {label: dict(scores) for label in KTAS_LABELS}
    m = {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "under_triage_rate": 0.1,
        "over_triage_rate": 0.2,
        "bleu": 0.5,
        "consistency": 0.9,
        "sufficiency": 0.6,
    }
    if fidelity is not None:
        m["fidelity"] = fidelity
    return {
        "metrics": m,
        "per_class": per_class,
        "rationale": {},
        "skipped": {"bertscore": "no scoring model"},
        "predictions": [{"rationale": "3"}, {"rationale": "Hypotension with a fast pulse."}],
    }


NURSE = {"accuracy": 0.85, "macro_f1": 0.8, "under_triage_rate": 0.05, "over_triage_rate": 0.1, "n": 253}
BASELINE = {"metrics": {"accuracy": 0.7, "macro_f1": 0.55, "under_triage_rate": 0.1, "over_triage_rate": 0.2}}


def _row(text: str, section: str, title: str) -> str:
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return next(line for line in part.splitlines() if line.startswith(f"| {title}"))


def test_render_both_initialisations_with_means_and_sds_over_seeds():
    results = {
        "stage1": {"r2d": {0: fake_run(0.5, 0.6, 0.9), 1: fake_run(0.7, 0.8, 0.7)}, "sft": {0: fake_run(0.4, 0.5)}},
        "random": {"r2d": {0: fake_run(0.3, 0.4)}},
    }
    text = report.render(
        results,
        ["dss (random) seed 0"],
        NURSE,
        "python -m training.report",
        (400, 400),
        report._bertscore_note(results),
        BASELINE,
        "2 runs in 1.0 minutes",
    )
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
    sft, random_init = report.REPORT_METHODS["sft"], report.INITS["random"]
    result = report.train_and_evaluate(sft, random_init, 3, None, {}, tmp_path, (1, 1))
    assert result["metrics"]["macro_f1"] == 0.3


def test_every_method_gets_the_same_start_and_total_steps(tmp_path, monkeypatch):
    # from Stage 1: one shared checkpoint, stage2-steps each; from random weights: no init, the sum of both
    calls = []
    monkeypatch.setattr(
        "training.stage1.train_stage1",
        lambda cfg, init, out, **kw: (
            calls.append(("stage1", cfg.optim.max_steps, init))
            or (out.mkdir(parents=True), (out / "r2d_model.json").write_text("{}"))
        ),
    )
    monkeypatch.setattr(
        "training.stage2.train_stage2",
        lambda cfg, init, out, **kw: (
            calls.append((cfg.stage2.method, cfg.optim.max_steps, init)) or type("R", (), {"out_dir": out})()
        ),
    )
    monkeypatch.setattr(report, "evaluate_run", lambda model_dir, test, out, limit=None: {})
    files = {k: tmp_path / f"{k}.jsonl" for k in ("train", "val", "test")}
    cfg = report.load_config(report.ROOT / "training" / "configs" / "ktas_cpu.json")
    for init in ("stage1", "random"):
        for name in ("sft", "dss", "r2d"):
            method = report.REPORT_METHODS[name]
            report.train_and_evaluate(method, report.INITS[init], 0, cfg, files, tmp_path, (30, 20))
    stage1_dir = str(tmp_path / "seed0" / "stage1")
    assert calls == [
        ("stage1", 30, None),
        ("sft", 20, stage1_dir),
        ("dss", 20, stage1_dir),
        ("r2d", 20, stage1_dir),
        ("sft", 50, None),
        ("dss", 50, None),
        ("r2d", 50, None),
    ]


@pytest.mark.shared_data
def test_nurse_baseline_on_the_real_test_split(tmp_path, shared_data):
    from training.default_model import prepare_splits

    files = prepare_splits(shared_data / "ktas" / "data.csv", tmp_path, report.DATA_SEED)
    nurse = report.nurse_baseline(shared_data / "ktas" / "data.csv", files["test"])
    assert nurse["n"] == len(load_examples(files["test"])) > 200  # every test case has the nurse's level
    assert 0.0 < nurse["macro_f1"] <= 1.0 and 0.0 < nurse["accuracy"] <= 1.0
    assert nurse["under_triage_rate"] + nurse["over_triage_rate"] == pytest.approx(1 - nurse["accuracy"])


# --- PubMedQA end to end --------------------------------------------------------------------------


def write_pubmedqa_source(folder, n_pool: int = 20, n_test: int = 10):
    """A PubMedQA-shaped folder (ori_pqal.json + test_ground_truth.json) of short made-up items, yes the majority."""
    labels = ["yes", "no", "yes", "maybe", "yes", "no"]
    items, truth = {}, {}
    for i in range(n_pool + n_test):
        label = labels[i % len(labels)]
        pmid = str(1000 + i)
        items[pmid] = {
            "QUESTION": f"Does drug {i} lower blood pressure?",
            "CONTEXTS": [f"Trial {i} of {label}."],
            "final_decision": label,
            "LONG_ANSWER": f"The trial answers {label} for drug {i}.",
        }
        if i >= n_pool:
            truth[pmid] = label
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ori_pqal.json").write_text(json.dumps(items))
    (folder / "test_ground_truth.json").write_text(json.dumps(truth))
    return folder


def fake_pubmedqa_run(macro_f1: float, accuracy: float, n: int = 10) -> dict:
    per_class = {
        label: {"f1": macro_f1, "precision": 0.0, "recall": 0.0, "support": 1, "predicted": 1}
        for label in ("maybe", "no", "yes")
    }
    return {
        "n": n,
        "metrics": {"accuracy": accuracy, "macro_f1": macro_f1, "bleu": 0.2, "consistency": 0.5, "sufficiency": 0.4},
        "per_class": per_class,
        "rationale": {},
        "skipped": {"bertscore": "no scoring model", "fidelity": "no triage facts", "critical_named": "same"},
        "predictions": [{"rationale": "yes"}, {"rationale": "The trial answers yes for drug 3."}],
    }


def pubmedqa_args(tmp_path, *flags):
    return report.parse_args(
        [
            "--work",
            str(tmp_path / "work"),
            "--pubmedqa",
            "--pubmedqa-source",
            str(write_pubmedqa_source(tmp_path / "pqa")),
            *flags,
        ]
    )


def test_majority_baseline_predicts_the_training_majority_on_the_test_items(tmp_path):
    files = report.prepare_pubmedqa(write_pubmedqa_source(tmp_path / "pqa"), tmp_path / "work")
    base = report.majority_baseline(files["train"], files["test"])
    gold = [e.label for e in load_examples(files["test"])]  # 10 test items: 5 yes, 3 no, 2 maybe (the cycle)
    assert base["label"] == "yes" and base["n"] == len(gold) == 10
    assert base["accuracy"] == pytest.approx(gold.count("yes") / 10)
    yes_f1 = 2 * (5 / 10) * 1.0 / (5 / 10 + 1.0)  # precision 5/10, recall 1; no and maybe score 0
    assert base["macro_f1"] == pytest.approx(yes_f1 / 3)
    assert report.majority_baseline(files["train"], files["test"], 4)["n"] == 4


def test_pubmedqa_section_is_rendered_from_cached_runs(tmp_path, monkeypatch):
    args = pubmedqa_args(
        tmp_path,
        "--render-only",
        "--seeds",
        "0",
        "1",
        "2",
        "--stage1-steps",
        "30",
        "--stage2-steps",
        "20",
        "--pubmedqa-stage1-steps",
        "50",
    )
    work = report.pubmedqa_work(args.work)
    for seed, f1 in ((0, 0.3), (2, 0.5)):
        out = report.run_dir(work, "stage1", "r2d", seed)
        out.mkdir(parents=True)
        (out / "eval_report.json").write_text(json.dumps(fake_pubmedqa_run(f1, f1 + 0.2)))
        (out / "run_seconds.json").write_text(json.dumps({"seconds": 90.0}))
    monkeypatch.setattr(report, "t5_parameters", lambda shape: 737_000_000 if shape["d_model"] == 1024 else 1_700_000)
    monkeypatch.setattr("training.stage2.train_stage2", lambda *a, **k: pytest.fail("--render-only trained a run"))
    cfg = report.load_config(report.ROOT / "training" / "configs" / "ktas_cpu.json")
    missing = []
    text = "\n".join(report.run_pubmedqa(args, cfg, (30, 20), missing))
    assert missing == ["PubMedQA r2d seed 1"]  # what is missing is named
    ours = _row(text, "PubMedQA end to end", "Reason2Decide (ours)")
    assert "| 2 | 10 |" in ours and "0.400 ± 0.141" in ours and "0.600 ± 0.141" in ours  # macro-F1, accuracy
    assert ours.rstrip(" |").endswith("0.500 ± 0.000")  # one of two rationales is the bare label
    majority = _row(text, "PubMedQA end to end", "Majority class")
    assert "`yes`" in majority and f"| {0.5:.3f} | {(2 * 0.5 / 1.5) / 3:.3f} |" in majority  # from the data
    assert "| 0.6028 (60.28) |" in _row(text, "PubMedQA end to end", "The paper")
    assert "Stage 1 (50 steps" in text and "Stage 2 (20 steps)" in text  # own Stage-1 steps, shared Stage-2
    assert "`generation.max_input_tokens=1024`" in text and "`data.label_set=[]`" in text and "maybe/no/yes" in text
    assert "official 10-item test split" in text and "18 train / 2 val" in text  # counts from the manifest
    assert "1/434 of T5-Large" in text and "737M parameters" in text and "from random weights" in text
    assert "unverified" in text and "Ours, 0.400, is above it." in text
    assert "**fidelity:** skipped: no triage facts." in text  # evaluate's own reason
    assert text.count("no scoring model") == 1  # BERTScore's reason once
    assert "2 runs, 3.0 minutes" in text


def test_the_report_places_the_pubmedqa_section_and_names_its_missing_runs():
    results = {"stage1": {"r2d": {0: fake_run(0.5, 0.6)}}}
    section = ["## PubMedQA end to end", "", "text", ""]
    text = report.render(results, ["PubMedQA r2d seed 2"], NURSE, "cmd", (1, 1), "n/a", None, "", section)
    assert (
        text.index("## How each figure is computed")
        < text.index("## PubMedQA end to end")
        < text.index("## Runs not finished")
    )
    assert "PubMedQA r2d seed 2" in text
    assert "## PubMedQA" not in report.render(results, [], NURSE, "cmd", (1, 1), "n/a")
    baseline = {"label": "yes", "n": 500, "accuracy": 0.552, "macro_f1": 0.237}
    counts = {"train": 450, "val": 50, "test": 500, "labels": ["maybe", "no", "yes"]}
    cfg = report.load_config(report.ROOT / "training" / "configs" / "ktas_cpu.json")
    empty = "\n".join(report.render_pubmedqa({}, baseline, counts, (400, 400), cfg.arch, (700, 7), []))
    assert "No PubMedQA run has finished" in empty and "| 0 | 500 | n/a |" in empty and "Ours," not in empty


def test_parameter_count_of_a_t5_shape():
    shape = {
        "vocab_size": 10,
        "d_model": 4,
        "d_kv": 2,
        "d_ff": 8,
        "num_layers": 1,
        "num_decoder_layers": 1,
        "num_heads": 2,
        "feed_forward_proj": "relu",
    }
    # shared embedding 10x4; encoder block: q,k,v,o 4x4 each + relative bias 32x2 + 2 norms + wi 4x8 + wo 8x4,
    # decoder block adds cross-attention (4 x 4x4 + a norm) and its own relative bias; two final norms
    encoder = 4 * 16 + 32 * 2 + 2 * 4 + 32 + 32
    decoder = 4 * 16 + 32 * 2 + 3 * 4 + 32 + 32 + 4 * 16
    assert report.t5_parameters(shape) == 40 + encoder + decoder + 2 * 4


@pytest.mark.slow
def test_pubmedqa_end_to_end_with_the_tiny_config(tmp_path, monkeypatch):
    # prepare_data pubmedqa -> Stage 1 -> Stage 2 (r2d) -> evaluate, on made-up items with tiny_cpu.json; cached
    args = pubmedqa_args(
        tmp_path, "--seeds", "0", "--stage1-steps", "2", "--stage2-steps", "2", "--pubmedqa-limit", "6"
    )
    cfg = report.load_config(report.ROOT / "training" / "configs" / "tiny_cpu.json")
    monkeypatch.setattr(report, "t5_parameters", lambda shape: shape["d_model"])  # T5-Large's count: its own test
    text = "\n".join(report.run_pubmedqa(args, cfg, (2, 2), []))
    run = report.run_dir(report.pubmedqa_work(args.work), "stage1", "r2d", 0)
    saved = json.loads((run / "eval_report.json").read_text())
    assert saved["n"] == 6 and saved["task"] == "pubmedqa" and not saved["ordinal"]
    assert set(saved["label_set"]) == {"yes", "no", "maybe"}  # data.label_set=[]: from the data
    assert saved["generation"]["max_input_tokens"] == 1024
    assert "fidelity" in saved["skipped"] and "fidelity" not in saved["metrics"]
    config = json.loads((run / "r2d_config.json").read_text())
    assert config["optim"]["max_steps"] == 2 and config["stage2"]["method"] == "r2d"
    assert json.loads((run.parent.parent / "stage1" / "r2d_config.json").read_text())["optim"]["max_steps"] == 2
    assert f"| {saved['metrics']['macro_f1']:.3f} |" in _row(text, "PubMedQA end to end", "Reason2Decide")
    assert "Stage 1 (2 steps" in text and "Stage 2 (2 steps)" in text  # read from the runs' own configs
    assert "on 6 of the 10 test items" in text and "| 6 |" in _row(text, "PubMedQA end to end", "Majority")
    monkeypatch.setattr("training.stage2.train_stage2", lambda *a, **k: pytest.fail("a cached run was trained"))
    assert "\n".join(report.run_pubmedqa(args, cfg, (2, 2), [])) == text

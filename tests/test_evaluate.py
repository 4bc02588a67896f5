"""The evaluation command: metrics from known predictions, the model loop, the report and the CLI."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from r2d.config import load_config, save_config
from r2d.data import Example, write_examples
from r2d.errors import DatasetSchemaError
from r2d.eval import metrics
from r2d.eval.bertscore import SKIP_MESSAGE, BertScoreResult
from r2d.eval.metrics import MetricInputError
from r2d.sources import KTAS_LABELS
from training import evaluate
from training.corpus.splits import file_sha256
from training.evaluate import evaluate_model, evaluate_predictions

KTAS = list(KTAS_LABELS)
GOLD_RATIONALE = "hypotension with tachycardia and chest pain suggests shock and needs emergent care"


def make_examples(labels=("1", "2", "3", "4"), rationale=GOLD_RATIONALE) -> list[Example]:
    return [Example(f"case {i}", label, rationale, "nurse", str(i)) for i, label in enumerate(labels)]


def make_prediction(label: str, rationale: str = GOLD_RATIONALE) -> SimpleNamespace:
    return SimpleNamespace(label=label, rationale=rationale, probabilities=())


class FakeScorer:
    """Stands in for r2d.eval.bertscore.BertScorer: fixed scores, and a record of what it was asked."""

    model_id = "fake-encoder (layer 1)"

    def __init__(self):
        self.calls = []

    def score(self, hypotheses, references, idf=False):
        self.calls.append((list(hypotheses), list(references)))
        n = len(hypotheses)
        return BertScoreResult(precision=(0.5,) * n, recall=(0.7,) * n, f1=tuple(0.1 * (i + 1) for i in range(n)))


class FakePredictor:
    """The Predictor interface evaluate_model uses, with scripted answers."""

    label_set = tuple(KTAS)
    ordinal = True

    def __init__(self, labels, rationales, repredicted):
        self.labels, self.rationales, self.repredicted = labels, rationales, dict(zip(rationales, repredicted))
        self.batches, self.rationale_calls = [], []

    def predict_batch(self, case_texts, batch_size=8, progress=None):
        self.batches.append((list(case_texts), batch_size))
        return [make_prediction(lab, rat) for lab, rat in zip(self.labels, self.rationales)]

    def predict_label_from_rationale(self, rationale):
        self.rationale_calls.append(rationale)
        return SimpleNamespace(best=self.repredicted[rationale])


# --- evaluate_predictions ---------------------------------------------------------------------


def test_evaluate_predictions_on_a_known_set():
    examples = make_examples()  # gold 1 2 3 4
    predictions = [
        make_prediction("1"),
        make_prediction("2"),
        make_prediction("2", "sore throat"),
        make_prediction("5", ""),
    ]
    repredicted = ["1", "3", "2", "4"]
    scorer = FakeScorer()
    report = evaluate_predictions(examples, predictions, repredicted, label_set=KTAS, ordinal=True, scorer=scorer)
    m = report["metrics"]
    assert report["n"] == 4
    assert m["accuracy"] == pytest.approx(0.5)
    # F1: 1 -> 1, 2 -> 2/3, 3 -> 0, 4 -> 0, 5 (predicted, not gold) -> 0: mean over 5 present classes
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3) / 5)
    assert m["under_triage_rate"] == pytest.approx(0.25)  # 4 -> 5
    assert m["over_triage_rate"] == pytest.approx(0.25)  # 3 -> 2
    # emergencies (gold 1, 2) were both called 1 and 2: none called 4-5
    assert (m["severe_under_triage"], m["severe_under_triage_rate"]) == (0, 0.0)
    assert report["severe_under_triage"] == {"count": 0, "emergencies": 2, "rate": 0.0}
    assert m["consistency"] == pytest.approx(0.5)  # repredicted == first prediction at items 0 and 2
    assert m["sufficiency"] == pytest.approx(0.5)  # repredicted == gold at items 0 and 3
    # BLEU: two identical rationales (1.0), "sore throat" (0.0) and an empty one (0.0)
    assert m["bleu"] == pytest.approx(0.5)
    assert m["bertscore_f1"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4) / 4)
    assert (m["bertscore_precision"], m["bertscore_recall"]) == pytest.approx((0.5, 0.7))
    # hypotheses are the generated rationales, references the gold ones
    assert scorer.calls == [([p.rationale for p in predictions], [GOLD_RATIONALE] * 4)]
    assert report["rationale"]["bertscore_model"] == FakeScorer.model_id
    # "case 0".."case 3" hold no triage facts: fidelity is not given a number on such data
    assert report["skipped"] == {"fidelity": evaluate.NO_TRIAGE_FACTS, "critical_named": evaluate.NO_TRIAGE_FACTS}
    assert "fidelity" not in m and report["fidelity"]["cases_without_facts"] == 4
    assert list(report["per_class"]) == KTAS and report["per_class"]["5"]["predicted"] == 1
    assert report["confusion_matrix"]["counts"][2] == [0, 1, 0, 0, 0]  # gold 3 predicted as 2
    row = report["predictions"][3]
    assert {k: row[k] for k in ("id", "gold_label", "predicted_label", "repredicted_label", "rationale")} == {
        "id": "3",
        "gold_label": "4",
        "predicted_label": "5",
        "repredicted_label": "4",
        "rationale": "",
    }
    assert row["fact_check"][0].startswith("The rationale is empty")
    json.dumps(report)  # the report is plain JSON


def test_skipped_metrics_say_why_and_get_no_number():
    examples = make_examples(("yes", "no"), rationale="")
    report = evaluate_predictions(
        examples, [make_prediction("yes"), make_prediction("yes")], label_set=["yes", "no", "maybe"], ordinal=False
    )
    skipped = report["skipped"]
    assert set(skipped) == {
        "triage_errors",
        "severe_under_triage",
        "bleu",
        "bertscore",
        "consistency",
        "sufficiency",
        "fidelity",
        "critical_named",
    }
    assert skipped["bleu"] == evaluate.NO_RATIONALES
    assert not set(skipped) & set(report["metrics"])
    assert "under_triage_rate" not in report["metrics"] and "severe_under_triage" not in report
    assert report["rationale"]["n_with_gold_rationale"] == 0


def test_severe_under_triage_counts_emergencies_called_4_or_5():
    # gold 1 2 2 3 predicted 4 5 2 5: emergencies are the first three; 1 -> 4 and 2 -> 5 are severe (2 of 3);
    # 3 -> 5 is under-triage but not of an emergency, so under-triage is 3 of 4
    report = evaluate_predictions(
        make_examples(("1", "2", "2", "3")), [make_prediction(lab) for lab in "4525"], label_set=KTAS, ordinal=True
    )
    m = report["metrics"]
    assert m["severe_under_triage"] == 2 and m["severe_under_triage_rate"] == pytest.approx(2 / 3)
    assert m["under_triage_rate"] == pytest.approx(3 / 4)
    # the longest metric name keeps a space before its value
    assert "severe_under_triage_rate  0.6667" in evaluate.format_table(report)


def test_severe_under_triage_rate_is_skipped_without_emergencies():
    report = evaluate_predictions(
        make_examples(("3", "4")), [make_prediction("5"), make_prediction("5")], label_set=KTAS, ordinal=True
    )
    assert report["metrics"]["severe_under_triage"] == 0
    assert "severe_under_triage_rate" not in report["metrics"]
    assert report["skipped"]["severe_under_triage_rate"] == evaluate.NO_EMERGENCIES


def test_bertscore_skip_message_without_scorer():
    report = evaluate_predictions(make_examples(("1",)), [make_prediction("1")], ["1"], ordinal=True)
    assert report["skipped"] == {
        "bertscore": SKIP_MESSAGE,
        "fidelity": evaluate.NO_TRIAGE_FACTS,
        "critical_named": evaluate.NO_TRIAGE_FACTS,
    }
    assert "bertscore_f1" not in report["metrics"] and report["metrics"]["bleu"] == pytest.approx(1.0)


def test_rationale_metrics_use_only_examples_with_a_gold_rationale():
    examples = [Example("a", "1", GOLD_RATIONALE), Example("b", "2", "")]
    scorer = FakeScorer()
    report = evaluate_predictions(examples, [make_prediction("1"), make_prediction("2", "anything")], scorer=scorer)
    assert report["rationale"]["n_with_gold_rationale"] == 1
    assert scorer.calls == [([GOLD_RATIONALE], [GOLD_RATIONALE])]


@pytest.mark.parametrize("n_predictions", [0, 3])
def test_misaligned_predictions_raise(n_predictions):
    with pytest.raises(MetricInputError, match="predictions"):
        evaluate_predictions(make_examples(("1", "2")), [make_prediction("1")] * n_predictions)


CRITICAL_CASE = (
    "70-year-old man, arrived by public ambulance, not an injury. Chief complaint: dyspnea. "
    "Mental status: alert. No pain. Blood pressure 130/80 mmHg, heart rate 90/min, "
    "respiratory rate 30/min, temperature 36.5 °C, SpO2 84%."
)


def test_fidelity_and_critical_findings_named_are_reported():
    examples = [
        Example(CRITICAL_CASE, "2", "", "rules", "a"),
        Example(CRITICAL_CASE, "2", "", "rules", "b"),
        Example(CRITICAL_CASE, "2", "", "rules", "c"),
    ]
    predictions = [
        make_prediction("2", "SpO2 84% and respiratory rate 30/min: breathing is at risk."),
        make_prediction("2", "Vital signs within adult limits, alert, no pain."),
        make_prediction("2", "SpO2 97%, RR 30/min. This fits KTAS 4."),
    ]
    report = evaluate_predictions(examples, predictions, label_set=KTAS, ordinal=True)
    m = report["metrics"]
    assert m["fidelity"] == pytest.approx(1 / 3)  # only the first restates the case
    assert m["critical_named"] == pytest.approx(2 / 3)  # the second names neither SpO2 nor RR
    problems = report["fidelity"]["rationales_with_problem"]
    assert problems == {"abnormal_called_normal": 1, "number_not_in_case": 1, "wrong_level": 1}
    assert report["fidelity"]["n_with_critical"] == 3
    assert any("SpO2 97%" in line for line in report["predictions"][2]["fact_check"])


# --- evaluate_model ---------------------------------------------------------------------------


def test_consistency_reads_rationales_with_label_mentions_masked():
    examples = make_examples(("1", "2"))
    rationales = ["SpO2 80%: fits KTAS 1 (resuscitation).", "Stable, level 2."]
    predictor = FakePredictor(["1", "2"], rationales, ["1", "2"])
    predictor.label_names = {"1": "Resuscitation", "2": "Emergency"}
    predictor.repredicted = {"SpO2 80%: fits [LABEL] ([LABEL]).": "1", "Stable, [LABEL].": "3"}
    report = evaluate_model(predictor, examples)
    assert predictor.rationale_calls == ["SpO2 80%: fits [LABEL] ([LABEL]).", "Stable, [LABEL]."]
    assert report["metrics"]["consistency"] == pytest.approx(0.5)
    assert report["predictions"][0]["rationale"] == rationales[0]  # the report keeps what the model wrote


def test_evaluate_model_predicts_then_repredicts_from_rationales():
    examples = make_examples(("1", "2", "3"))
    predictor = FakePredictor(["1", "3", "3"], ["r one", "r two", ""], ["1", "2", "unused"])
    report = evaluate_model(predictor, examples, batch_size=2)
    assert predictor.batches == [(["case 0", "case 1", "case 2"], 2)]
    assert predictor.rationale_calls == ["r one", "r two"]  # an empty rationale is not re-predicted ...
    assert [p["repredicted_label"] for p in report["predictions"]] == ["1", "2", ""]  # ... and never agrees
    assert report["metrics"]["consistency"] == pytest.approx(1 / 3)
    assert report["metrics"]["sufficiency"] == pytest.approx(2 / 3)
    assert report["metrics"]["macro_f1"] == pytest.approx(metrics.macro_f1(["1", "2", "3"], ["1", "3", "3"], KTAS))
    assert "triage_errors" in report  # the predictor's label set is ordinal


def test_evaluate_model_rejects_labels_the_model_cannot_predict():
    predictor = FakePredictor(["1"], ["r"], ["1"])
    with pytest.raises(DatasetSchemaError, match=r"\['7'\]"):
        evaluate_model(predictor, make_examples(("7",)))
    assert predictor.batches == []  # refused before any prediction


# --- report and CLI ---------------------------------------------------------------------------


def test_format_table_lists_metrics_classes_and_skips():
    report = evaluate_predictions(
        make_examples(), [make_prediction(lab) for lab in "1225"], label_set=KTAS, ordinal=True
    )
    report.update(label_names={"1": "Resuscitation"}, model="m", data={"path": "d.jsonl"})
    table = evaluate.format_table(report)
    for name in ("accuracy", "macro_f1", "under_triage_rate", "bleu", "Resuscitation", SKIP_MESSAGE):
        assert name in table
    assert len([line for line in table.splitlines() if line.startswith(("1 ", "2 ", "3 ", "4 ", "5 "))]) == 5


def test_format_table_names_the_bertscore_model_and_its_caveat():
    report = evaluate_predictions(
        make_examples(("1",)),
        [make_prediction("1")],
        scorer=FakeScorer(),
        bertscore_note="fallback; NOT the paper's roberta-large",
    )
    table = evaluate.format_table(report)
    assert FakeScorer.model_id in table and "NOT the paper's roberta-large" in table


# --- evaluation files with rows that are not triage notes ------------------------------------------


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_eval_rows_reads_each_rows_kind(tmp_path):
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": "a", "question": "BP 70/40, HR 130, unresponsive", "label": "1", "kind": "triage"},
            {"id": "b", "question": "hello", "label": "not_triage", "kind": "not_triage"},
            {"id": "c", "question": "sore throat, vitals normal", "label": "5"},
        ],
    )  # no kind: a triage note
    examples, kinds = evaluate.load_eval_rows(data)
    assert [e.example_id for e in examples] == ["a", "b", "c"]
    assert kinds == ["triage", "not_triage", "triage"]


def test_load_eval_rows_reads_a_csv_without_kinds_as_triage(tmp_path):
    data = write_examples(tmp_path / "d.csv", make_examples(("1", "2")))
    assert evaluate.load_eval_rows(data)[1] == ["triage", "triage"]


def test_load_eval_rows_refuses_an_unknown_kind_with_its_line(tmp_path):
    data = write_jsonl(
        tmp_path / "d.jsonl", [{"question": "q", "label": "1"}, {"question": "q", "label": "1", "kind": "letter"}]
    )
    with pytest.raises(DatasetSchemaError, match=r"d\.jsonl:2: kind 'letter'"):
        evaluate.load_eval_rows(data)


def test_not_triage_block_counts_what_the_app_would_warn_on():
    # "hello" holds no triage fact, so the app warns; a note with vitals and AVPU is not warned
    examples = [
        Example("hello", "not_triage", "", "author", "x"),
        Example("BP 70/40, HR 130, unresponsive", "not_triage", "", "author", "y"),
    ]
    block = evaluate.not_triage_block(examples, [make_prediction("3", "r1"), make_prediction("1", "r2")])
    assert (block["n"], block["warned"]) == (2, 1)
    assert block["rows"][0] == {"id": "x", "warned": True, "predicted_label": "3", "rationale": "r1"}
    assert block["rows"][1]["warned"] is False
    with pytest.raises(MetricInputError):
        evaluate.not_triage_block(examples, [make_prediction("3")])


def test_main_keeps_not_triage_rows_out_of_the_label_metrics(tmp_path, tiny_model_dir, tiny_examples, capsys):
    pytest.importorskip("r2d.model.inference", reason="r2d/model/inference.py is not written yet")
    rows = [dict(e.to_dict(), kind="triage") for e in tiny_examples[:2]]
    rows += [
        {"id": "n1", "question": "hello", "label": "not_triage", "kind": "not_triage"},
        {"id": "n2", "question": "milk, eggs, bread", "label": "not_triage", "kind": "not_triage"},
    ]
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)
    report = evaluate.main(
        [
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "r.json"),
            "--quantization",
            "none",
            "--no-bertscore",
        ]
    )
    # the label "not_triage" is outside the model's label set: scored, it would have been refused
    assert report["n"] == 2 and [p["id"] for p in report["predictions"]] == [e.example_id for e in tiny_examples[:2]]
    assert sum(map(sum, report["confusion_matrix"]["counts"])) == 2
    block = report["not_triage"]
    assert (block["n"], block["warned"]) == (2, 2) and [r["id"] for r in block["rows"]] == ["n1", "n2"]
    assert all(r["predicted_label"] in KTAS for r in block["rows"])
    printed = capsys.readouterr().out
    assert "not triage notes (no level, not in the metrics above): 2, the app would warn on 2" in printed


def test_main_refuses_a_file_of_only_not_triage_rows(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": "hello", "label": "not_triage", "kind": "not_triage"}])
    with pytest.raises(SystemExit, match="no triage rows"):
        evaluate.main(["--model", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "r.json")])


def test_resolve_config_prefers_the_models_own_config(tmp_path):
    save_config(load_config(None, ["generation.max_input_tokens=99"]), tmp_path)
    cfg, source = evaluate.resolve_config(
        tmp_path, quantization="none", overrides=["generation.max_rationale_tokens=7"]
    )
    assert source.endswith("r2d_config.json")
    assert (cfg.generation.max_input_tokens, cfg.generation.max_rationale_tokens) == (99, 7)
    assert (cfg.model.name_or_path, cfg.model.quantization) == (str(tmp_path), "none")


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--batch-size", "0"], ["--quantization", "8bit"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--model", "m", "--data", "d.jsonl", *argv])


def test_main_turns_domain_errors_into_an_exit_message(tmp_path):
    with pytest.raises(SystemExit, match="^error: .*does not exist"):
        evaluate.main(
            ["--model", str(tmp_path), "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r.json")]
        )
    assert not (tmp_path / "r.json").exists()


def test_main_refuses_labels_outside_the_models_set_before_loading(tmp_path, tiny_model_dir):
    data = write_examples(tmp_path / "d.jsonl", make_examples(("1", "9")))
    with pytest.raises(SystemExit, match=r"error: gold label\(s\) \['9'\]"):
        evaluate.main(["--model", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "r.json")])


def test_main_end_to_end_on_the_tiny_model(tmp_path, tiny_model_dir, tiny_examples, capsys):
    pytest.importorskip("r2d.model.inference", reason="r2d/model/inference.py is not written yet")
    data = write_examples(tmp_path / "cases.jsonl", tiny_examples)
    out = tmp_path / "out" / "report.json"
    not_a_model = tmp_path / "no_encoder_here"
    not_a_model.mkdir()
    returned = evaluate.main(
        [
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--out",
            str(out),
            "--limit",
            "3",
            "--batch-size",
            "2",
            "--quantization",
            "none",
            "--bertscore-model",
            str(not_a_model),
        ]
    )
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report == json.loads(json.dumps(returned))
    assert report["n"] == 3 and len(report["predictions"]) == 3
    assert report["data"] == {"path": str(data), "sha256": file_sha256(data)}
    assert report["quantization"] == "none" and report["label_set"] == KTAS and report["ordinal"] is True
    assert report["skipped"]["bertscore"].startswith(SKIP_MESSAGE)
    for name in ("accuracy", "macro_f1", "under_triage_rate", "over_triage_rate", "bleu", "consistency", "sufficiency"):
        assert 0.0 <= report["metrics"][name] <= 1.0
    assert all(p["predicted_label"] in KTAS for p in report["predictions"])
    assert report["created_at"] and report["format"] == evaluate.REPORT_FORMAT
    printed = capsys.readouterr().out
    assert "macro_f1" in printed and str(out) in printed


def test_evaluation_loads_the_model_as_the_app_does(tmp_path, tiny_model_dir, tiny_examples):
    """The report describes what a nurse would see: the backend and quantization the app's loader picks."""
    from r2d.config import GenerationConfig, ModelConfig
    from r2d.model.load import load_predictor

    data = write_examples(tmp_path / "cases.jsonl", tiny_examples)
    cache = tmp_path / "ct2"
    report = evaluate.main(
        [
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "r.json"),
            "--limit",
            "2",
            "--no-bertscore",
            "--set",
            f"model.ct2_cache_dir={cache}",
        ]
    )
    app = load_predictor(ModelConfig(name_or_path=str(tiny_model_dir), ct2_cache_dir=str(cache)), GenerationConfig())
    assert (report["backend"], report["quantization"]) == (app.backend, app.quantization)
    assert report["quantization_requested"] == "auto"

"""Metric functions against hand-computed values (scikit-learn's conventions)."""

from __future__ import annotations

import sys

import pytest

from r2d.errors import R2DError
from r2d.eval import metrics
from r2d.eval.metrics import MetricInputError


@pytest.mark.parametrize(
    "gold, pred, expected",
    [
        (["1", "2", "3"], ["1", "2", "3"], 1.0),
        (["1", "2", "3", "4"], ["1", "1", "3", "5"], 0.5),
        (["yes", "no"], ["no", "yes"], 0.0),
    ],
)
def test_accuracy(gold, pred, expected):
    assert metrics.accuracy(gold, pred) == pytest.approx(expected)


# Hand computation: F1_c = 2 tp / (2 tp + fp + fn) = 2 tp / (support + predicted).
@pytest.mark.parametrize(
    "gold, pred, labels, expected",
    [
        # a: 2*1/(2+1)=2/3, b: 2*1/(1+3)=1/2, c: never predicted -> 0; mean over {a,b,c} = 7/18
        (["a", "a", "b", "c"], ["a", "b", "b", "b"], None, 7 / 18),
        # class "z" is predicted but absent from gold: it joins the union with F1 0 (sklearn convention)
        (["x", "x", "y"], ["x", "z", "y"], None, (2 / 3 + 1 + 0) / 3),
        # perfect on the classes present; the absent classes 3, 4, 5 are excluded, not counted as 0
        (["1", "2", "1"], ["1", "2", "1"], ["1", "2", "3", "4", "5"], 1.0),
        # "3" is in the label set and never predicted but occurs in gold: it counts with F1 0
        (["1", "3"], ["1", "1"], ["1", "2", "3"], (2 / 3 + 0) / 2),
        (["p", "q"], ["q", "p"], None, 0.0),
    ],
)
def test_macro_f1_hand_computed(gold, pred, labels, expected):
    assert metrics.macro_f1(gold, pred, labels) == pytest.approx(expected)


def test_macro_f1_class_never_predicted_matches_sklearn_convention():
    # sklearn.metrics.f1_score(gold, pred, average="macro") = mean(F1 a=0.8, b=0.5, c=0) = 0.4333...
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "a", "b"]
    # a: tp2, support2, predicted3 -> 4/5; b: tp1, support2, predicted2 -> 2/4; c: 0
    assert metrics.macro_f1(gold, pred) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert metrics.per_class_f1(gold, pred)["c"].f1 == 0.0
    assert metrics.per_class_f1(gold, pred)["c"].precision == 0.0  # never predicted: 0, not undefined


def test_per_class_f1_table():
    scores = metrics.per_class_f1(["1", "1", "2", "3"], ["1", "2", "2", "2"])
    assert list(scores) == ["1", "2", "3"]
    one, two, three = scores["1"], scores["2"], scores["3"]
    assert (one.precision, one.recall, one.support, one.predicted) == (1.0, 0.5, 2, 1)
    assert one.f1 == pytest.approx(2 / 3)
    assert (two.precision, two.recall, two.support, two.predicted) == pytest.approx((1 / 3, 1.0, 1, 3))
    assert two.f1 == pytest.approx(0.5)
    assert (three.precision, three.recall, three.f1, three.support) == (0.0, 0.0, 0.0, 1)
    assert set(one.to_dict()) == {"precision", "recall", "f1", "support", "predicted"}


def test_labels_sort_numerically():
    assert list(metrics.per_class_f1(["10", "2", "1"], ["2", "10", "1"])) == ["1", "2", "10"]
    assert metrics.sort_labels({"b", "10", "a", "9"}) == ["9", "10", "a", "b"]


def test_confusion_matrix_rows_are_gold():
    labels, counts = metrics.confusion_matrix(["1", "1", "2", "3"], ["1", "2", "2", "1"], ["1", "2", "3"])
    assert labels == ["1", "2", "3"]
    assert counts == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert sum(map(sum, counts)) == 4


@pytest.mark.parametrize(
    "gold, pred, under, over",
    [
        (["1", "2", "3", "4"], ["2", "2", "1", "5"], 2, 1),  # 1->2 and 4->5 are less urgent than gold
        (["3", "3"], ["3", "3"], 0, 0),
        (["5", "5", "5", "5"], ["1", "2", "3", "4"], 0, 4),
    ],
)
def test_triage_errors(gold, pred, under, over):
    result = metrics.triage_errors(gold, pred)
    assert (result.under_triage, result.over_triage, result.n) == (under, over, len(gold))
    assert result.under_triage_rate == pytest.approx(under / len(gold))
    assert result.over_triage_rate == pytest.approx(over / len(gold))


def test_triage_errors_refuses_unordered_labels():
    with pytest.raises(MetricInputError, match="ordinal"):
        metrics.triage_errors(["yes"], ["no"], ordinal=False)
    with pytest.raises(MetricInputError, match="numeric"):
        metrics.triage_errors(["yes"], ["no"])


# Severe under-triage by hand: emergencies = gold 1 or 2; severe = one predicted 4 or 5; rate = severe / emergencies.
@pytest.mark.parametrize(
    "gold, pred, count, emergencies, rate",
    [
        # 1 -> 4 and 2 -> 5 are severe; 3 -> 5 is under-triage but not of an emergency; 5 -> 1 is over-triage
        (["1", "2", "3", "4", "5"], ["4", "5", "5", "5", "1"], 2, 2, 1.0),
        # 1 -> 4 and 2 -> 5 are severe; 1 -> 3 and 2 -> 3 are under-triage but not severe; 2 -> 1 is over-triage
        (["1", "1", "2", "2", "2"], ["3", "4", "1", "5", "3"], 2, 5, 2 / 5),
        (["2", "2", "1"], ["2", "3", "1"], 0, 3, 0.0),
        # no emergency in gold: no rate (0/0), even though every case is under-triaged
        (["3", "4", "3"], ["5", "5", "4"], 0, 0, None),
    ],
)
def test_severe_under_triage_hand_computed(gold, pred, count, emergencies, rate):
    result = metrics.severe_under_triage(gold, pred)
    assert (result.count, result.emergencies) == (count, emergencies)
    assert result.rate == (None if rate is None else pytest.approx(rate))
    assert result.to_dict() == {"count": count, "emergencies": emergencies, "rate": result.rate}


def test_severe_under_triage_is_counted_within_under_triage():
    gold, pred = ["1", "2", "2", "3", "1"], ["5", "4", "3", "4", "1"]
    severe, all_errors = metrics.severe_under_triage(gold, pred), metrics.triage_errors(gold, pred)
    assert (severe.count, all_errors.under_triage) == (2, 4)  # 1->5, 2->4 among 1->5, 2->4, 2->3, 3->4


def test_severe_under_triage_refuses_unordered_labels():
    with pytest.raises(MetricInputError, match="ordinal"):
        metrics.severe_under_triage(["1"], ["4"], ordinal=False)
    with pytest.raises(MetricInputError, match="numeric"):
        metrics.severe_under_triage(["yes"], ["no"])


def test_bleu_identical_is_one_and_disjoint_is_zero():
    text = "Hypotension with tachycardia and chest pain suggests shock; emergent care."
    assert metrics.sentence_bleu(text, text) == pytest.approx(1.0)
    assert metrics.sentence_bleu(text, "sore throat, minor complaint") == pytest.approx(0.0, abs=1e-9)
    assert metrics.sentence_bleu(text, "") == 0.0
    partial = metrics.sentence_bleu(text, "Hypotension with tachycardia suggests shock.")
    assert 0.0 < partial < 1.0


def test_bleu_tokens_are_nltks_word_tokenizer():
    # NLTK's Treebank-style word tokenizer, lowercased: a slash inside a number stays, the final period splits
    assert metrics.bleu_tokens("BP 88/50, HR 124.") == ["bp", "88/50", ",", "hr", "124", "."]
    assert metrics.bleu_tokens("Doesn't bear weight") == ["does", "n't", "bear", "weight"]


def test_bleu_tokens_end_every_sentence_as_punkt_would():
    # word_tokenize splits sentences (Punkt) first, so an inner sentence's period is its own token too;
    # NLTK's tokenizer alone (preserve_line=True) would leave "124." glued
    from nltk.tokenize import word_tokenize

    text = "HR 124. Chest pain! Stable? yes"
    assert word_tokenize(text.lower(), preserve_line=True)[:2] == ["hr", "124."]
    assert metrics.bleu_tokens(text) == ["hr", "124", ".", "chest", "pain", "!", "stable", "?", "yes"]


def test_bleu_is_nltk_sentence_bleu_method4_on_those_tokens():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    ref = "Hypotension with tachycardia and chest pain suggests shock. Emergent care."
    hyp = "Hypotension, tachycardia and pain suggest shock. Care now."
    expected = sentence_bleu(
        [metrics.bleu_tokens(ref)], metrics.bleu_tokens(hyp), smoothing_function=SmoothingFunction().method4
    )
    assert metrics.sentence_bleu(ref, hyp) == pytest.approx(expected) and 0 < expected < 1


def test_bleu_with_punkt_is_exactly_word_tokenize():
    from nltk.tokenize import word_tokenize

    if not metrics._has_punkt():
        pytest.skip("NLTK's Punkt data is not installed (it is not on PyPI); the fallback is tested above")
    text = "Dr. Kim saw BP 88/50. Shock is likely; e.g. give fluids. Re-check in 5 min."
    assert metrics.bleu_tokens(text) == word_tokenize(text.lower())
    assert "paper" in metrics.bleu_tokenizer()


def test_mean_sentence_bleu_is_the_mean():
    refs = ["the patient is stable and can wait", "severe chest pain needs care now"]
    hyps = ["the patient is stable and can wait", "a sore throat"]
    expected = (metrics.sentence_bleu(refs[0], hyps[0]) + metrics.sentence_bleu(refs[1], hyps[1])) / 2
    assert metrics.mean_sentence_bleu(refs, hyps) == pytest.approx(expected)


def test_consistency_and_sufficiency_definitions():
    gold = ["1", "2", "3", "4"]
    first = ["1", "2", "2", "5"]
    repredicted = ["1", "3", "2", "4"]
    # consistency compares with the first prediction: items 0 and 2 agree
    assert metrics.consistency(first, repredicted) == pytest.approx(0.5)
    # sufficiency compares with gold: items 0 and 3 agree
    assert metrics.sufficiency(gold, repredicted) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "fn",
    [
        metrics.accuracy,
        metrics.macro_f1,
        metrics.per_class_f1,
        metrics.confusion_matrix,
        metrics.triage_errors,
        metrics.severe_under_triage,
        metrics.mean_sentence_bleu,
        metrics.consistency,
        metrics.sufficiency,
    ],
)
def test_empty_and_mismatched_inputs_raise(fn):
    with pytest.raises(MetricInputError, match="empty"):
        fn([], [])
    with pytest.raises(MetricInputError, match="aligned"):
        fn(["1", "2"], ["1"])


def test_label_outside_label_set_raises():
    with pytest.raises(MetricInputError, match=r"\['9'\]"):
        metrics.macro_f1(["1", "9"], ["1", "1"], labels=["1", "2"])
    with pytest.raises(MetricInputError, match="empty"):
        metrics.macro_f1(["1"], ["1"], labels=[])


def test_metric_errors_are_domain_errors():
    # the CLI edge turns R2DError into "error: ..."; callers catching ValueError still work
    assert issubclass(MetricInputError, R2DError) and issubclass(MetricInputError, ValueError)


def test_metrics_module_does_not_need_torch():
    import subprocess

    code = "import sys, r2d.eval.metrics; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=str(metrics.__file__).rsplit("/r2d/", 1)[0]).returncode == 0

"""r2d.model.label_scores: the normalisation every engine shares, by hand and against the torch scoring."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from r2d.model.label_scores import scores_from_token_logprobs
from r2d.model.scoring import score_candidates, tokenize_targets
from r2d.prompts import predict_prompt


def test_scores_from_token_logprobs_by_hand():
    # two cases: ("a", "bb") and ("c"); token log-probs written out, the figures derived on paper
    logps = [[math.log(0.5)], [math.log(0.5), math.log(0.2)], [math.log(0.9), math.log(0.9), math.log(0.9)]]
    first, second = scores_from_token_logprobs([["a", "bb"], ["c"]], logps)
    assert first.labels == ("a", "bb") and second.labels == ("c",)
    assert first.log_likelihoods == pytest.approx((math.log(0.5), math.log(0.1)))
    assert first.probabilities == pytest.approx((0.5 / 0.6, 0.1 / 0.6))  # softmax of the sums
    assert first.best == "a" and first.confidence == pytest.approx(0.5)  # exp(mean log-prob) of "a"
    assert second.probabilities == (1.0,) and second.confidence == pytest.approx(0.9)
    # the longer label can win: its confidence is its geometric-mean token probability
    [s] = scores_from_token_logprobs([["x", "yy"]], [[math.log(0.1)], [math.log(0.6), math.log(0.5)]])
    assert s.best == "yy" and s.confidence == pytest.approx(math.sqrt(0.3))
    # each case's confidence is read at its own best label, also when that is not its first candidate
    one = [math.log(0.5)]
    cases = scores_from_token_logprobs([["a", "bb"], ["c", "dd"]], [one, [math.log(0.1)] * 2, one, [0.0, 0.0]])
    assert [c.best for c in cases] == ["a", "dd"] and cases[1].confidence == pytest.approx(1.0)


def test_scores_from_token_logprobs_equal_score_candidates(tiny_t5, tiny_tokenizer):
    prompt, labels = predict_prompt("chest pain"), ["1", "maybe not at all"]
    expected = score_candidates(tiny_t5, tiny_tokenizer, [prompt], [labels], 64, 0)[0]  # labels never cut
    enc = tiny_tokenizer([prompt], return_tensors="pt")
    logps = []
    for label in labels:
        target = tokenize_targets(tiny_tokenizer, [label], 0)
        with torch.no_grad():
            logits = tiny_t5(**enc, labels=target).logits
        logps.append(torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze().reshape(-1).tolist())
    [got] = scores_from_token_logprobs([labels], logps)
    assert got.log_likelihoods == pytest.approx(expected.log_likelihoods, abs=1e-4)
    assert got.probabilities == pytest.approx(expected.probabilities, abs=1e-4)
    assert got.confidence == pytest.approx(expected.confidence, abs=1e-4)


def test_probabilities_stay_finite_when_every_candidate_is_unlikely():
    """A long label the model finds unlikely sums to a large negative log-likelihood; exp() of it underflows in
    float32, so the softmax must be taken relative to the best candidate, not of the raw sums."""
    unlikely = [[-3.0] * 40, [-3.0] * 40 + [-1.0]]  # sums -120 and -121
    [s] = scores_from_token_logprobs([["long a", "long b"]], unlikely)
    assert s.log_likelihoods == pytest.approx((-120.0, -121.0))
    assert s.probabilities == pytest.approx((1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))))
    assert s.best == "long a" and s.confidence == pytest.approx(math.exp(-3.0))


def test_scores_from_token_logprobs_refuse_what_does_not_add_up():
    with pytest.raises(ValueError, match=r"^1 scored pairs for 2 candidates$"):
        scores_from_token_logprobs([["a", "b"]], [[-1.0]])
    with pytest.raises(ValueError, match=r"^a scored candidate has no tokens \(not even </s>\)$"):
        scores_from_token_logprobs([["a"]], [[]])


def test_label_scores_need_no_torch():
    """The CPU engines import it: it must load (and compute) in a process without torch."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from r2d.model.label_scores import scores_from_token_logprobs\n"
        "[s] = scores_from_token_logprobs([['a', 'b']], [[-0.1], [-2.0, -0.5]])\n"
        "print(s.best, round(sum(s.probabilities), 6))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["a", "1.0"]

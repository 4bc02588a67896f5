"""Label-set scoring on a tiny random T5: valid labels, proper probabilities, batch == single."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import KTAS_LABELS
from r2d.prompts import predict_prompt
from r2d.scoring import IGNORE_INDEX, eval_mode, score_candidates, score_labels, tokenize_targets

GEN = dict(max_input_tokens=64, max_label_tokens=8)


def test_scores_every_label_and_probabilities_sum_to_one(tiny_t5, tiny_tokenizer, tiny_examples):
    prompts = [predict_prompt(e.case_text) for e in tiny_examples]
    scores = score_labels(tiny_t5, tiny_tokenizer, prompts, KTAS_LABELS, **GEN)
    assert len(scores) == len(prompts)
    for s in scores:
        assert s.labels == tuple(KTAS_LABELS)
        assert s.best in KTAS_LABELS
        assert math.isclose(sum(s.probabilities), 1.0, rel_tol=1e-5)
        assert s.probabilities[s.best_index] == max(s.probabilities)
        assert 0.0 < s.confidence <= 1.0
        assert all(ll < 0 for ll in s.log_likelihoods)


def test_scores_match_the_models_own_sequence_loss(tiny_t5, tiny_tokenizer):
    # the log-likelihood of a label is exactly minus the summed token cross-entropy of that target
    prompt = predict_prompt("chest pain")
    s = score_labels(tiny_t5, tiny_tokenizer, [prompt], ["3"], **GEN)[0]
    enc = tiny_tokenizer([prompt], return_tensors="pt")
    target = tokenize_targets(tiny_tokenizer, ["3"], 8)
    tiny_t5.eval()
    with torch.no_grad():
        loss = tiny_t5(**enc, labels=target).loss  # mean over tokens
    n_tokens = int((target != IGNORE_INDEX).sum())
    assert math.isclose(s.log_likelihoods[0], -float(loss) * n_tokens, rel_tol=1e-4)


def test_batch_equals_single(tiny_t5, tiny_tokenizer, tiny_examples):
    prompts = [predict_prompt(e.case_text) for e in tiny_examples]  # different lengths -> padding
    batch = score_labels(tiny_t5, tiny_tokenizer, prompts, KTAS_LABELS, **GEN)
    for prompt, b in zip(prompts, batch):
        single = score_labels(tiny_t5, tiny_tokenizer, [prompt], KTAS_LABELS, **GEN)[0]
        assert single.best == b.best
        assert single.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_per_prompt_candidate_lists(tiny_t5, tiny_tokenizer):
    scores = score_candidates(tiny_t5, tiny_tokenizer, ["predict: a", "predict: b"], [["yes", "no", "maybe"], ["1"]], **GEN)
    assert scores[0].labels == ("yes", "no", "maybe") and scores[0].best in ("yes", "no", "maybe")
    assert scores[1].probabilities == (1.0,)
    with pytest.raises(ValueError):
        score_candidates(tiny_t5, tiny_tokenizer, ["predict: a"], [[]], **GEN)
    with pytest.raises(ValueError):
        score_candidates(tiny_t5, tiny_tokenizer, ["predict: a"], [["1"], ["2"]], **GEN)


def test_scoring_runs_in_eval_mode_without_graph_and_restores_training(tiny_t5, tiny_tokenizer, monkeypatch):
    seen = []
    original = tiny_t5.forward

    def forward(*args, **kwargs):  # the decoder pass over every candidate
        out = original(*args, **kwargs)
        seen.append((tiny_t5.training, torch.is_grad_enabled(), out.logits.requires_grad))
        return out
    monkeypatch.setattr(tiny_t5, "forward", forward)
    tiny_t5.train()
    score_labels(tiny_t5, tiny_tokenizer, ["predict: x"], KTAS_LABELS, **GEN)
    assert seen == [(False, False, False)]  # dropout off, no autograd graph
    assert tiny_t5.training  # and training mode back afterwards
    tiny_t5.eval()
    score_labels(tiny_t5, tiny_tokenizer, ["predict: x"], KTAS_LABELS, **GEN)
    assert not tiny_t5.training  # an eval-mode model stays in eval mode

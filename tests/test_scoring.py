"""Label-set scoring on a tiny random T5: valid labels, proper probabilities, batch == single."""

from __future__ import annotations

import math

import pytest
import torch

from r2d.model import scoring
from r2d.model.scoring import IGNORE_INDEX, score_candidates, score_labels, tokenize_targets
from r2d.prompts import predict_prompt

GEN = dict(max_input_tokens=64, max_label_tokens=8)


def test_scores_every_label_and_probabilities_sum_to_one(tiny_t5, tiny_tokenizer, tiny_examples, ktas_labels):
    prompts = [predict_prompt(e.case_text) for e in tiny_examples]
    scores = score_labels(tiny_t5, tiny_tokenizer, prompts, ktas_labels, **GEN)
    assert len(scores) == len(prompts)
    for s in scores:
        assert s.labels == tuple(ktas_labels)
        assert s.best in ktas_labels
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


def test_batch_equals_single(tiny_t5, tiny_tokenizer, tiny_examples, ktas_labels):
    prompts = [predict_prompt(e.case_text) for e in tiny_examples]  # different lengths -> padding
    batch = score_labels(tiny_t5, tiny_tokenizer, prompts, ktas_labels, **GEN)
    for prompt, b in zip(prompts, batch):
        single = score_labels(tiny_t5, tiny_tokenizer, [prompt], ktas_labels, **GEN)[0]
        assert single.best == b.best
        assert single.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_per_prompt_candidate_lists(tiny_t5, tiny_tokenizer):
    candidates = [["yes", "no", "maybe"], ["1"]]
    scores = score_candidates(tiny_t5, tiny_tokenizer, ["predict: a", "predict: b"], candidates, **GEN)
    assert scores[0].labels == ("yes", "no", "maybe") and scores[0].best in ("yes", "no", "maybe")
    assert scores[1].probabilities == (1.0,)
    with pytest.raises(ValueError):
        score_candidates(tiny_t5, tiny_tokenizer, ["predict: a"], [[]], **GEN)
    with pytest.raises(ValueError):
        score_candidates(tiny_t5, tiny_tokenizer, ["predict: a"], [["1"], ["2"]], **GEN)


def test_scoring_runs_in_eval_mode_without_graph_and_restores_training(
    tiny_t5, tiny_tokenizer, monkeypatch, ktas_labels
):
    seen = []
    original = tiny_t5.forward

    def forward(*args, **kwargs):  # the decoder pass over every candidate
        out = original(*args, **kwargs)
        seen.append((tiny_t5.training, torch.is_grad_enabled(), out.logits.requires_grad))
        return out

    monkeypatch.setattr(tiny_t5, "forward", forward)
    tiny_t5.train()
    score_labels(tiny_t5, tiny_tokenizer, ["predict: x"], ktas_labels, **GEN)
    assert seen == [(False, False, False)]  # dropout off, no autograd graph
    assert tiny_t5.training  # and training mode back afterwards
    tiny_t5.eval()
    score_labels(tiny_t5, tiny_tokenizer, ["predict: x"], ktas_labels, **GEN)
    assert not tiny_t5.training  # an eval-mode model stays in eval mode


def test_chunked_scoring_equals_one_call_and_bounds_the_pairs(
    tiny_t5, tiny_tokenizer, tiny_examples, monkeypatch, ktas_labels
):
    prompts = [predict_prompt(e.case_text) for e in tiny_examples]
    whole = score_labels(tiny_t5, tiny_tokenizer, prompts, ktas_labels, **GEN, max_pairs=10_000)
    pairs = []
    real_targets = scoring.tokenize_targets

    def tokenize_targets_spy(tokenizer, texts, max_tokens):  # one call per decoder call, one text per pair
        pairs.append(len(texts))
        return real_targets(tokenizer, texts, max_tokens)

    monkeypatch.setattr(scoring, "tokenize_targets", tokenize_targets_spy)
    chunked = score_labels(tiny_t5, tiny_tokenizer, prompts, ktas_labels, **GEN, max_pairs=12)
    assert pairs == [12, 12, 1]  # 25 pairs in calls of at most 12
    for a, b in zip(whole, chunked):
        assert a.best == b.best and a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
    pairs.clear()
    score_labels(tiny_t5, tiny_tokenizer, prompts[:1], ktas_labels, **GEN, max_pairs=2)
    assert pairs == [2, 2, 1]  # one case's labels are split too


def test_zero_label_limit_cuts_nothing(tiny_tokenizer):
    long_label = "no longer than a sentence"
    ids = tokenize_targets(tiny_tokenizer, [long_label, "1"], 0)
    assert ids.shape[1] == len(tiny_tokenizer(text_target=long_label)["input_ids"])
    assert tokenize_targets(tiny_tokenizer, [long_label], 2).shape[1] == 2


def test_confidence_is_the_geometric_mean_token_probability(tiny_t5, tiny_tokenizer):
    # R2D-C's confidence: exp(mean token log-prob) of the best label, comparable across label lengths
    labels = ["1", "maybe not at all"]
    s = score_candidates(tiny_t5, tiny_tokenizer, [predict_prompt("chest pain")], [labels], **GEN)[0]
    n_tokens = len(tiny_tokenizer(text_target=s.best)["input_ids"])
    assert s.confidence == pytest.approx(math.exp(s.log_likelihoods[s.best_index] / n_tokens), rel=1e-5)
    assert s.best_index == max(range(2), key=lambda i: s.log_likelihoods[i])  # ranking: the summed log-likelihood


def _per_pair_log_likelihood(model, tokenizer, prompt: str, label: str) -> float:
    # the straightforward computation: encoder and decoder run again for this one (case, label) pair
    enc = tokenizer([prompt], return_tensors="pt")
    target = tokenize_targets(tokenizer, [label], 0)
    with torch.no_grad():
        logits = model(**enc, labels=target).logits
    return float(torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).sum())


@pytest.mark.parametrize("max_pairs", [10_000, 4])
def test_shared_cross_attention_scores_equal_the_per_pair_computation(
    tiny_t5, tiny_tokenizer, tiny_examples, max_pairs
):
    # every case's candidates share one decoder row (cross-attention keys/values once per case): the scores must be
    # those of scoring each (case, label) pair on its own, for prompts of different lengths, labels of different
    # token lengths, per-prompt candidate lists of different sizes, and cases split between decoder calls
    prompts = [predict_prompt(e.case_text) for e in tiny_examples]
    candidates = [["1", "maybe not at all", "yes"], ["no"], ["5", "4", "3", "2", "1"], ["maybe", "yes"], ["2"]]
    tiny_t5.eval()
    scores = score_candidates(
        tiny_t5, tiny_tokenizer, prompts, candidates, max_input_tokens=64, max_label_tokens=0, max_pairs=max_pairs
    )
    for prompt, cands, s in zip(prompts, candidates, scores):
        expected = [_per_pair_log_likelihood(tiny_t5, tiny_tokenizer, prompt, c) for c in cands]
        torch.testing.assert_close(torch.tensor(s.log_likelihoods), torch.tensor(expected), rtol=1e-4, atol=1e-5)


def test_decoder_runs_once_per_chunk_with_one_row_per_case(
    tiny_t5, tiny_tokenizer, tiny_examples, monkeypatch, ktas_labels
):
    prompts = [predict_prompt(e.case_text) for e in tiny_examples]
    rows = []
    original = tiny_t5.decoder.forward

    def forward(*args, **kwargs):
        rows.append(kwargs["encoder_hidden_states"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_t5.decoder, "forward", forward)
    score_labels(tiny_t5, tiny_tokenizer, prompts, ktas_labels, **GEN, max_pairs=10_000)
    assert rows == [len(prompts)]  # not len(prompts) * 5 (one row per pair)


def test_targets_are_cut_at_any_positive_limit(tiny_tokenizer):
    assert tokenize_targets(tiny_tokenizer, ["no longer than a sentence"], 1).shape[1] == 1


def test_prompts_are_cut_at_max_input_tokens(tiny_t5, tiny_tokenizer):
    # the model reads the first max_input_tokens tokens only: prompts that differ after them score the same
    head = "predict: chest pain with sweating and nausea since this morning"
    n = len(tiny_tokenizer(head)["input_ids"]) - 1  # without </s>
    enc = scoring.tokenize_inputs(tiny_tokenizer, [head + " and more words"], n, "cpu")
    assert enc["input_ids"].shape == (1, n)
    labels = [["1", "2", "3"]] * 2
    cut = score_candidates(tiny_t5, tiny_tokenizer, [head + " BP 80/40", head + " BP 140/90"], labels, n, 8)
    whole = score_candidates(tiny_t5, tiny_tokenizer, [head + " BP 80/40", head + " BP 140/90"], labels, 64, 8)
    assert cut[0].log_likelihoods == pytest.approx(cut[1].log_likelihoods, abs=1e-6)
    assert whole[0].log_likelihoods != pytest.approx(whole[1].log_likelihoods, abs=1e-6)


def test_score_labels_cuts_prompts_too(tiny_t5, tiny_tokenizer):
    head = "predict: chest pain with sweating and nausea since this morning"
    n = len(tiny_tokenizer(head)["input_ids"]) - 1
    a, b = score_labels(tiny_t5, tiny_tokenizer, [head + " BP 80/40", head + " GCS 3"], ["1", "2"], n, 8)
    assert a.log_likelihoods == pytest.approx(b.log_likelihoods, abs=1e-6)


def test_bad_candidate_lists_are_refused_with_the_reason(tiny_t5, tiny_tokenizer):
    with pytest.raises(ValueError, match="^every prompt needs at least one candidate label$"):
        score_candidates(tiny_t5, tiny_tokenizer, ["predict: a"], [[]], **GEN)
    with pytest.raises(ValueError, match="^one candidate list per prompt$"):
        score_candidates(tiny_t5, tiny_tokenizer, ["predict: a"], [["1"], ["2"]], **GEN)

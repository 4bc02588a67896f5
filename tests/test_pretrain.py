"""training.build.pretrain: T5 span corruption, the warm-up schedule, streamed batches and the budgeted loop."""

from __future__ import annotations

import random

import pytest
import torch

from r2d.data import Example
from r2d.model.scoring import IGNORE_INDEX
from training.build.pretrain import (
    SENTINELS,
    Batches,
    PretrainConfig,
    add_sentinels,
    lr_factor,
    pretrain,
    rationale_quality,
    span_corrupt,
)
from training.build.scratch import new_t5
from training.corpus.synthetic import synthetic_examples

COMPLAINTS = ["fever", "chest pain"]


def _rebuild(inputs: list[int], targets: list[int], sentinels: list[int]) -> list[int]:
    spans, current = {}, None
    for t in targets:
        if t in sentinels:
            current = t
            spans[t] = []
        else:
            spans[current].append(t)
    out = []
    for t in inputs:
        out += spans[t] if t in sentinels else [t]
    return out


def test_span_corruption_hides_spans_that_the_target_restores():
    sentinels = list(range(1000, 1016))
    rng = random.Random(0)
    for n in (1, 5, 40, 120):
        ids = list(range(10, 10 + n))
        inputs, targets = span_corrupt(ids, rng, sentinels)
        assert targets and targets[0] == sentinels[0] and len(inputs) < n + 1
        assert _rebuild(inputs, targets, sentinels) == ids
        assert sum(t not in sentinels for t in targets) + sum(t not in sentinels for t in inputs) == n


def test_lr_warms_up_then_decays_to_a_tenth():
    assert lr_factor(0, 10, 100) == 0.1 and lr_factor(9, 10, 100) == 1.0
    assert lr_factor(55, 10, 100) < 1.0 and lr_factor(100, 10, 100) == lr_factor(500, 10, 100) == 0.1
    assert lr_factor(0, 0, 100) == 1.0


@pytest.fixture()
def sentinel_tokenizer(tiny_tokenizer):
    """A copy of the session's tiny tokenizer with T5's sentinels: adding tokens to the shared one changed
    the vocabulary every later test saw."""
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    add_sentinels(tokenizer)
    return tokenizer


def test_batches_mix_explain_and_span_corruption(sentinel_tokenizer):
    tiny_tokenizer = sentinel_tokenizer
    assert all(tiny_tokenizer.convert_tokens_to_ids(s) != tiny_tokenizer.unk_token_id for s in SENTINELS)
    cfg = PretrainConfig(batch_size=8, span_fraction=0.5, max_input_tokens=64, max_target_tokens=32)
    real = [Example("fever and cough", "3", "Chief complaint: fever.")]
    batch = next(Batches(tiny_tokenizer, synthetic_examples(100, COMPLAINTS, 0), real, cfg))
    assert batch["input_ids"].shape[0] == batch["labels"].shape[0] == 8
    assert batch["input_ids"].shape[1] <= 64 and batch["labels"].shape[1] <= 32
    assert (batch["labels"] == IGNORE_INDEX).any()  # padded with the ignore index, not pad ids
    sentinel_ids = set(tiny_tokenizer.convert_tokens_to_ids(list(SENTINELS)))
    assert any(int(t) in sentinel_ids for t in batch["input_ids"].flatten())


def test_pretrain_lowers_the_loss_and_stops_on_the_budget(sentinel_tokenizer, tiny_arch):
    tiny_tokenizer = sentinel_tokenizer
    model = new_t5(tiny_tokenizer, tiny_arch, seed=0)
    cfg = PretrainConfig(
        max_steps=30,
        batch_size=4,
        learning_rate=1e-2,
        warmup_steps=3,
        eval_every=10,
        max_input_tokens=64,
        max_target_tokens=24,
    )
    history = pretrain(
        model, tiny_tokenizer, Batches(tiny_tokenizer, synthetic_examples(10**6, COMPLAINTS, 0), [], cfg), cfg
    )
    assert [h["step"] for h in history] == [10, 20, 30]
    assert history[-1]["loss"] < history[0]["loss"] and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    cfg = PretrainConfig(
        max_steps=10**6, budget_s=0.0, batch_size=2, eval_every=2, max_input_tokens=32, max_target_tokens=8
    )
    history = pretrain(
        model, tiny_tokenizer, Batches(tiny_tokenizer, synthetic_examples(10**6, COMPLAINTS, 1), [], cfg), cfg
    )
    assert history[-1]["step"] == 2  # a spent budget stops at the first log point


def test_rationale_quality_uses_the_fact_check():
    case = (
        "60-year-old man, walked in, not an injury. Chief complaint: fever. Mental status: alert. No pain. "
        "Blood pressure 120/80 mmHg, heart rate 80/min, respiratory rate 16/min, temperature 36.6 °C, SpO2 84%."
    )
    good = "Chief complaint: fever. SpO2 84% (hypoxaemia, below 92%), alert, no pain: breathing is at risk."
    wrong = "Chief complaint: fever. SpO2 97%, alert, no pain: no sign of an immediate threat in the recorded findings."
    silent = "Chief complaint: fever. Alert, no pain."  # contradicts nothing, leaves the hypoxaemia out
    q = rationale_quality([case] * 3, [good, wrong, silent], [good] * 3)
    assert q == {"exact": 1 / 3, "fidelity": 2 / 3, "critical_named": 2 / 3}

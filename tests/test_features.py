"""training.method.features: which prompts each mode tokenises, lengths from GenerationConfig, raw texts kept."""

from __future__ import annotations

import pytest
import torch

from r2d.config import GenerationConfig
from r2d.model.scoring import IGNORE_INDEX
from r2d.prompts import explain_given_label_prompt, explain_prompt, predict_prompt
from training.method.features import (
    MODES,
    ExampleDataset,
    R2DCollator,
    explain_given_label_inputs,
    label_targets,
    needs_rationales,
    tokenizer_corpus,
)

GEN = GenerationConfig(max_input_tokens=64, max_label_tokens=4, max_rationale_tokens=12)


def _ids(tokenizer, text, max_tokens):
    return tokenizer(text, max_length=max_tokens, truncation=True)["input_ids"]


def _unpadded(row, pad):
    return [int(t) for t in row if t != pad]


@pytest.mark.parametrize(
    "mode, present, absent",
    [
        ("stage1", {"explain_input_ids", "explain_labels"}, {"predict_input_ids", "predict_labels"}),
        ("r2d", {"predict_input_ids", "predict_labels", "explain_labels"}, {"explain_input_ids"}),
        ("sft", {"predict_input_ids", "predict_labels"}, {"explain_input_ids", "explain_labels"}),
        ("dss", {"predict_input_ids", "predict_labels", "explain_input_ids", "explain_labels"}, set()),
    ],
)
def test_collator_keys_per_mode(tiny_tokenizer, tiny_examples, mode, present, absent):
    batch = R2DCollator(tiny_tokenizer, GEN, mode)(tiny_examples)
    assert present <= set(batch) and not absent & set(batch)
    assert batch["case_texts"] == [e.case_text for e in tiny_examples]
    assert batch["gold_labels"] == [e.label for e in tiny_examples]
    keys = list(batch)
    # tensors come first so that the Trainer's find_batch_size sees one before the lists of text
    assert torch.is_tensor(batch[keys[0]]) and batch[keys[0]].shape[0] == len(tiny_examples)


def test_predict_inputs_are_the_predict_prompt(tiny_tokenizer, tiny_examples):
    batch = R2DCollator(tiny_tokenizer, GEN, "sft")(tiny_examples)
    pad = tiny_tokenizer.pad_token_id
    for row, mask, e in zip(batch["predict_input_ids"], batch["predict_attention_mask"], tiny_examples):
        assert _unpadded(row, pad) == _ids(tiny_tokenizer, predict_prompt(e.case_text), GEN.max_input_tokens)
        assert int(mask.sum()) == len(_unpadded(row, pad))
    for row, e in zip(batch["predict_labels"], tiny_examples):
        assert _unpadded(row, IGNORE_INDEX) == _ids(tiny_tokenizer, e.label, GEN.max_label_tokens)


def test_explain_inputs_are_the_label_free_explain_prompt(tiny_tokenizer, tiny_examples):
    batch = R2DCollator(tiny_tokenizer, GEN, "dss")(tiny_examples)
    pad = tiny_tokenizer.pad_token_id
    for row, e in zip(batch["explain_input_ids"], tiny_examples):
        assert _unpadded(row, pad) == _ids(tiny_tokenizer, explain_prompt(e.case_text), GEN.max_input_tokens)


def test_rationale_targets_are_cut_and_padded_with_ignore_index(tiny_tokenizer, tiny_examples):
    batch = R2DCollator(tiny_tokenizer, GEN, "stage1")(tiny_examples)
    targets = batch["explain_labels"]
    assert targets.shape[1] <= GEN.max_rationale_tokens
    assert (targets != tiny_tokenizer.pad_token_id).all()  # padding is IGNORE_INDEX, never a real id
    assert (targets == IGNORE_INDEX).any() or targets.shape[1] == GEN.max_rationale_tokens


def test_explain_given_label_inputs_use_the_given_labels(tiny_tokenizer, tiny_examples):
    cases = [e.case_text for e in tiny_examples]
    labels = ["3"] * len(cases)
    enc = explain_given_label_inputs(tiny_tokenizer, cases, labels, GEN, "cpu")
    pad = tiny_tokenizer.pad_token_id
    for row, case in zip(enc["input_ids"], cases):
        assert _unpadded(row, pad) == _ids(tiny_tokenizer, explain_given_label_prompt(case, "3"), GEN.max_input_tokens)


def test_explain_given_label_inputs_need_one_label_per_case(tiny_tokenizer):
    with pytest.raises(ValueError):
        explain_given_label_inputs(tiny_tokenizer, ["a", "b"], ["1"], GEN, "cpu")


def test_label_targets_respect_max_label_tokens(tiny_tokenizer):
    targets = label_targets(tiny_tokenizer, ["1", "a much longer label than any triage level"], GEN)
    assert targets.shape == (2, GEN.max_label_tokens)


def test_unknown_mode_is_rejected(tiny_tokenizer):
    with pytest.raises(ValueError, match="mode must be one of"):
        R2DCollator(tiny_tokenizer, GEN, "joint")


def test_needs_rationales():
    assert [m for m in MODES if not needs_rationales(m)] == ["sft"]


def test_tokenizer_corpus_covers_every_prompt_and_rationale(tiny_examples):
    corpus = tokenizer_corpus(tiny_examples)
    e = tiny_examples[0]
    for text in (
        predict_prompt(e.case_text),
        explain_prompt(e.case_text),
        explain_given_label_prompt(e.case_text, e.label),
        e.rationale,
        e.label,
    ):
        assert text in corpus


def test_example_dataset(tiny_examples):
    ds = ExampleDataset(tiny_examples)
    assert len(ds) == len(tiny_examples) and ds[2] == tiny_examples[2]

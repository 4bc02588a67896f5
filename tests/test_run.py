"""training.build.run: data files, the label set, data-derived generation lengths, model metadata, CLI hints."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from r2d.config import DataConfig, GenerationConfig
from r2d.data import Example
from r2d.errors import ConfigError, DatasetSchemaError
from r2d.model.artifacts import ModelMeta
from training.build.run import (
    MAX_CLOSED_LABELS,
    build_meta,
    data_manifest,
    load_split,
    meta_defaults,
    resolve_generation,
    resolve_label_set,
)


def labelled(n: int) -> list[Example]:
    """n examples, each with its own label."""
    return [Example(f"case {i}", f"answer {i}", "because", "test") for i in range(n)]


# --- data and the label set --------------------------------------------------------------------------


def test_load_split_concatenates_and_needs_files(data_files, tiny_examples):
    train, val = data_files
    assert len(load_split([str(train), str(val)], "data.train_files")) == 5 * len(tiny_examples)
    with pytest.raises(ConfigError, match="data.val_files is empty"):
        load_split([], "data.val_files")


def test_an_explicit_label_set_is_closed_and_checks_the_data(tiny_examples):
    labels, closed = resolve_label_set(DataConfig(label_set=("1", "2", "3", "4", "5")), tiny_examples)
    assert labels == ("1", "2", "3", "4", "5") and closed
    with pytest.raises(DatasetSchemaError, match=r"\['6'\] are not in the label set"):
        resolve_label_set(DataConfig(label_set=("1", "2")), tiny_examples[:1], [replace(tiny_examples[0], label="6")])


@pytest.mark.parametrize("n, closed", [(MAX_CLOSED_LABELS, True), (MAX_CLOSED_LABELS + 1, False)])
def test_without_a_label_set_many_distinct_labels_make_it_open(n, closed):
    labels, is_closed = resolve_label_set(DataConfig(), labelled(n))
    assert labels == tuple(sorted(f"answer {i}" for i in range(n))) and is_closed is closed
    if not closed:  # free text: a validation answer never seen in training is fine
        assert resolve_label_set(DataConfig(), labelled(n), [Example("x", "unseen", "", "test")])[1] is False


def test_a_derived_closed_set_rejects_unseen_validation_labels():
    with pytest.raises(DatasetSchemaError, match="unseen"):
        resolve_label_set(DataConfig(), labelled(3), [Example("x", "unseen", "", "test")])


# --- metadata ---------------------------------------------------------------------------------------


def test_the_manifest_fills_what_the_caller_leaves_open(tmp_path):
    train = tmp_path / "train.jsonl"
    assert data_manifest([str(train)]) == {} and data_manifest([]) == {}
    (tmp_path / "manifest.json").write_text(json.dumps({"task": "t", "ordinal": True, "label_names": {"1": "a"}}))
    assert meta_defaults([str(train)], "mine", None, None) == {
        "task": "mine",
        "ordinal": True,
        "label_names": {"1": "a"},
    }
    (tmp_path / "manifest.json").write_text("[1]")
    with pytest.raises(DatasetSchemaError, match="JSON object"):
        data_manifest([str(train)])


def test_build_meta_prefers_the_caller_then_the_init_model():
    prior = ModelMeta(label_set=("x",), label_names={"1": "a"}, ordinal=True, task="init")
    meta = build_meta(["1", "2"], prior, task="caller", extra={"stage": "stage2"})
    assert (meta.label_set, meta.task, meta.ordinal, meta.label_names) == (("1", "2"), "caller", True, {"1": "a"})
    assert meta.extra == {"stage": "stage2"} and build_meta(["1"], None).task == ""


# --- lengths derived from the data (resolve_generation) ------------------------------------------


def test_label_length_is_the_longest_label_after_tokenisation(tiny_tokenizer, tiny_examples):
    labels = ["yes", "no", "maybe"]
    longest = max(len(tiny_tokenizer(text_target=y)["input_ids"]) for y in labels)
    examples = [replace(e, label=y) for e, y in zip(tiny_examples, labels)]
    g = resolve_generation(GenerationConfig(max_label_tokens=0), tiny_tokenizer, labels, examples, "r2d")
    assert g.max_label_tokens == longest and longest > 1  # </s> included
    assert (
        resolve_generation(
            GenerationConfig(max_label_tokens=7), tiny_tokenizer, labels, examples, "r2d"
        ).max_label_tokens
        == 7
    )  # a value that was set is kept


@pytest.mark.parametrize(
    "key, value, what",
    [
        ("max_label_tokens", 1, "labels"),
        ("max_rationale_tokens", 3, "rationales"),
        ("max_input_tokens", 5, "r2d prompts"),
    ],
)
def test_every_cut_is_a_warning(tiny_tokenizer, tiny_examples, caplog, key, value, what, ktas_labels):
    g = replace(GenerationConfig(max_label_tokens=0, max_rationale_tokens=128, max_input_tokens=256), **{key: value})
    with caplog.at_level("WARNING", logger="training.build.run"):
        resolve_generation(g, tiny_tokenizer, ktas_labels, tiny_examples, "r2d")
    assert (
        f"of {len(tiny_examples) if what != 'labels' else len(ktas_labels)} {what} are longer than "
        f"generation.{key}={value} tokens" in caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="training.build.run"):
        resolve_generation(GenerationConfig(max_label_tokens=0), tiny_tokenizer, ktas_labels, tiny_examples, "r2d")
    assert "are cut" not in caplog.text  # the defaults cut nothing of the test data

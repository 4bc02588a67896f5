"""Model directories describe themselves: weights, tokenizer, r2d_model.json, r2d_config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2d.config import CONFIG_FILENAME, config_from_dict, load_config
from r2d.errors import ModelLoadError
from r2d.model.artifacts import META_FILENAME, ModelMeta, read_model_meta, save_model_dir


def test_save_and_read_back(tmp_path, tiny_t5, tiny_tokenizer):
    meta = ModelMeta(
        label_set=("1", "2"), label_names={"1": "Resuscitation"}, ordinal=True, task="t", extra={"steps": 3}
    )
    cfg = load_config(None, ["optim.max_steps=3"])
    out = save_model_dir(tiny_t5, tiny_tokenizer, tmp_path / "m", meta, cfg)
    assert read_model_meta(out) == meta
    assert config_from_dict(json.loads((out / CONFIG_FILENAME).read_text())) == cfg
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()


def test_missing_and_malformed_meta(tmp_path):
    assert read_model_meta(tmp_path) is None
    (tmp_path / META_FILENAME).write_text("{")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        read_model_meta(tmp_path)
    (tmp_path / META_FILENAME).write_text('{"labels": []}')
    with pytest.raises(ModelLoadError, match="malformed"):
        read_model_meta(tmp_path)


# --- the committed default model ---------------------------------------------------------------------


def _default_model_dir():
    from r2d.config import ModelConfig

    return Path(__file__).resolve().parent.parent / ModelConfig().name_or_path


def test_committed_default_model_is_small_and_reads_digits():
    from transformers import AutoTokenizer

    model_dir = _default_model_dir()
    assert sum(f.stat().st_size for f in model_dir.iterdir()) <= 50 * 2**20
    tok = AutoTokenizer.from_pretrained(model_dir)
    pieces = tok.convert_ids_to_tokens(tok("Blood pressure 187/93 mmHg")["input_ids"])
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("18793")


def test_committed_model_card_states_the_reports_figures():
    model_dir = _default_model_dir()
    report = json.loads((model_dir / "eval_report.json").read_text())
    examples = json.loads((model_dir / "examples_report.json").read_text())
    card = (model_dir / "MODEL_CARD.md").read_text()
    for key in ("fidelity", "critical_named", "macro_f1", "accuracy"):
        assert f"| {report['metrics'][key]:.3f} |" in card, key
    right = sum(p["predicted_label"] == p["gold_label"] for p in examples["predictions"])
    assert f"| {right}/{examples['n']} |" in card
    assert "## Ablation" in card and "not a medical device" in card

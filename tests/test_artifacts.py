"""Model directories describe themselves: weights, tokenizer, r2d_model.json, r2d_config.json."""
from __future__ import annotations

import json

import pytest

from r2d.artifacts import META_FILENAME, ModelMeta, read_model_meta, save_model_dir
from r2d.config import CONFIG_FILENAME, config_from_dict, load_config
from r2d.errors import ModelLoadError


def test_save_and_read_back(tmp_path, tiny_t5, tiny_tokenizer):
    meta = ModelMeta(label_set=("1", "2"), label_names={"1": "Resuscitation"}, ordinal=True, task="t", extra={"steps": 3})
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

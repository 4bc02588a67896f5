"""The frozen config tree: defaults, overrides, rejection of unknown keys and wrong types."""

from __future__ import annotations

import dataclasses
import json

import pytest

from r2d.config import R2DConfig, config_from_dict, config_to_dict, load_config, save_config
from r2d.errors import ConfigError


def test_defaults_load_and_are_frozen():
    cfg = load_config()
    assert cfg == R2DConfig()
    assert cfg.app.host == "127.0.0.1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.stage2.alpha = 0.5  # type: ignore[misc]


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"optim": {"max_steps": 50, "learning_rate": 1e-3}, "stage2": {"method": "dss"}}))
    cfg = load_config(
        path,
        ["optim.max_steps=70", "model.name_or_path=google/flan-t5-base", 'data.train_files=["a.jsonl", "b.jsonl"]'],
    )
    assert cfg.optim.max_steps == 70
    assert cfg.optim.learning_rate == 1e-3
    assert cfg.stage2.method == "dss"
    assert cfg.model.name_or_path == "google/flan-t5-base"
    assert cfg.data.train_files == ("a.jsonl", "b.jsonl")


def test_int_is_accepted_for_float():
    assert load_config(None, ["stage2.alpha=1"]).stage2.alpha == 1.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.max_stepz=3", "unknown config key"),
        ("nosuch.key=3", "unknown config key"),
        ("optim.max_steps=3.5", "expected int"),
        ("optim.max_steps=true", "expected int"),
        ("adapter.use_lora=1", "expected true/false"),
        ("data.train_files=3", "list of strings"),
        ("model.quantization=3bit", "must be one of"),
        ("stage2.method=magic", "must be one of"),
        ("stage2.alpha=1.5", "[0, 1]"),
        ("stage2.sampling_start_fraction=0.9", "sampling_start_fraction"),
        ("optim.batch_size=0", "batch_size"),
        ("generation.fact_check_candidates=-1", "fact_check_candidates"),
        ("generation.num_beams=0", "num_beams"),
        ("noequals", "section.key=value"),
    ],
)
def test_bad_overrides_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, [override])


def test_qlora_without_lora_is_contradictory():
    with pytest.raises(ConfigError, match="use_lora"):
        load_config(None, ["adapter.quantize_base_4bit=true"])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["optim.max_steps=9", 'adapter.target_modules=["q","k","v"]'])
    path = save_config(cfg, tmp_path)
    assert config_from_dict(json.loads(path.read_text())) == cfg
    assert config_to_dict(cfg)["adapter"]["target_modules"] == ["q", "k", "v"]

"""The default-model recipe: the real pipeline end to end on KTAS, with a tiny model and a few steps."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT
from r2d.artifacts import read_model_meta
from r2d.config import load_config
from training import default_model

TINY = ROOT / "training" / "configs" / "tiny_cpu.json"


@pytest.mark.slow
@pytest.mark.shared_data
def test_recipe_trains_evaluates_and_publishes(tmp_path, shared_data):
    out = tmp_path / "assets" / "model"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older model")
    code = default_model.main(["--ktas", str(shared_data / "ktas" / "data.csv"), "--out", str(out),
                               "--work", str(tmp_path / "work"), "--config", str(TINY),
                               "--stage1-steps", "2", "--stage2-steps", "2",
                               "--set", "optim.eval_steps=1", "--set", "generation.max_rationale_tokens=8", "--set", "generation.max_input_tokens=256"])
    assert code == 0
    meta = read_model_meta(out)
    assert meta.label_set == ("1", "2", "3", "4", "5") and meta.ordinal and meta.label_names["1"] == "Resuscitation"
    assert not (out / "stale.txt").exists()  # replaced whole, not merged
    report = json.loads((out / default_model.REPORT_FILENAME).read_text())
    assert report["n"] == 253  # the held-out test split, every case
    card = (out / default_model.CARD_FILENAME).read_text()
    assert f"{report['metrics']['macro_f1']:.3f}" in card  # the card's figures are the report's
    assert "not a medical device" in card
    assert not list(out.parent.glob("*.new")) and not list(out.parent.glob("*.old"))


def test_stage_configs_point_both_stages_at_the_splits(tmp_path):
    files = {s: tmp_path / f"{s}.jsonl" for s in ("train", "val", "test")}
    cfg1, cfg2 = default_model.stage_configs(load_config(TINY), files, 11, 22)
    assert (cfg1.optim.max_steps, cfg2.optim.max_steps) == (11, 22)
    assert cfg1.data == cfg2.data
    assert cfg1.data.train_files == (str(files["train"]),) and cfg1.data.test_files == (str(files["test"]),)


def test_publish_replaces_in_one_step(tmp_path):
    new = tmp_path / "trained"
    new.mkdir()
    (new / "config.json").write_text("{}")
    (new / "train_log.json").write_text("{}")
    out = tmp_path / "out"
    default_model.publish(new, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # the training log stays in the work dir


def test_bad_data_path_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        default_model.main(["--ktas", str(tmp_path / "missing.csv"), "--work", str(tmp_path / "w"),
                            "--out", str(tmp_path / "o"), "--config", str(TINY)])
    assert "missing.csv" in str(err.value) or "missing.csv" in capsys.readouterr().err

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
    ablation = tmp_path / "ablation.json"
    ablation.write_text(json.dumps(ABLATION))
    code = default_model.main(["--ktas", str(shared_data / "ktas" / "data.csv"), "--out", str(out),
                               "--work", str(tmp_path / "work"), "--config", str(TINY),
                               "--stage1-steps", "2", "--stage2-steps", "2", "--ablation-from", str(ablation),
                               "--set", "optim.eval_steps=1", "--set", "generation.max_rationale_tokens=8",
                               "--set", "generation.max_input_tokens=256"])
    assert code == 0
    meta = read_model_meta(out)
    assert meta.label_set == ("1", "2", "3", "4", "5") and meta.ordinal and meta.label_names["1"] == "Resuscitation"
    assert not (out / "stale.txt").exists()  # replaced whole, not merged
    report = json.loads((out / default_model.REPORT_FILENAME).read_text())
    assert report["n"] == 252  # the held-out test split, every case (group-aware split of seed 0)
    examples = json.loads((out / default_model.EXAMPLES_REPORT_FILENAME).read_text())
    assert examples["n"] == 18
    card = (out / default_model.CARD_FILENAME).read_text()
    m = report["metrics"]
    for key in ("fidelity", "critical_named", "macro_f1", "accuracy"):  # the card's figures are the report's
        assert f"| {m[key]:.3f} |" in card, key
    right = sum(p["predicted_label"] == p["gold_label"] for p in examples["predictions"])
    assert f"| {right}/18 |" in card
    assert "| no digit tokens | 0.400 | 0.500 | 0.300 | 0.550 | 7 |" in card
    assert "not a medical device" in card and "single seed" in card
    assert not list(out.parent.glob("*.new")) and not list(out.parent.glob("*.old"))


ABLATION = {"minutes_per_arm": 6, "split": "val", "seed": 42, "arms": {
    "recipe (all levers)": {"fidelity": 0.9, "critical_named": 0.8, "macro_f1": 0.5, "accuracy": 0.6, "n": 127,
                            "stage1_steps": 8, "change": {}},
    "no digit tokens": {"fidelity": 0.4, "critical_named": 0.5, "macro_f1": 0.3, "accuracy": 0.55, "n": 127,
                        "stage1_steps": 7, "change": {"digit_tokens": False}}}}


def test_stage2_config_points_at_the_splits_and_the_balanced_file(tmp_path):
    files = {s: tmp_path / f"{s}.jsonl" for s in ("train", "val", "test")}
    cfg = default_model.stage_configs(load_config(TINY), files, 22, tmp_path / "train_balanced.jsonl")
    assert cfg.optim.max_steps == 22 and cfg.optim.eval_steps <= 22 // 4
    assert cfg.data.train_files == (str(tmp_path / "train_balanced.jsonl"),)
    assert cfg.data.val_files == (str(files["val"]),) and cfg.data.test_files == (str(files["test"]),)


def test_class_balance_lifts_the_rare_levels():
    from r2d.data import Example
    examples = [Example(f"case {i}", label) for label, n in (("1", 18), ("3", 340), ("5", 52)) for i in range(n)]
    assert default_model.balance_factors(examples) == {"1": 4, "3": 1, "5": 3}
    out = default_model.balanced(examples)
    assert sum(e.label == "1" for e in out) == 72 and sum(e.label == "3" for e in out) == 340


def test_ablation_table_states_budget_seed_and_split():
    table = default_model.ablation_table(ABLATION)
    assert "6 minutes per arm" in table and "single seed (42)" in table and "validation split (n = 127)" in table
    assert table.count("\n| ") == 4  # header, rule, two arms
    assert "Not run" in default_model.ablation_table(None)


def test_publish_replaces_in_one_step(tmp_path):
    new = tmp_path / "trained"
    new.mkdir()
    (new / "config.json").write_text("{}")
    (new / "train_log.json").write_text("{}")
    out = tmp_path / "out"
    default_model.publish(new, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # the training log stays in the work dir


@pytest.mark.shared_data
def test_missing_ablation_file_is_a_clear_error(tmp_path, shared_data):
    with pytest.raises(SystemExit) as err:
        default_model.main(["--ktas", str(shared_data / "ktas" / "data.csv"), "--work", str(tmp_path / "w"),
                            "--out", str(tmp_path / "o"), "--config", str(TINY),
                            "--ablation-from", str(tmp_path / "nope.json")])
    assert "nope.json" in str(err.value)


def test_bad_data_path_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        default_model.main(["--ktas", str(tmp_path / "missing.csv"), "--work", str(tmp_path / "w"),
                            "--out", str(tmp_path / "o"), "--config", str(TINY)])
    assert "missing.csv" in str(err.value) or "missing.csv" in capsys.readouterr().err


def test_unknown_ablation_arm_is_a_clear_error(tmp_path):
    from r2d.errors import ConfigError
    with pytest.raises(ConfigError, match="no such lever"):
        default_model.run_ablation(load_config(TINY), {}, tmp_path, 1, 0, only=["no such lever"])

"""The default-model recipe: the real pipeline end to end on KTAS, with a tiny model and a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2d.config import load_config
from r2d.model.artifacts import read_model_meta
from training import default_model, evaluate

ROOT = Path(__file__).resolve().parent.parent

TINY = ROOT / "training" / "configs" / "tiny_cpu.json"


@pytest.mark.slow
@pytest.mark.shared_data
def test_ablation_then_recipe_then_evaluate_only(tmp_path, shared_data):
    ktas, work = ["--ktas", str(shared_data / "ktas" / "data.csv")], tmp_path / "work"
    common = ktas + [
        "--work",
        str(work),
        "--config",
        str(TINY),
        "--set",
        "optim.eval_steps=1",
        "--set",
        "generation.max_rationale_tokens=8",
        "--set",
        "generation.max_input_tokens=256",
    ]
    arms = ["--ablation-arm", "recipe (all levers)", "--ablation-arm", "no class balance"]
    assert (
        default_model.main(
            common + ["--ablation-only", "--ablation-steps", "2", "2", "--ablation-seeds", "0", "1"] + arms
        )
        == 0
    )
    ablation = json.loads((work / default_model.ABLATION_FILENAME).read_text())
    assert list(ablation["arms"]) == ["recipe (all levers)", "no class balance"]
    for arm in ablation["arms"].values():
        assert arm["seeds"] == [0, 1] and arm["n"] == 127 and ablation["steps"] == [[2, 2]]
        assert arm["fidelity"]["mean"] is not None and arm["fidelity"]["sd"] is not None
    # class balance changes only Stage 2: both arms of a seed read one Stage-1 model
    runs = {(r["seed"], name): r for name, a in ablation["arms"].items() for r in a["runs"]}
    probe = "stage1_fidelity_probe"
    assert runs[(0, "no class balance")][probe] == runs[(0, "recipe (all levers)")][probe]
    summary = work / "ablation" / "seed0" / "no_class_balance" / "summary.json"
    before = summary.stat().st_mtime_ns
    assert (
        default_model.main(common + ["--ablation-only", "--ablation-steps", "2", "2", "--ablation-seeds", "0"] + arms)
        == 0
    )
    assert summary.stat().st_mtime_ns == before  # a finished arm is read back, not trained again

    out = tmp_path / "assets" / "model"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older model")
    assert (
        default_model.main(
            common
            + [
                "--out",
                str(out),
                "--stage1-steps",
                "2",
                "--stage2-steps",
                "2",
                "--ablation-from",
                str(work / default_model.ABLATION_FILENAME),
            ]
        )
        == 0
    )
    meta = read_model_meta(out)
    assert meta.label_set == ("1", "2", "3", "4", "5") and meta.ordinal and meta.label_names["1"] == "Resuscitation"
    assert not (out / "stale.txt").exists()  # replaced whole, not merged
    assert not list(out.parent.glob("*.new")) and not list(out.parent.glob("*.old"))
    report = json.loads((out / evaluate.REPORT_FILENAME).read_text())
    single = json.loads((out / default_model.SINGLE_REPORT_FILENAME).read_text())
    fp32 = json.loads((out / default_model.FP32_REPORT_FILENAME).read_text())
    assert report["n"] == single["n"] == fp32["n"] == 252  # the held-out test split, every case
    assert single["generation"]["fact_check_candidates"] == fp32["generation"]["fact_check_candidates"] == 0
    assert report["quantization_requested"] == single["quantization_requested"] == "auto"  # as the app loads it
    assert fp32["quantization"] == "none"
    guarded = json.loads((out / default_model.GUARDED_REPORT_FILENAME).read_text())
    assert guarded["generation"]["constrain_numbers"] and not fp32["generation"]["constrain_numbers"]
    assert guarded["n"] == 252 and guarded["quantization"] == "none"
    assert report["generation"]["fact_check_candidates"] == load_config(TINY).generation.fact_check_candidates
    card = (out / default_model.CARD_FILENAME).read_text()
    for key in ("fidelity", "critical_named"):  # the card's figures are the reports'
        row = " | ".join(f"{r['metrics'][key]:.3f}" for r in (report, single, fp32, guarded))
        assert f"| {row} |" in card, key
    examples = json.loads((out / default_model.EXAMPLES_REPORT_FILENAME).read_text())
    right = sum(p["predicted_label"] == p["gold_label"] for p in examples["predictions"])
    assert examples["n"] == 18 and f"| {right}/18 |" in card
    assert "| no class balance | 2 |" in card and "not a medical device" in card
    assert "--stage1-steps 2" in card  # the command that trained it

    stage1 = work / "final" / "stage1"
    assert default_model.main(common + ["--out", str(out), "--stage1-from", str(stage1), "--stage2-steps", "3"]) == 0
    card = (out / default_model.CARD_FILENAME).read_text()
    assert "--stage1-steps 2" in card and "--stage2-steps 3" in card and "Stage 2 from that Stage 1" in card
    assert json.loads((out / default_model.BUILD_LOG_FILENAME).read_text())["stage2_steps"] == 3

    (out / default_model.CARD_FILENAME).write_text("stale card")
    (out / default_model.ABLATION_FILENAME).unlink()
    assert default_model.main(common + ["--out", str(out), "--evaluate-only"]) == 0
    card = (out / default_model.CARD_FILENAME).read_text()
    assert "stale card" not in card and "--stage1-steps 2" in card and "Not run for this build" in card


@pytest.mark.shared_data
def test_evaluate_only_needs_a_model_built_by_the_recipe(tmp_path, shared_data):
    with pytest.raises(SystemExit) as err:
        default_model.main(
            [
                "--ktas",
                str(shared_data / "ktas" / "data.csv"),
                "--work",
                str(tmp_path / "w"),
                "--out",
                str(tmp_path / "empty"),
                "--config",
                str(TINY),
                "--evaluate-only",
            ]
        )
    assert "pretrain_log.json" in str(err.value)


def _summary(seed: int, change: dict, fidelity: float) -> dict:
    return {
        "seed": seed,
        "change": change,
        "fidelity": fidelity,
        "critical_named": 0.5,
        "macro_f1": 0.3,
        "accuracy": 0.5,
        "n": 127,
        "stage1_steps": 500,
        "stage2_steps": 80,
        "stage1_fidelity_probe": 0.1,
    }


def test_collect_ablation_gives_mean_and_sd_per_arm_in_arm_order(tmp_path):
    for seed, fid in ((0, 0.2), (1, 0.4), (2, 0.6)):
        for arm, change in (("no_digit_tokens", {"digit_tokens": False}), ("recipe_all_levers", {})):
            f = tmp_path / "ablation" / f"seed{seed}" / arm / "summary.json"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(_summary(seed, change, fid if change else fid + 0.1)))
    ablation = default_model.collect_ablation(tmp_path)
    assert list(ablation["arms"]) == ["recipe (all levers)", "no digit tokens"]  # ABLATIONS' order
    recipe = ablation["arms"]["recipe (all levers)"]
    assert recipe["seeds"] == [0, 1, 2] and recipe["fidelity"]["mean"] == pytest.approx(0.5)
    assert recipe["fidelity"]["sd"] == pytest.approx(0.2)  # sample SD of 0.3, 0.5, 0.7
    table = default_model.ablation_table(ablation)
    assert "| recipe (all levers) | 3 | 0.500 ± 0.200 | 0.500 ± 0.000 |" in table
    assert "500 Stage-1 + 80 Stage-2 steps" in table and "seeds 0, 1, 2" in table and "(n = 127)" in table
    assert "decoding not recorded" in table  # no evaluation report beside these summaries
    assert json.loads((tmp_path / default_model.ABLATION_FILENAME).read_text()) == ablation


def test_stage2_config_points_at_the_splits_and_the_balanced_file(tmp_path):
    files = {s: tmp_path / f"{s}.jsonl" for s in ("train", "val", "test")}
    cfg = default_model.stage_configs(load_config(TINY), files, 22, tmp_path / "train_balanced.jsonl")
    assert cfg.optim.max_steps == 22 and cfg.optim.eval_steps <= 22 // 4
    assert cfg.data.train_files == (str(tmp_path / "train_balanced.jsonl"),)
    assert cfg.data.val_files == (str(files["val"]),)


def test_class_balance_lifts_the_rare_levels():
    from r2d.data import Example

    examples = [Example(f"case {i}", label) for label, n in (("1", 18), ("3", 340), ("5", 52)) for i in range(n)]
    assert default_model.balance_factors(examples) == {"1": 4, "3": 1, "5": 3}
    out = default_model.balanced(examples)
    assert sum(e.label == "1" for e in out) == 72 and sum(e.label == "3" for e in out) == 340


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
        default_model.main(
            [
                "--ktas",
                str(shared_data / "ktas" / "data.csv"),
                "--work",
                str(tmp_path / "w"),
                "--out",
                str(tmp_path / "o"),
                "--config",
                str(TINY),
                "--ablation-from",
                str(tmp_path / "nope.json"),
            ]
        )
    assert "nope.json" in str(err.value)


def test_bad_data_path_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        default_model.main(
            [
                "--ktas",
                str(tmp_path / "missing.csv"),
                "--work",
                str(tmp_path / "w"),
                "--out",
                str(tmp_path / "o"),
                "--config",
                str(TINY),
            ]
        )
    assert "missing.csv" in str(err.value) or "missing.csv" in capsys.readouterr().err


def test_unknown_ablation_arm_is_a_clear_error(tmp_path):
    from r2d.errors import ConfigError

    with pytest.raises(ConfigError, match="no such lever"):
        default_model.run_ablation(load_config(TINY), {}, tmp_path, [0], 2, 2, only=["no such lever"])


def test_the_committed_config_loads_and_a_retired_test_files_key_is_ignored(tmp_path):
    committed = json.loads((default_model.DEFAULT_OUT / "r2d_config.json").read_text(encoding="utf-8"))
    assert load_config(default_model.DEFAULT_OUT / "r2d_config.json").data.val_files == tuple(
        committed["data"]["val_files"]
    )
    old = tmp_path / "r2d_config.json"  # as builds before data.test_files was retired wrote it
    old.write_text(json.dumps({**committed, "data": {**committed["data"], "test_files": ["test.jsonl"]}}))
    assert load_config(old) == load_config(default_model.DEFAULT_OUT / "r2d_config.json")

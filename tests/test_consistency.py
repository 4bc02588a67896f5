"""r2d.checks.consistency: the consistency check measured on gold rationales, and what the screen makes of it."""

from __future__ import annotations

import shutil

import pytest

from r2d.checks.consistency import (
    CALIBRATION_FILENAME,
    MIN_PRECISION,
    calibrate,
    consistency_line,
    load_calibration,
    save_calibration,
)
from r2d.data import Example
from r2d.errors import DatasetSchemaError
from r2d.sources import load_ktas

KTAS_CSV_ROWS = 40


def gold(n: int = 20, say=lambda label: f"Findings fit level {label}.") -> list[Example]:
    return [Example(f"case {i}", str(i % 5 + 1), say(str(i % 5 + 1)), "rules", f"g{i}") for i in range(n)]


def test_a_check_that_reads_rationales_right_may_warn(fake_predictor):
    c = calibrate(fake_predictor, gold(), "fake-r2d", "gold")
    assert (c.n, c.contradicts_gold, c.warn_min_probability) == (20, 0.0, 0.5)
    assert c.precision["0.5"] == 1.0 and c.warnings["0.5"] == 20 and c.precision["0.7"] is None  # the fake says 60%


def test_a_check_that_reads_every_rationale_as_one_level_never_warns(fake_predictor):
    """The issue's model: 'the rationale alone points to 1' for nearly everything."""
    c = calibrate(fake_predictor, gold(say=lambda label: "Seen, level 1 picture."), "fake-r2d", "gold")
    assert c.contradicts_gold == pytest.approx(16 / 20) and c.top_labels == {"1": 20}
    assert c.precision["0.5"] < MIN_PRECISION and c.warn_min_probability is None


def test_calibration_round_trips_and_a_bad_file_counts_as_unmeasured(fake_predictor, tmp_path):
    c = calibrate(fake_predictor, gold(), "fake-r2d", "gold")
    assert load_calibration(tmp_path) is None
    save_calibration(c, tmp_path)
    assert load_calibration(tmp_path) == c
    (tmp_path / CALIBRATION_FILENAME).write_text("{not json")
    assert load_calibration(tmp_path) is None
    with pytest.raises(DatasetSchemaError, match="no gold rows"):
        calibrate(fake_predictor, [Example("c", "9", "x", "rules", "1")], "fake-r2d", "odd labels")


def test_the_line_is_a_warning_only_above_the_measured_threshold(fake_predictor):
    reliable = calibrate(fake_predictor, gold(), "fake-r2d", "gold")
    unreliable = calibrate(fake_predictor, gold(say=lambda label: "level 1"), "fake-r2d", "gold")
    args = ("5 — Non-urgent", 0.6, False, "Warning: the rationale alone points to 5.")
    assert consistency_line(*args, "fake-r2d", reliable) == "**⚠ Warning: the rationale alone points to 5.**"
    assert consistency_line("5", 0.4, False, "Warning: x.", "fake-r2d", reliable).startswith("Hint: x. (below 50%")
    assert consistency_line(*args, "fake-r2d", unreliable).startswith("Hint (unreliable for this model: on 20 gold")
    assert consistency_line(*args, "another-model", reliable).startswith(
        "Hint (the consistency check of this model was not measured"
    )
    assert consistency_line("2", 0.6, True, "Consistent: 2.", "fake-r2d", reliable) == "Consistent: 2."


def test_calibration_on_a_real_tiny_model_and_real_ktas_rows(tiny_model_dir, tmp_path):
    """Random weights: contracts only (counts add up, precisions are shares, the file is read back)."""
    from r2d.config import load_config
    from r2d.model.load import load_predictor
    from training.default_model import DEFAULT_KTAS

    if not DEFAULT_KTAS.is_file():
        pytest.skip(f"no KTAS data at {DEFAULT_KTAS}")
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", "model.quantization=none"])
    predictor = load_predictor(cfg.model, cfg.generation, cfg.app.max_case_chars)
    rows = load_ktas(DEFAULT_KTAS)[:KTAS_CSV_ROWS]
    c = calibrate(predictor, rows, predictor.model_id, "first KTAS rows")
    assert c.n == KTAS_CSV_ROWS and sum(c.top_labels.values()) == KTAS_CSV_ROWS
    assert set(c.top_labels) <= set(predictor.label_set) and 0.0 <= c.contradicts_gold <= 1.0
    assert all(p is None or 0.0 <= p <= 1.0 for p in c.precision.values())
    assert all(0 <= w <= 2 * KTAS_CSV_ROWS for w in c.warnings.values())
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    save_calibration(c, model)
    assert load_calibration(model) == c


def test_the_cli_writes_the_calibration_next_to_the_model(tiny_model_dir, tmp_path, capsys):
    from r2d.data import write_examples
    from training import calibrate_consistency

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    write_examples(tmp_path / "gold.jsonl", gold(10))
    assert calibrate_consistency.main(["--model", str(model), "--data", str(tmp_path / "gold.jsonl")]) == 0
    assert load_calibration(model).n == 10 and f"wrote {model / CALIBRATION_FILENAME}" in capsys.readouterr().out

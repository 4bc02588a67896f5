"""training.improve: Stage 2 from the current model on original + reviewed data, the comparison, and the
safeguards (the current model is never written, a failed run says so). Runs on the tiny T5 in seconds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from r2d.data import load_examples, write_examples
from r2d.errors import DatasetSchemaError
from r2d.model.artifacts import model_source
from r2d.review.jobs import COMPARED, MIN_COMPARED_CASES, check_inputs, comparison_table
from training import improve


def tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_improve_trains_compares_and_leaves_the_current_model_alone(
    current_model, original_data, reviewed_export, tmp_path
):
    before = tree_digest(current_model)
    run = improve.improve(current_model, reviewed_export, original_data, tmp_path / "run", steps=3)
    assert tree_digest(current_model) == before
    assert run["status"] == "done" and run["export"]["export_id"] == "export-1"
    assert run["export"]["files"]["train"]["rows"] == 4 and len(run["export"]["files"]["train"]["sha256"]) == 64
    assert run["config"]["adapter"]["use_lora"] is True and run["config"]["optim"]["max_steps"] == 3
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "done"
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert list(comparison["sets"]) == ["reviewed cases held out", "public test split"]
    held_out = comparison["sets"]["reviewed cases held out"]
    assert held_out["n"] == 1 and set(held_out["old"]) == set(held_out["new"]) == {k for k, _, _ in COMPARED}
    assert set(held_out["intervals"]["new"]) == {"accuracy", "under_triage_rate"}
    low, high = held_out["intervals"]["new"]["accuracy"]
    assert 0 <= low <= held_out["new"]["accuracy"] <= high <= 1
    events = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert [e["event"] for e in events].count("train") == 3 and 0 < events[0]["train_share"] < 1
    scored = [e["scored"] for e in events if e["event"] == "evaluate"]
    assert scored == sorted(scored) and scored[-1] == 2 * (1 + 5)  # both models, 1 held out + 5 test cases
    table = comparison_table(comparison)
    assert "| reviewed cases held out (n=1) | accuracy |" in table and "Too few cases to compare" in table
    name, adapter = model_source(tmp_path / "run" / "model")  # LoRA: the new model is an adapter on the current
    assert Path(name) == current_model and Path(adapter) == tmp_path / "run" / "model"


def test_a_failed_run_says_so_and_writes_nothing_else(current_model, original_data, tmp_path):
    empty = tmp_path / "empty-export"
    empty.mkdir()
    with pytest.raises(DatasetSchemaError, match="no train.jsonl"):
        improve.improve(current_model, empty, original_data, tmp_path / "run", steps=3)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed" and "no train.jsonl" in run["error"]
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "comparison.json").exists()


def test_a_run_never_writes_into_the_current_model(current_model, original_data, reviewed_export):
    with pytest.raises(DatasetSchemaError, match="inside the current model"):
        improve.improve(current_model, reviewed_export, original_data, current_model / "new", steps=3)


def test_missing_original_data_says_how_to_make_it(tmp_path, reviewed_export):
    with pytest.raises(DatasetSchemaError, match="lacks train.jsonl, val.jsonl, test.jsonl.*prepare_data ktas"):
        check_inputs(reviewed_export, tmp_path / "nowhere")


def test_an_empty_export_is_refused(tmp_path):
    d = tmp_path / "export"
    write_examples(d / "train.jsonl", [])
    (d / "export_meta.json").write_text("{}")
    with pytest.raises(DatasetSchemaError, match="train.jsonl: no rows"):
        improve.read_export(d)


def test_an_export_without_its_meta_is_refused(reviewed_export):
    """A half export (train.jsonl, no export_meta.json) could be trained on."""
    assert improve.read_export(reviewed_export)["export_id"] == "export-1"
    (reviewed_export / "export_meta.json").unlink()
    with pytest.raises(DatasetSchemaError, match="not a finished export"):
        improve.read_export(reviewed_export)


def comparison(n_held_out: int, n_test: int = 100, n_total: int = 252) -> dict:
    """A comparison.json as a run writes it: a held-out set and a sampled public test split."""
    row = {
        "old": {"accuracy": 0.5, "under_triage_rate": 0.25},
        "new": {"accuracy": 0.75, "under_triage_rate": 0.1},
        "intervals": {"old": {"accuracy": [0.3, 0.7]}, "new": {"accuracy": [0.55, 0.88]}},
    }
    return {
        "sets": {
            "reviewed cases held out": {**row, "n": n_held_out, "n_total": n_held_out},
            "public test split": {**row, "n": n_test, "n_total": n_total},
        }
    }


def test_the_table_shows_intervals_and_the_sample_it_scored():
    table = comparison_table(comparison(n_held_out=MIN_COMPARED_CASES))
    assert (
        "| public test split (n=100, a sample of 252) | accuracy | 0.500 (0.30–0.70) | 0.750 (0.55–0.88) | new |"
        in table
    )
    assert "| reviewed cases held out (n=20) | under-triage | 0.250 | 0.100 | new |" in table
    assert "Too few" not in table


def test_fewer_than_20_held_out_cases_name_no_better_model():
    """A comparison on n = 1 read "1.000 1.000 same" on every row, with no warning."""
    table = comparison_table(comparison(n_held_out=MIN_COMPARED_CASES - 1))
    assert table.startswith("⚠ Too few cases to compare on reviewed cases held out (n=19)")
    held_out_rows = [line for line in table.splitlines() if line.startswith("| reviewed cases held out")]
    assert held_out_rows and all(line.endswith("| too few cases |") for line in held_out_rows)
    assert "| public test split (n=100, a sample of 252) | accuracy |" in table


@pytest.mark.parametrize(
    "rate, n, expected", [(0.8, 10, [0.4902, 0.9433]), (1.0, 1, [0.2065, 1.0]), (0.0, 20, [0.0, 0.1611])]
)
def test_wilson_intervals_are_scipys(rate, n, expected):
    assert improve.wilson_interval(rate, n) == pytest.approx(expected, abs=1e-4)


def test_the_public_test_split_is_sampled_the_same_way_every_run(tmp_path, tiny_examples):
    split = write_examples(
        tmp_path / "test.jsonl", [replace(e, example_id=f"t{i}") for i, e in enumerate(tiny_examples * 8)]
    )
    path, total = improve.sample_cases(split, 10, tmp_path / "sample.jsonl")
    again, _ = improve.sample_cases(split, 10, tmp_path / "again.jsonl")
    assert total == 40 and path == tmp_path / "sample.jsonl" and path.read_bytes() == again.read_bytes()
    assert len(load_examples(path)) == 10
    assert improve.sample_cases(split, 0, tmp_path / "all.jsonl") == (split, 40)  # 0 = the whole split
    assert improve.sample_cases(split, 50, tmp_path / "all.jsonl") == (split, 40)
    assert not (tmp_path / "all.jsonl").exists()

"""training.improve: Stage 2 from the current model on original + reviewed data, the comparison, and the
safeguards (the current model is never written, a failed run says so). Runs on the tiny T5 in seconds."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from r2d.artifacts import model_source
from r2d.data import write_examples
from r2d.errors import DatasetSchemaError
from r2d.jobs import COMPARED, check_inputs, comparison_table
from training import improve


def tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_improve_trains_compares_and_leaves_the_current_model_alone(current_model, original_data,
                                                                    reviewed_export, tmp_path):
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
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "done" and events.count("train") == 3
    table = comparison_table(comparison)
    assert "| reviewed cases held out (n=1) | accuracy |" in table
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
    """Issue 21: a half export (train.jsonl, no export_meta.json) could be trained on."""
    assert improve.read_export(reviewed_export)["export_id"] == "export-1"
    (reviewed_export / "export_meta.json").unlink()
    with pytest.raises(DatasetSchemaError, match="not a finished export"):
        improve.read_export(reviewed_export)

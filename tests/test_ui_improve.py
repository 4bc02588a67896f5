"""The Improve tab (ui/improve.py) and the model in use (ui/model.py): runs, their comparison, switch and back."""

from __future__ import annotations

import json

import gradio as gr
import pytest
from ui_kit import named, predicted

import app
from r2d.config import load_config
from ui import improve as ui_improve
from ui.blocks import build_app

pytestmark = pytest.mark.usefixtures("gradio_temp")


@pytest.fixture()
def improving(tmp_path, store, unserved, current_model, original_data, reviewed_export, fake_predictor):
    """Handlers whose model is the tiny saved model and whose export folder holds one reviewed export."""
    import shutil

    cfg = load_config(
        None,
        [
            f"app.db_path={store.path}",
            f"app.export_dir={tmp_path / 'exports'}",
            f"app.runs_dir={tmp_path / 'runs'}",
            f"app.improve_data_dir={original_data}",
            f"model.name_or_path={current_model}",
            "model.quantization=none",
        ],
    )
    shutil.copytree(reviewed_export, tmp_path / "exports" / "export-1")
    return build_app(fake_predictor, store, cfg, examples=[])


def test_improve_offers_only_finished_exports(improving, tmp_path):
    import shutil

    exports = tmp_path / "exports"
    shutil.copytree(exports / "export-1", exports / ".export-9.partial-x1")  # a killed export, renamed never
    shutil.copytree(exports / "export-1", exports / "export-8")
    (exports / "export-8" / "export_meta.json").unlink()  # meta is written last: this one never finished
    h = improving
    assert named(h, h.improve.refresh())["export"]["choices"] == ["export-1"]
    for export in ("export-8", ".export-9.partial-x1"):
        with pytest.raises(gr.Error, match="choose an export first"):
            h.improve.start(export, str(tmp_path), 3, False, "Nurse A", None)


def test_improve_refuses_what_it_cannot_run(improving, tmp_path):
    h = improving
    lists = named(h, h.improve.refresh())
    assert lists["export"]["value"] == "export-1" and lists["run"]["value"] is None
    for export in (None, "../exports/export-1", "missing"):
        with pytest.raises(gr.Error, match="choose an export first"):
            h.improve.start(export, str(tmp_path), 3, False, "Nurse A", None)
    with pytest.raises(gr.Error, match="enter your name"):
        h.improve.start("export-1", str(tmp_path), 3, False, "", None)
    for elsewhere in (tmp_path / "nowhere", tmp_path, "/etc"):  # only the configured folder; no path said back
        with pytest.raises(gr.Error, match="folder this app was started with") as refused:
            h.improve.start("export-1", str(elsewhere), 3, False, "Nurse A", None)
        assert str(tmp_path) not in str(refused.value) and "/etc" not in str(refused.value)
    with pytest.raises(gr.Error, match="enter your name"):
        h.improve.cancel("improve-none", "", None)
    with pytest.raises(gr.Error, match="no run 'improve-none'"):
        h.improve.switch("improve-none", "Nurse A", None)
    assert named(h, h.improve.poll(None))["status"] == "No run yet."


@pytest.mark.shared_data
def test_improve_prepares_the_missing_original_data_itself(
    tmp_path, store, unserved, current_model, reviewed_export, fake_predictor, shared_data
):
    """Improve said "data/ktas lacks train.jsonl ... prepare it first" and needed a terminal."""
    import shutil

    data = tmp_path / "data-not-prepared"
    cfg = load_config(
        None,
        [
            f"app.db_path={store.path}",
            f"app.export_dir={tmp_path / 'exports'}",
            f"app.runs_dir={tmp_path / 'runs'}",
            f"app.improve_data_dir={data}",
            f"app.improve_source={shared_data / 'ktas' / 'data.csv'}",
            f"model.name_or_path={current_model}",
            "model.quantization=none",
        ],
    )
    shutil.copytree(reviewed_export, tmp_path / "exports" / "export-1")
    h = build_app(fake_predictor, store, cfg, examples=[])
    started = named(h, h.improve.start("export-1", str(data), 3, False, "Nurse A", None))
    run_id = started["run"]["value"]
    h.improve.runs.cancel(run_id)  # the run itself is test_improve_runs_compares_and_switches_the_suggestions's
    assert (
        "Prepared the original training data first, from the public KTAS data (train 888, val 127, test 252"
        in started["plan"]
    )
    assert {p.name for p in data.iterdir()} >= {"train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"}
    again = named(h, h.improve.start("export-1", str(data), 3, False, "Nurse A", None))  # prepared once only
    h.improve.runs.cancel(again["run"]["value"])
    assert "Prepared" not in again["plan"]


def test_improve_says_how_long_a_run_takes_and_warns_on_few_held_out_cases(improving):
    """A 1-step run took 6 min 23 s without saying so, and compared on n = 1 without a warning."""
    h = improving
    plan = named(h, h.improve.plan("export-1", 200))["plan"]
    assert plan.startswith(
        "**About 5 min** on one core: 200 training steps, then both models score 1 held-out "
        "reviewed case(s) and 5 public test cases."
    )
    assert "Only 1 reviewed case(s) are held out" in plan and "fewer than 20" in plan
    assert named(h, h.improve.plan(None, 200))["plan"].startswith("Choose an export")
    assert "0 training steps" in named(h, h.improve.plan("export-1", "2x"))["plan"]


def test_improve_progress_is_a_bar_not_an_input(improving):
    """The progress bar was a slider."""
    h = improving
    assert not isinstance(h.improve.ui.progress, gr.Slider) and isinstance(h.improve.ui.progress, gr.HTML)
    assert named(h, h.improve.poll(None))["progress"] == ui_improve.progress_bar(0)
    bar = ui_improve.progress_bar
    assert '<progress max="100" value="42"' in bar(42) and 'value="100"' in bar(250)


def test_the_model_in_use_shows_on_every_page_survives_a_restart_and_can_be_undone(
    tiny_model_dir, store, tmp_path, unserved
):
    """Other pages kept the old model's name, and a restart went back to the embedded model. The
    finished run here is a real tiny model in a run folder, as training.improve leaves it (a full model)."""
    import shutil

    run = tmp_path / "runs" / "improve-20261204-000000-test"
    shutil.copytree(tiny_model_dir, run / "model")
    (run / "run.json").write_text(json.dumps({"status": "done"}))
    cfg = load_config(
        None,
        [
            f"model.name_or_path={tiny_model_dir}",
            "model.quantization=none",
            f"app.db_path={store.path}",
            f"app.runs_dir={tmp_path / 'runs'}",
            "generation.max_rationale_tokens=8",
        ],
    )
    start = app.load_app_predictor(cfg)
    h, other_page = build_app(start, store, cfg, examples=[]), None
    with pytest.raises(gr.Error, match="already uses the model it was started with"):
        h.improve.revert("Nurse A", None)
    switched = named(h, h.improve.switch(run.name, "Nurse A", None))
    assert h.model.predictor.model_id.endswith(f"+{run.name}") and "also after a restart" in switched["status"]
    assert run.name in switched["model_md"] and "Back to the starting model" in switched["model_md"]
    other_page = predicted(h, "72-year-old man, chest pain")  # a page that loaded before the switch
    assert run.name in other_page["model_md"] and other_page["shown"].model_id == h.model.predictor.model_id
    restarted = build_app(app.load_app_predictor(cfg), store, cfg, examples=[])
    restarted.improve.restore_model()
    assert restarted.model.predictor.model_id == h.model.predictor.model_id and run.name in restarted.model.line()
    back = named(restarted, restarted.improve.revert("Nurse A", None))
    assert restarted.model.predictor.model_id == start.model_id and "again, also after a restart" in back["status"]
    assert run.name not in back["model_md"]
    again = build_app(app.load_app_predictor(cfg), store, cfg, examples=[])
    again.improve.restore_model()
    assert again.model.predictor.model_id == start.model_id


@pytest.mark.slow
def test_improve_runs_compares_and_switches_the_suggestions(improving, original_data):
    import time as clock

    h = improving
    started = named(h, h.improve.start("export-1", str(original_data), 3, False, "Nurse A", None))
    run_id = started["run"]["value"]
    deadline = clock.monotonic() + 240
    while clock.monotonic() < deadline:
        polled = named(h, h.improve.poll(run_id))
        if "Running" not in polled["status"]:
            break
        clock.sleep(0.5)
    assert polled["status"].startswith("**✓ Done"), polled["log"]
    assert "| reviewed cases held out (n=1) | accuracy |" in polled["table"]
    assert 'value="100"' in polled["progress"] and polled["switch"]["interactive"] is True
    assert "Too few cases to compare on reviewed cases held out (n=1)" in polled["table"]
    before = h.model.predictor
    switched = named(h, h.improve.switch(run_id, "Nurse A", None))
    assert h.model.predictor is not before and h.model.predictor.model_id.endswith(f"+{run_id}")
    assert run_id in switched["model_md"] and "every later review records it" in switched["status"]
    after = named(h, h.improve.poll(run_id))  # the 2-s poll keeps saying so, and offers no second switch
    assert "In use" in after["status"] and after["switch"]["interactive"] is False
    shown = predicted(h, "level 2: chest pain, BP 88/50, HR 124")["shown"]
    assert shown.model_id == h.model.predictor.model_id  # later suggestions (and so their reviews) name the new model

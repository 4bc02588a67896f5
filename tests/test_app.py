"""The Gradio app: handlers on a fake predictor, construction, privacy options, CLI, and a loopback round trip."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import pytest

import app
from r2d import review as rv
from r2d.config import load_config
from r2d.store import ACTIONS, ReviewStore

ROOT = Path(__file__).resolve().parent.parent
CASE = "level 2: chest pain, BP 88/50, HR 124"


@pytest.fixture(autouse=True)
def gradio_temp(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))


@pytest.fixture()
def cfg(tmp_path):
    return load_config(None, [f"app.db_path={tmp_path / 'reviews.sqlite3'}", f"app.export_dir={tmp_path / 'exports'}"])


@pytest.fixture()
def store(cfg) -> ReviewStore:
    return ReviewStore(cfg.app.db_path)


@pytest.fixture()
def h(fake_predictor, store, cfg) -> app.Handlers:
    return app.Handlers(fake_predictor, store, cfg)


def out(values: tuple, names=app.REVIEW_OUTPUTS) -> dict:
    assert len(values) == len(names)
    return dict(zip(names, values))


def predicted(h: app.Handlers, case: str = CASE) -> dict:
    return out(list(h.predict(case))[-1])


# --- single case --------------------------------------------------------------------------------


def test_predict_shows_label_first_then_streams_the_rationale(h, fake_predictor):
    steps = [out(v) for v in h.predict(CASE)]
    first, streamed, last = steps[0], steps[1:-1], steps[-1]
    assert first["shown"] is None  # nothing to review until the rationale is complete
    assert "2 — Emergency" in first["label_md"] and isinstance(first["plot"], go.Figure)
    assert list(first["plot"].data[0].x) == pytest.approx([0.1, 0.6, 0.1, 0.1, 0.1])
    texts = [s["rationale"] for s in streamed]
    assert len(texts) > 1 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    shown = last["shown"]
    assert isinstance(shown, rv.ShownCase) and shown.model_rationale == texts[-1] == last["rationale"]
    assert shown.model_rationale == fake_predictor.explain(CASE, "2")
    assert (shown.model_label, last["final_label"]) == ("2", "2")
    assert last["consistency"].startswith("Consistent")


def test_low_top_probability_is_said_plainly(h):
    assert "Low confidence" in predicted(h, "unclear: level 4 dizziness")["label_md"]
    assert "Low confidence" not in predicted(h, CASE)["label_md"]


@pytest.mark.parametrize("case, message", [("", "empty"), ("   \n ", "empty"),
                                           ("x" * 1_000_000, "1,000,000 characters")])
def test_bad_cases_become_readable_errors(h, case, message):
    with pytest.raises(gr.Error, match=message):
        list(h.predict(case))


# --- review ---------------------------------------------------------------------------------------


def test_submit_stores_an_edited_review_once(h, store):
    shown = predicted(h)["shown"]
    status, diff, consistency = h.submit(shown, "Nurse A", "2", "Shock signs: level 2.", "4", "clear", None)
    assert status.startswith("✓ Saved review #1 (edited)")
    assert ("Shock signs: ", rv.DIFF_ADDED) in diff and consistency.startswith("Consistent")
    again = h.submit(shown, "Nurse A", "2", "Shock signs: level 2.", "4", "clear", None)  # a double click
    assert again[0].startswith("Already saved as review #1")
    [r] = store.reviews()
    assert (r.reviewer, r.action, r.final_label, r.rating, r.comment) == ("Nurse A", "edited", "2", 4, "clear")
    assert (r.model_label, r.model_rationale) == (shown.model_label, shown.model_rationale)
    assert r.consistency_label == "2" and r.time_on_task_s >= 0 and r.model_id == "fake-r2d"


def test_a_correction_is_a_new_row_and_disagreement_is_flagged(h, store):
    shown = predicted(h)["shown"]
    h.submit(shown, "Nurse A", "2", "Shock: level 2.", None, "", None)
    _, _, consistency = h.submit(shown, "Nurse A", "3", "Walked in, stable: level 5.", None, "", None)
    assert consistency.startswith("**⚠") and "5 — Non-urgent" in consistency
    assert [r.action for r in store.reviews()] == ["edited", "relabelled"]
    assert store.latest_reviews()[0].final_label == "3"


def test_accept_restores_and_stores_the_model_output(h, store):
    shown = predicted(h)["shown"]
    rationale, label, status, diff, _ = h.accept(shown, "Nurse A", "5", "", None)
    assert (rationale, label) == (shown.model_rationale, shown.model_label)
    assert "(accepted)" in status and all(category is None for _, category in diff)
    assert store.reviews()[0].action == "accepted" and store.reviews()[0].rating == 5


@pytest.mark.parametrize("shown, name, message", [(None, "Nurse A", "predict a case"), ("shown", "  ", "Reviewer")])
def test_submit_needs_a_case_and_a_name(h, shown, name, message):
    shown = predicted(h)["shown"] if shown else None
    with pytest.raises(gr.Error, match=message):
        h.submit(shown, name, "2", "text", None, "", None)


def test_empty_rationale_and_html_are_handled(h, store):
    shown = predicted(h)["shown"]
    with pytest.raises(gr.Error, match="final rationale is empty"):
        h.submit(shown, "Nurse A", "2", "  ", None, "", None)
    assert h.check(shown, "", "2") == ""  # leaving an empty editor is not an error
    evil = "<script>alert(1)</script> level 2"
    h.submit(shown, "Nurse A", "2", evil, None, "", None)
    assert store.reviews()[0].final_rationale == evil  # stored verbatim; components render it as text


# --- batch queue ----------------------------------------------------------------------------------


def write_cases(path: Path, cases: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": c}) + "\n" for c in cases))
    return path


def test_upload_predicts_and_opens_a_resumable_queue(h, tmp_path, fake_predictor, store, cfg):
    path = write_cases(tmp_path / "cases.jsonl", ["level 1 a", "level 2 b", "level 3 c"])
    first = out(h.upload(str(path), "Nurse A", None), app.QUEUE_OUTPUTS)
    batch_id = first["queue"]["batch_id"]
    assert first["queue"]["position"] == 0 and first["queue_md"].startswith("Case 1 of 3")
    assert first["shown"].batch_id == batch_id and first["case"] == "level 1 a"
    assert fake_predictor.calls["predict_batch"] >= 1
    h.accept(first["shown"], "Nurse A", None, "", None)
    second = out(h.step(first["queue"], 1), app.QUEUE_OUTPUTS)
    assert second["queue"]["position"] == 1 and "1 reviewed" in second["queue_md"]
    back = out(h.step(second["queue"], -1), app.QUEUE_OUTPUTS)
    assert back["status"].startswith("Reviewed by Nurse A")
    # a restart: new handlers on the same database, the browser sends its saved queue position
    restarted = app.Handlers(fake_predictor, ReviewStore(cfg.app.db_path), cfg)
    restored = out(restarted.restore(second["queue"], "Nurse A", None), ("reviewer",) + app.QUEUE_OUTPUTS)
    assert restored["reviewer"] == "Nurse A" and restored["queue"] == second["queue"]
    assert restored["case"] == "level 2 b"
    # opening the batch again jumps to the first unreviewed case
    assert out(restarted.resume(batch_id), app.QUEUE_OUTPUTS)["queue"]["position"] == 1


def test_queue_without_a_batch_and_a_stale_saved_queue(h):
    with pytest.raises(gr.Error, match="open a batch first"):
        h.step({}, 1)
    restored = h.restore({"batch_id": "b-gone", "position": 3}, "", None)
    restored = out(restored, ("reviewer",) + app.QUEUE_OUTPUTS)
    assert restored["queue"] == {} and restored["queue_md"] == ""
    assert restored["reviewer"] == gr.skip()  # no saved name: a name being typed is not wiped


def test_broken_upload_names_file_and_line(h, tmp_path, store):
    path = tmp_path / "cases.csv"
    path.write_text('question\n"fine"\n"broken","row"\n')
    with pytest.raises(gr.Error, match=r"cases.csv:3"):
        h.upload(str(path), "Nurse A", None)
    assert store.list_batches() == []


# --- dashboard and export -------------------------------------------------------------------------


def test_dashboard_has_a_summary_and_six_figures(h):
    h.submit(predicted(h)["shown"], "Nurse A", "3", "level 3 really", "2", "", None)
    summary, *figures = h.dashboard()
    assert "**1** reviewed" in summary and len(figures) == 6
    assert all(isinstance(f, go.Figure) for f in figures)


def review_cases(h: app.Handlers, rationale: str = "Shock signs: level 2.") -> None:
    for case in (CASE, "level 5: sore throat", "level 4: ankle sprain"):
        h.submit(predicted(h, case)["shown"], "Nurse A", "2", rationale, "4", "", None)


def test_export_without_findings_writes_files_at_once(h, cfg):
    review_cases(h)
    findings, message, row, files, summary = h.export_start(list(ACTIONS), 0, False, 0.1, False, "Nurse A", None)
    assert findings == [] and "No likely" in message and row["visible"] is False
    assert sorted(Path(f).name for f in files) == ["export_meta.json", "train.jsonl", "val.jsonl"]
    assert all(Path(f).is_relative_to(Path(cfg.app.export_dir)) for f in files) and "Exported 3" in summary


def test_export_with_findings_waits_for_confirmation(h, cfg):
    review_cases(h, rationale="Spoke to Mr. John Smith on 555-123-4567: level 2.")
    args = (list(ACTIONS), 0, False, 0.1, True, "Nurse A", None)
    findings, message, row, files, _ = h.export_start(*args)
    assert {(f[2], f[3]) for f in findings} == {("name", "Mr. John Smith"), ("phone", "555-123-4567")}
    assert "likely patient identifier" in message and row["visible"] is True and files is None
    assert not Path(cfg.app.export_dir).exists()  # nothing written before the user decides
    files, summary = h.export_confirm(*args)
    assert sorted(Path(f).name for f in files) == ["export_meta.json", "test.csv", "train.jsonl", "val.jsonl"]


def test_export_with_nothing_to_export(h):
    with pytest.raises(gr.Error, match="no current review matches"):
        h.export_start(["accepted"], 0, False, 0.1, False, "Nurse A", None)


# --- construction, privacy, CLI -------------------------------------------------------------------------


def test_build_demo_wires_everything_without_calling_the_model(fake_predictor, store, cfg):
    demo = app.build_demo(fake_predictor, store, cfg, examples=[CASE])
    assert isinstance(demo, gr.Blocks) and demo.analytics_enabled is False
    assert sum(fake_predictor.calls.values()) == 0
    api_names = {fn.api_name for fn in demo.fns.values()}
    assert {"predict", "submit", "accept", "check", "upload_batch", "resume_batch", "next_case", "export"} <= api_names
    components = list(demo.blocks.values())
    radios = [c for c in components if isinstance(c, gr.Radio)]
    assert any(("1 — Resuscitation", "1") in [tuple(x) for x in r.choices] for r in radios)  # labels are a Radio
    assert not any(isinstance(c, gr.Dropdown) and ("1 — Resuscitation", "1") in [tuple(x) for x in c.choices]
                   for c in components)
    texts = " ".join(str(c.value) for c in components if isinstance(c, gr.Markdown))
    assert "not a medical device" in texts and "only when no text box has focus" in texts


def test_build_demo_reads_examples_when_present(fake_predictor, store, cfg, tmp_path, monkeypatch):
    write_cases(tmp_path / "ex.jsonl", ["level 3 example"])
    monkeypatch.setattr(app, "EXAMPLES_DIR", tmp_path)
    assert app.load_example_cases(tmp_path) == ["level 3 example"]
    monkeypatch.setattr(app, "load_example_cases", lambda: [])
    assert isinstance(app.build_demo(fake_predictor, store, cfg), gr.Blocks)  # an empty examples/ is fine


def test_launch_options_are_private(cfg):
    kwargs = app.launch_kwargs(cfg)
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["share"] is False
    assert kwargs["run_history"] is False and "runs" not in kwargs["footer_links"]
    assert kwargs["enable_monitoring"] is False and kwargs["mcp_server"] is False
    assert "keydown" in kwargs["js"]


def test_main_without_the_default_model_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match=r"python -m training.default_model.*--model"):
        app.main([])


def test_flags_override_the_config(tmp_path):
    args = app.parse_args(["--model", "/models/x", "--quantization", "none", "--db", str(tmp_path / "r.db"),
                           "--port", "7999", "--set", "app.low_probability=0.3"])
    cfg = app.resolve_config(args)
    assert (cfg.model.name_or_path, cfg.model.quantization) == ("/models/x", "none")
    assert (cfg.app.db_path, cfg.app.port, cfg.app.low_probability) == (str(tmp_path / "r.db"), 7999, 0.3)
    with pytest.raises(Exception, match="unknown config key"):
        app.resolve_config(app.parse_args(["--set", "app.nope=1"]))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_layers_stay_apart():
    assert "torch" not in _imports(ROOT / "app.py")
    for module in ("store", "review", "export", "dashboard"):
        assert "gradio" not in _imports(ROOT / "r2d" / f"{module}.py"), module


# --- a real round trip ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_gradio_client_round_trip_on_loopback(launched_app, tmp_path):
    from gradio_client import Client
    client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    result = client.predict(CASE, api_name="/predict")
    values = dict(zip(app.REVIEW_OUTPUTS[1:], result))  # gr.State is not part of the API
    assert values["case"] == CASE and "2 — Emergency" in values["label_md"]
    assert values["rationale"] == launched_app.predictor.explain(CASE, "2")
    saved = client.predict("Nurse C", "3", "Edited: level 3.", "4", "", api_name="/submit")
    assert saved[0].startswith("✓ Saved review")
    assert client.predict("Nurse C", "3", "Edited: level 3.", "4", "", api_name="/submit")[0].startswith("Already")
    [stored] = launched_app.store.reviews()
    assert (stored.reviewer, stored.final_label, stored.action) == ("Nurse C", "3", "relabelled")
    with pytest.raises(Exception, match="empty"):
        client.predict("", api_name="/predict")
    with pytest.raises(Exception, match="1,000,000 characters"):
        client.predict("x" * 1_000_000, api_name="/predict")
    assert len(launched_app.store.reviews()) == 1
    assert launched_app.external == []


def test_main_runs_the_app_on_a_real_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    """main() loads a saved model directory through r2d and launches with the private options."""
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda demo, **kwargs: launched.update(demo=demo, **kwargs))
    app.main(["--model", str(tiny_model_dir), "--quantization", "none", "--db", str(tmp_path / "r.sqlite3"),
              "--port", "7999", "--set", f"app.export_dir={tmp_path / 'exports'}"])
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == 7999
    assert launched["run_history"] is False and isinstance(launched["demo"], gr.Blocks)


def test_handlers_on_a_real_tiny_model(tiny_model_dir, tmp_path):
    """The same handlers on the real Predictor (random weights: contracts only, never the text)."""
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir}", "model.quantization=none",
                             f"app.db_path={tmp_path / 'r.sqlite3'}", "generation.max_rationale_tokens=8"])
    predictor = app.load_predictor(cfg)
    store = ReviewStore(cfg.app.db_path)
    h = app.Handlers(predictor, store, cfg)
    last = predicted(h, "72-year-old man, crushing chest pain, sweating")
    shown = last["shown"]
    assert shown.model_label in predictor.label_set and sum(shown.probabilities.values()) == pytest.approx(1.0)
    assert list(shown.probabilities) == list(predictor.label_set)
    h.submit(shown, "Nurse A", "2", "Chest pain with sweating: emergency.", "3", "", None)
    [r] = store.reviews()
    assert r.model_id == predictor.model_id and r.consistency_label in predictor.label_set
    path = write_cases(tmp_path / "cases.jsonl", ["sore throat, walked in", "ankle sprain, pain 3 of 10"])
    queue = out(h.upload(str(path), "Nurse A", None), app.QUEUE_OUTPUTS)
    assert queue["queue_md"].startswith("Case 1 of 2") and queue["shown"].model_label in predictor.label_set


@pytest.mark.slow
def test_concurrent_reviewers_through_the_api_lose_nothing(launched_app, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    def review_as(k: int) -> str:
        client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / f"dl{k}"))
        client.predict(f"level {k % 5 + 1}: case {k}", api_name="/predict")
        return client.predict(f"Nurse {k}", str(k % 5 + 1), f"Rationale {k}.", None, "", api_name="/submit")[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(review_as, range(6)))
    assert all(s.startswith("✓ Saved review") for s in statuses)
    stored = launched_app.store.reviews()
    assert sorted(r.reviewer for r in stored) == [f"Nurse {k}" for k in range(6)]
    assert {r.case_text for r in stored} == {f"level {k % 5 + 1}: case {k}" for k in range(6)}

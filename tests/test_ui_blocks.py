"""The whole UI (ui/blocks.py): construction without the model, and round trips through a launched app."""

from __future__ import annotations

import gradio as gr
import pytest
from ui_kit import CASE, named, predicted, save, write_cases

import app
from r2d.config import load_config
from r2d.review import session as rv
from ui import blocks, common
from ui import review as ui_review
from ui.blocks import build_app

pytestmark = pytest.mark.usefixtures("gradio_temp")


def test_build_app_wires_everything_without_calling_the_model(fake_predictor, store, cfg):
    demo = build_app(fake_predictor, store, cfg, examples=[CASE]).demo
    assert isinstance(demo, gr.Blocks) and demo.analytics_enabled is False
    assert sum(fake_predictor.calls.values()) == 0
    api_names = {fn.api_name for fn in demo.fns.values()}
    assert {"predict", "submit", "accept", "check", "upload_batch", "resume_batch", "next_case", "export"} <= api_names
    components = list(demo.blocks.values())
    radios = [c for c in components if isinstance(c, gr.Radio)]
    assert any(("1 — Resuscitation", "1") in [tuple(x) for x in r.choices] for r in radios)  # labels are a Radio
    assert not any(
        isinstance(c, gr.Dropdown) and ("1 — Resuscitation", "1") in [tuple(x) for x in c.choices] for c in components
    )
    texts = " ".join(str(c.value) for c in components if isinstance(c, gr.Markdown))
    assert "not a medical device" in texts and "only when no text box, radio or list has focus" in texts
    assert "First-order modifiers" in texts and "Resuscitation" in texts  # the KTAS reference beside the task


def test_build_app_reads_examples_when_present(fake_predictor, store, cfg, tmp_path, monkeypatch):
    write_cases(tmp_path / "ex.jsonl", ["level 3 example"])
    monkeypatch.setattr(blocks, "EXAMPLES_DIR", tmp_path)
    assert blocks.load_example_cases(tmp_path) == ["level 3 example"]
    monkeypatch.setattr(blocks, "load_example_cases", lambda: [])
    assert isinstance(build_app(fake_predictor, store, cfg).demo, gr.Blocks)  # an empty examples/ is fine


def test_names_are_said_to_be_unverified_without_sign_in(unserved, fake_predictor, store, cfg):
    def notes(demo):
        return " ".join(str(c.value) for c in demo.blocks.values() if isinstance(c, gr.Markdown))

    assert "Names are not verified" in notes(build_app(fake_predictor, store, cfg, examples=[]).demo)
    signed = notes(build_app(fake_predictor, store, cfg, examples=[], signed_in=True).demo)
    assert "Names are not verified" not in signed and "Signed in" in signed


# what the API returns for a "show a case" event: the outputs without the per-session state
API_OUTPUTS = [n for n in common.SHOWN_OUTPUTS + common.QUEUE_OUTPUTS if n != "shown"]


@pytest.mark.slow
def test_gradio_client_round_trip_on_loopback(launched_app, tmp_path):
    from gradio_client import Client

    client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    result = client.predict(CASE, "Nurse C", api_name="/predict")
    values = dict(zip(API_OUTPUTS, result))
    assert values["case"] == CASE and "2 — Emergency" in values["label_md"]
    assert values["rationale"] == launched_app.predictor.explain(CASE, "2")
    submission = ("Nurse C", "3", "Edited: level 3.", "4", "", {}, CASE)
    saved = dict(zip(API_OUTPUTS, client.predict(*submission, api_name="/submit")))
    assert saved["status"].startswith("✓ Saved review")
    again = dict(zip(API_OUTPUTS, client.predict(*submission, api_name="/submit")))
    assert again["status"].startswith("Already")
    [stored] = launched_app.store.reviews()
    assert (stored.reviewer, stored.final_label, stored.action) == ("Nurse C", "3", "relabelled")
    for case, message in (("", "empty"), ("x" * 1_000_000, "1,000,000 characters")):
        refused = dict(zip(API_OUTPUTS, client.predict(case, "Nurse C", api_name="/predict")))
        assert rv.plain(message) in refused["case_md"] and refused["label_md"] == ui_review.NO_SUGGESTION
    assert len(launched_app.store.reviews()) == 1
    assert launched_app.external == []


def test_handlers_on_a_real_tiny_model(tiny_model_dir, store, tmp_path):
    """The same handlers on the real Predictor (random weights: contracts only, never the text)."""
    cfg = load_config(
        None,
        [
            f"model.name_or_path={tiny_model_dir}",
            "model.quantization=none",
            f"app.db_path={store.path}",
            "generation.max_rationale_tokens=8",
        ],
    )
    predictor = app.load_app_predictor(cfg)
    h = build_app(predictor, store, cfg, examples=[])
    last = predicted(h, "72-year-old man, crushing chest pain, sweating")
    shown = last["shown"]
    assert shown.model_label in predictor.label_set and sum(shown.probabilities.values()) == pytest.approx(1.0)
    assert list(shown.probabilities) == list(predictor.label_set)
    save(h, shown, label="2", rationale="Chest pain with sweating: emergency.", rating="3")
    [r] = store.reviews()
    assert r.model_id == predictor.model_id and r.consistency_label in predictor.label_set
    arrest = predicted(h, "70-year-old man, pulseless, unresponsive, BP 60/30 mmHg, SpO2 70%.")
    # whatever a random model suggests, the guard speaks exactly when it is less urgent than KTAS 1
    assert ("Under-triage risk" in arrest["label_md"]) == (arrest["shown"].model_label != "1")
    path = write_cases(tmp_path / "cases.jsonl", ["sore throat, walked in", "ankle sprain, pain 3 of 10"])
    queue = named(h, h.batch.upload(str(path), "Nurse A", None))
    assert queue["queue_md"].startswith("Case 1 of 2") and queue["shown"].model_label in predictor.label_set


@pytest.mark.slow
def test_concurrent_reviewers_through_the_api_lose_nothing(launched_app, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    def review_as(k: int) -> str:
        client = Client(launched_app.url, verbose=False, download_files=str(tmp_path / f"dl{k}"))
        case = f"level {k % 5 + 1}: case {k}"
        client.predict(case, f"Nurse {k}", api_name="/predict")
        result = client.predict(f"Nurse {k}", str(k % 5 + 1), f"Rationale {k}.", None, "", {}, case, api_name="/submit")
        return dict(zip(API_OUTPUTS, result))["status"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(review_as, range(6)))
    assert all(s.startswith("✓ Saved review") for s in statuses)
    stored = launched_app.store.reviews()
    assert sorted(r.reviewer for r in stored) == [f"Nurse {k}" for k in range(6)]
    assert {r.case_text for r in stored} == {f"level {k % 5 + 1}: case {k}" for k in range(6)}


@pytest.mark.parametrize(
    "backend, quantization, engine",
    [
        ("onnx", "onnx-int4 (encoder int8)", "ONNX Runtime"),  # the CPU default
        ("ct2", "ct2-int8", "CTranslate2"),
        ("torch", "4bit", "transformers"),  # CUDA's default
    ],
)
def test_the_model_line_names_the_engine_and_its_precision(h, fake_predictor, backend, quantization, engine):
    fake_predictor.backend, fake_predictor.quantization = backend, quantization
    assert f"backend `{engine}` · quantization `{quantization}`" in h.model.line()

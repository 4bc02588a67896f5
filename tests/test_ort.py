"""r2d.model.ort: the ONNX Runtime engine behind the Predictor interface, against torch on a tiny T5."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import pytest
import torch

from r2d.checks.factcheck import least_contradicted
from r2d.config import GenerationConfig, ModelConfig, load_config
from r2d.errors import InvalidCaseError, ModelLoadError
from r2d.model import ort, ort_export
from r2d.model.load import load_predictor, predictor_for
from r2d.model.modeling import load_model_and_tokenizer
from r2d.model.torch_predictor import TorchPredictor
from r2d.prompts import PROMPT_VERSION

if not ort.ort_available():
    pytest.skip("onnxruntime is not installed (pip install -r requirements.txt)", allow_module_level=True)

KTAS_LABELS = ["1", "2", "3", "4", "5"]
DEFAULT_4BIT = "onnx-int4 (encoder int8)"  # the default layout: 4-bit decoder, int8 encoder (ort_export)
GEN = GenerationConfig(max_input_tokens=96, max_rationale_tokens=12)
CASES = [
    "chest pain",
    "72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124, arrived by ambulance",
    "sore throat two days, vitals normal",
    "unresponsive adult, RR 6, SpO2 80 percent, pupils pinpoint, found at home by family",
]


@pytest.fixture(scope="module")
def model_cfg(ort_model_dir, tmp_path_factory):
    """One thread for both engines (a busy second core makes OpenMP spin-wait); restored afterwards."""
    cache, threads = tmp_path_factory.mktemp("onnx_cache"), torch.get_num_threads()
    yield lambda **kw: ModelConfig(
        **{"name_or_path": str(ort_model_dir), "device": "cpu", "num_threads": 1, "onnx_cache_dir": str(cache), **kw}
    )
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(model_cfg):
    """The tiny model on torch fp32 and on ONNX Runtime in float32 and in 4 bits (exported once each)."""
    return {
        "torch": load_model_and_tokenizer(model_cfg(quantization="none")),
        "onnx-float32": ort.load_ort(model_cfg(backend="onnx", quantization="none")),
        "onnx-int4": ort.load_ort(model_cfg(backend="onnx")),
    }


def predictors(loaded, generation=GEN):
    return {name: predictor_for(lm, generation) for name, lm in loaded.items()}


# --- the same scores and rationales as the torch path ----------------------------------------------------


@pytest.mark.parametrize("engine, tolerance", [("onnx-float32", 1e-5), ("onnx-int4", 0.05)])
def test_label_probabilities_match_the_torch_path(loaded, engine, tolerance):
    p = predictors(loaded)
    assert isinstance(p[engine], ort.ORTPredictor) and p[engine].backend == "onnx"
    for case in CASES:
        mine, ref = p[engine].predict_label(case), p["torch"].predict_label(case)
        assert mine.labels == ref.labels == tuple(KTAS_LABELS)
        assert math.isclose(sum(mine.probabilities), 1.0, abs_tol=1e-5)
        assert mine.probabilities == pytest.approx(ref.probabilities, abs=tolerance)
        assert mine.confidence == pytest.approx(ref.confidence, abs=tolerance)
        if engine == "onnx-float32":
            assert mine.log_likelihoods == pytest.approx(ref.log_likelihoods, abs=1e-4)
            assert mine.best == ref.best


def test_the_4bit_export_differs_from_float32(loaded):
    """The int4 export really holds quantized matrices: its scores move, a little."""
    p = predictors(loaded)
    diffs = [
        abs(a - b)
        for case in CASES
        for a, b in zip(
            p["onnx-int4"].predict_label(case).log_likelihoods, p["onnx-float32"].predict_label(case).log_likelihoods
        )
    ]
    assert 1e-4 < max(diffs) < 1.5


def test_one_encoder_pass_per_case_and_one_decoder_call_per_case(loaded, monkeypatch):
    p = predictors(loaded)["onnx-int4"]
    calls = {"encode": [], "decode": []}
    for name in calls:
        real = getattr(p.onnx, name)
        monkeypatch.setattr(p.onnx, name, lambda *a, _real=real, _name=name: calls[_name].append(a) or _real(*a))
    p._score(["predict: a", "predict: b", "predict: c"])
    assert [ids.shape[0] for ids, _ in calls["encode"]] == [1, 1, 1]  # one pass per case, for all its labels
    assert len(calls["decode"]) == 3  # one per case, all five candidates as its rows
    assert all(ids.shape[0] == len(KTAS_LABELS) for ids, *_ in calls["decode"])


def test_labels_cut_by_max_label_tokens_score_the_same_tokens(loaded):
    p = predictors(loaded, replace(GEN, max_label_tokens=1))
    mine, ref = p["onnx-float32"].predict_label(CASES[1]), p["torch"].predict_label(CASES[1])
    assert mine.log_likelihoods == pytest.approx(ref.log_likelihoods, abs=1e-4)


def test_greedy_rationale_equals_the_torch_greedy_rationale(loaded):
    p = predictors(loaded)
    for label in KTAS_LABELS:
        assert p["onnx-float32"].explain(CASES[1], label) == p["torch"].explain(CASES[1], label)
    short = predictors(loaded, replace(GEN, max_rationale_tokens=3))
    assert short["onnx-float32"].explain(CASES[1], "2") == short["torch"].explain(CASES[1], "2")


def test_no_repeat_ngram_size_is_respected_as_in_transformers(loaded):
    p = predictors(loaded, replace(GEN, no_repeat_ngram_size=2, max_rationale_tokens=20))
    for case in CASES[:2]:
        assert p["onnx-float32"].explain(case, "3") == p["torch"].explain(case, "3")


def test_beam_candidates_equal_transformers_beam_search(loaded):
    gen = replace(GEN, max_rationale_tokens=8, fact_check_candidates=3)
    p = predictors(loaded, gen)
    prompts = [p["torch"].rationale_prompt(c, "2") for c in CASES[:2]]
    assert p["onnx-float32"]._rationale_candidates(prompts) == p["torch"]._rationale_candidates(prompts)


def test_fact_checked_candidates_pick_per_least_contradicted(loaded):
    p = predictors(loaded, replace(GEN, max_rationale_tokens=8, fact_check_candidates=3))["onnx-int4"]
    case = CASES[1]
    [candidates] = p._rationale_candidates([p.rationale_prompt(case, "2")])
    assert len(candidates) == 3
    assert p.explain(case, "2") == candidates[least_contradicted(case, candidates, "2")]
    assert list(p.stream_rationale(case, "2")) == [p.explain(case, "2")]  # whole, not streamed


# --- the Predictor contracts on ONNX Runtime ---------------------------------------------------------------


def test_predict_and_batch_keep_the_predictor_contracts(loaded):
    p = predictors(loaded)["onnx-int4"]
    assert p.quantization == DEFAULT_4BIT and p.label_set == tuple(KTAS_LABELS)
    singles = [p.predict(c) for c in CASES]
    batch = p.predict_batch(CASES, batch_size=3)
    for case, one, many in zip(CASES, singles, batch):
        assert one.case_text == case and one.label in p.label_set
        assert list(one.probabilities) == list(p.label_set)
        assert one.probabilities[one.label] == max(one.probabilities.values())
        assert (one.model_id, one.quantization, one.prompt_version) == (p.model_id, DEFAULT_4BIT, PROMPT_VERSION)
        assert 0.0 <= one.timings["label"] <= one.timings["first_token"] <= one.timings["total"]
        assert (many.label, many.rationale) == (one.label, one.rationale)
        assert many.probabilities == pytest.approx(one.probabilities, abs=1e-6)  # a case's batch does not move it


def test_streaming_ends_with_the_text_explain_gives_and_stops_early(loaded):
    p = predictors(loaded)["onnx-int4"]
    streamed = list(p.stream_rationale(CASES[1], "2"))
    assert len(streamed) > 1 and len(set(streamed)) == len(streamed)  # token by token
    assert streamed[-1] == p.explain(CASES[1], "2")
    stream = p.stream_rationale(CASES[1], "1")
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "r2d-rationale-stream"]
    with pytest.raises(InvalidCaseError, match="not one of this model's labels"):
        p.stream_rationale(CASES[0], "9")


def test_min_new_tokens_forces_the_length(loaded):
    p = predictors(loaded, replace(GEN, max_rationale_tokens=6))["onnx-float32"]
    p.min_new_tokens = 6
    [ids] = p._greedy(*p._encode([p.rationale_prompt(CASES[0], "1")]), on_token=None)
    assert len(ids) == 6 and p.tokenizer.eos_token_id not in ids


@pytest.mark.parametrize(
    "sequence, n, banned",
    [
        ([0, 5, 6, 5], 2, [6]),  # "5 6" was seen: after 5, 6 would repeat it
        ([0, 5, 6, 7, 5, 6], 3, [7]),
        ([0, 5, 6], 0, []),
        ([0, 5], 3, []),
    ],
)
def test_banned_tokens_follow_no_repeat_ngram_size(sequence, n, banned):
    assert ort._banned(sequence, n) == banned


def test_constrain_numbers_needs_the_torch_backend(loaded):
    with pytest.raises(ModelLoadError, match="constrain_numbers needs model.backend=torch"):
        predictor_for(loaded["onnx-int4"], replace(GEN, constrain_numbers=True))
    with pytest.raises(ModelLoadError, match="predictor_for"):
        TorchPredictor(loaded["onnx-int4"], GEN)


def test_auto_picks_onnx_int4_on_cpu_unless_numbers_are_constrained(model_cfg, loaded):
    p = load_predictor(model_cfg(), GEN)  # backend auto, quantization auto, CPU, onnxruntime installed
    assert isinstance(p, ort.ORTPredictor) and p.quantization == DEFAULT_4BIT
    assert load_predictor(model_cfg(), replace(GEN, constrain_numbers=True)).backend == "torch"


def test_an_all_4bit_export_runs_too_and_says_so(model_cfg, loaded):
    """QUANT_SETTINGS' other encoder layout (4-bit like the decoder) scores close to torch and names itself."""
    cfg = model_cfg(backend="onnx")
    directory = ort_export.export(cfg, "int4", {**ort_export.QUANT_SETTINGS, "encoder": "int4"})
    assert ort.quantization_name(directory) == "onnx-int4"
    base = loaded["onnx-int4"]
    p = predictor_for(replace(base, model=ort.OnnxT5(directory, 1), quantization="onnx-int4"), GEN)
    ref = predictors(loaded)["torch"]
    for case in CASES:
        assert p.predict_label(case).probabilities == pytest.approx(ref.predict_label(case).probabilities, abs=0.05)


def test_the_tokenizer_reads_and_writes_what_transformers_does(loaded, ort_model_dir):
    """JsonTokenizer (no transformers) against the transformers tokenizer of the same directory."""
    mine, ref = loaded["onnx-int4"].tokenizer, loaded["torch"].tokenizer
    texts = [*CASES, "", "  SpO2 91%,  BP 88/50 — héllo ", "x" * 500]
    for text in texts:
        assert mine(text)["input_ids"] == ref(text)["input_ids"]
        for cut in (1, 2, 7, 64):
            assert mine.encode(text, cut) == ref(text, max_length=cut, truncation=True)["input_ids"]
        ids = ref(text)["input_ids"]
        assert mine.decode(ids) == ref.decode(ids, skip_special_tokens=True)
    assert (mine.pad_token_id, mine.eos_token_id) == (ref.pad_token_id, ref.eos_token_id)


@pytest.mark.slow
def test_the_app_runs_the_embedded_model_on_the_4bit_default_and_says_so(tmp_path):
    """The app as `make app` starts it on a CPU (backend and quantization auto): ONNX Runtime, 4-bit."""
    import app
    from r2d.review.store import ReviewStore
    from ui import blocks

    overrides = [
        "model.device=cpu",
        "model.num_threads=1",
        f"model.onnx_cache_dir={tmp_path / 'onnx'}",
        f"app.db_path={tmp_path / 'r.sqlite3'}",
        "generation.max_rationale_tokens=32",
    ]
    cfg = load_config(None, overrides)
    cfg = replace(cfg, model=replace(cfg.model, name_or_path=str(app.ROOT / cfg.model.name_or_path)))
    predictor = app.load_app_predictor(cfg)
    assert predictor.backend == "onnx" and predictor.quantization == DEFAULT_4BIT
    line = blocks.build_app(predictor, ReviewStore(cfg.app.db_path), cfg, examples=[]).model.line()
    assert "backend `ONNX Runtime`" in line and f"`{DEFAULT_4BIT}`" in line
    p = predictor.predict("68-year-old man, collapse, unresponsive, BP 70/40, HR 38, RR 6, SpO2 78%")
    assert p.label in predictor.label_set and p.rationale and p.quantization == DEFAULT_4BIT

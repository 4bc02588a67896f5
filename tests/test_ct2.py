"""r2d.model.ct2: the CTranslate2 backend behind the Predictor interface, against the torch path on the tiny T5."""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import replace

import pytest
import torch

from r2d.checks.factcheck import least_contradicted
from r2d.config import GenerationConfig, ModelConfig, load_config
from r2d.errors import ConfigError, InvalidCaseError, ModelLoadError
from r2d.model.load import load_predictor, predictor_for
from r2d.model.modeling import load_model_and_tokenizer
from r2d.model.source import local_full_precision_dir, resolve_backend
from r2d.model.torch_predictor import TorchPredictor
from r2d.prompts import PROMPT_VERSION, explain_given_label_prompt
from ui import blocks

ct2 = pytest.importorskip("r2d.model.ct2")
if not ct2.ct2_available():
    pytest.skip("ctranslate2 is not installed (pip install -r requirements.txt)", allow_module_level=True)

KTAS_LABELS = ["1", "2", "3", "4", "5"]  # tiny_model_dir's label set (conftest's ktas_labels)
GEN = GenerationConfig(max_input_tokens=96, max_rationale_tokens=12)
CASES = [
    "chest pain",
    "72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124, arrived by ambulance",
    "sore throat two days, vitals normal",
    "unresponsive adult, RR 6, SpO2 80 percent, pupils pinpoint, found at home by family",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ct2_cache")


@pytest.fixture(scope="module")
def ct2_model_dir(tmp_path_factory, tiny_tokenizer):
    """The tiny T5 at width 64 (conftest's is 16 wide): int8 rounds each weight to 1/127 of its row's largest,
    and a 16-wide random model's label probabilities moved by up to 0.15 under that, more than int8 does to
    any real model; at 64 the error the test bounds is the engine's, not the toy's."""
    from dataclasses import replace as _replace

    from conftest import TINY_ARCH

    from r2d.model.artifacts import ModelMeta, save_model_dir
    from r2d.sources import ktas_meta
    from training.build.scratch import new_t5

    out = tmp_path_factory.mktemp("ct2_model")
    arch = _replace(TINY_ARCH, d_model=64, d_kv=16, d_ff=128, num_heads=4)
    save_model_dir(
        new_t5(tiny_tokenizer, arch, seed=0),
        tiny_tokenizer,
        out,
        ModelMeta(label_set=tuple(KTAS_LABELS), **ktas_meta()),
    )
    return out


@pytest.fixture(scope="module")
def model_cfg(ct2_model_dir, cache):
    """One thread for both engines: a busy second core makes OpenMP spin-wait; restored afterwards."""
    threads = torch.get_num_threads()
    yield lambda **kw: ModelConfig(
        **{"name_or_path": str(ct2_model_dir), "device": "cpu", "num_threads": 1, "ct2_cache_dir": str(cache), **kw}
    )
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(model_cfg):
    """The tiny model on each engine: torch fp32, CTranslate2 float32 and CTranslate2 int8 (loaded once)."""
    return {
        "torch": load_model_and_tokenizer(model_cfg(quantization="none")),
        "ct2-float32": ct2.load_ct2(model_cfg(backend="ct2", quantization="none")),
        "ct2-int8": ct2.load_ct2(model_cfg(backend="ct2", quantization="int8")),
    }


def predictors(loaded, generation=GEN):
    return {name: predictor_for(lm, generation) for name, lm in loaded.items()}


# --- probabilities and rationales equal the torch path ------------------------------------------


@pytest.mark.parametrize("engine, tolerance", [("ct2-float32", 1e-5), ("ct2-int8", 0.05)])
def test_label_probabilities_match_the_torch_path(loaded, engine, tolerance):
    p = predictors(loaded)
    assert isinstance(p[engine], ct2.CT2Predictor) and p[engine].backend == "ct2"
    for case in CASES:
        mine, ref = p[engine].predict_label(case), p["torch"].predict_label(case)
        assert mine.labels == ref.labels == tuple(KTAS_LABELS)
        assert math.isclose(sum(mine.probabilities), 1.0, abs_tol=1e-5)
        assert mine.probabilities == pytest.approx(ref.probabilities, abs=tolerance)
        assert mine.confidence == pytest.approx(ref.confidence, abs=tolerance)
        if engine == "ct2-float32":  # the same sums (</s> included), the same softmax: the same label
            assert mine.log_likelihoods == pytest.approx(ref.log_likelihoods, abs=1e-4)
            assert mine.best == ref.best


def test_labels_cut_by_max_label_tokens_score_the_same_tokens(loaded):
    gen = replace(GEN, max_label_tokens=1)  # every label cut to one token: </s> only, after truncation
    p = predictors(loaded, gen)
    mine, ref = p["ct2-float32"].predict_label(CASES[1]), p["torch"].predict_label(CASES[1])
    assert mine.log_likelihoods == pytest.approx(ref.log_likelihoods, abs=1e-4)


def test_greedy_rationale_equals_the_torch_greedy_rationale(loaded):
    p = predictors(loaded)
    for case in CASES[:2]:
        for label in KTAS_LABELS:
            assert p["ct2-float32"].explain(case, label) == p["torch"].explain(case, label)


def test_rationale_lengths_follow_the_generation_config(loaded):
    p = predictors(loaded, replace(GEN, max_rationale_tokens=3))
    short = p["ct2-float32"].explain(CASES[1], "2")
    assert short == p["torch"].explain(CASES[1], "2")  # max_decoding_length counts tokens as max_new_tokens does
    assert len(short) < len(predictors(loaded)["ct2-float32"].explain(CASES[1], "2"))  # GEN allows 12 tokens


# --- the Predictor contracts on CTranslate2 ------------------------------------------------------


def test_predict_and_batch_keep_the_predictor_contracts(loaded):
    p = predictors(loaded)["ct2-int8"]
    assert p.quantization == "ct2-int8" and p.label_set == tuple(KTAS_LABELS)
    singles = [p.predict(c) for c in CASES]
    batch = p.predict_batch(CASES, batch_size=3)
    for case, one, many in zip(CASES, singles, batch):
        assert one.case_text == case and one.label in p.label_set
        assert list(one.probabilities) == list(p.label_set)
        assert one.probabilities[one.label] == max(one.probabilities.values())
        assert (one.model_id, one.quantization, one.prompt_version) == (p.model_id, "ct2-int8", PROMPT_VERSION)
        assert 0.0 <= one.timings["label"] <= one.timings["first_token"] <= one.timings["total"]
        assert (many.label, many.rationale) == (one.label, one.rationale)
        assert many.probabilities == pytest.approx(one.probabilities, abs=1e-5)


@pytest.mark.parametrize("label", KTAS_LABELS[:3])
def test_streaming_ends_with_the_text_explain_gives(loaded, label):
    p = predictors(loaded)["ct2-float32"]
    streamed = list(p.stream_rationale(CASES[1], label))
    assert streamed and len(set(streamed)) == len(streamed)
    assert streamed[-1] == p.explain(CASES[1], label)
    assert len(streamed) > 1  # token by token, not the whole text at once


def test_closing_a_stream_early_stops_its_thread(loaded):
    p = predictors(loaded)["ct2-int8"]
    stream = p.stream_rationale(CASES[1], "1")
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "r2d-rationale-stream"]
    assert p.predict(CASES[0]).label in p.label_set  # the lock was released


def test_bad_input_is_refused_before_the_model_runs(loaded):
    p = predictors(loaded)["ct2-int8"]
    with pytest.raises(InvalidCaseError, match="not one of this model's labels"):
        p.stream_rationale(CASES[0], "9")
    with pytest.raises(InvalidCaseError, match="empty"):
        p.predict("   ")


def test_fact_checked_candidates_pick_per_least_contradicted(loaded):
    gen = replace(GEN, max_rationale_tokens=8, fact_check_candidates=3)
    p = predictors(loaded, gen)["ct2-float32"]
    case, tok = CASES[1], p.tokenizer
    pieces = tok.convert_ids_to_tokens(tok(explain_given_label_prompt(case, "2"))["input_ids"])
    [result] = p.translator.translate_batch(
        [pieces],
        beam_size=3,
        num_hypotheses=3,
        max_decoding_length=8,
        min_decoding_length=0,
        patience=ct2.BEAM_PATIENCE,
        suppress_sequences=[[tok.pad_token]],
    )
    candidates = [tok.decode(tok.convert_tokens_to_ids(h), skip_special_tokens=True).strip() for h in result.hypotheses]
    assert len(candidates) == 3
    assert p.explain(case, "2") == candidates[least_contradicted(case, candidates, "2")]
    assert list(p.stream_rationale(case, "2")) == [p.explain(case, "2")]  # whole, not streamed
    batch = p.predict_batch([case, CASES[0]], batch_size=2)
    assert [b.rationale for b in batch] == [p.explain(case, batch[0].label), p.explain(CASES[0], batch[1].label)]


# --- conversion, cache, choosing the backend, errors ---------------------------------------------


def test_conversion_is_cached_and_keyed_by_the_source_files(model_cfg, loaded, monkeypatch, tiny_model_dir, tmp_path):
    cfg = model_cfg(backend="ct2", quantization="int8")
    first = ct2.convert(cfg, "int8")
    monkeypatch.setattr(ct2, "_converter", lambda *a: pytest.fail("converted again"))
    assert ct2.convert(cfg, "int8") == first  # cached: no second conversion
    key = ct2.cache_key(tiny_model_dir, None, "int8", "4.8.5")
    assert key == ct2.cache_key(tiny_model_dir, None, "int8", "4.8.5")
    other_precision = ct2.cache_key(tiny_model_dir, None, "float32", "4.8.5")
    assert key != other_precision != ct2.cache_key(tiny_model_dir, None, "int8", "5")
    import shutil

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    (copy / "r2d_model.json").touch()
    assert ct2.cache_key(copy, None, "int8", "4.8.5") != key


def test_a_failed_conversion_is_a_model_load_error_and_leaves_nothing(model_cfg, monkeypatch, tmp_path):
    class Broken:
        def convert(self, *a, **kw):
            raise ValueError("No conversion is registered for the model configuration")

    monkeypatch.setattr(ct2, "_converter", lambda *a: Broken())
    cfg = replace(model_cfg(backend="ct2"), ct2_cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="converting .* to CTranslate2 failed.*model.backend=torch"):
        ct2.convert(cfg, "int8")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_ctranslate2_is_a_clear_error(model_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 now raises ImportError
    with pytest.raises(ModelLoadError, match="needs CTranslate2, which is not installed.*pip install"):
        ct2.load_ct2(model_cfg(backend="ct2"))
    monkeypatch.setattr(ct2, "ct2_available", lambda: False)
    with pytest.raises(ModelLoadError, match="needs CTranslate2"):
        load_predictor(model_cfg(backend="ct2"), GEN)


@pytest.mark.parametrize(
    "choice, quantization, device, available, local, expected",
    [
        ("auto", "auto", "cpu", True, True, "torch"),  # CTranslate2 is chosen by name (auto: tests/test_source.py)
        ("ct2", "auto", "cpu", True, True, "ct2"),
        ("torch", "auto", "cpu", True, True, "torch"),
        ("ct2", "none", "cpu", True, True, "ct2"),
        ("ct2", "int8", "cuda:0", True, True, "ct2"),
    ],
)
def test_resolve_backend(choice, quantization, device, available, local, expected):
    assert resolve_backend(choice, quantization, device, available, local) == expected


@pytest.mark.parametrize(
    "args, match",
    [
        (("ct2", "auto", "cpu", False, True), "not installed"),
        (("ct2", "4bit", "cpu", True, True), "no 4-bit"),
        (("ct2", "auto", "cpu", True, False), "local full-precision"),
        (("tensorrt", "auto", "cpu", True, True), "unknown model.backend"),
    ],
)
def test_resolve_backend_refuses(args, match):
    with pytest.raises(ModelLoadError, match=match):
        resolve_backend(*args)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.backend=tensorrt"], "model.backend must be one of"),
        (["model.backend=ct2", "model.quantization=4bit"], "no 4-bit mode"),
    ],
)
def test_config_validates_the_backend(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)
    assert load_config(None, ["model.backend=ct2"]).model.backend == "ct2"


def test_a_ct2_model_needs_predictor_for(loaded):
    with pytest.raises(ModelLoadError, match="predictor_for"):
        TorchPredictor(loaded["ct2-int8"], GEN)
    assert type(predictor_for(loaded["torch"], GEN)) is TorchPredictor


def test_ct2_is_chosen_by_name_and_refuses_4bit_directories(model_cfg, loaded, tmp_path):
    p = load_predictor(model_cfg(backend="ct2"), GEN)
    assert isinstance(p, ct2.CT2Predictor) and p.quantization == "ct2-int8"
    (tmp_path / "r2d_quantized.json").write_text("{}")
    assert not local_full_precision_dir(ModelConfig(name_or_path=str(tmp_path)))
    assert not local_full_precision_dir(ModelConfig(name_or_path="google/flan-t5-small"))


@pytest.fixture(scope="module")
def unscaled_model_dir(tmp_path_factory, tiny_tokenizer, tiny_arch):
    """A tiny T5 v1.1-style model: tie_word_embeddings=False, so transformers does not scale decoder outputs."""
    from transformers import T5Config, T5ForConditionalGeneration

    from r2d.model.artifacts import ModelMeta, save_model_dir

    a, tok = tiny_arch, tiny_tokenizer
    config = T5Config(
        vocab_size=len(tok),
        d_model=a.d_model,
        d_kv=a.d_kv,
        d_ff=a.d_ff,
        num_layers=a.num_layers,
        num_decoder_layers=a.num_decoder_layers,
        num_heads=a.num_heads,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("unscaled")
    save_model_dir(T5ForConditionalGeneration(config), tok, out, ModelMeta(label_set=tuple(KTAS_LABELS)))
    return out


def test_conversion_keeps_the_models_own_decoder_output_scaling(unscaled_model_dir, model_cfg):
    cfg = replace(model_cfg(backend="ct2", quantization="none"), name_or_path=str(unscaled_model_dir))
    torch_p = TorchPredictor(load_model_and_tokenizer(replace(cfg, backend="torch")), GEN)
    assert torch_p.model.config.scale_decoder_outputs is False
    ct2_p = predictor_for(ct2.load_ct2(cfg), GEN)
    for case in CASES[:2]:
        assert ct2_p.predict_label(case).log_likelihoods == pytest.approx(
            torch_p.predict_label(case).log_likelihoods, abs=1e-4
        )
        assert ct2_p.explain(case, "2") == torch_p.explain(case, "2")


# --- the app on CTranslate2 --------------------------------------------------------------------


@pytest.mark.slow
def test_the_app_runs_the_embedded_model_on_ct2_and_says_so(tmp_path):
    import app
    from r2d.review.store import ReviewStore

    cfg = load_config(
        None,
        [
            "model.backend=ct2",
            "model.device=cpu",
            "model.num_threads=1",
            f"model.ct2_cache_dir={tmp_path / 'ct2'}",
            f"app.db_path={tmp_path / 'r.sqlite3'}",
            "generation.max_rationale_tokens=32",
        ],
    )
    cfg = replace(cfg, model=replace(cfg.model, name_or_path=str(app.ROOT / cfg.model.name_or_path)))
    predictor = app.load_app_predictor(cfg)
    assert predictor.backend == "ct2" and predictor.quantization == "ct2-int8"
    line = blocks.build_app(predictor, ReviewStore(cfg.app.db_path), cfg, examples=[]).model.line()
    assert "backend `CTranslate2`" in line and "`ct2-int8`" in line
    p = predictor.predict("68-year-old man, collapse, unresponsive, BP 70/40, HR 38, RR 6, SpO2 78%")
    assert p.label in predictor.label_set and p.rationale

"""r2d.model.ort_export: the ONNX export, its cache, and the errors a user can act on."""

from __future__ import annotations

import shutil
import sys

import pytest

from r2d.config import GenerationConfig, ModelConfig
from r2d.errors import ModelLoadError
from r2d.model import ort, ort_export
from r2d.model.load import load_predictor

if not ort.ort_available():
    pytest.skip("onnxruntime is not installed (pip install -r requirements.txt)", allow_module_level=True)

GEN = GenerationConfig(max_input_tokens=96, max_rationale_tokens=12)


@pytest.fixture(scope="module")
def model_cfg(ort_model_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx_cache")
    return lambda **kw: ModelConfig(
        **{"name_or_path": str(ort_model_dir), "device": "cpu", "num_threads": 1, "onnx_cache_dir": str(cache), **kw}
    )


def test_export_is_cached_and_keyed_by_settings_and_sources(model_cfg, monkeypatch):
    cfg = model_cfg(backend="onnx")
    first, full = ort_export.export(cfg, "int4"), ort_export.export(cfg, "float32")
    assert full != first
    files = {ort_export.ENCODER, ort_export.DECODER, ort_export.EMBEDDINGS, ort_export.SETTINGS}
    assert files <= {p.name for p in first.iterdir()}  # + the graphs' weights, in files of their own

    def again(*args):
        raise RuntimeError("exported again")

    monkeypatch.setattr(ort_export, "_write", again)
    assert ort_export.export(cfg, "int4") == first  # cached
    assert ort_export.export(cfg, "float32") == full
    for key, value in (("block_size", 16), ("encoder", "int4")):
        with pytest.raises(ModelLoadError, match="exported again"):  # other settings, another export
            ort_export.export(cfg, "int4", {**ort_export.QUANT_SETTINGS, key: value})
    with pytest.raises(ModelLoadError, match="unknown encoder layout"):
        ort_export.export(cfg, "int4", {**ort_export.QUANT_SETTINGS, "encoder": "fp8"})


def test_a_failed_export_is_a_model_load_error_and_leaves_nothing(model_cfg, monkeypatch, tmp_path):
    def broken(source, adapter, out, settings):
        out.mkdir()
        (out / ort_export.ENCODER).write_bytes(b"half")
        raise RuntimeError("Unsupported: ONNX export of operator")

    monkeypatch.setattr(ort_export, "_write", broken)
    cfg = model_cfg(backend="onnx", onnx_cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="exporting .* to ONNX failed.*model.backend=torch"):
        ort_export.export(cfg, "int4")
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d, tmp: "google/flan-t5-small", "local full-precision model directory"),
        (lambda d, tmp: str(tmp / "missing"), "local full-precision model directory"),
        (lambda d, tmp: _prequantized(d, tmp), "pre-quantized"),
        (lambda d, tmp: _without_weights(d, tmp), "no weights"),
    ],
)
def test_a_model_dir_that_cannot_be_exported_says_what_to_do(model_cfg, ort_model_dir, tmp_path, make, match):
    with pytest.raises(ModelLoadError, match=match):
        ort.load_ort(model_cfg(backend="onnx", name_or_path=make(ort_model_dir, tmp_path)))


def _prequantized(model_dir, tmp):
    copy = shutil.copytree(model_dir, tmp / "q4")
    (copy / "r2d_quantized.json").write_text("{}")
    return str(copy)


def _without_weights(model_dir, tmp):
    copy = shutil.copytree(model_dir, tmp / "empty")
    (copy / "model.safetensors").unlink()
    return str(copy)


def test_missing_onnxruntime_is_a_clear_error(model_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ModelLoadError, match="needs onnxruntime and onnx, which are not installed.*pip install"):
        ort_export.export(model_cfg(backend="onnx", onnx_cache_dir=""), "int4")
    monkeypatch.setattr(ort, "ort_available", lambda: False)
    with pytest.raises(ModelLoadError, match="needs ONNX Runtime"):
        load_predictor(model_cfg(backend="onnx"), GEN)


def test_the_default_export_holds_a_4bit_decoder_and_an_int8_encoder(model_cfg):
    import onnx

    directory = ort_export.export(model_cfg(backend="onnx"), "int4")
    graphs = {
        name: onnx.load(str(directory / name), load_external_data=False).graph
        for name in (ort_export.ENCODER, ort_export.DECODER)
    }
    ops = {
        name: [(n.op_type, next((a.i for a in n.attribute if a.name == "bits"), None)) for n in g.node]
        for name, g in graphs.items()
    }
    weights = {i.name for i in graphs[ort_export.DECODER].initializer}
    assert not [n for n in graphs[ort_export.DECODER].node if n.op_type == "MatMul" and n.input[1] in weights]
    decoder_bits = [bits for op, bits in ops[ort_export.DECODER] if op == "MatMulNBits"]
    assert decoder_bits.count(8) == 1 and set(decoder_bits) == {4, 8}  # lm_head 8-bit, every other matrix 4-bit
    encoder_ops = {op for op, _ in ops[ort_export.ENCODER]}
    assert "MatMulNBits" not in encoder_ops and encoder_ops & {"MatMulInteger", "DynamicQuantizeMatMul"}

"""r2d.model.source: the engine a model runs on, decided without importing torch; the checks of a source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from r2d.config import ModelConfig, load_config
from r2d.errors import ConfigError, ModelLoadError
from r2d.model import source
from r2d.model.source import files_digest, local_full_precision_dir, resolve_backend, resolve_device

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "choice, quantization, device, ct2, local, onnx, expected",
    [
        ("auto", "auto", "cpu", True, True, True, "onnx"),
        ("auto", "4bit", "cpu", True, True, True, "onnx"),
        ("auto", "auto", "cpu", True, True, False, "torch"),  # onnxruntime missing: CTranslate2 is never automatic
        ("auto", "none", "cpu", True, True, True, "torch"),  # full precision asked for: transformers
        ("auto", "int8", "cpu", True, True, True, "torch"),
        ("auto", "auto", "cuda", True, True, True, "torch"),  # bitsandbytes 4-bit is the GPU path
        ("auto", "auto", "cpu", True, False, True, "torch"),  # hub id or pre-quantized directory
        ("onnx", "none", "cpu", False, True, True, "onnx"),
        ("ct2", "auto", "cpu", True, True, True, "ct2"),
    ],
)
def test_resolve_backend(choice, quantization, device, ct2, local, onnx, expected):
    assert resolve_backend(choice, quantization, device, ct2, local, onnx) == expected


@pytest.mark.parametrize(
    "args, match",
    [
        (("onnx", "auto", "cpu", True, True, False), "needs ONNX Runtime, which is not installed"),
        (("onnx", "int8", "cpu", True, True, True), "no int8 mode"),
        (("onnx", "auto", "cuda:0", True, True, True), "runs on the CPU"),
        (("onnx", "auto", "cpu", True, False, True), "local full-precision"),
    ],
)
def test_resolve_backend_refuses(args, match):
    with pytest.raises(ModelLoadError, match=match):
        resolve_backend(*args)


def test_config_validates_the_onnx_backend():
    with pytest.raises(ConfigError, match="model.backend=onnx has no int8 mode"):
        load_config(None, ["model.backend=onnx", "model.quantization=int8"])
    cfg = load_config(None, ["model.backend=onnx", "model.quantization=4bit", "model.onnx_cache_dir=/tmp/x"])
    assert (cfg.model.backend, cfg.model.onnx_cache_dir) == ("onnx", "/tmp/x")


def test_auto_device_without_a_gpu_driver_is_the_cpu_and_needs_no_torch(monkeypatch):
    monkeypatch.setattr(source, "GPU_DRIVER_FILES", ("/nonexistent/nvidia",))
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails: it must not be needed
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ModelLoadError, match="no usable CUDA"):
        resolve_device("cuda:0")


def test_a_local_full_precision_dir_is_what_the_cpu_engines_convert(tiny_model_dir, tmp_path):
    assert local_full_precision_dir(ModelConfig(name_or_path=str(tiny_model_dir)))
    assert not local_full_precision_dir(ModelConfig(name_or_path="google/flan-t5-small"))
    assert not local_full_precision_dir(ModelConfig(name_or_path=str(tmp_path / "missing")))
    (tmp_path / "r2d_quantized.json").write_text("{}")
    assert not local_full_precision_dir(ModelConfig(name_or_path=str(tmp_path)))


def test_files_digest_changes_with_the_files_and_the_parts(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"1")
    first = files_digest(tmp_path / "a", None, "v1")
    assert first == files_digest(tmp_path / "a", None, "v1") and first != files_digest(tmp_path / "a", None, "v2")
    (tmp_path / "a" / "w.bin").write_bytes(b"12")
    assert files_digest(tmp_path / "a", None, "v1") != first
    (tmp_path / "b").mkdir()
    assert files_digest(tmp_path / "a", tmp_path / "b", "v1") != files_digest(tmp_path / "a", None, "v1")


def test_the_onnx_engine_runs_a_prediction_without_importing_torch_or_transformers(ort_model_dir, tmp_path):
    """The CPU default's memory: a process predicting on a cached ONNX export never loads torch."""
    cfg = f"ModelConfig(name_or_path={str(ort_model_dir)!r}, device='cpu', onnx_cache_dir={str(tmp_path)!r})"
    prepare = f"from r2d.config import ModelConfig; from r2d.model.ort_export import export; export({cfg})"
    subprocess.run([sys.executable, "-c", prepare], check=True, cwd=ROOT, timeout=600)
    run = (
        "import sys\n"
        "from r2d.config import GenerationConfig, ModelConfig\n"
        "from r2d.model import load_predictor\n"
        f"p = load_predictor({cfg}, GenerationConfig(max_rationale_tokens=4))\n"
        "out = p.predict('chest pain, BP 88/50')\n"
        "assert p.backend == 'onnx' and out.label in p.label_set, out\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

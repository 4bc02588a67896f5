"""The real CUDA 4-bit path: bitsandbytes NF4 on a GPU. Skipped unless CUDA and bitsandbytes are both present.

Run on a GPU machine with `pytest -m gpu tests/test_quantized.py`. The CPU 4-bit path is tested in
test_modeling.py and test_inference.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from r2d.config import GenerationConfig, ModelConfig
from r2d.model.modeling import bitsandbytes_available, load_model_and_tokenizer, save_quantized_model_dir
from r2d.model.torch_predictor import TorchPredictor
from r2d.prompts import predict_prompt

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(
        not torch.cuda.is_available() or not bitsandbytes_available(), reason="needs bitsandbytes with its CUDA backend"
    ),
]
GEN = GenerationConfig(max_input_tokens=96, max_rationale_tokens=12)
CASES = [
    "chest pain",
    "72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124, arrived by ambulance",
    "sore throat two days, vitals normal",
]


def cuda_cfg(path, **overrides) -> ModelConfig:
    return ModelConfig(name_or_path=str(path), device="cuda", **overrides)


def test_auto_is_4bit_on_cuda(tiny_model_dir):
    loaded = load_model_and_tokenizer(cuda_cfg(tiny_model_dir, quantization="auto"))
    assert loaded.quantization == "4bit" and loaded.device == "cuda"


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_4bit_on_cuda_predicts_streams_and_batches(tiny_model_dir, compute_dtype):
    if compute_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    import bitsandbytes as bnb

    loaded = load_model_and_tokenizer(cuda_cfg(tiny_model_dir, quantization="4bit", compute_dtype=compute_dtype))
    layers = [m for m in loaded.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.device.type == "cuda" for m in layers)
    predictor = TorchPredictor(loaded, GEN)
    p = predictor.predict(CASES[1])
    assert p.label in predictor.label_set and p.quantization == "4bit"
    assert math.isclose(sum(p.probabilities.values()), 1.0, abs_tol=1e-4)
    assert list(predictor.stream_rationale(CASES[1], p.label))[-1] == p.rationale
    batch = predictor.predict_batch(CASES, batch_size=2)
    assert [(b.label, b.rationale) for b in batch] == [(s.label, s.rationale) for s in map(predictor.predict, CASES)]


def test_prequantized_dir_on_cuda(tmp_path, tiny_model_dir):
    out = save_quantized_model_dir(cuda_cfg(tiny_model_dir), tmp_path / "q4")
    direct = load_model_and_tokenizer(cuda_cfg(tiny_model_dir, quantization="4bit"))
    again = load_model_and_tokenizer(cuda_cfg(out, quantization="4bit"))
    enc = direct.tokenizer([predict_prompt("chest pain")], return_tensors="pt").to("cuda")
    start = torch.zeros((1, 1), dtype=torch.long, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(
            again.model(**enc, decoder_input_ids=start).logits, direct.model(**enc, decoder_input_ids=start).logits
        )

"""r2d.model.quantize: the NF4 layout on a tiny real T5, the 16-bit layers, and the pre-quantized weights format.

Loading through r2d.model.modeling (choices, directories, adapters) is tested in test_modeling.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from r2d.errors import ModelLoadError
from r2d.model.quantize import (
    NF4_QUANT_TYPE,
    QUANTIZED_FORMAT,
    QUANTIZED_MARKER,
    QUANTIZED_WEIGHTS,
    HalfLinear,
    Int8Embedding,
    Int8Linear,
    LowPrecisionEmbedding,
    TiedHead,
    bitsandbytes_available,
    cpu_has_fast_4bit,
    half_precision_dtype,
    int8_16bit_layers_,
    load_prequantized,
    nf4_bnb_config,
    nf4_linear,
    quantize_4bit_,
    read_safetensors,
    write_4bit_weights,
)
from r2d.prompts import predict_prompt

needs_bnb = pytest.mark.skipif(not bitsandbytes_available(), reason="bitsandbytes with a native backend not installed")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy second core makes OpenMP spin-wait; a tiny model gains nothing from two
    yield
    torch.set_num_threads(threads)


def logits(model, tokenizer) -> torch.Tensor:
    enc = tokenizer([predict_prompt("chest pain, BP 88/50")], return_tensors="pt")
    start = torch.full((1, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        return model(**enc, decoder_input_ids=start).logits


def test_half_precision_dtype_follows_the_compute_dtype():
    assert half_precision_dtype("cpu", torch.bfloat16) == torch.bfloat16
    assert half_precision_dtype("cpu") in (torch.bfloat16, torch.float32)


def test_half_linear_is_the_linear_layer_in_its_storage_dtype():
    dense = torch.nn.Linear(16, 8).eval()
    x = torch.randn(3, 16)
    kept = HalfLinear(dense.weight, dense.bias, torch.float32)
    torch.testing.assert_close(kept(x), dense(x))
    half = HalfLinear(dense.weight, dense.bias, torch.bfloat16)
    assert half.weight.dtype == torch.bfloat16 and half(x).dtype == torch.float32  # computes in bf16, returns fp32
    torch.testing.assert_close(half(x), dense(x), rtol=2e-2, atol=2e-2)
    assert not half.weight.requires_grad and "weight" in dict(half.named_buffers())  # model.dtype stays fp32


def test_tied_head_reads_the_embedding_table_itself():
    table = torch.randn(20, 16)
    embedding = LowPrecisionEmbedding(table, torch.bfloat16, torch.float32)
    head = TiedHead(embedding)
    assert not list(head.parameters()) and not list(head.buffers())  # no second copy of the table
    hidden = torch.randn(2, 16)
    expected = torch.nn.functional.linear(hidden.bfloat16(), embedding.weight).float()
    torch.testing.assert_close(head(hidden), expected)
    assert embedding(torch.tensor([3])).dtype == torch.float32


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("rows", [1, 40])
def test_int8_linear_keeps_the_layer_within_int8_error(rows):
    dense = torch.nn.Linear(96, 40).eval()
    layer = Int8Linear(dense.weight, dense.bias)
    assert layer.weight.dtype == torch.int8 and layer.scale.shape == (40,)
    x = torch.randn(1, rows, 96)
    with torch.no_grad():
        out = layer(x)
        assert out.shape == (1, rows, 40) and out.dtype == torch.float32
        assert relative_error(out, dense(x)) < 0.02  # one scale per row: ~1% error, NF4's is ~10%
        # exactly the int8 weights times their scales, multiplied in bf16
        dequantized = layer.weight.float() * layer.scale.float()[:, None]
        expected = torch.nn.functional.linear(x.bfloat16(), dequantized.bfloat16(), layer.bias)
        torch.testing.assert_close(out, expected.float(), rtol=2e-2, atol=2e-2)
        # a sequence's result does not depend on the sequences beside it (a case scores the same alone and in a batch)
        batch = torch.cat([x, torch.randn(2, rows, 96)])
        torch.testing.assert_close(layer(batch)[:1], out, rtol=0, atol=0)


def test_int8_embedding_and_tied_head_share_one_int8_table():
    table = torch.randn(50, 32)
    embedding = Int8Embedding(table, torch.float32)
    ids = torch.tensor([[0, 7, 49]])
    rows = embedding(ids)
    assert rows.dtype == torch.float32 and relative_error(rows, table[ids]) < 0.02
    head = TiedHead(embedding)
    hidden = torch.randn(1, 2, 32)
    assert not list(head.buffers())  # the head reads the embedding's table: no second copy
    assert relative_error(head(hidden), hidden @ table.t()) < 0.03


@needs_bnb
def test_int8_16bit_layers_moves_a_real_t5_no_further_than_int8_error(tiny_t5, tiny_tokenizer):
    quantize_4bit_(tiny_t5, "cpu", torch.bfloat16)  # 16-bit layers in bf16 whatever this CPU has
    half = logits(tiny_t5.eval(), tiny_tokenizer)
    int8_16bit_layers_(tiny_t5)
    assert {n.split(".")[-1] for n, m in tiny_t5.named_modules() if isinstance(m, Int8Linear)} == {"wo"}
    assert not [m for m in tiny_t5.modules() if isinstance(m, (HalfLinear, LowPrecisionEmbedding))]
    assert isinstance(tiny_t5.shared, Int8Embedding) and tiny_t5.lm_head._tied[0] is tiny_t5.shared
    assert tiny_t5.encoder.embed_tokens is tiny_t5.shared is tiny_t5.decoder.embed_tokens
    assert relative_error(logits(tiny_t5, tiny_tokenizer), half) < 0.05


@pytest.mark.skipif(not cpu_has_fast_4bit(), reason="needs bitsandbytes' AVX512-BF16 CPU kernel")
def test_fast_nf4_call_is_bitsandbytes_own_kernel_bit_for_bit():
    import bitsandbytes as bnb

    dense = torch.nn.Linear(128, 64, bias=False)  # whole 32-row and 64-column blocks: the packed CPU kernel
    layer = nf4_linear(dense.weight, (64, 128), None, torch.float32, "cpu").eval()
    one, many = torch.randn(1, 1, 128), torch.randn(3, 5, 128)
    with torch.no_grad():
        layer(one)  # bitsandbytes packs the weight on its first eval call; the direct call is used from then on
        assert layer._fast is not None
        for x in (one, many):
            torch.testing.assert_close(layer(x), bnb.nn.Linear4bit.forward(layer, x), rtol=0, atol=0)
            error = (layer(x) - dense(x)).norm() / dense(x).norm()
            assert error < 0.15  # and it is still this layer, within NF4's error
    layer.to("cpu")
    assert layer._fast is None  # a move drops the cached weight; the next call takes it again


@needs_bnb
def test_quantize_4bit_layout_on_a_real_t5(tiny_t5, tiny_tokenizer):
    import bitsandbytes as bnb

    reference = logits(tiny_t5.eval(), tiny_tokenizer)
    quantize_4bit_(tiny_t5, "cpu")
    nf4 = {n.split(".")[-1] for n, m in tiny_t5.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    half = {n.split(".")[-1] for n, m in tiny_t5.named_modules() if isinstance(m, HalfLinear)}
    assert nf4 == {"q", "k", "v", "o", "wi_0", "wi_1"} and half == {"wo"}
    assert isinstance(tiny_t5.lm_head, TiedHead) and tiny_t5.lm_head._tied[0] is tiny_t5.shared
    assert not [n for n, m in tiny_t5.named_modules() if type(m) is torch.nn.Linear]
    out = logits(tiny_t5, tiny_tokenizer)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert not torch.equal(out, reference)  # really quantized (NF4 moves a random model's logits)


@needs_bnb
def test_4bit_weights_round_trip_exactly(tmp_path, tiny_t5, tiny_tokenizer):
    quantize_4bit_(tiny_t5, "cpu")
    expected = logits(tiny_t5.eval(), tiny_tokenizer)
    tiny_t5.config.save_pretrained(tmp_path)
    write_4bit_weights(tiny_t5, tmp_path, "tiny")
    assert json.loads((tmp_path / QUANTIZED_MARKER).read_text())["format"] == QUANTIZED_FORMAT
    again = load_prequantized(tmp_path, "cpu", torch.float32).eval()
    torch.testing.assert_close(logits(again, tiny_tokenizer), expected, rtol=0, atol=0)
    assert not [n for n, t in list(again.named_parameters()) + list(again.named_buffers()) if t.is_meta]


def test_read_safetensors_equals_the_library_and_owns_its_memory(tmp_path):
    from safetensors.torch import load_file, save_file

    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "c": torch.randn(5).bfloat16(),
        "empty": torch.zeros(0),
    }
    save_file(tensors, str(tmp_path / "w.safetensors"))
    read = read_safetensors(tmp_path / "w.safetensors")
    reference = load_file(str(tmp_path / "w.safetensors"))
    assert read.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(read[name], tensor, rtol=0, atol=0)
    read["a"].add_(1)  # writable memory of its own, not a read-only file map
    torch.testing.assert_close(read["a"], reference["a"] + 1)


@needs_bnb
def test_load_prequantized_refuses_other_formats_and_incomplete_files(tmp_path, tiny_t5, tiny_tokenizer):
    from safetensors.torch import load_file, save_file

    quantize_4bit_(tiny_t5, "cpu")
    tiny_t5.config.save_pretrained(tmp_path)
    write_4bit_weights(tiny_t5, tmp_path, "tiny")
    state = load_file(str(tmp_path / QUANTIZED_WEIGHTS))
    key = next(k for k in state if k.endswith("SelfAttention.q.weight"))
    save_file({k: v for k, v in state.items() if k != key}, str(tmp_path / QUANTIZED_WEIGHTS))
    with pytest.raises(ModelLoadError, match="re-save the model"):
        load_prequantized(tmp_path, "cpu", torch.float32)
    (tmp_path / QUANTIZED_MARKER).write_text(json.dumps({"format": "r2d-nf4-0"}))
    with pytest.raises(ModelLoadError, match="format 'r2d-nf4-0'"):
        load_prequantized(tmp_path, "cpu", torch.float32)


@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4_bnb_config_is_the_one_nf4_recipe_and_needs_no_bitsandbytes_to_build(double_quant):
    q = nf4_bnb_config(torch.bfloat16, double_quant=double_quant)
    assert q.load_in_4bit and not q.load_in_8bit and q.bnb_4bit_quant_type == NF4_QUANT_TYPE == "nf4"
    assert q.bnb_4bit_use_double_quant is double_quant and q.bnb_4bit_compute_dtype == torch.bfloat16

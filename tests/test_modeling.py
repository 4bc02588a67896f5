"""r2d.model.modeling: quantization choice, directory checks, full / 4-bit / int8 / adapter / pre-quantized loads."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

from r2d.config import ModelConfig
from r2d.errors import ModelLoadError
from r2d.model.modeling import (
    LoadedModel,
    load_model_and_tokenizer,
    quiet_peft_deprecations,
    resolve_device,
    resolve_quantization,
    save_quantized_model_dir,
)
from r2d.model.quantize import (
    QUANTIZED_MARKER,
    QUANTIZED_WEIGHTS,
    HalfLinear,
    Int8Embedding,
    Int8Linear,
    LowPrecisionEmbedding,
    TiedHead,
    bitsandbytes_available,
    half_precision_dtype,
    uses_int8_16bit_layers,
)
from r2d.prompts import predict_prompt
from r2d.sources import KTAS_LABELS

needs_bnb = pytest.mark.skipif(not bitsandbytes_available(), reason="bitsandbytes with a native backend not installed")


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def cfg(path, **overrides) -> ModelConfig:
    # one thread: tiny models gain nothing from more, and a busy second core makes OpenMP spin-wait
    return ModelConfig(name_or_path=str(path), device="cpu", **{"num_threads": 1, **overrides})


def logits(model, tokenizer, case: str = "chest pain, BP 88/50") -> torch.Tensor:
    enc = tokenizer([predict_prompt(case)], return_tensors="pt")
    start = torch.full((1, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        return model(**enc, decoder_input_ids=start).logits


def copy_without(src, dst, *names):
    shutil.copytree(src, dst)
    for name in names:
        (dst / name).unlink()
    return dst


# --- resolve_quantization: the truth table --------------------------------------------------


@pytest.mark.parametrize(
    "choice, device, bnb, fast, expected",
    [
        ("none", "cpu", False, False, "none"),
        ("none", "cuda", True, False, "none"),
        ("auto", "cuda", True, False, "4bit"),
        ("auto", "cuda:1", True, False, "4bit"),
        ("auto", "cuda", False, False, "none"),
        ("auto", "cpu", True, True, "4bit"),
        ("auto", "cpu", True, False, "none"),
        ("auto", "cpu", False, True, "none"),
        ("4bit", "cpu", True, False, "4bit"),
        ("4bit", "cuda", True, False, "4bit"),
        ("int8", "cpu", True, False, "int8"),
        ("int8", "cuda", True, False, "int8"),
    ],
)
def test_resolve_quantization_table(choice, device, bnb, fast, expected):
    assert resolve_quantization(choice, device, bnb, cpu_fast_4bit=fast) == expected


@pytest.mark.parametrize(
    "choice, device, bnb, match",
    [
        ("8bit", "cpu", True, "unknown quantization '8bit'"),
        ("4bit", "cpu", False, "pip install bitsandbytes"),
        ("int8", "cuda", False, "model.quantization=none"),
        ("4bit", "mps", True, "cpu or cuda"),
    ],
)
def test_resolve_quantization_refuses_impossible_combinations(choice, device, bnb, match):
    with pytest.raises(ModelLoadError, match=match):
        resolve_quantization(choice, device, bnb)


def test_resolve_device():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ModelLoadError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no usable CUDA"):
            resolve_device("cuda")


# --- directories that are not models ------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_and_tokenizer(cfg(tmp_path / "models" / "nope"))


def test_empty_directory(tmp_path):
    with pytest.raises(ModelLoadError, match=f"{tmp_path}.*no config.json"):
        load_model_and_tokenizer(cfg(tmp_path))


def test_config_but_no_weights(tmp_path, tiny_model_dir):
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model_and_tokenizer(cfg(tmp_path))


def test_not_an_encoder_decoder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="'bert' model.*encoder-decoder"):
        load_model_and_tokenizer(cfg(tmp_path))


def test_missing_tokenizer(tmp_path, tiny_model_dir):
    d = copy_without(tiny_model_dir, tmp_path / "m", "tokenizer.json")
    with pytest.raises(ModelLoadError, match="no tokenizer"):
        load_model_and_tokenizer(cfg(d))


def test_unknown_quantization(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="unknown quantization"):
        load_model_and_tokenizer(cfg(tiny_model_dir, quantization="3bit"))


def test_adapter_dir_without_adapter_config(tmp_path, tiny_model_dir):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        load_model_and_tokenizer(cfg(tiny_model_dir, adapter_path=str(tmp_path / "adapter")))


def test_dir_without_meta_needs_a_label_set(tmp_path, tiny_model_dir):
    d = copy_without(tiny_model_dir, tmp_path / "m", "r2d_model.json")
    with pytest.raises(ModelLoadError, match="label set is unknown.*label_set"):
        load_model_and_tokenizer(cfg(d, quantization="none"))
    loaded = load_model_and_tokenizer(cfg(d, quantization="none"), label_set=["yes", "no"])
    assert loaded.meta.label_set == ("yes", "no")


def test_hub_id_offline_says_what_to_do():
    # conftest sets HF_HUB_OFFLINE=1, as on a machine without network
    with pytest.raises(ModelLoadError, match="not found locally; download it on a machine with network"):
        load_model_and_tokenizer(
            ModelConfig(name_or_path="google/flan-t5-small", quantization="none", device="cpu"), label_set=["yes", "no"]
        )


def test_hub_id_needs_a_label_set():
    with pytest.raises(ModelLoadError, match="label_set"):
        load_model_and_tokenizer(ModelConfig(name_or_path="google/flan-t5-small", quantization="none", device="cpu"))


# --- loads that work ------------------------------------------------------------------------------


def test_full_precision_load(tiny_model_dir, tiny_t5, tiny_tokenizer):
    torch.set_num_threads(2)
    loaded = load_model_and_tokenizer(cfg(tiny_model_dir, quantization="none"))
    assert torch.get_num_threads() == 1  # model.num_threads applied
    assert isinstance(loaded, LoadedModel)
    assert (loaded.quantization, loaded.device, loaded.model_id) == ("none", "cpu", tiny_model_dir.name)
    assert loaded.meta.label_set == tuple(KTAS_LABELS) and loaded.meta.ordinal
    assert not loaded.model.training
    torch.testing.assert_close(logits(loaded.model, loaded.tokenizer), logits(tiny_t5.eval(), tiny_tokenizer))


@needs_bnb
def test_4bit_load_on_cpu_quantizes_the_big_linears(tiny_model_dir, tiny_t5, tiny_tokenizer):
    import bitsandbytes as bnb

    loaded = load_model_and_tokenizer(cfg(tiny_model_dir, quantization="4bit"))
    model = loaded.model
    assert loaded.quantization == "4bit"
    assert not [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    nf4 = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    # T5's precision-sensitive FFN output and the embedding stay 16-bit, or int8 at inference where that is faster
    int8 = uses_int8_16bit_layers("cpu")
    kept, table = (Int8Linear, Int8Embedding) if int8 else (HalfLinear, LowPrecisionEmbedding)
    half = [n for n, m in model.named_modules() if isinstance(m, kept)]
    assert nf4 and all(n.split(".")[-1] in ("q", "k", "v", "o", "wi_0", "wi_1") for n in nf4)
    assert half and all(n.endswith(".wo") for n in half)
    assert isinstance(model.lm_head, TiedHead) and isinstance(model.get_input_embeddings(), table)
    assert model.encoder.embed_tokens is model.shared is model.decoder.embed_tokens
    assert model.dtype == torch.float32
    assert model.shared.weight.dtype == (torch.int8 if int8 else half_precision_dtype("cpu"))
    out = logits(model, loaded.tokenizer)
    assert out.shape == logits(tiny_t5.eval(), tiny_tokenizer).shape and torch.isfinite(out).all()


@needs_bnb
def test_int8_load_on_cpu(tiny_model_dir):
    loaded = load_model_and_tokenizer(cfg(tiny_model_dir, quantization="int8"))
    assert loaded.quantization == "int8"
    assert torch.isfinite(logits(loaded.model, loaded.tokenizer)).all()


@needs_bnb
def test_prequantized_dir_round_trip(tmp_path, tiny_model_dir):
    out = save_quantized_model_dir(cfg(tiny_model_dir), tmp_path / "q4")
    assert (out / QUANTIZED_MARKER).is_file() and (out / QUANTIZED_WEIGHTS).is_file()
    assert not (out / "model.safetensors").exists()  # plain from_pretrained must not pick up NF4 bytes
    direct = load_model_and_tokenizer(cfg(tiny_model_dir, quantization="4bit"))
    again = load_model_and_tokenizer(cfg(out, quantization="auto"))
    assert again.quantization == "4bit" and again.meta == direct.meta
    torch.testing.assert_close(
        logits(again.model, again.tokenizer), logits(direct.model, direct.tokenizer), rtol=0, atol=0
    )
    with pytest.raises(ModelLoadError, match="holds a 4-bit model"):
        load_model_and_tokenizer(cfg(out, quantization="none"))


def _lora_adapter(tiny_t5, directory):
    from peft import LoraConfig, TaskType, get_peft_model

    with warnings.catch_warnings():  # peft 0.21 reads an attribute transformers 5.24 deprecates
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(
            tiny_t5, LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=4, lora_alpha=8, target_modules=["q", "v"])
        )
    with torch.no_grad():  # LoRA starts as a no-op (B = 0); make it change the model so the test can fail
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    peft_model.save_pretrained(directory)
    return peft_model.eval()


def test_lora_adapter_round_trip(tmp_path, tiny_model_dir, tiny_t5, tiny_tokenizer):
    base_logits = logits(tiny_t5.eval(), tiny_tokenizer)
    peft_model = _lora_adapter(tiny_t5, tmp_path / "adapter")
    loaded = load_model_and_tokenizer(cfg(tiny_model_dir, quantization="none", adapter_path=str(tmp_path / "adapter")))
    assert loaded.model_id == f"{tiny_model_dir.name}+adapter"
    assert not [n for n in dict(loaded.model.named_modules()) if "lora" in n]  # merged for inference
    merged = logits(loaded.model, loaded.tokenizer)
    torch.testing.assert_close(merged, logits(peft_model, tiny_tokenizer), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(merged, base_logits)


def test_adapter_dir_without_weights(tmp_path, tiny_model_dir, tiny_t5):
    _lora_adapter(tiny_t5, tmp_path / "adapter")
    (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no adapter weights"):
        load_model_and_tokenizer(cfg(tiny_model_dir, adapter_path=str(tmp_path / "adapter")))


@needs_bnb
def test_lora_adapter_with_4bit(tmp_path, tiny_model_dir, tiny_t5):
    _lora_adapter(tiny_t5, tmp_path / "adapter")
    loaded = load_model_and_tokenizer(cfg(tiny_model_dir, quantization="4bit", adapter_path=str(tmp_path / "adapter")))
    assert loaded.quantization == "4bit" and isinstance(loaded.model.lm_head, TiedHead)
    assert torch.isfinite(logits(loaded.model, loaded.tokenizer)).all()


def test_quiet_peft_deprecations_silences_only_peft_s_one_message():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_peft_deprecations():
            warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
            warnings.warn("something else", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]

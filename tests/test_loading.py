"""training.build.loading: the model to train, new or loaded (full, LoRA, QLoRA), and its NF4 settings."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from r2d.config import AdapterConfig
from r2d.errors import ConfigError, ModelLoadError
from r2d.model.artifacts import read_model_meta
from training.build import loading
from training.build.loading import TrainingModel, load_model_for_training, quantization_config


def test_a_new_model_gets_a_tokenizer_fitted_to_the_corpus(tiny_config, data_files, tiny_examples):
    loaded = load_model_for_training(None, tiny_config(*data_files), [e.case_text for e in tiny_examples])
    assert isinstance(loaded, TrainingModel) and loaded.base_model is None and loaded.init_meta is None
    assert loaded.model.config.vocab_size == len(loaded.tokenizer)


def test_an_init_dir_is_loaded_with_its_metadata(tiny_config, data_files, tiny_model_dir):
    loaded = load_model_for_training(str(tiny_model_dir), tiny_config(*data_files), [])
    assert loaded.init_meta == read_model_meta(tiny_model_dir) and loaded.base_model is None
    assert next(loaded.model.parameters()).dtype == torch.float32  # master weights in fp32


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_lora_wraps_the_init_and_names_its_base(tiny_config, data_files, tiny_model_dir):
    loaded = load_model_for_training(str(tiny_model_dir), tiny_config(*data_files, "adapter.use_lora=true"), [])
    assert loaded.base_model == str(tiny_model_dir.resolve())
    assert {n for n, p in loaded.model.named_parameters() if p.requires_grad} and all(
        "lora_" in n for n, p in loaded.model.named_parameters() if p.requires_grad
    )


def test_an_unloadable_init_is_a_model_load_error(tmp_path, data_files, tiny_config):
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model_for_training(str(tmp_path / "no-such-model"), tiny_config(*data_files), [])


def test_an_init_file_is_refused(tmp_path, data_files, tiny_config):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model_for_training(str(tmp_path / "weights.bin"), tiny_config(*data_files), [])


def test_lora_on_a_random_base_is_refused(data_files, tiny_config):
    with pytest.raises(ConfigError, match="pretrained base"):
        load_model_for_training(None, tiny_config(*data_files, "adapter.use_lora=true"), ["a case"])


def test_no_quantization_without_qlora():
    assert quantization_config(AdapterConfig(use_lora=True), bf16=True) is None


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
@pytest.mark.parametrize("bf16, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_qlora_base_is_nf4_with_double_quantisation(bf16, dtype):
    q = quantization_config(AdapterConfig(use_lora=True, quantize_base_4bit=True), bf16=bf16)
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == dtype


def test_qlora_without_bitsandbytes_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        loading.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(ModelLoadError, match="pip install bitsandbytes"):
        quantization_config(AdapterConfig(use_lora=True, quantize_base_4bit=True), bf16=False)

"""Load a Reason2Decide model for inference: full checkpoint or base + LoRA adapter, in 4-bit, int8 or full precision.

`4bit` converts the T5's linear layers to bitsandbytes NF4 after a normal full-precision load, keeps the
precision-sensitive FFN outputs (`wo`) and the embedding table (which is also the lm_head) in bf16, and
keeps nothing of the checkpoint's memory map (the NF4 internals are in r2d.model.quantize; the measured reasons in
benchmarks/README.md). `save_quantized_model_dir` writes that model once so later loads read a quarter of the
bytes; `int8` is bitsandbytes LLM.int8 through transformers. Every failure a user can fix is a ModelLoadError that
says how.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from r2d.config import QUANTIZATIONS, ModelConfig
from r2d.errors import ModelLoadError
from r2d.model.artifacts import META_FILENAME, QUANTIZED_MARKER
from r2d.model.quantize import (
    bitsandbytes_available,
    cpu_has_fast_4bit,
    import_bnb,
    int8_16bit_layers_,
    load_prequantized,
    quantize_4bit_,
    uses_int8_16bit_layers,
    write_4bit_weights,
)
from r2d.model.source import (
    LoadedModel,
    _has_tokenizer,
    _looks_like_hub_id,
    _meta_for,
    check_adapter_dir,
    check_model_dir,
    model_id_of,
    resolve_device,
)

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# --- choosing a device and a quantization (pure) ---------------------------------------------


def resolve_quantization(choice: str, device: str, bnb_available: bool, cpu_fast_4bit: bool = False) -> str:
    """The concrete quantization ("4bit", "int8", "none") for a choice on a device. Pure; raises ModelLoadError.

    `cpu_fast_4bit` says whether bitsandbytes has its fused AVX512-BF16 4-bit kernel on this CPU.
    """
    if choice not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantization {choice!r}; choose one of {', '.join(QUANTIZATIONS)}")
    kind = device.split(":")[0]
    if choice == "auto":
        # With bitsandbytes' fused AVX512-BF16 kernel a pre-quantized NF4 model is both faster and smaller than
        # fp32; without it every NF4 matmul dequantizes its whole weight first and runs no faster than fp32, often
        # slower (benchmarks/README.md), so CPUs without AVX512-BF16 get full precision. On CUDA, 4-bit is the
        # memory choice.
        if bnb_available and (kind == "cuda" or (kind == "cpu" and cpu_fast_4bit)):
            return "4bit"
        return "none"
    if choice == "none":
        return "none"
    if kind not in ("cpu", "cuda"):
        raise ModelLoadError(f"quantization {choice} runs on cpu or cuda, not {device!r}; set model.quantization=none")
    if not bnb_available:
        raise ModelLoadError(
            f"quantization {choice} needs bitsandbytes, which is not installed or has no backend for "
            f"{kind}: `pip install bitsandbytes`, or set model.quantization=none"
        )
    return choice


# --- checking what we were given ------------------------------------------------------------


# --- loading ------------------------------------------------------------------------------------


def load_model_and_tokenizer(model_cfg: ModelConfig, label_set: Sequence[str] | None = None) -> LoadedModel:
    """Load model_cfg.name_or_path (+ adapter_path) for inference on model_cfg.device, quantized as asked.

    `label_set` is needed when the model has no r2d_model.json (hub ids, plain checkpoints) and overrides
    it otherwise. Raises ModelLoadError for anything the user can fix (paths, files, offline hub ids,
    quantizations this machine cannot run).
    """
    return _load(model_cfg, label_set, warm_up=True)


def _load(model_cfg: ModelConfig, label_set: Sequence[str] | None, warm_up: bool) -> LoadedModel:
    device = resolve_device(model_cfg.device)
    if model_cfg.num_threads > 0:
        torch.set_num_threads(model_cfg.num_threads)
    source, is_hub = model_cfg.name_or_path, _looks_like_hub_id(model_cfg.name_or_path)
    adapter = Path(model_cfg.adapter_path) if model_cfg.adapter_path else None
    if adapter is not None:
        check_adapter_dir(adapter)
    tokenizer_source = str(adapter) if adapter is not None and _has_tokenizer(adapter) else source
    if not is_hub:
        check_model_dir(Path(source), need_tokenizer=tokenizer_source == source)
    meta = _meta_for([d for d in (adapter, None if is_hub else Path(source)) if d is not None], label_set, source)
    prequantized = not is_hub and (Path(source) / QUANTIZED_MARKER).is_file()
    quantization = _choose(model_cfg.quantization, device, prequantized, adapter)
    compute_dtype = _dtype(model_cfg.compute_dtype)
    from transformers import AutoTokenizer

    with _load_errors(source, is_hub):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        if prequantized:
            model = load_prequantized(Path(source), device, compute_dtype)
        elif quantization == "int8":
            model = _load_int8(source, adapter, device)
        else:
            model = _load_full(source, adapter, compute_dtype)
            if quantization == "4bit":
                quantize_4bit_(model, device, compute_dtype)
            else:
                model.to(device)
    model.eval()
    if quantization == "4bit" and warm_up:  # warm_up=False is save_quantized_model_dir, which keeps bf16 in files
        if uses_int8_16bit_layers(device):
            int8_16bit_layers_(model)
        _warm_up(model, tokenizer)
    _return_freed_memory()
    model_id = model_id_of(meta, source, is_hub, adapter)
    logger.info("loaded %s (%s) on %s", model_id, quantization, device)
    return LoadedModel(model, tokenizer, meta, model_id, quantization, device)


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ModelLoadError(f"model.compute_dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _choose(choice: str, device: str, prequantized: bool, adapter: Path | None) -> str:
    if prequantized:
        if choice not in ("auto", "4bit"):
            raise ModelLoadError(
                f"this directory holds a 4-bit model (see {QUANTIZED_MARKER}); set "
                "model.quantization=4bit or auto, or load the full-precision model it came from"
            )
        if adapter is not None:
            raise ModelLoadError(
                "a pre-quantized 4-bit directory cannot take a LoRA adapter: load the base with the "
                "adapter and quantization=4bit, then save that with save_quantized_model_dir"
            )
        resolve_quantization("4bit", device, bitsandbytes_available())  # raises when bitsandbytes is missing
        return "4bit"
    if choice == "none":
        return "none"
    available = bitsandbytes_available()
    fast = available and device == "cpu" and cpu_has_fast_4bit()
    return resolve_quantization(choice, device, available, cpu_fast_4bit=fast)


@contextlib.contextmanager
def _load_errors(source: str, is_hub: bool) -> Iterator[None]:
    """Turn file-not-found style failures of from_pretrained into ModelLoadError; pass the rest through."""
    try:
        yield
    except OSError as e:
        if is_hub:
            raise ModelLoadError(
                f"model {source!r} not found locally; download it on a machine with network "
                f"or pass a local directory ({e})"
            ) from e
        raise ModelLoadError(f"cannot load the model in {source}: {e}") from e


def _load_full(source: str, adapter: Path | None, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(source, dtype=dtype)
    if adapter is None:
        return model
    from peft import PeftModel

    # merged for inference: the plain model runs at full speed and is what 4-bit then quantizes
    with quiet_peft_deprecations():
        return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def _load_int8(source: str, adapter: Path | None, device: str) -> Any:
    from transformers import AutoModelForSeq2SeqLM, BitsAndBytesConfig

    import_bnb()
    model = AutoModelForSeq2SeqLM.from_pretrained(
        source, quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map={"": device}
    )
    if adapter is None:
        return model
    from peft import PeftModel

    with quiet_peft_deprecations():
        return PeftModel.from_pretrained(model, str(adapter))  # LoRA stays beside the int8 layers (no merge into int8)


@contextlib.contextmanager
def quiet_peft_deprecations() -> Iterator[None]:
    """Silence the one FutureWarning peft raises on every adapter load or wrap (training uses it too).

    peft 0.21 reads `is_gradient_checkpointing`, which transformers 5.24 deprecates (the test suite makes
    those warnings errors); only that message is silenced, the call itself is fine.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _return_freed_memory() -> None:
    # quantizing frees hundreds of MB of temporaries that glibc keeps in its heap; hand them back to the OS
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _warm_up(model: Any, tokenizer: Any) -> None:
    # bitsandbytes repacks each 4-bit weight for its CPU kernel on the first call; doing it here keeps that
    # cost out of the first prediction and keeps concurrent first requests from repacking the same weight
    ids = torch.tensor([[tokenizer.eos_token_id]], device=model.device)
    with torch.no_grad():
        model(input_ids=ids, decoder_input_ids=torch.full_like(ids, model.config.decoder_start_token_id))


# --- a 4-bit model saved once, loaded many times ------------------------------------------------


def save_quantized_model_dir(
    model_cfg: ModelConfig, directory: str | Path, label_set: Sequence[str] | None = None
) -> Path:
    """Quantize the model of model_cfg (+ adapter) to NF4 once and write it where the loader reads it back as is.

    The directory holds config, tokenizer, r2d_model.json and the NF4 + bf16 weights; loading it reads a
    fraction of the fp32 bytes and never holds fp32 weights, which is what keeps 4-bit's peak memory low.
    Raises ModelLoadError like load_model_and_tokenizer.
    """
    # no warm-up: bitsandbytes' CPU repacking changes the weight layout, and its state_dict undo is lossy
    loaded = _load(replace(model_cfg, quantization="4bit"), label_set, warm_up=False)
    model = loaded.model
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    (out / META_FILENAME).write_text(
        json.dumps(loaded.meta.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_4bit_weights(model, out, loaded.model_id)
    return out

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
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from r2d.config import BACKENDS, QUANTIZATIONS, ModelConfig
from r2d.errors import ModelLoadError
from r2d.model.artifacts import META_FILENAME, ModelMeta, read_model_meta
from r2d.model.quantize import (
    QUANTIZED_MARKER,
    QUANTIZED_WEIGHTS,
    bitsandbytes_available,
    cpu_has_fast_4bit,
    import_bnb,
    int8_16bit_layers_,
    load_prequantized,
    quantize_4bit_,
    uses_int8_16bit_layers,
    write_4bit_weights,
)

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with what produced it."""

    model: Any  # transformers PreTrainedModel (PeftModel for an unmerged int8 adapter)
    tokenizer: Any
    meta: ModelMeta
    model_id: str
    quantization: str  # the concrete choice: "4bit", "int8" or "none"; "ct2-int8" / "ct2-float32" for CTranslate2
    device: str
    backend: str = "torch"  # "torch" (model is a transformers model) or "ct2" (a ctranslate2.Translator, r2d.model.ct2)


# --- choosing a device and a quantization (pure) ---------------------------------------------


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when CUDA is usable, else "cpu". Raises ModelLoadError for CUDA on a machine without it."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"model.device={device!r} but this machine has no usable CUDA; set model.device=cpu or auto"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelLoadError(f"model.device must be auto, cpu or cuda[:N], got {device!r}")
    return device


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


def resolve_backend(choice: str, quantization: str, device: str, ct2_available: bool, local_full_dir: bool) -> str:
    """The concrete inference engine, "torch" or "ct2", for model.backend. Pure; raises ModelLoadError.

    `local_full_dir` says whether name_or_path is a local full-precision directory (CTranslate2 converts
    from one; hub ids and pre-quantized 4-bit directories stay on torch).
    """
    if choice not in BACKENDS:
        raise ModelLoadError(f"unknown model.backend {choice!r}; choose one of {', '.join(BACKENDS)}")
    if choice == "torch":
        return "torch"
    if choice == "ct2":
        if not ct2_available:
            raise ModelLoadError(
                "model.backend=ct2 needs CTranslate2, which is not installed: "
                "`pip install -r requirements.txt` (ctranslate2>=4.8,<5), or set model.backend=torch"
            )
        if quantization == "4bit":
            raise ModelLoadError("model.backend=ct2 has no 4-bit mode: set model.quantization=auto, int8 or none")
        if not local_full_dir:
            raise ModelLoadError(
                "model.backend=ct2 converts a local full-precision model directory; this is a hub id "
                "or a pre-quantized 4-bit directory: pass the directory it came from, or set "
                "model.backend=torch"
            )
        return "ct2"
    # auto. Measured (benchmarks/README.md, t5-base shape, 1 thread, side by side): the CTranslate2 backend ran
    # 2.2x fp32-transformers' speed, r2d's pre-quantized 4-bit 0.88x (loaded machine; the issue's run: CT2 2.7x,
    # 4-bit 2.0x), and kept 249/252 labels of the embedded model equal to fp32 against 4-bit's 238. So a CPU
    # takes CTranslate2 when it is installed and no precision was asked for; CUDA keeps 4-bit (the memory path).
    kind = device.split(":")[0]
    if kind == "cpu" and ct2_available and quantization == "auto" and local_full_dir:
        return "ct2"
    return "torch"


# --- checking what we were given ------------------------------------------------------------


def _looks_like_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def check_model_dir(path: Path, need_tokenizer: bool = True) -> None:
    """Raise ModelLoadError naming `path` and what is missing unless it holds a T5-style seq2seq checkpoint."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist; pass a directory written by training/stage2.py")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"{path} is not a model directory: it has no config.json (train one with training/stage2.py)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{config_path} is not valid JSON: {e}") from e
    if not (config.get("is_encoder_decoder") or config.get("model_type") in ("t5", "mt5", "umt5")):
        raise ModelLoadError(
            f"{path} holds a {config.get('model_type', 'unknown')!r} model; Reason2Decide needs an "
            "encoder-decoder (T5 family) checkpoint"
        )
    weights = WEIGHT_FILES + ((QUANTIZED_WEIGHTS,) if (path / QUANTIZED_MARKER).is_file() else ())
    if not any((path / name).is_file() for name in weights):
        raise ModelLoadError(
            f"{path} has config.json but no weights ({' or '.join(WEIGHT_FILES)}); "
            "the save was interrupted or only the config was copied: save the model again"
        )
    if need_tokenizer and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{path} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); save the tokenizer beside "
            "the weights (r2d.model.artifacts.save_model_dir does)"
        )


def check_adapter_dir(path: Path) -> dict[str, Any]:
    """The adapter_config.json of a LoRA adapter directory. Raises ModelLoadError when it is not one."""
    if not path.is_dir():
        raise ModelLoadError(f"adapter directory {path} does not exist")
    config_path = path / "adapter_config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"adapter dir {path} has no adapter_config.json; pass the directory peft's "
            "save_pretrained wrote, or unset model.adapter_path"
        )
    if not any((path / name).is_file() for name in ADAPTER_WEIGHT_FILES):
        raise ModelLoadError(f"adapter dir {path} has no adapter weights ({' or '.join(ADAPTER_WEIGHT_FILES)})")
    return json.loads(config_path.read_text(encoding="utf-8"))


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def _meta_for(dirs: Sequence[Path], label_set: Sequence[str] | None, source: str) -> ModelMeta:
    meta = next((m for m in (read_model_meta(d) for d in dirs) if m is not None), None)
    if label_set is not None:
        if meta is not None and tuple(label_set) != meta.label_set:
            logger.warning("label set %s overrides %s's %s", list(label_set), META_FILENAME, list(meta.label_set))
        return ModelMeta(label_set=tuple(label_set)) if meta is None else replace(meta, label_set=tuple(label_set))
    if meta is None:
        raise ModelLoadError(
            f"{source} has no {META_FILENAME}, so its label set is unknown; pass label_set=[...] "
            "(e.g. evaluate --labels) or use a directory written by training/stage2.py"
        )
    return meta


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


def model_id_of(meta: ModelMeta, source: str, is_hub: bool, adapter: Path | None) -> str:
    """The id predictions record: r2d_model.json's model_id, else the hub id or the directory name (+ adapter)."""
    model_id = meta.extra.get("model_id") or (source if is_hub else Path(source).resolve().name)
    return f"{model_id}+{adapter.resolve().name}" if adapter is not None else str(model_id)


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

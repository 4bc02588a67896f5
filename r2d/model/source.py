"""What a model source is and which engine runs it, decided before any engine is imported (no torch here):
the model and adapter directory checks, the label set and id a load records, the device and the engine
(`resolve_backend`), and LoadedModel, what every engine's loader returns.

A machine without an NVIDIA or AMD GPU driver resolves `device=auto` to the CPU without importing torch, so the
CPU engines (ONNX Runtime, CTranslate2) load without it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from r2d.config import BACKENDS, ModelConfig
from r2d.errors import ModelLoadError
from r2d.model.artifacts import META_FILENAME, QUANTIZED_MARKER, QUANTIZED_WEIGHTS, ModelMeta, read_model_meta

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# device files a CUDA (NVIDIA) or ROCm (AMD) torch needs; without one, torch.cuda.is_available() is False
GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with what produced it."""

    model: Any  # transformers PreTrainedModel (PeftModel for an unmerged int8 adapter)
    tokenizer: Any
    meta: ModelMeta
    model_id: str
    quantization: str  # "4bit", "int8" or "none"; "onnx-int4" / "onnx-float32", "ct2-int8" / "ct2-float32" otherwise
    device: str
    # "torch" (a transformers model), "onnx" (an r2d.model.ort.OnnxT5) or "ct2" (a ctranslate2.Translator)
    backend: str = "torch"


# --- choosing a device and an engine (pure but for the driver check) ---------------------------


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when CUDA is usable, else "cpu". Raises ModelLoadError for CUDA on a machine without it."""
    if device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if device.startswith("cuda") and not _cuda_available():
        raise ModelLoadError(
            f"model.device={device!r} but this machine has no usable CUDA; set model.device=cpu or auto"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelLoadError(f"model.device must be auto, cpu or cuda[:N], got {device!r}")
    return device


def _cuda_available() -> bool:
    """torch.cuda.is_available(), without importing torch where no GPU driver could make it True."""
    if not any(os.path.exists(f) for f in GPU_DRIVER_FILES):
        return False
    import torch

    return torch.cuda.is_available()


def resolve_backend(
    choice: str,
    quantization: str,
    device: str,
    ct2_available: bool,
    local_full_dir: bool,
    ort_available: bool = False,
) -> str:
    """The concrete inference engine, "torch", "onnx" or "ct2", for model.backend. Pure; raises ModelLoadError.

    `local_full_dir` says whether name_or_path is a local full-precision directory (the ONNX export and
    CTranslate2 read one; hub ids and pre-quantized 4-bit directories stay on torch).
    """
    if choice not in BACKENDS:
        raise ModelLoadError(f"unknown model.backend {choice!r}; choose one of {', '.join(BACKENDS)}")
    if choice == "torch":
        return "torch"
    if choice == "ct2":
        _check_engine("ct2", "CTranslate2", "ctranslate2>=4.8,<5", ct2_available, local_full_dir)
        if quantization == "4bit":
            raise ModelLoadError("model.backend=ct2 has no 4-bit mode: set model.quantization=auto, int8 or none")
        return "ct2"
    if choice == "onnx":
        _check_engine("onnx", "ONNX Runtime", "onnxruntime and onnx", ort_available, local_full_dir)
        if quantization == "int8":
            raise ModelLoadError("model.backend=onnx has no int8 mode: set model.quantization=auto, 4bit or none")
        if device.split(":")[0] != "cpu":
            raise ModelLoadError(
                f"model.backend=onnx runs on the CPU, not {device}: set model.device=cpu, or "
                "model.backend=torch (4-bit bitsandbytes on CUDA)"
            )
        return "onnx"
    # auto: measured side by side (benchmarks/README.md, t5-base shape, one thread), ONNX Runtime's 4-bit kernels
    # decoded faster than CTranslate2 int8 and than the project's bitsandbytes 4-bit, at less memory. So a CPU
    # takes the 4-bit ONNX export when onnxruntime is installed and 4-bit (or nothing) was asked for;
    # CTranslate2 stays an explicit choice; CUDA keeps bitsandbytes 4-bit.
    if device.split(":")[0] == "cpu" and ort_available and quantization in ("auto", "4bit") and local_full_dir:
        return "onnx"
    return "torch"


def _check_engine(choice: str, engine: str, packages: str, available: bool, local_full_dir: bool) -> None:
    if not available:
        raise ModelLoadError(
            f"model.backend={choice} needs {engine}, which is not installed: `pip install -r "
            f"requirements.txt` ({packages}), or set model.backend=torch"
        )
    if not local_full_dir:
        raise ModelLoadError(
            f"model.backend={choice} converts a local full-precision model directory; this is a hub id "
            "or a pre-quantized 4-bit directory: pass the directory it came from, or set model.backend=torch"
        )


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


def local_full_precision_dir(model_cfg: ModelConfig) -> bool:
    """Whether model_cfg names a local full-precision model directory (what CTranslate2 and ONNX export read)."""
    source = model_cfg.name_or_path
    return not _looks_like_hub_id(source) and Path(source).is_dir() and not (Path(source) / QUANTIZED_MARKER).is_file()


def conversion_cache(configured: str, env_var: str, engine: str) -> Path:
    """Where an engine keeps its conversions: the configured folder, else $env_var, else
    ~/.cache/r2d/<engine> ($XDG_CACHE_HOME respected)."""
    if configured:
        return Path(configured)
    if os.environ.get(env_var):
        return Path(os.environ[env_var])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "r2d" / engine


def files_digest(source: Path, adapter: Path | None, *parts: str) -> str:
    """A hex digest of what a conversion of source (+ adapter) depends on: each file's name, size and mtime in
    both directories, and `parts` (the converter's version, settings...)."""
    h = hashlib.sha256("|".join(parts).encode())
    for directory in (source, adapter):
        if directory is None:
            continue
        h.update(f"|{directory.resolve()}".encode())
        for f in sorted(p for p in directory.iterdir() if p.is_file()):
            st = f.stat()
            h.update(f"|{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def model_id_of(meta: ModelMeta, source: str, is_hub: bool, adapter: Path | None) -> str:
    """The id predictions record: r2d_model.json's model_id, else the hub id or the directory name (+ adapter)."""
    model_id = meta.extra.get("model_id") or (source if is_hub else Path(source).resolve().name)
    return f"{model_id}+{adapter.resolve().name}" if adapter is not None else str(model_id)

"""Export a T5 model directory to ONNX with quantized matrices, once, into a cache (r2d.model.ort runs it).

Two graphs and the token embeddings come out: `encoder.onnx` turns a batch of embedded prompts into every
decoder layer's cross-attention keys and values (so the decoder never sees the encoder's hidden states and never
recomputes them), and `decoder.onnx` runs the decoder over new tokens given the previous tokens' self-attention
keys and values, returning the new tokens' log-probabilities and the extended keys and values. The same decoder
graph teacher-forces candidate labels (several tokens, no past) and generates (one token per call, with past).

The graphs are written by torch.onnx's TorchScript exporter from r2d.model.ort_graphs; the matrices are then
quantized by onnxruntime.quantization, as QUANT_SETTINGS says. The result is cached like r2d.model.ct2's
conversion: a folder keyed by the source files, the library versions and the settings, written atomically.
Only an export imports torch (lazily); finding a cached export does not.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from r2d.config import ModelConfig
from r2d.errors import ModelLoadError
from r2d.model.source import (
    _has_tokenizer,
    check_adapter_dir,
    check_model_dir,
    conversion_cache,
    files_digest,
    local_full_precision_dir,
)

logger = logging.getLogger(__name__)

# bump when the graphs or the quantization change, so cached exports made by older code are not reused
EXPORT_VERSION = 3
ENCODER, DECODER, EMBEDDINGS, SETTINGS = "encoder.onnx", "decoder.onnx", "embeddings.npy", "r2d_onnx.json"
OPSET = 18
# How the matrices are stored, chosen by measurement (benchmarks/README.md: label agreement with fp32 on the KTAS
# test split, and speed at t5-base shape on one thread):
# - the decoder, which generates one token per call and so reads every weight once per token: 4 bits,
#   symmetric, one scale per block of 32 weights (MatMulNBits), accuracy_level 4 (int8 dot products inside the
#   kernel); the output projection (`wide`), whose rounding goes straight into every label's log-probability,
#   in `wide_bits`;
# - the encoder, which multiplies a whole prompt's rows at once: `encoder` says how. "int8" is per-channel int8
#   weights with int8 activations quantized per call (onnxruntime's dynamic quantization, as CTranslate2 runs
#   its int8), where the 4-bit kernels ran no faster than float32 over a prompt's rows;
# - the token embeddings stay float32 and outside the graphs (EMBEDDINGS, memory-mapped by r2d.model.ort: only
#   the rows of tokens in use are read, and encoder and decoder share one copy).
QUANT_SETTINGS = {
    "bits": 4,
    "block_size": 32,
    "symmetric": True,
    "accuracy_level": 4,
    "wide": ["lm_head"],
    "wide_bits": 8,
    "encoder": "int8",
}
ENCODER_MODES = ("int4", "int8")  # QUANT_SETTINGS["encoder"]: the decoder's 4-bit layout, or dynamic int8
PRECISIONS = ("int4", "float32")  # what an export may hold: quantized matrices, or none quantized (tests, checks)


def cache_dir(model_cfg: ModelConfig) -> Path:
    """model.onnx_cache_dir, else $R2D_ONNX_CACHE, else ~/.cache/r2d/onnx ($XDG_CACHE_HOME respected)."""
    return conversion_cache(model_cfg.onnx_cache_dir, "R2D_ONNX_CACHE", "onnx")


def export(model_cfg: ModelConfig, precision: str = "int4", settings: dict[str, Any] | None = None) -> Path:
    """The cached ONNX directory of model_cfg's model (+ adapter) in `precision`, exported now if missing.
    `settings` replaces QUANT_SETTINGS (the benchmark compares layouts). Raises ModelLoadError when
    onnxruntime is missing, the source is not a local full-precision model directory, or the export fails
    (nothing half-written is left in the cache)."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown ONNX precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    onnxruntime = _import_ort()
    source = Path(model_cfg.name_or_path)
    if not local_full_precision_dir(model_cfg):
        raise ModelLoadError(
            f"model.backend=onnx exports a local full-precision model directory; {source} is a hub "
            "id, missing, or a pre-quantized 4-bit directory: pass the directory it came from, or "
            "set model.backend=torch"
        )
    adapter = Path(model_cfg.adapter_path) if model_cfg.adapter_path else None
    if adapter is not None:
        check_adapter_dir(adapter)
    check_model_dir(source, need_tokenizer=not (adapter is not None and _has_tokenizer(adapter)))
    chosen = {"precision": precision, **((settings or QUANT_SETTINGS) if precision == "int4" else {})}
    if chosen.get("encoder", "int8") not in ENCODER_MODES:
        raise ModelLoadError(f"unknown encoder layout {chosen['encoder']!r}; choose one of {ENCODER_MODES}")
    key = files_digest(
        source, adapter, f"onnx{EXPORT_VERSION}", onnxruntime.__version__, json.dumps(chosen, sort_keys=True)
    )
    out = cache_dir(model_cfg) / f"{source.resolve().name}-{precision}-{key}"
    if (out / SETTINGS).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".exporting-", dir=out.parent))
    try:
        _write(source, adapter, scratch / "model", chosen)
        os.replace(scratch / "model", out)  # atomic: a concurrent load sees a whole directory or none
    except OSError as e:
        if not (out / SETTINGS).is_file():  # another process may have won the race; its result is as good
            raise ModelLoadError(f"cannot write the ONNX export of {source} to {out}: {e}") from e
    except ModelLoadError:
        raise
    except Exception as e:  # the exporter and the quantizer raise many kinds for models they cannot take
        raise ModelLoadError(
            f"exporting {source} to ONNX failed ({type(e).__name__}: {e}); set model.backend=torch (or ct2)"
        ) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("exported %s to ONNX %s in %s", source, precision, out)
    return out


def _import_ort() -> Any:
    try:
        import onnx  # noqa: F401  (the quantizer needs it)
        import onnxruntime
    except ImportError as e:
        raise ModelLoadError(
            "model.backend=onnx needs onnxruntime and onnx, which are not installed: `pip install "
            "-r requirements.txt`, or set model.backend=torch"
        ) from e
    return onnxruntime


def _write(source: Path, adapter: Path | None, out: Path, settings: dict[str, Any]) -> None:
    """Export both graphs of the (adapter-merged) model into `out`, quantize them, and write SETTINGS last."""
    import numpy as np
    import torch

    from r2d.model.modeling import _load_full
    from r2d.model.ort_graphs import decoder_spec, encoder_spec

    out.mkdir()
    model = _load_full(str(source), adapter, torch.float32).eval()
    np.save(out / EMBEDDINGS, model.get_input_embeddings().weight.detach().numpy())
    for name, module, args, names, axes in (encoder_spec(model, ENCODER), decoder_spec(model, DECODER)):
        path = out / name
        with torch.no_grad():  # the TorchScript exporter (it warns it is deprecated): torch.export's needs onnxscript
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=names[0],
                output_names=names[1],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        if settings["precision"] == "int4" and name == ENCODER and settings["encoder"] == "int8":
            _quantize_int8(path)
        elif settings["precision"] == "int4":
            _quantize_nbits(path, settings)
        else:
            import onnx

            _save(onnx.load(str(path)), path)
        _check_loads(path)
    info = {**settings, "export_version": EXPORT_VERSION, "num_layers": model.config.num_decoder_layers}
    (out / SETTINGS).write_text(json.dumps(info), encoding="utf-8")


def _check_loads(path: Path) -> None:
    """Build an ONNX Runtime session once, so an export it cannot run fails here and is never cached."""
    import onnxruntime

    onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _quantize_nbits(path: Path, settings: dict[str, Any]) -> None:
    """Replace the graph's MatMuls by constant weights with MatMulNBits: `bits` bits, the `wide` ones at wide_bits."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)  # it logs every node at INFO
    model = onnx.load(str(path))
    weights = {i.name for i in model.graph.initializer}
    matrices = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    wide = [n for n in matrices if any(re.search(pattern, n) for pattern in settings["wide"])]
    groups = [(settings["bits"], [n for n in matrices if n not in wide]), (settings["wide_bits"], wide)]
    for bits, nodes in groups:
        if not nodes:
            continue
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=bits,
            block_size=settings["block_size"],
            is_symmetric=settings["symmetric"],
            accuracy_level=settings["accuracy_level"],
            nodes_to_include=nodes,
            nodes_to_exclude=[n.name for n in model.graph.node if n.name not in nodes],
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
        model = quantizer.model.model
    _save(model, path)


def _quantize_int8(path: Path) -> None:
    """Replace the graph's MatMuls by constant weights with per-channel int8 weights and int8 activations
    quantized on each call (onnxruntime's dynamic quantization)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name(path.stem + ".int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # quantize_dynamic logs per tensor, and advice, to the root logger
    try:
        quantize_dynamic(
            path, quantized, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
    finally:
        root.setLevel(level)
    model = onnx.load(str(quantized))
    for leftover in path.parent.glob(path.name + "*"):  # the float32 graph and its weights file
        leftover.unlink()
    _save(model, path)
    quantized.unlink()


def _save(model: Any, path: Path) -> None:
    """Write the graph with its weights in a file of their own beside it: ONNX Runtime maps that file into memory
    instead of copying the weights out of a parsed protobuf, which lowers the peak while a session loads."""
    import onnx

    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=1024,
    )

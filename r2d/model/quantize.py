"""The NF4 internals of the 4-bit path: which layers go to bitsandbytes NF4 and which stay in 16 bits, and the
pre-quantized directory format (written once, read back without ever holding fp32 weights).

Layout (measured reasons in benchmarks/README.md): T5's attention projections and FFN inputs in NF4; the model's
precision-sensitive modules (T5: the FFN output `wo`) and the embedding table, which is also the tied lm_head,
in bf16 where the hardware multiplies in it. Nothing keeps the checkpoint's memory map alive. r2d.model.modeling
chooses when to use this; everything here raises ImportError without bitsandbytes.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from r2d.errors import ModelLoadError
from r2d.model.artifacts import QUANTIZED_MARKER, QUANTIZED_WEIGHTS

QUANTIZED_FORMAT = "r2d-nf4-1"
NF4_QUANT_TYPE = "nf4"  # bitsandbytes' 4-bit NormalFloat, QLoRA's data type
NF4_BLOCKSIZE = 64
CPU_PACK_ROWS = 32  # bitsandbytes' AVX512-BF16 kernel packs weights in blocks of 32 output rows


# --- bitsandbytes: present, and fast on this CPU? ---------------------------------------------------


def bitsandbytes_available() -> bool:
    """Whether bitsandbytes imports with a native backend for this machine."""
    try:
        import_bnb()
    except ImportError:
        return False
    from bitsandbytes.cextension import ErrorHandlerMockBNBNativeLibrary, lib

    return not isinstance(lib, ErrorHandlerMockBNBNativeLibrary)


def cpu_has_fast_4bit() -> bool:
    """Whether bitsandbytes' fused AVX512-BF16 NF4 kernel runs on this CPU (the only fast CPU 4-bit path)."""
    if not bitsandbytes_available():
        return False
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


class _DropHubKernelAdvice(logging.Filter):
    # bitsandbytes suggests `pip install kernels`, which downloads kernels from the Hub at run time; this
    # project never downloads at run time, and bitsandbytes' own native kernel is used instead.
    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


def import_bnb() -> Any:
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropHubKernelAdvice())
    import bitsandbytes

    return bitsandbytes


def nf4_bnb_config(compute_dtype: torch.dtype, double_quant: bool = False) -> Any:
    """transformers' BitsAndBytesConfig that loads a model's linear layers in NF4, computing in `compute_dtype`.

    The one NF4 recipe for loads through transformers: QLoRA training bases (training.build.loading, with
    `double_quant`, which also quantises the per-block scales) and the stock variant of
    benchmarks/bench_inference.py. The inference path builds its layers itself (quantize_4bit_), with the
    same NF4_QUANT_TYPE. Building it needs no bitsandbytes; loading with it does.
    """
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=NF4_QUANT_TYPE,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


# --- 4-bit: the big linear layers in NF4, the precision-sensitive ones and the embedding in 16 bits ----------


def half_precision_dtype(device: str, compute_dtype: torch.dtype = torch.float32) -> torch.dtype:
    """Storage dtype of the layers kept out of NF4: bf16 where the hardware multiplies in it natively
    (CUDA with bf16, CPUs with AVX512-BF16) or when computing in bf16, else float32."""
    native = torch.cuda.is_bf16_supported() if device.startswith("cuda") else cpu_has_fast_4bit()
    return torch.bfloat16 if native or compute_dtype == torch.bfloat16 else torch.float32


class HalfLinear(nn.Module):
    """A linear layer kept out of NF4, its weight stored in `dtype`.

    The weight is a buffer, so `model.dtype` stays the compute dtype.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight.detach().to(dtype, copy=True))
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype, copy=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


class LowPrecisionEmbedding(nn.Module):
    """The shared embedding table stored in `dtype`; looked-up rows come out in the compute dtype."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype, out_dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().to(dtype, copy=True))
        self.num_embeddings, self.embedding_dim = weight.shape
        self.padding_idx, self.out_dtype = None, out_dtype

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(input_ids, self.weight).to(self.out_dtype)


class TiedHead(nn.Module):
    """The lm_head of a model that ties it to the embedding (T5 in transformers 5): one table, no second copy."""

    def __init__(self, embedding: LowPrecisionEmbedding) -> None:
        super().__init__()
        self._tied = [embedding]  # a list keeps it out of the module tree: its table is saved once, as shared.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        table = self._tied[0]
        if isinstance(table, Int8Embedding):
            return _int8_matmul(hidden, table.weight, table.scale).to(hidden.dtype)
        return nn.functional.linear(hidden.to(table.weight.dtype), table.weight).to(hidden.dtype)


INT8_CHUNK_ROWS = 1024  # rows quantized at a time: a few MB of float32 scratch, not the whole table's


def _int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row (output channel), computed in slices to keep the scratch small."""
    q = torch.empty(weight.shape, dtype=torch.int8)
    scale = torch.empty(weight.shape[0], dtype=torch.float32)
    for start in range(0, weight.shape[0], INT8_CHUNK_ROWS):
        rows = weight[start : start + INT8_CHUNK_ROWS].detach().to(torch.float32, copy=True)
        s = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
        q[start : start + len(rows)] = (
            rows.div_(s[:, None]).round_().clamp_(-127, 127)
        )  # in place: one chunk of scratch
        scale[start : start + len(rows)] = s
    return q, scale.to(torch.bfloat16)


def _int8_matmul(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # Decoding steps (one new token per sequence) take torch's weight-only int8 kernel with bf16 activations
    # (float32 ones are several times slower). That kernel is matrix-vector: per row it costs the same at 85
    # rows as at 1, so longer inputs (encoder passes, label scoring) multiply by bf16 slices of the int8 weight
    # and scale the outputs. The choice follows the sequence length, never the batch, so a case scores the
    # same alone and in a batch (benchmarks/README.md has the per-layer figures).
    rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
    if x.dim() < 3 or x.shape[-2] == 1:
        out = torch._weight_int8pack_mm(rows, weight, scale)
    else:
        out = (
            torch.cat(
                [
                    nn.functional.linear(rows, weight[i : i + INT8_CHUNK_ROWS].to(torch.bfloat16))
                    for i in range(0, weight.shape[0], INT8_CHUNK_ROWS)
                ],
                dim=-1,
            )
            .float()
            .mul_(scale.float())
        )
    return out.reshape(*x.shape[:-1], weight.shape[0])


class Int8Linear(nn.Module):
    """A 16-bit layer at inference on a CPU with AVX512-BF16: int8 weight, one bf16 scale per output row."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        q, scale = _int8_rows(weight)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16, copy=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _int8_matmul(x, self.weight, self.scale)
        return (out if self.bias is None else out + self.bias).to(x.dtype)


class Int8Embedding(nn.Module):
    """The shared embedding table (= the tied lm_head) in int8 with one scale per token row."""

    def __init__(self, weight: torch.Tensor, out_dtype: torch.dtype) -> None:
        super().__init__()
        q, scale = _int8_rows(weight)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.num_embeddings, self.embedding_dim = weight.shape
        self.padding_idx, self.out_dtype = None, out_dtype

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = nn.functional.embedding(input_ids, self.weight).to(self.out_dtype)
        return rows * nn.functional.embedding(input_ids, self.scale[:, None]).to(self.out_dtype)


@functools.cache
def fast_nf4_class() -> type:
    """bitsandbytes' Linear4bit with a leaner CPU inference call (built on first use: bitsandbytes loads lazily).

    Once bitsandbytes has packed a weight for its AVX512-BF16 kernel (first eval call), FastNF4Linear calls
    that same native kernel directly. Linear4bit's forward spends more time in Python than the kernel takes for
    one decoding row: fixing up the quant state, converting absmax to bf16 and testing the code book on
    every call (benchmarks/README.md has the figures). Training, CUDA and unpacked weights take Linear4bit's
    own forward; the result is the same kernel's, bit for bit.
    """
    bnb = import_bnb()
    from bitsandbytes.cextension import lib

    kernel = getattr(getattr(lib, "_lib", None), "gemv_4bit_inference_cpu_nf4_bf16", None)

    class FastNF4Linear(bnb.nn.Linear4bit):
        _fast: tuple | None = None  # (packed weight, bf16 absmax, ctypes N, K, blocksize) once packed

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self._fast is None or self.training or x.requires_grad or x.device.type != "cpu":
                out = super().forward(x)
                if self._fast is None and not self.training:
                    self._fast = self._fast_arguments()
                return out
            weight, absmax, n, k, blocksize = self._fast
            rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous()
            out = torch.empty((rows.shape[0], self.out_features), dtype=torch.bfloat16)
            kernel(
                ctypes.c_int64(rows.shape[0]),
                n,
                k,
                ctypes.c_void_p(rows.data_ptr()),
                ctypes.c_void_p(weight.data_ptr()),
                ctypes.c_void_p(absmax.data_ptr()),
                ctypes.c_void_p(out.data_ptr()),
                blocksize,
                k,
                n,
            )  # row strides = K and N (contiguous)
            out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
            return out if self.bias is None else out + self.bias.to(x.dtype)

        def _fast_arguments(self) -> tuple | None:
            state = self.weight.quant_state
            if (
                kernel is None
                or not getattr(state, "packing_format_for_cpu", False)
                or state.nested
                or state.quant_type != NF4_QUANT_TYPE
                or self.weight.device.type != "cpu"
            ):
                return None
            return (
                self.weight.data.view(torch.uint8).contiguous(),
                state.absmax.to(torch.bfloat16).contiguous(),
                ctypes.c_int64(self.out_features),
                ctypes.c_int64(self.in_features),
                ctypes.c_int64(state.blocksize),
            )

        def _apply(self, fn, *args, **kwargs):  # .to() / .cuda() move the weight: the cached one is stale
            self._fast = None
            return super()._apply(fn, *args, **kwargs)

    return FastNF4Linear


def nf4_linear(
    weight: torch.Tensor | None,
    shape: tuple[int, int],
    bias: torch.Tensor | None,
    compute_dtype: torch.dtype,
    device: str,
) -> nn.Module:
    # weight=None builds an empty shell on the meta device, filled later from a saved 4-bit file
    bnb = import_bnb()
    out_features, in_features = shape
    layer = fast_nf4_class()(
        in_features,
        out_features,
        bias=bias is not None,
        compute_dtype=compute_dtype,
        compress_statistics=False,
        quant_type=NF4_QUANT_TYPE,
        device="meta",
    )
    # bitsandbytes' fused CPU kernel needs whole 32-row blocks and whole quantization blocks per row
    layer.support_avx512bf16_for_cpu &= out_features % CPU_PACK_ROWS == 0 and in_features % NF4_BLOCKSIZE == 0
    if weight is None:
        return layer
    layer.weight = bnb.nn.Params4bit(
        weight.detach(),
        requires_grad=False,
        blocksize=NF4_BLOCKSIZE,
        compress_statistics=False,
        quant_type=NF4_QUANT_TYPE,
        module=layer,
    )
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().to(compute_dtype, copy=True), requires_grad=False)
    return layer.to(device)  # Params4bit quantizes when it moves to a real device


def convert_4bit_(model: Any, compute_dtype: torch.dtype, half: torch.dtype, device: str, with_weights: bool) -> None:
    # The model class's own precision-sensitive modules (T5: `wo`, the FFN output) stay out of NF4: in NF4 they
    # took a trained KTAS model from 0.63 to 0.36 accuracy, in bf16 they change nothing (benchmarks/README.md).
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or (parent is model and name == "lm_head"):
                continue
            weight = child.weight if with_weights else None
            setattr(
                parent,
                name,
                HalfLinear(child.weight, child.bias, half)
                if name in keep
                else nf4_linear(weight, tuple(child.weight.shape), child.bias, compute_dtype, device),
            )
    table = model.get_input_embeddings()
    tied = model.lm_head.weight is table.weight
    embedding = LowPrecisionEmbedding(table.weight, half, compute_dtype)
    model.set_input_embeddings(embedding)
    # an NF4 lm_head is several times faster per token but alone moved 16 of 253 KTAS labels; bf16 moved none
    model.lm_head = TiedHead(embedding) if tied else HalfLinear(model.lm_head.weight, model.lm_head.bias, half)


def quantize_4bit_(model: Any, device: str, compute_dtype: torch.dtype = torch.float32) -> None:
    """In place: nn.Linear layers -> bitsandbytes NF4, except the model's precision-sensitive ones (T5: `wo`),
    which with the embedding table (= the tied lm_head) are stored in half_precision_dtype().

    Everything left (layer norms, position biases) is copied onto `device`, so no tensor keeps the
    checkpoint's memory map (and its fp32 pages) alive. Raises ImportError without bitsandbytes.
    """
    half = half_precision_dtype(device, compute_dtype)
    convert_4bit_(model, compute_dtype, half, device, with_weights=True)
    own_the_rest_(model, device, compute_dtype, half)


def own_the_rest_(model: Any, device: str, compute_dtype: torch.dtype, half: torch.dtype) -> None:
    bnb = import_bnb()
    for module in model.modules():
        for _, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if isinstance(tensor, bnb.nn.Params4bit):
                continue
            if isinstance(module, (HalfLinear, LowPrecisionEmbedding)):
                tensor.data = tensor.data.to(device=device, dtype=half)  # already owned (or a file page, read-only)
            else:
                dtype = compute_dtype if tensor.is_floating_point() else tensor.dtype
                tensor.data = tensor.data.to(device=device, dtype=dtype, copy=True)


def uses_int8_16bit_layers(device: str) -> bool:
    """Whether int8_16bit_layers_ applies: CPUs with AVX512-BF16, where torch's int8 kernel beats bf16."""
    return device == "cpu" and cpu_has_fast_4bit()


def int8_16bit_layers_(model: Any) -> None:
    """In place, for inference on a CPU with AVX512-BF16: the 16-bit layers of a quantize_4bit_ model (T5's `wo`,
    the embedding table and with it the tied lm_head) become int8 with one bf16 scale per row.

    Half the bytes of bf16, and torch's int8 kernel with bf16 activations took a decoding row through `wo` and
    the lm_head ~1.5-3x faster than bf16 here; on the embedded KTAS model it moved 3 more of 252 labels than bf16
    (benchmarks/README.md). Files keep bf16 (save_quantized_model_dir never calls this), so a directory saved
    once loads the same on CUDA. A table not tied to the lm_head stays as it is.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, HalfLinear) and child.weight.dtype == torch.bfloat16:
                setattr(parent, name, Int8Linear(child.weight, child.bias))
    table = model.get_input_embeddings()
    if isinstance(model.lm_head, TiedHead) and isinstance(table, LowPrecisionEmbedding):
        embedding = Int8Embedding(table.weight, table.out_dtype)
        model.set_input_embeddings(embedding)
        model.lm_head = TiedHead(embedding)


# --- the pre-quantized directory's weights -----------------------------------------------------------


def write_4bit_weights(model: Any, directory: Path, source_model_id: str) -> None:
    """Write a quantize_4bit_ model's NF4 + 16-bit weights and the format marker into `directory`."""
    from safetensors.torch import save_file

    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    state, seen = {}, set()
    for key, tensor in model.state_dict().items():
        if key in tied:
            continue  # the encoder's and decoder's embed_tokens are the shared table
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.data_ptr() in seen:
            tensor = tensor.clone()  # bitsandbytes shares one NF4 code book between layers; safetensors wants copies
        seen.add(tensor.data_ptr())
        state[key] = tensor
    save_file(state, str(directory / QUANTIZED_WEIGHTS), metadata={"format": QUANTIZED_FORMAT})
    marker = {
        "format": QUANTIZED_FORMAT,
        "quantization": "4bit",
        "quant_type": NF4_QUANT_TYPE,
        "blocksize": NF4_BLOCKSIZE,
        "source_model_id": source_model_id,
    }
    (directory / QUANTIZED_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors file, read into memory of its own.

    safetensors' load_file maps the whole file and its tensors keep the map alive, so the file's pages
    stayed resident beside the copies bitsandbytes makes when it repacks (t5-base: +200 MB for good).
    """
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        header.pop("__metadata__", None)
        base, tensors = f.tell(), {}
        for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            start, end = info["data_offsets"]
            f.seek(base + start)
            data = bytearray(f.read(end - start))
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            tensor = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
            tensors[name] = tensor.reshape(info["shape"])
    return tensors


def load_prequantized(path: Path, device: str, compute_dtype: torch.dtype) -> Any:
    marker = json.loads((path / QUANTIZED_MARKER).read_text(encoding="utf-8"))
    if marker.get("format") != QUANTIZED_FORMAT:
        raise ModelLoadError(
            f"{path / QUANTIZED_MARKER} has format {marker.get('format')!r}, this version reads "
            f"{QUANTIZED_FORMAT!r}; re-save the model with save_quantized_model_dir"
        )
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, GenerationConfig

    bnb = import_bnb()
    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(path))
    half = half_precision_dtype(device, compute_dtype)
    convert_4bit_(model, compute_dtype, half, device, with_weights=False)
    state = read_safetensors(path / QUANTIZED_WEIGHTS)
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            key = f"{name}.weight"
            stats = {k[len(key) + 1 :]: state.pop(k) for k in [k for k in state if k.startswith(key + ".")]}
            if key not in state:
                raise ModelLoadError(f"{path / QUANTIZED_WEIGHTS} has no {key}; re-save the model")
            module.weight = bnb.nn.Params4bit.from_prequantized(state.pop(key), stats, device=device, module=module)
    model.load_state_dict(state, strict=False, assign=True)
    missing = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if missing:
        raise ModelLoadError(
            f"{path / QUANTIZED_WEIGHTS} is incomplete (no {', '.join(missing[:3])}); re-save the model"
        )
    own_the_rest_(model, device, compute_dtype, half)
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path)
    return model

"""Where and how big a build trains: one code path for a 2-core CPU and for a GPU.

The default model's recipe is the same at both scales; what changes is the device, bf16 autocast,
the Stage-1 batch, how many processes make synthetic batches, and torch.compile. `resolve_scale`
turns the command line's choices into a frozen `Scale` and refuses impossible ones up front.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from r2d.errors import ConfigError

# the CPU flags under which bfloat16 matrix products run natively (AVX512-BF16, Intel AMX)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Scale:
    """One build's hardware settings; the recipe (data, objective, steps or budget) is not here."""

    device: str = "cpu"  # "cpu" or "cuda"
    bf16: bool = False  # bfloat16 autocast in Stage 1 and the Trainer's bf16 in Stage 2
    stage1_batch_size: int = 16  # Stage-1 explain pairs per optimiser step
    workers: int = 0  # processes making Stage-1 batches (0: the training process)
    compile: bool = False  # torch.compile the Stage-1 forward
    pad_multiple: int = 1  # batch widths padded to a multiple of this (8 on GPUs: tensor cores)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (else bf16 autocast only emulates it, slower than fp32)."""
    return any(f in (cpu_flags() if flags is None else flags) for f in BF16_CPU_FLAGS)


def resolve_scale(
    device: str,
    cuda_available: bool,
    *,
    bf16: bool | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    compile_model: bool = False,
    cpu_bf16: bool = False,
    cores: int | None = None,
    processes: int = 1,
) -> Scale:
    """The Scale for `device` ("auto", "cpu", "cuda"); None leaves a setting to the device's default.

    GPU defaults: bf16, batches of 256, the machine's cores split among `processes` concurrent builds
    (one core each kept for the training loop). CPU defaults: bf16 only where the CPU has it natively,
    batches of 16, batches made in the training process (a 2-core machine has no core to spare).
    Raises ConfigError for CUDA on a machine without it, or bf16 on a CPU that lacks it.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not cuda_available:
        raise ConfigError("--device cuda, but this machine has no usable CUDA GPU; use --device cpu (or auto)")
    on_gpu = device == "cuda" or (device == "auto" and cuda_available)
    if bf16 and not on_gpu and not cpu_bf16:
        raise ConfigError(
            "--bf16 on a CPU without AVX512-BF16 or AMX only emulates bfloat16 (slower than fp32); drop --bf16"
        )
    cores = cores or os.cpu_count() or 1
    if on_gpu:
        default_workers = max(1, cores // max(1, processes) - 1)
        return Scale(
            "cuda",
            True if bf16 is None else bf16,
            batch_size or 256,
            default_workers if workers is None else workers,
            compile_model,
            8,
        )
    return Scale("cpu", cpu_bf16 if bf16 is None else bf16, batch_size or 16, workers or 0, compile_model, 1)

"""Where a build trains: training.build.scale (pure choices; no GPU needed)."""

from __future__ import annotations

import pytest

from r2d.errors import ConfigError
from training.build.scale import Scale, cpu_flags, cpu_has_bf16, resolve_scale


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\nbugs\t\t: none\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()
    assert cpu_has_bf16({"avx512_bf16"}) and cpu_has_bf16({"amx_bf16"}) and not cpu_has_bf16({"avx2", "avx512f"})


def test_gpu_defaults_split_the_cores_among_builds():
    scale = resolve_scale("cuda", True, cores=16, processes=3)
    assert scale == Scale("cuda", True, 256, 4, False, 8)
    assert resolve_scale("auto", True, cores=16).workers == 15
    assert resolve_scale("cuda", True, bf16=False, batch_size=64, workers=0, cores=16).bf16 is False


def test_cpu_defaults_follow_the_hardware():
    assert resolve_scale("cpu", True) == Scale("cpu", False, 16, 0, False, 1)  # cpu asked: no GPU even if there
    assert resolve_scale("auto", False, cpu_bf16=True).bf16 is True
    assert resolve_scale("auto", False, cpu_bf16=False).bf16 is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"device": "cuda", "cuda_available": False}, "no usable CUDA"),
        ({"device": "tpu", "cuda_available": False}, "must be auto, cpu or cuda"),
        ({"device": "cpu", "cuda_available": False, "bf16": True}, "only emulates bfloat16"),
    ],
)
def test_impossible_scales_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve_scale(**kwargs)

"""The GPU build's orchestration (training.gpu_build): packing for a lent machine, and its smoke run on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import gpu_build


def test_pack_cuts_parts_under_the_limit_and_unpack_restores_every_byte(tmp_path):
    model = tmp_path / "best"
    model.mkdir()
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 12000)  # ~3 MB that gzip cannot shrink much
    (model / "config.json").write_text('{"d_model": 256}')
    import os

    (model / "noise.bin").write_bytes(os.urandom(2_500_000))
    parts = gpu_build.pack(model, tmp_path / "out", part_mb=1)
    assert len(parts) >= 3 and all(p.stat().st_size <= 2**20 for p in parts)
    back = gpu_build.unpack(tmp_path / "out", tmp_path / "here")
    for f in model.iterdir():
        assert (back / f.name).read_bytes() == f.read_bytes()


def test_each_seed_scores_the_free_text_set_and_never_trains_on_it():
    args = gpu_build.parse_args(["--out", "/tmp/x", "--seeds", "1", "2"])
    cmd = gpu_build.seed_command(args, 2)
    assert cmd[cmd.index("--seed") + 1] == "2" and cmd[cmd.index("--split-seed") + 1] == str(gpu_build.SPLIT_SEED)
    assert cmd[cmd.index("--eval-set") + 1] == f"free_text={gpu_build.FREE_TEXT}"
    assert sum(str(gpu_build.FREE_TEXT) in part for part in cmd) == 1  # named once, as an evaluation set
    assert cmd[cmd.index("--device") + 1] == "cuda" and cmd[cmd.index("--parallel-builds") + 1] == "2"


@pytest.mark.slow
@pytest.mark.shared_data
def test_smoke_run_is_the_gpu_path_on_a_cpu(tmp_path, shared_data):
    code = gpu_build.main(
        [
            "--smoke",
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(tmp_path / "work"),
            "--seeds",
            "5",
            "--ktas",
            str(shared_data / "ktas" / "data.csv"),
        ]
    )
    assert code == 0
    log = json.loads((tmp_path / "out" / "build_log.json").read_text())
    (build,) = log["builds"]
    assert build["chosen"] and build["seed"] == 5 and set(build["arms"]) == set(gpu_build.DEFAULT_STAGE2_ARMS)
    for arm in build["arms"].values():
        assert {"val", "test", "free_text"} <= set(arm) and arm["val"]["n"] == 8
    model = gpu_build.unpack(tmp_path / "out", tmp_path / "back")
    from r2d.model.artifacts import read_model_meta

    assert read_model_meta(model).label_set == ("1", "2", "3", "4", "5")
    assert json.loads((model / "pretrain_log.json").read_text())["selected_arm"] == build["selected_arm"]
    assert Path(model / "model.safetensors").is_file()

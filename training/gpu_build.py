"""The default model's build on a lent GPU machine: several seeds side by side, the best on validation packed.

    python -m training.gpu_build --out OUT                  # on the GPU machine (the command in the README)
    python -m training.gpu_build --out /tmp/smoke --smoke   # the same code path on a CPU, in a minute or two

Each seed is one `python -m training.default_model --stage2-arms ... --no-card` process (one Stage 1, then
every Stage-2 arm, each scored on validation, test and the free-text set); they run at once and share the
GPU and the cores. Then `--pick-best` publishes the best build on validation, and this command packs it
into parts of at most PART_MB (a lent machine returns at most 8 files of 16 MB) with every build's log.
Back on the CPU machine, `--unpack OUT DIR` puts the model together again.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from training.cli import setup_logging
from training.default_model import DEFAULT_STAGE2_ARMS, ROOT
from training.evaluate import FREE_TEXT_SET

logger = logging.getLogger(__name__)

PART_MB = 15
FREE_TEXT = FREE_TEXT_SET
GPU_CONFIG = ROOT / "training" / "configs" / "default_model_gpu.json"
SMOKE_CONFIG = ROOT / "training" / "configs" / "tiny_cpu.json"
SPLIT_SEED = 42  # every seed trains on the same KTAS split, so their validation figures compare


def seed_command(args: argparse.Namespace, seed: int) -> list[str]:
    """The default_model command line of one seed's build."""
    work = args.work / f"seed{seed}"
    cmd = [
        sys.executable,
        "-m",
        "training.default_model",
        "--seed",
        str(seed),
        "--split-seed",
        str(SPLIT_SEED),
        "--work",
        str(work),
        "--out",
        str(work / "model"),
        "--no-card",
        "--parallel-builds",
        str(len(args.seeds)),
        "--stage2-arms",
        *args.arms,
        "--eval-set",
        f"free_text={args.free_text}",
    ]
    if args.ktas:
        cmd += ["--ktas", str(args.ktas)]
    if args.smoke:
        return cmd + [
            "--config",
            str(SMOKE_CONFIG),
            "--device",
            "cpu",
            "--stage1-steps",
            "3",
            "--stage2-steps",
            "2",
            "--set",
            "generation.max_rationale_tokens=8",
            "--set",
            "generation.max_input_tokens=256",
            "--set",
            "optim.eval_steps=1",
            "--eval-limit",
            "8",
        ]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    return cmd + [
        "--config",
        str(args.config),
        "--device",
        args.device,
        "--stage1-minutes",
        str(args.stage1_minutes),
        "--stage2-steps",
        str(args.stage2_steps),
    ]


def run_seeds(args: argparse.Namespace) -> list[Path]:
    """Start every seed's build at once and wait for all, stopping any still running at the deadline (a lent
    machine's call has a hard limit: the finished seeds must still be packed); the finished model dirs."""
    args.work.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.deadline_minutes * 60
    procs = {}
    for seed in args.seeds:
        log = open(args.work / f"seed{seed}.log", "w", encoding="utf-8")
        procs[seed] = (subprocess.Popen(seed_command(args, seed), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log)
    done = []
    for seed, (proc, log) in procs.items():
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            logger.warning("seed %d stopped at the deadline", seed)
        log.close()
        logger.info("seed %d finished with exit status %d", seed, code)
        if code == 0:
            done.append(args.work / f"seed{seed}" / "model")
    return done


def pack(model_dir: Path, out: Path, part_mb: int = PART_MB) -> list[Path]:
    """model_dir as a gzipped tar cut into parts of at most part_mb MiB: out/model.tgz.part00, part01, ..."""
    out.mkdir(parents=True, exist_ok=True)
    whole = out / "model.tgz"
    with tarfile.open(whole, "w:gz") as tar:
        tar.add(model_dir, arcname="model")
    data, size = whole.read_bytes(), part_mb * 2**20
    whole.unlink()
    parts = []
    for i in range(0, len(data), size):
        part = out / f"model.tgz.part{i // size:02d}"
        part.write_bytes(data[i : i + size])
        parts.append(part)
    return parts


def unpack(packed: Path, dest: Path) -> Path:
    """Join packed/model.tgz.part* and extract the model into dest/model; returns that folder."""
    parts = sorted(packed.glob("model.tgz.part*"))
    if not parts:
        raise SystemExit(f"{packed} holds no model.tgz.part* files")
    whole = dest / "model.tgz"
    dest.mkdir(parents=True, exist_ok=True)
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(whole) as tar:
        tar.extractall(dest, filter="data")
    whole.unlink()
    return dest / "model"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.gpu_build", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="where the packed model and the logs go")
    p.add_argument("--work", type=Path, default=Path("/tmp/r2d_gpu_build"))
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_STAGE2_ARMS))
    p.add_argument("--config", type=Path, default=GPU_CONFIG)
    p.add_argument("--device", default="cuda")
    p.add_argument("--stage1-minutes", type=float, default=3.3)
    p.add_argument("--stage2-steps", type=int, default=400)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="batch-making processes per seed (default: the cores split among the seeds)",
    )
    p.add_argument("--ktas", type=Path, default=None, help="KTAS data.csv (default: default_model's)")
    p.add_argument("--free-text", type=Path, default=FREE_TEXT)
    p.add_argument(
        "--deadline-minutes",
        type=float,
        default=60.0,
        help="stop seeds still running after this long and pack the finished ones",
    )
    p.add_argument("--smoke", action="store_true", help="the same path on a CPU: tiny model, a few steps")
    p.add_argument("--unpack", nargs=2, type=Path, metavar=("PACKED", "DEST"), help="put a packed model together")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("INFO")
    if args.unpack:
        print(f"model in {unpack(*args.unpack)}")
        return 0
    if args.out is None:
        raise SystemExit("--out is needed")
    started = time.monotonic()
    built = run_seeds(args)
    if not built:
        raise SystemExit(f"no seed finished; see {args.work}/seed*.log")
    from training.default_model import pick_best

    best = args.work / "best"
    merged = pick_best(built, best)
    parts = pack(best, args.out)
    minutes = (time.monotonic() - started) / 60
    summary = {"minutes": round(minutes, 2), "seeds_built": len(built), "parts": [p.name for p in parts]} | merged
    (args.out / "build_log.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("packed %s into %d parts in %s (%.1f minutes)", best, len(parts), args.out, minutes)
    print(
        json.dumps(
            {
                b["seed"]: {"arm": b["selected_arm"], "chosen": b["chosen"], "val": b["arms"][b["selected_arm"]]["val"]}
                for b in merged["builds"]
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

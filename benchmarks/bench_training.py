"""Training throughput: optimiser steps/s and peak RSS of SFT, DSS, Reason2Decide Stage 2 and the R2D-C options.

    .venv/bin/python benchmarks/bench_training.py --shape default --threads 1            # the embedded model's shape
    .venv/bin/python benchmarks/bench_training.py --shape small --threads 1 --steps 4    # flan-t5-small shape
    .venv/bin/python benchmarks/bench_training.py --shape default --methods dss,r2d      # just the ratio

Each method trains a random T5 of the shape (the default model's arch from training/configs/default_model.json,
or flan-t5-small's with T5's 32,128-token vocabulary) through the project's own R2DTrainer on real KTAS cases
(r2d.sources.load_ktas on ../shared/data), each in its own subprocess so that peak RSS is that run's alone.
Scheduled sampling is switched on from the first step (sampling start = end = 0, so pi is at its cap and R2D's
extra label-scoring pass runs on every step; the R2D-C cycle loss likewise from step 1): the table is the
steady-state cost of a step, not the warm-up's. The first --warmup steps are not timed. The script never
asserts a timing; it prints the ratio of each method to DSS, against the target Stage 2 <= 1.3x DSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may download

from r2d.config import ArchConfig  # noqa: E402

SHARED = Path(os.environ.get("R2D_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_CONFIG = ROOT / "training" / "configs" / "default_model.json"
T5_VOCAB = 32128
SMALL = ArchConfig(
    vocab_size=T5_VOCAB,
    d_model=512,
    d_kv=64,
    d_ff=1024,
    num_layers=8,
    num_decoder_layers=8,
    num_heads=6,
    dropout_rate=0.0,
)  # flan-t5-small (gated-GELU MLP)
# the benchmark's rows: name -> (stage2.method, overrides of Stage2Config); R2D-C is the two options together
# (authors' lambda 0.1)
BENCH_METHODS = {
    "sft": ("sft", {}),
    "dss": ("dss", {}),
    "r2d": ("r2d", {}),
    "r2dc-gated": ("r2d", {"confidence_gated": True}),
    "r2dc-cycle": ("r2d", {"cycle_loss_weight": 0.1}),
    "r2dc": ("r2d", {"confidence_gated": True, "cycle_loss_weight": 0.1}),
}
TARGET_VS_DSS = 1.3


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- one run (worker subprocess) --------------------------------------------------------------


def base_config(shape: str):
    """The default model's training config; at the small shape its arch replaced by flan-t5-small's."""
    from r2d.config import load_config

    cfg = load_config(DEFAULT_CONFIG)
    return cfg if shape == "default" else replace(cfg, arch=SMALL)


def build_model(cfg, shape: str, examples):
    """A tokenizer fitted to the KTAS texts and a random T5 of the shape (vocabulary padded to T5's at small)."""
    from r2d.model.tokenizer import train_tokenizer
    from training.build.scratch import new_t5
    from training.method.features import tokenizer_corpus

    tokenizer = train_tokenizer(tokenizer_corpus(examples), vocab_size=cfg.arch.vocab_size)
    model = new_t5(tokenizer, cfg.arch, seed=0)
    if shape == "small":
        model.resize_token_embeddings(T5_VOCAB, mean_resizing=False)  # the vocabulary projection is part of the cost
    return model, tokenizer


def step_clock():
    """A TrainerCallback noting the time at the end of every optimiser step (in .ends)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    return StepClock()


def run_one(name: str, args: argparse.Namespace) -> dict:
    import torch

    from r2d.sources import load_ktas
    from training.build.run import resolve_generation
    from training.method.features import ExampleDataset, R2DCollator
    from training.method.trainer import R2DTrainer, to_training_arguments

    torch.set_num_threads(args.threads)
    imports_mb = rss_mb("VmRSS")
    cfg = base_config(args.shape)
    method, options = BENCH_METHODS[name]
    steps = args.warmup + args.steps
    batch = args.batch_size or cfg.optim.batch_size
    examples = load_ktas(SHARED / "ktas" / "data.csv")[: max(batch * steps, 64)]
    labels = tuple(cfg.data.label_set) or tuple(sorted({e.label for e in examples}))
    model, tokenizer = build_model(cfg, args.shape, examples)
    generation = resolve_generation(cfg.generation, tokenizer, labels, examples, method)
    # sampling from the first step at its cap, cycle loss from step 1: the steady-state step
    stage2 = replace(
        cfg.stage2,
        method=method,
        alpha_warmup_fraction=0.0,
        sampling_start_fraction=0.0,
        sampling_end_fraction=0.0,
        **options,
    )
    optim = replace(cfg.optim, max_steps=steps, batch_size=batch, gradient_accumulation_steps=1)
    with tempfile.TemporaryDirectory(prefix="r2d-bench-train-") as out:
        targs = to_training_arguments(optim, out, metric_for_best_model="macro_f1", greater_is_better=True)
        targs = replace(
            targs,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            logging_steps=steps,
            disable_tqdm=True,
        )
        clock = step_clock()
        trainer = R2DTrainer(
            model=model,
            args=targs,
            processing_class=tokenizer,
            data_collator=R2DCollator(tokenizer, generation, method),
            train_dataset=ExampleDataset(examples),
            callbacks=[clock],
            mode=method,
            generation=generation,
            stage2=stage2,
            label_set=labels,
        )
        trainer.train()
    timed = clock.ends[args.warmup - 1 :] if args.warmup > 0 else clock.ends
    seconds = (timed[-1] - timed[0]) / max(len(timed) - 1, 1)
    return {
        "method": name,
        "steps_per_s": 1.0 / seconds,
        "s_per_step": seconds,
        "timed_steps": len(timed) - 1,
        "batch": batch,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "imports_rss_mb": imports_mb,
        "peak_rss_mb": rss_mb("VmHWM"),
    }


# --- the table (parent process) ------------------------------------------------------------------


def print_table(rows: list[dict], args: argparse.Namespace, load: str) -> None:
    dss = next((r for r in rows if r["method"] == "dss"), None)
    first = rows[0]
    print(
        f"\nshape={args.shape} ({first['params_m']:.1f}M parameters) batch={first['batch']} threads={args.threads} "
        f"timed steps={args.steps} after {args.warmup} warm-up; best of {args.repeat} round(s); "
        f"load average at start {load}\n"
    )
    print("| method | steps/s | s/step | vs DSS | peak RSS MB | model+training RSS MB |\n|---|---|---|---|---|---|")
    for r in rows:
        vs = f"{r['s_per_step'] / dss['s_per_step']:.2f}x" if dss else ""
        print(
            f"| {r['method']} | {r['steps_per_s']:.3f} | {r['s_per_step']:.3f} | {vs} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] - r['imports_rss_mb']:.0f} |"
        )
    stage2 = next((r for r in rows if r["method"] == "r2d"), None)
    if dss and stage2:
        ratio = stage2["s_per_step"] / dss["s_per_step"]
        verdict = "met" if ratio <= TARGET_VS_DSS else "NOT met"
        print(f"\nReason2Decide Stage 2 step / DSS step = {ratio:.2f}x (target <= {TARGET_VS_DSS}x: {verdict})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=("default", "small"), default="default")
    names = ", ".join(BENCH_METHODS)
    p.add_argument("--methods", default=",".join(BENCH_METHODS), help=f"comma-separated, from {names}")
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps per method")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocations, first-call costs)")
    p.add_argument("--batch-size", type=int, default=0, help="0 = the config's optim.batch_size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="rounds over the methods; each method's fastest is shown")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_one(args.worker, args)))
        return
    if not (SHARED / "ktas" / "data.csv").is_file():
        raise SystemExit(f"KTAS data not found at {SHARED / 'ktas' / 'data.csv'} (set R2D_SHARED_DATA)")
    names = [m for m in args.methods.split(",") if m]
    unknown = [m for m in names if m not in BENCH_METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {', '.join(BENCH_METHODS)}")
    load = Path("/proc/loadavg").read_text().split()[0]
    best: dict[str, dict] = {}
    for round_ in range(args.repeat):  # rounds interleave the methods, so a busy moment hits all of them alike
        for name in names:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--shape",
                args.shape,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
            print(
                f"round {round_ + 1} {name}: {row['s_per_step']:.3f} s/step, peak RSS {row['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            if name not in best or row["s_per_step"] < best[name]["s_per_step"]:
                best[name] = row
    print_table([best[n] for n in names], args, load)


if __name__ == "__main__":
    main()

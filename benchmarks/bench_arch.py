"""Which T5 shape the default model can afford: size on disk and app-path speed on one CPU thread.

    .venv/bin/python benchmarks/bench_arch.py                 # every candidate shape in SHAPES
    .venv/bin/python benchmarks/bench_arch.py --shapes d256x4 --cases 10

For each candidate shape a randomly initialised T5 is built with the default model's tokenizer recipe
(BPE fitted to the KTAS training texts and the synthetic corpus), saved as the app loads it, and run
through the app's own loader (r2d.model.load.load_predictor: CTranslate2 int8 on a CPU) on KTAS cases
with one thread: the label (label-set scoring) and a rationale forced to --rationale-tokens tokens
(a random model stops at no fixed length), median over the cases after one warm-up. Also one Stage-1
training step (batch 16) in fp32 and under bf16 autocast on the CPU's cores. Targets (issue: the
default model): label <= 150 ms, rationale <= 1.5 s, weights <= 50 MB. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r2d.config import ArchConfig, GenerationConfig, ModelConfig  # noqa: E402

SHARED = Path(os.environ.get("R2D_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHAPES = {
    "d128x3 (v2)": ArchConfig(d_model=128, d_kv=32, d_ff=384, num_layers=3, num_decoder_layers=3, num_heads=4),
    "d256x4": ArchConfig(d_model=256, d_kv=64, d_ff=768, num_layers=4, num_decoder_layers=4, num_heads=4),
    "d256x6": ArchConfig(d_model=256, d_kv=64, d_ff=768, num_layers=6, num_decoder_layers=6, num_heads=4),
    "d384x6": ArchConfig(d_model=384, d_kv=64, d_ff=1024, num_layers=6, num_decoder_layers=6, num_heads=6),
    "d512x6": ArchConfig(d_model=512, d_kv=64, d_ff=1024, num_layers=6, num_decoder_layers=6, num_heads=8),
}
TARGETS = {"label_ms": 150.0, "rationale_s": 1.5, "weights_mb": 50.0}


def build(shape: str, workdir: Path, tokenizer) -> Path:
    from r2d.config import R2DConfig
    from r2d.model.artifacts import ModelMeta, save_model_dir
    from r2d.sources import KTAS_LABELS, ktas_meta
    from training.build.scratch import new_t5

    model = new_t5(tokenizer, replace(SHAPES[shape], dropout_rate=0.0), seed=0)
    out = workdir / shape.split()[0]
    cfg = R2DConfig(arch=SHAPES[shape])
    save_model_dir(model, tokenizer, out, ModelMeta(label_set=KTAS_LABELS, **ktas_meta()), cfg)
    return out


def fit_tokenizer(texts: list[str]):
    from r2d.model.tokenizer import train_tokenizer
    from r2d.sources import load_ktas
    from training.corpus.synthetic import synthetic_examples, training_complaints

    train = load_ktas(SHARED / "ktas" / "data.csv")
    sample = list(synthetic_examples(20000, training_complaints(train), 1))
    corpus = [e.case_text for e in train] + [t for e in sample for t in (e.case_text, e.rationale)]
    return train_tokenizer(corpus, 8000)


def time_app_path(model_dir: Path, cases: list[str], candidates: int, tokens: int) -> dict[str, float]:
    """Median label ms and rationale seconds (forced to `tokens` tokens) through the app's loader."""
    from r2d.model.load import load_predictor

    gen = GenerationConfig(max_rationale_tokens=tokens, fact_check_candidates=candidates)
    predictor = load_predictor(ModelConfig(name_or_path=str(model_dir), num_threads=1), gen)
    if hasattr(predictor, "decode_options"):  # CTranslate2: every rationale exactly `tokens` long
        predictor.decode_options = {"min_decoding_length": tokens}
    predictor.explain(cases[0], predictor.predict_label(cases[0]).best)  # warm-up, not timed
    labels, rationales = [], []
    for case in cases[1:]:
        t0 = time.perf_counter()
        label = predictor.predict_label(case).best
        t1 = time.perf_counter()
        predictor.explain(case, label)
        labels.append((t1 - t0) * 1000)
        rationales.append(time.perf_counter() - t1)
    return {
        "label_ms": statistics.median(labels),
        "rationale_s": statistics.median(rationales),
        "backend": predictor.backend,
    }


def time_train_step(model_dir: Path, bf16: bool, steps: int = 4) -> float:
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = T5ForConditionalGeneration.from_pretrained(model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(3, len(tok), (16, 96))
    y = torch.randint(3, len(tok), (16, 96))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated keys of SHAPES (first word)")
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--rationale-tokens", type=int, default=100, help="rationale length the time is given for")
    p.add_argument("--candidates", type=int, default=0, help="generation.fact_check_candidates (0: greedy)")
    p.add_argument("--train-steps", action="store_true", help="also time a CPU training step, fp32 and bf16")
    args = p.parse_args(argv)
    import torch

    from r2d.sources import load_ktas

    cases = [e.case_text for e in load_ktas(SHARED / "ktas" / "data.csv")[: args.cases + 1]]
    tokenizer = fit_tokenizer(cases)
    wanted = [s for s in SHAPES if s.split()[0] in [w.split()[0] for w in args.shapes.split(",")]]
    print(
        f"tokenizer pieces {len(tokenizer)}; {args.cases} KTAS cases; 1 thread; load "
        f"{os.getloadavg()[0]:.1f}; candidates {args.candidates}",
        flush=True,
    )
    print(
        "| shape | params (M) | weights MB | label ms | ms/token | rationale s "
        f"({args.rationale_tokens} tokens) | train step fp32 s | bf16 s | targets met |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in wanted:
            model_dir = build(shape, Path(tmp), tokenizer)
            mb = (model_dir / "model.safetensors").stat().st_size / 2**20
            params = mb * 2**20 / 4 / 1e6
            t = time_app_path(model_dir, cases, args.candidates, args.rationale_tokens)
            rationale_s = t["rationale_s"]
            steps = ("n/a", "n/a")
            if args.train_steps:
                torch.set_num_threads(os.cpu_count() or 1)
                steps = tuple(f"{time_train_step(model_dir, b):.2f}" for b in (False, True))
            met = (
                t["label_ms"] <= TARGETS["label_ms"]
                and rationale_s <= TARGETS["rationale_s"]
                and mb <= TARGETS["weights_mb"]
            )
            per_token = 1000 * rationale_s / args.rationale_tokens
            print(
                f"| {shape} | {params:.1f} | {mb:.1f} | {t['label_ms']:.0f} | {per_token:.1f} | "
                f"{rationale_s:.2f} | {steps[0]} | {steps[1]} | {'yes' if met else 'no'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

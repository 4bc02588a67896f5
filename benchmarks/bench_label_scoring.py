"""Peak memory of label-set scoring during training (scheduled sampling), in one call vs chunked.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_label_scoring.py --cases 2 --labels 49 --input-tokens 128

A random T5 of flan-t5-base shape (12+12 layers, d_model 768, T5's 32,128-token vocabulary) scores
--cases cases against --labels labels of 1-8 words, once with every (case, label) pair in one decoder
call and once in calls of r2d.model.scoring.SCORING_PAIRS pairs (what training and inference do). Each run is
its own subprocess, so its peak RSS is its own; the figure is the peak above the RSS after the model is
built. The one-call peak grows with cases x labels; the script extrapolates it per pair to a training
batch (--batch, default 64). Random weights: only memory and time mean anything. It asserts nothing.

Measured 2026-12-01 (2 cases x 49 labels, 128 input tokens, 1 thread, shared CPU): before chunking, with one
decoder row per pair, one call peaked 1,586 MB above the model (16.2 MB per pair: ~50 GB for 64 x 49);
with each case's candidates packed into one decoder row, one call peaks 447 MB (4.6 MB per pair: ~14 GB
for 64 x 49) and calls of 16 pairs peak 61 MB whatever the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may download

TOKENIZER = ROOT / "assets" / "models" / "r2d-ktas-small"  # any T5-style tokenizer with pad 0, eos 1
WORDS = (
    "pain chest fever cough sepsis fracture stroke asthma burn wound rash nausea syncope trauma seizure bleeding"
).split()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one_run(cases: int, labels: int, input_tokens: int, max_pairs: int) -> dict[str, float]:
    """In this process: build the model, score once, report peak RSS above the built model."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from r2d.model.scoring import score_labels
    from r2d.prompts import predict_prompt

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    config = T5Config(
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=2048,
        num_layers=12,
        num_decoder_layers=12,
        num_heads=12,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config).eval()
    label_set = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(1 + i % 8)) + f" {i}" for i in range(labels)]
    case = " ".join(WORDS * 20)
    prompt_ids = tok(predict_prompt(case), truncation=True, max_length=input_tokens)["input_ids"]
    prompts = [tok.decode(prompt_ids, skip_special_tokens=True)] * cases
    base = _rss_mb()
    t0 = time.perf_counter()
    score_labels(model, tok, prompts, label_set, input_tokens, 0, max_pairs=max_pairs)
    return {"peak_above_model_mb": _rss_mb() - base, "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=2)
    p.add_argument("--labels", type=int, default=49)
    p.add_argument("--input-tokens", type=int, default=128)
    p.add_argument("--batch", type=int, default=64, help="training batch to extrapolate the one-call peak to")
    p.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child is not None:
        print(json.dumps(one_run(args.cases, args.labels, args.input_tokens, args._child)))
        return
    from r2d.model.scoring import SCORING_PAIRS

    pairs = args.cases * args.labels
    rows = {}
    for name, max_pairs in (("one call", pairs), (f"chunked ({SCORING_PAIRS} pairs)", SCORING_PAIRS)):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--cases",
                str(args.cases),
                "--labels",
                str(args.labels),
                "--input-tokens",
                str(args.input_tokens),
                "--_child",
                str(max_pairs),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
    print(
        f"flan-t5-base shape, {args.cases} cases x {args.labels} labels ({pairs} pairs), "
        f"{args.input_tokens} input tokens, fp32 CPU"
    )
    print(f"{'scoring':<22}{'peak above model (MB)':>24}{'seconds':>10}")
    for name, r in rows.items():
        print(f"{name:<22}{r['peak_above_model_mb']:>24.0f}{r['seconds']:>10.1f}")
    per_pair = rows["one call"]["peak_above_model_mb"] / pairs
    print(
        f"one call: {per_pair:.1f} MB per pair -> batch {args.batch} x {args.labels} labels in one call "
        f"~ {per_pair * args.batch * args.labels / 1024:.1f} GB; chunked stays at the figure above "
        f"(at most {SCORING_PAIRS} pairs per call)"
    )


if __name__ == "__main__":
    main()

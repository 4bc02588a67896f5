"""Stage 2: predict + explain-given-label with scheduled sampling (or the SFT / DSS baselines).

    python -m training.stage2 --config training/configs/ktas_cpu.json --init runs/s1 --out runs/s2
    python -m training.stage2 ... --set stage2.method=sft        # or dss; R2D-C: --set stage2.confidence_gated=true

Keeps the checkpoint with the best validation label macro-F1 (label-set scoring); early stopping
with patience only after stage2.early_stopping_after_fraction of the steps.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from transformers import TrainerCallback

from r2d.config import R2DConfig, load_config
from r2d.data import require_rationales
from r2d.errors import R2DError
from training.build.loading import load_model_for_training
from training.build.run import (
    TrainResult,
    build_meta,
    load_split,
    meta_defaults,
    resolve_generation,
    resolve_label_set,
    run_training,
)
from training.cli import build_parser, is_main_process, meta_hints, setup_logging
from training.method.features import ExampleDataset, R2DCollator, needs_rationales, tokenizer_corpus
from training.method.trainer import (
    DelayedEarlyStopping,
    EvaluateAtEnd,
    R2DTrainer,
    label_metrics,
    to_training_arguments,
)

logger = logging.getLogger(__name__)


def train_stage2(
    cfg: R2DConfig,
    init_dir: str | None,
    out_dir: str | Path,
    *,
    task: str | None = None,
    ordinal: bool | None = None,
    label_names: dict[str, str] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Train cfg.stage2.method on cfg.data.train_files; save the best-val-macro-F1 model to out_dir.

    init_dir is normally a Stage-1 output (or any model dir / hub id); None starts from a new T5,
    which is what the SFT and DSS baselines do without a pretrained base. `callbacks` are added to the
    Trainer's own (training.improve reports progress through one).
    Raises ConfigError, DatasetSchemaError (bad rows, labels outside the set, missing rationales)
    and ModelLoadError.
    """
    mode = cfg.stage2.method
    train = load_split(cfg.data.train_files, "data.train_files")
    val = load_split(cfg.data.val_files, "data.val_files")
    if needs_rationales(mode):
        require_rationales(train, f"Stage 2 ({mode}) training data")
        require_rationales(val, f"Stage 2 ({mode}) validation data")
    labels, closed = resolve_label_set(cfg.data, train, val)
    if init_dir is None and mode == "r2d":
        logger.warning("Stage 2 without --init starts from random weights; Reason2Decide expects a Stage-1 model")
    loaded = load_model_for_training(init_dir, cfg, tokenizer_corpus(train))
    cfg = replace(cfg, generation=resolve_generation(cfg.generation, loaded.tokenizer, labels, [*train, *val], mode))
    args = to_training_arguments(cfg.optim, out_dir, metric_for_best_model="macro_f1", greater_is_better=True)
    s = cfg.stage2
    trainer = R2DTrainer(
        model=loaded.model,
        args=args,
        processing_class=loaded.tokenizer,
        data_collator=R2DCollator(loaded.tokenizer, cfg.generation, mode),
        train_dataset=ExampleDataset(train),
        eval_dataset=ExampleDataset(val),
        compute_metrics=label_metrics(loaded.tokenizer),
        callbacks=[
            EvaluateAtEnd(),
            DelayedEarlyStopping(s.early_stopping_patience, s.early_stopping_after_fraction),
            *callbacks,
        ],
        mode=mode,
        generation=cfg.generation,
        stage2=s,
        label_set=labels if closed else None,
    )
    meta = build_meta(
        labels if closed else (),
        loaded.init_meta,
        **meta_defaults(cfg.data.train_files, task, ordinal, label_names),
        extra={
            "stage": "stage2",
            "method": mode,
            "init": init_dir,
            "train_files": list(cfg.data.train_files),
            "train_examples": len(train),
            "val_examples": len(val),
            "closed_label_set": closed,
        },
    )
    return run_training(trainer, loaded, out_dir, cfg, meta)


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags, train, print where the model went. R2DError -> exit with its message."""
    parser = build_parser("python -m training.stage2", "Stage 2: predict + explain given label (or SFT / DSS)")
    parser.add_argument("--init", help="Stage-1 output, model directory or hub id (default: a new T5 from cfg.arch)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_config(args.config, args.overrides)
        result = train_stage2(cfg, args.init, args.out, **meta_hints(args))
    except R2DError as e:
        sys.exit(f"error: {e}")
    if is_main_process():
        print(
            f"stage 2 ({cfg.stage2.method}): best {result.metric_name}={result.best_metric} "
            f"at step {result.best_step}; model in {result.out_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

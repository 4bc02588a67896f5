"""Stage 1: rationale pre-training, explain_prompt(case) -> rationale; keeps the lowest validation loss.

    python -m training.stage1 --config training/configs/ktas_cpu.json --out runs/s1 [--init DIR_OR_HUB_ID]

Without --init a new T5 is built from cfg.arch with a tokenizer fitted to the training texts.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

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
from training.method.features import ExampleDataset, R2DCollator, tokenizer_corpus
from training.method.trainer import EvaluateAtEnd, R2DTrainer, to_training_arguments

logger = logging.getLogger(__name__)


def train_stage1(
    cfg: R2DConfig,
    init: str | None,
    out_dir: str | Path,
    tokenizer_dir: str | None = None,
    *,
    task: str | None = None,
    ordinal: bool | None = None,
    label_names: dict[str, str] | None = None,
) -> TrainResult:
    """Train the explain task on cfg.data.train_files; save the lowest-val-loss model to out_dir.

    Raises ConfigError (no train/val files, LoRA without a base), DatasetSchemaError (bad rows or
    missing rationales) and ModelLoadError (init cannot be loaded).
    """
    train = load_split(cfg.data.train_files, "data.train_files")
    val = load_split(cfg.data.val_files, "data.val_files")
    require_rationales(train, "Stage 1 training data")
    require_rationales(val, "Stage 1 validation data")
    labels, closed = resolve_label_set(cfg.data, train)
    loaded = load_model_for_training(init, cfg, tokenizer_corpus(train), tokenizer_dir)
    cfg = replace(cfg, generation=resolve_generation(cfg.generation, loaded.tokenizer, labels, train, "stage1"))
    args = to_training_arguments(cfg.optim, out_dir, metric_for_best_model="loss", greater_is_better=False)
    trainer = R2DTrainer(
        model=loaded.model,
        args=args,
        processing_class=loaded.tokenizer,
        data_collator=R2DCollator(loaded.tokenizer, cfg.generation, "stage1"),
        train_dataset=ExampleDataset(train),
        eval_dataset=ExampleDataset(val),
        callbacks=[EvaluateAtEnd()],
        mode="stage1",
        generation=cfg.generation,
    )
    meta = build_meta(
        labels if closed else (),
        loaded.init_meta,
        **meta_defaults(cfg.data.train_files, task, ordinal, label_names),
        extra={
            "stage": "stage1",
            "init": init,
            "train_files": list(cfg.data.train_files),
            "train_examples": len(train),
            "val_examples": len(val),
        },
    )
    return run_training(trainer, loaded, out_dir, cfg, meta)


def main(argv: list[str] | None = None) -> int:
    """CLI: parse flags, train, print where the model went. R2DError -> exit with its message."""
    parser = build_parser("python -m training.stage1", "Stage 1: case -> rationale (the label-free explain task)")
    parser.add_argument("--init", help="start from this model directory or hub id (default: a new T5 from cfg.arch)")
    parser.add_argument("--tokenizer", help="reuse this tokenizer directory instead of fitting one (no --init only)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_config(args.config, args.overrides)
        result = train_stage1(cfg, args.init, args.out, args.tokenizer, **meta_hints(args))
    except R2DError as e:
        sys.exit(f"error: {e}")
    if is_main_process():
        print(
            f"stage 1: best {result.metric_name}={result.best_metric} at step {result.best_step}; "
            f"model in {result.out_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

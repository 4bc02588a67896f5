"""Improve the model from the nurses' reviews, and compare it with the current one before anyone switches.

    python -m training.improve --model assets/models/r2d-ktas-small --export EXPORT_DIR --data data/ktas \
        --out runs/improve-1 [--steps 200] [--full] [--set section.key=value ...]

The README's recipe as one command: Stage 2 from the current model on the original training data
(`--data`/train.jsonl) plus the reviewed export (EXPORT_DIR/train.jsonl), LoRA by default so it fits a
laptop CPU, the checkpoint chosen on the original validation split. Then the old and the new model are
evaluated side by side on (a) the reviewed cases held out from the run (EXPORT_DIR/val.jsonl: the nurses'
labels and rationales are the reference, so accuracy there is agreement with the nurses) and (b) the public
test split (`--data`/test.jsonl, a seeded sample of `--test-cases` of it: scoring the whole split took most of a
short run): accuracy, macro-F1, under-triage, fidelity to the case, critical findings named, BLEU against the
reference rationale, with a 95% Wilson interval (scipy.stats.binomtest) for accuracy and under-triage, the
shares of cases.

OUT/ holds model/ (the new model), run.json (status, the export's id, counts and checksums, the data files'
checksums, the config), progress.jsonl (one JSON event per line, read by the app's progress bar) and
comparison.json. The current model is only read: a failed or cancelled run leaves it, and the app, as they were.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from r2d.config import CONFIG_FILENAME, AppConfig, R2DConfig, config_to_dict, load_config
from r2d.data import atomic_write_text, load_examples, write_examples
from r2d.errors import DatasetSchemaError, R2DError
from r2d.model.artifacts import model_source
from r2d.review.export import EXPORT_META_FILENAME, TRAIN_FILENAME, VAL_FILENAME, is_complete_export
from r2d.review.jobs import (
    COMPARED,
    COMPARISON_FILE,
    MODEL_SUBDIR,
    PROGRESS_FILE,
    PROPORTIONS,
    RUN_FILE,
    SPLITS,
    check_inputs,
    comparison_table,
    estimate_seconds,
)
from training.cli import setup_logging
from training.corpus.splits import file_sha256

logger = logging.getLogger(__name__)

TEST_SAMPLE = "test_sample.jsonl"  # OUT/: the public test cases the comparison scored, when a sample
DEFAULT_STEPS = 200
SAMPLE_SEED = 0  # the same sample for every run on the same split: runs compare on the same cases


def _file_info(path: Path) -> dict[str, Any]:
    return {"path": str(path), "sha256": file_sha256(path), "rows": len(load_examples(path))}


def read_export(export_dir: Path) -> dict[str, Any]:
    """What the run learns from: the export's id, meta and files. Raises DatasetSchemaError."""
    train = export_dir / TRAIN_FILENAME
    meta_path = export_dir / EXPORT_META_FILENAME
    if not is_complete_export(export_dir):  # its meta is written last: without it, the export never finished
        raise DatasetSchemaError(
            f"{export_dir.name} is not a finished export (no {EXPORT_META_FILENAME}): export again"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    files = {"train": _file_info(train)}  # the loader refuses an empty or broken file, naming it
    val = export_dir / VAL_FILENAME
    if val.is_file() and val.stat().st_size > 0:
        files["held_out"] = _file_info(val)
    return {
        "export_id": meta.get("export_id", export_dir.name),
        "dir": str(export_dir),
        "files": files,
        "counts": meta.get("counts", {}),
    }


def data_files(data_dir: Path) -> dict[str, Path]:
    """The original split: train/val/test.jsonl of a prepare_data output (checked by read_export's caller)."""
    return {split: data_dir / f"{split}.jsonl" for split in SPLITS}


def run_config(
    model_dir: Path, train_files: Sequence[Path], val_file: Path, steps: int, lora: bool, overrides: Sequence[str]
) -> R2DConfig:
    """The current model's own config, on the combined data, LoRA unless asked otherwise."""
    own = model_dir / CONFIG_FILENAME
    cfg = load_config(own if own.is_file() else None, overrides)
    optim = replace(cfg.optim, max_steps=steps, eval_steps=max(1, min(cfg.optim.eval_steps, steps)))
    return replace(
        cfg,
        data=replace(cfg.data, train_files=tuple(str(p) for p in train_files), val_files=(str(val_file),)),
        adapter=replace(cfg.adapter, use_lora=lora),
        optim=optim,
    )


class Progress:
    """Appends one JSON event per line to OUT/progress.jsonl (the app polls it) and logs it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        logger.info("%s %s", event, fields)


def _progress_callback(progress: Progress):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            progress("train", step=state.global_step, max_steps=state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                progress(
                    "log", step=state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}
                )

    return ProgressCallback()


def _evaluate(model_dir: Path, data: Path, quantization: str) -> dict[str, Any]:
    from training.evaluate import evaluate_dir

    cfg = load_config(model_dir / CONFIG_FILENAME if (model_dir / CONFIG_FILENAME).is_file() else None)
    name, adapter = model_source(model_dir)
    cfg = replace(cfg, model=replace(cfg.model, name_or_path=name, adapter_path=adapter, quantization=quantization))
    return evaluate_dir(cfg, data, bertscore=False)


def wilson_interval(rate: float, n: int) -> list[float]:
    """95% Wilson score interval of a share of n cases (scipy's), rounded to 4 places."""
    from scipy.stats import binomtest

    ci = binomtest(round(rate * n), n).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def sample_cases(path: Path, limit: int, out: Path) -> tuple[Path, int]:
    """(the file to score, how many rows the whole file has): a seeded sample of `limit` rows written to `out`
    when the file has more (0 = no limit), else the file itself."""
    rows = load_examples(path)
    if not limit or len(rows) <= limit:
        return path, len(rows)
    write_examples(out, random.Random(SAMPLE_SEED).sample(rows, limit))
    return out, len(rows)


def compare(
    old_dir: Path, new_dir: Path, sets: dict[str, tuple[Path, int]], progress: Progress, quantization: str = "none"
) -> dict[str, Any]:
    """Both models on every named (data file, rows of the set it samples):
    {set: {"old": metrics, "new": metrics, "intervals": {which: {metric: [low, high]}}, "n": rows scored,
    "n_total": rows of the set}}. Progress events count the cases scored so far."""
    result: dict[str, Any] = {}
    to_score, scored = 2 * sum(len(load_examples(path)) for path, _ in sets.values()), 0
    for name, (path, n_total) in sets.items():
        row: dict[str, Any] = {"intervals": {}, "n_total": n_total}
        for which, directory in (("old", old_dir), ("new", new_dir)):
            progress("evaluate", set=name, model=which, scored=scored, to_score=to_score)
            report = _evaluate(directory, path, quantization)
            row[which] = {key: report["metrics"].get(key) for key, _, _ in COMPARED}
            row["intervals"][which] = {
                key: wilson_interval(row[which][key], report["n"])
                for key in PROPORTIONS
                if row[which].get(key) is not None
            }
            row["n"] = report["n"]
            scored += report["n"]
        result[name] = row
    progress("evaluate", set="", model="", scored=to_score, to_score=to_score)
    return result


def _compared_sets(
    export: dict[str, Any], test_file: Path, test_cases: int, out_dir: Path
) -> dict[str, tuple[Path, int]]:
    """The held-out reviewed cases (all of them) and the public test split (sampled), as compare() takes them."""
    sets = {"public test split": sample_cases(test_file, test_cases, out_dir / TEST_SAMPLE)}
    if "held_out" in export["files"]:
        held_out = export["files"]["held_out"]
        sets = {"reviewed cases held out": (Path(held_out["path"]), held_out["rows"]), **sets}
    return sets


def improve(
    model_dir: Path,
    export_dir: Path,
    data_dir: Path,
    out_dir: Path,
    *,
    steps: int = DEFAULT_STEPS,
    lora: bool = True,
    overrides: Sequence[str] = (),
    quantization: str = "none",
    test_cases: int = 0,
) -> dict[str, Any]:
    """Stage 2 on original + reviewed data from the current model, then the comparison (on `test_cases` of the
    public test split, 0 = all). Returns run.json's content. Raises R2DError; run.json then says "failed"
    with the message."""
    model_dir, out_dir = model_dir.resolve(), out_dir.resolve()
    if out_dir == model_dir or model_dir in out_dir.parents:
        raise DatasetSchemaError(f"--out {out_dir} is inside the current model; a run never writes there")
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(out_dir / PROGRESS_FILE)
    run: dict[str, Any] = {
        "status": "running",
        "model": str(model_dir),
        "out": str(out_dir),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        check_inputs(export_dir, data_dir)
        export, original = read_export(export_dir), data_files(data_dir)
        cfg = run_config(
            model_dir, [original["train"], export_dir / TRAIN_FILENAME], original["val"], steps, lora, overrides
        )
        run.update(export=export, data={k: _file_info(p) for k, p in original.items()}, config=config_to_dict(cfg))
        _write_run(out_dir, run)
        sets = _compared_sets(export, original["test"], test_cases, out_dir)
        cases = sum(len(load_examples(path)) for path, _ in sets.values())
        train_s = steps * cfg.app.improve_step_s
        progress(
            "start",
            max_steps=steps,
            export_id=export["export_id"],
            train_share=round(
                train_s / estimate_seconds(steps, cases, cfg.app.improve_step_s, cfg.app.improve_case_s), 4
            ),
        )
        from training.stage2 import train_stage2  # torch-heavy

        result = train_stage2(cfg, str(model_dir), out_dir / MODEL_SUBDIR, callbacks=[_progress_callback(progress)])
        comparison = {
            "old": str(model_dir),
            "new": str(out_dir / MODEL_SUBDIR),
            "sets": compare(model_dir, out_dir / MODEL_SUBDIR, sets, progress, quantization),
        }
        atomic_write_text(out_dir / COMPARISON_FILE, json.dumps(comparison, indent=2) + "\n")
        run.update(
            status="done",
            best_metric=result.best_metric,
            best_step=result.best_step,
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        progress("done")
    except R2DError as e:
        run.update(status="failed", error=str(e))
        progress("failed", error=str(e))
        raise
    finally:
        _write_run(out_dir, run)
    return run


def _write_run(out_dir: Path, run: dict[str, Any]) -> None:
    atomic_write_text(out_dir / RUN_FILE, json.dumps(run, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.improve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="the current model directory (only read)")
    ap.add_argument("--export", required=True, type=Path, help="a reviewed export (train.jsonl, val.jsonl, ...)")
    ap.add_argument("--data", required=True, type=Path, help="the original split: train/val/test.jsonl")
    ap.add_argument("--out", required=True, type=Path, help="run directory (the new model goes to OUT/model)")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Stage-2 optimiser steps")
    ap.add_argument("--full", action="store_true", help="full fine-tune instead of LoRA")
    ap.add_argument("--quantization", default="none", help="how both models are loaded for the comparison")
    ap.add_argument(
        "--test-cases",
        type=int,
        default=AppConfig.improve_test_cases,
        help="public test cases the comparison scores, a seeded sample (0 = the whole split)",
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    if args.test_cases < 0:
        ap.error("--test-cases must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging("INFO")
    args = parse_args(argv)
    try:
        improve(
            args.model,
            args.export,
            args.data,
            args.out,
            steps=args.steps,
            lora=not args.full,
            overrides=args.overrides,
            quantization=args.quantization,
            test_cases=args.test_cases,
        )
    except R2DError as e:
        sys.exit(f"error: {e}")
    comparison = json.loads((args.out / COMPARISON_FILE).read_text(encoding="utf-8"))
    print(comparison_table(comparison))
    print(f"\nnew model in {args.out / MODEL_SUBDIR}; the current model is unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())

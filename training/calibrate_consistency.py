"""Measure the consistency check of a model on gold rationales and keep the figures next to the model.

    python -m training.calibrate_consistency --model assets/models/r2d-ktas-small          # KTAS test split
    python -m training.calibrate_consistency --model runs/s2 --data data/ktas/test.jsonl   # any gold file

Default gold rows: the KTAS test split the embedded model was evaluated on (r2d.sources.load_ktas on
../shared/data/ktas/data.csv, group-aware stratified split, seed 42, val 0.1, test 0.2), whose rationales are
the rule rationales. Writes r2d.checks.consistency.CALIBRATION_FILENAME into the model folder; the app reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r2d.checks.consistency import MIN_PRECISION, calibrate, save_calibration
from r2d.config import load_config
from r2d.data import load_examples
from r2d.errors import R2DError
from training.corpus.splits import prepare_ktas
from training.default_model import DEFAULT_KTAS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, type=Path, help="model folder (gets consistency_calibration.json)")
    p.add_argument("--data", type=Path, help="gold rows (.jsonl/.csv in the project schema); default: KTAS test")
    p.add_argument("--ktas", type=Path, default=DEFAULT_KTAS, help="KTAS data.csv for the default gold rows")
    p.add_argument("--seed", type=int, default=42, help="KTAS split seed (default 42, the embedded model's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from r2d.model.load import load_predictor  # torch only here, after the flags are read

    try:
        cfg = load_config(None, [f"model.name_or_path={args.model}"])
        predictor = load_predictor(cfg.model, cfg.generation, cfg.app.max_case_chars)
        if args.data:
            gold, source = load_examples(args.data), str(args.data)
        else:
            gold = prepare_ktas(args.ktas, args.seed, 0.1, 0.2)[0]["test"]
            source = f"KTAS test split ({args.ktas.name}, seed {args.seed}), rule rationales"
        calibration = calibrate(predictor, gold, predictor.model_id, source)
        path = save_calibration(calibration, args.model)
    except R2DError as e:
        sys.exit(f"error: {e}")
    print(json.dumps(calibration.to_dict(), indent=2))
    verdict = (
        f"warnings from {calibration.warn_min_probability:.0%}"
        if calibration.warn_min_probability is not None
        else f"never a warning (no threshold reaches {MIN_PRECISION:.0%} precision): shown as a hint"
    )
    print(f"wrote {path}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Turn a public data set into train/val/test JSONL files plus a manifest (training.corpus.splits).

python -m training.prepare_data ktas --source ../shared/data/ktas/data.csv --out data/ktas
python -m training.prepare_data pubmedqa --source ../shared/data/pubmedqa --out data/pubmedqa
python -m training.prepare_data medreason --source ../shared/data/medreason_r2dc --out data/medreason
python -m training.prepare_data medmcqa --source ../shared/data/medmcqa/dev.json --out data/medmcqa
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from r2d.errors import R2DError
from training.cli import setup_logging
from training.corpus.splits import DEFAULT_TEST, OWN_TEST_SPLIT, SPLITS, run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI: one subcommand per data set."""
    parser = argparse.ArgumentParser(prog="python -m training.prepare_data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    helps = {
        "ktas": "ktas/data.csv",
        "pubmedqa": "the pubmedqa/ folder (ori_pqal.json, test_ground_truth.json)",
        "medreason": "the medreason_r2dc/ folder (val.jsonl, test.csv)",
        "medmcqa": "medmcqa/dev.json",
    }
    for name, source_help in helps.items():
        p = sub.add_parser(name, help=f"prepare {name}")
        p.add_argument("--source", required=True, type=Path, help=source_help)
        p.add_argument("--out", required=True, type=Path, help="output folder for train/val/test.jsonl + manifest")
        p.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
        p.add_argument("--val", type=float, default=0.1, help="validation fraction (default 0.1)")
        if name not in OWN_TEST_SPLIT:
            p.add_argument("--test", type=float, default=DEFAULT_TEST, help=f"test fraction (default {DEFAULT_TEST})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the split sizes. Exits with "error: ..." on an R2DError."""
    setup_logging("INFO")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        manifest = run(
            args.dataset,
            args.source,
            args.out,
            seed=args.seed,
            val=args.val,
            test=getattr(args, "test", None),
            command=" ".join(["python -m training.prepare_data", *argv]),
        )
    except R2DError as e:
        sys.exit(f"error: {e}")
    sizes = ", ".join(f"{s} {manifest['counts'][s]['total']}" for s in SPLITS)
    print(f"{args.dataset}: {sizes} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

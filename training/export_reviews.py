"""Export nurse reviews from the app's database as a Stage-2 training set (the app's Export button, as a CLI).

    python -m training.export_reviews --db r2d_reviews.sqlite3 --out exports/run1 [--test-csv]

Writes train.jsonl, val.jsonl (test.csv) and export_meta.json. Rows whose rationale or case text looks
like it holds a patient identifier stop the export and are listed, unless --allow-identifiers is given;
so do rationales that name another triage level than their label, unless --allow-other-levels is given.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from r2d.config import config_to_dict, load_config
from r2d.errors import R2DError
from r2d.review.export import ExportPolicy, export_stage2_dataset, preview_export
from r2d.review.store import ACTIONS, ReviewStore
from training.cli import setup_logging

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The export command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="review database (default: app.db_path of the config)")
    ap.add_argument("--out", required=True, help="output directory for train.jsonl, val.jsonl, ...")
    ap.add_argument(
        "--actions",
        nargs="+",
        choices=ACTIONS,
        default=list(ACTIONS),
        help="which current reviews count (default: all)",
    )
    ap.add_argument("--min-rating", type=int, default=0, help="only reviews rated at least this (0 = any)")
    ap.add_argument(
        "--require-consistent", action="store_true", help="only rows whose rationale alone re-predicts their label"
    )
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--test-csv", action="store_true", help="also write a test split as test.csv")
    ap.add_argument("--seed", type=int, help="split seed (default: optim.seed of the config)")
    ap.add_argument(
        "--allow-identifiers",
        action="store_true",
        help="export even if likely patient identifiers are found (they are listed in export_meta.json)",
    )
    ap.add_argument(
        "--allow-other-levels",
        action="store_true",
        help="export even if a rationale names another triage level than its label (listed in the meta)",
    )
    ap.add_argument("--exported-by", default="cli", help="name recorded in the audit trail")
    ap.add_argument("--config", help="JSON config file")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export; returns 0, or exits with 'error: ...' on R2DError or with 2 when identifiers block it."""
    setup_logging("INFO")
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        store = ReviewStore(args.db or cfg.app.db_path)
        policy = ExportPolicy(tuple(args.actions), args.min_rating, args.require_consistent)
        _, findings = preview_export(store, policy)
        blocking = [
            f
            for f in findings
            if not (args.allow_other_levels if f.kind == "names_another_level" else args.allow_identifiers)
        ]
        if blocking:
            for f in blocking:
                print(f"{f.case_id}\t{f.field}\t{f.kind}\t{f.text}", file=sys.stderr)
            levels = sum(f.kind == "names_another_level" for f in blocking)
            if len(blocking) > levels:
                print(
                    f"{len(blocking) - levels} likely patient identifier(s) found (listed above). Correct those "
                    "reviews in the app, or pass --allow-identifiers to export anyway.",
                    file=sys.stderr,
                )
            if levels:
                print(
                    f"{levels} rationale(s) name another triage level than their label (listed above). Correct "
                    "them in the app, or pass --allow-other-levels to export anyway.",
                    file=sys.stderr,
                )
            return 2
        result = export_stage2_dataset(
            store,
            args.out,
            policy,
            args.val_fraction,
            args.test_csv,
            seed=cfg.optim.seed if args.seed is None else args.seed,
            exported_by=args.exported_by,
            config=config_to_dict(cfg),
        )
    except R2DError as e:
        sys.exit(f"error: {e}")
    print(
        f"exported {result.counts['selected']} reviews to {result.out_dir}: "
        + ", ".join(f"{k} {result.counts[k]}" for k in ("train", "val", "test"))
    )
    if result.counts["waiting_for_adjudication"]:
        print(
            f"{result.counts['waiting_for_adjudication']} case(s) whose reviewers disagree on the label or the "
            "rationale wait for adjudication (app Dashboard) and are not exported",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

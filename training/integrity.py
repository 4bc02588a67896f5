"""Check a review database for tampering: `python -m training.integrity --db reviews.sqlite3`.

Opens the file read-only and reports SQLite's own integrity check, the audit hash chains over every audited
table (r2d.review.audit: a row changed, removed or added with a raw SQLite client breaks them), chain heads that no
longer match their keyed seals (rows forged or rewritten together with their chain entries; the key is the
`<db>.audit-key` file beside the database, or --key), missing protective triggers (and their SQL), file
modes wider than owner-only, and chain heads recorded by exports (--exports) that are no longer in the chains.
Prints the chain heads (keep them: a later run that prints a different history for the same reviews shows a
rewrite). Exit status 1 on any problem.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from r2d.config import AppConfig
from r2d.review import audit
from r2d.review.export import EXPORT_META_FILENAME
from training.cli import setup_logging


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Check a Reason2Decide review database for tampering.")
    ap.add_argument("--db", required=True, help="review database path (SQLite)")
    ap.add_argument(
        "--exports",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of exports (default: r2d_exports when it exists): the chain heads each export's "
        "export_meta.json recorded must still be in the chains (catches a cut-off history)",
    )
    ap.add_argument("--key", help="the database's audit key file (default: the .audit-key file beside --db)")
    return ap.parse_args(argv)


def recorded_heads(folders: Sequence[Path]) -> list[tuple[str, dict[str, str]]]:
    """(export name, its audit_chain_heads) of every export_meta.json directly under folders."""
    found = []
    for folder in folders:
        for meta_path in sorted(folder.glob(f"*/{EXPORT_META_FILENAME}")):
            try:
                heads = json.loads(meta_path.read_text(encoding="utf-8")).get("audit_chain_heads") or {}
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(heads, dict):
                found.append((f"export {meta_path.parent.name}", heads))
    return found


def check(db: Path, exports: Sequence[Path] = (), key: Path | None = None) -> tuple[list[str], int, str]:
    """(problems, number of reviews, chain heads) of the database at db, opened read-only; exports: folders
    of exports whose recorded chain heads must still be in the chains; key: the audit key file (default beside db)."""
    key = key or audit.key_path(db)
    audit_key = audit.read_key(key)
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        problems = (
            []
            if (ok := conn.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"
            else [f"SQLite integrity_check: {ok}"]
        )
        if not audit.is_sealed(conn):
            return (
                problems
                + [
                    "the audit chains are not sealed yet: open the database with the app once (it "
                    "migrates it) and check again"
                ],
                0,
                "",
            )
        if audit_key is None:
            problems.append(
                f"the audit key {key.name} is missing or unreadable: the seals cannot be checked (pass --key)"
            )
        problems += audit.verify_chain(conn, audit_key)
        for where, heads in recorded_heads(exports):
            problems += audit.verify_heads(conn, heads, where)
        n_reviews = conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
        head = ", ".join(f"{table} {audit.chain_head(conn, table)}" for table in audit.CHAINS)
    finally:
        conn.close()
    problems += [
        f"{name} has mode {mode:o}; it should be {audit.PRIVATE_MODE:o} (chmod 600)"
        for name, mode in audit.file_modes(db).items()
        if mode != audit.PRIVATE_MODE
    ]
    return problems, n_reviews, head


def main(argv: Sequence[str] | None = None) -> int:
    """Print 'ok: ...' and return 0, or list the problems and return 1. Exits with a message if unreadable."""
    setup_logging("INFO")
    args = parse_args(argv)
    db = Path(args.db)
    if not db.is_file():
        sys.exit(f"error: no review database at {db}")
    exports = [Path(e) for e in args.exports] or [p for p in (Path(AppConfig().export_dir),) if p.is_dir()]
    try:
        problems, n_reviews, head = check(db, exports, Path(args.key) if args.key else None)
    except sqlite3.DatabaseError as e:
        sys.exit(f"error: {db} cannot be read as a review database: {e}")
    for problem in problems:
        print(f"TAMPERED: {problem}")
    if not problems:
        print(f"ok: {n_reviews} reviews, audit chains intact, chain heads: {head}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Reason2Decide review app: a nurse checks the model's triage label and rationale, and corrects them.

Arguments, config, the model and the store, launch: the UI itself is the ui package (one module per tab).
The model is loaded in main(), never at import, and ui.build_app takes any predictor, so tests run the whole
UI on a fake one. R2DError becomes gr.Error in the UI (ui.common.ui_errors) and a message here.
Run: `python app.py [--model DIR] [--db reviews.sqlite3]` and open http://127.0.0.1:7860.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry at all

from r2d.config import CONFIG_FILENAME, QUANTIZATIONS, ModelConfig, R2DConfig, load_config, with_section  # noqa: E402
from r2d.errors import R2DError  # noqa: E402
from r2d.review.auth import authenticator, load_users  # noqa: E402
from r2d.review.store import ReviewStore  # noqa: E402
from ui import build_app, launch_kwargs, use_private_temp_dir  # noqa: E402
from ui.common import ROOT, load_app_predictor, logger  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The app's command line (unknown flags are an error, as argparse does)."""
    ap = argparse.ArgumentParser(description="Reason2Decide review app (loopback only).")
    ap.add_argument("--model", help="model directory or hub id (default: the embedded assets/models/r2d-ktas-small)")
    ap.add_argument("--quantization", choices=QUANTIZATIONS)
    ap.add_argument("--db", help="review database path (SQLite)")
    ap.add_argument("--port", type=int)
    ap.add_argument("--config", help="JSON config file")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    ap.add_argument(
        "--auth",
        metavar="FILE",
        help="sign-in: users file of names and scrypt hashes (make one: `python -m r2d.review.auth add`)",
    )
    ap.add_argument(
        "--allow-remote", action="store_true", help="allow app.host beyond loopback (also needs sign-in with --auth)"
    )
    ap.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name this app is reached by (checked against the Host header)",
    )
    return ap.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> R2DConfig:
    """Defaults, --config, --set, then the dedicated flags. Raises ConfigError."""
    cfg = load_config(args.config, args.set)
    model = dataclasses.replace(
        cfg.model, **{k: v for k, v in (("name_or_path", args.model), ("quantization", args.quantization)) if v}
    )
    app = dataclasses.replace(cfg.app, **{k: v for k, v in (("db_path", args.db), ("port", args.port)) if v})
    path = Path(model.name_or_path)
    if not path.is_absolute() and not path.exists() and (ROOT / path).exists():
        model = dataclasses.replace(model, name_or_path=str(ROOT / path))  # launched from another directory
    own = Path(model.name_or_path) / CONFIG_FILENAME
    if args.config is None and own.is_file():
        # the model's own generation lengths (e.g. rationales of up to 256 tokens), then the user's --set
        generation = load_config(own, [s for s in args.set if s.startswith("generation.")]).generation
        cfg = with_section(cfg, generation=generation)
    return with_section(cfg, model=model, app=app)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, load the model and the store, launch on loopback. Exits with a message on R2DError."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        cfg = resolve_config(args)
        from webguard import check_bind

        check_bind(cfg.app.host, auth_enabled=bool(getattr(args, "auth", None)), allow_remote=args.allow_remote)
        default = ModelConfig().name_or_path
        if cfg.model.name_or_path.endswith(default) and not Path(cfg.model.name_or_path).is_dir():
            sys.exit(
                f"error: the default model {default} is missing. Create it with "
                "`python -m training.default_model`, or pass --model DIR with a trained model directory."
            )
        users = load_users(args.auth) if args.auth else None
        use_private_temp_dir()
        predictor = load_app_predictor(cfg)
        store = ReviewStore(cfg.app.db_path)
    except R2DError as e:
        sys.exit(f"error: {e}")
    ui = build_app(predictor, store, cfg, signed_in=users is not None)
    if not args.model:  # an explicit --model wins over the improved model remembered from the last run
        ui.improve.restore_model()
    logger.info("reviews go to %s; open http://%s:%d", store.path.resolve(), cfg.app.host, cfg.app.port)
    ui.demo.launch(
        **launch_kwargs(cfg, args.allowed_host),
        auth=authenticator(users) if users else None,
        auth_message="Sign in with your reviewer name: every review records who made it.",
    )


if __name__ == "__main__":
    main()

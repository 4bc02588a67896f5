"""Command-line plumbing every training CLI shares: the common flags, logging, printing on one DDP rank."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from r2d.errors import ConfigError


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags both stages share; each stage adds its own."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--config", help="JSON config (a small diff against the defaults), e.g. training/configs/ktas_cpu.json"
    )
    p.add_argument("--out", required=True, help="output model directory (only the best model is kept)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set optim.max_steps=50 (repeatable)",
    )
    p.add_argument("--task", help="task name stored with the model (default: the init model's)")
    p.add_argument(
        "--ordinal",
        action="store_true",
        default=None,
        help="labels are ordinal, larger = less urgent (enables under-triage metrics)",
    )
    p.add_argument(
        "--label-name",
        dest="label_names",
        action="append",
        default=None,
        metavar="LABEL=NAME",
        help="a human name shown beside a label, e.g. --label-name 1=Resuscitation (repeatable)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def meta_hints(args: argparse.Namespace) -> dict[str, Any]:
    """task/ordinal/label_names keyword arguments from parsed flags. Raises ConfigError for a bad --label-name."""
    names = None
    if args.label_names is not None:
        names = {}
        for item in args.label_names:
            label, sep, name = item.partition("=")
            if not sep or not label.strip() or not name.strip():
                raise ConfigError(f"--label-name {item!r} must look like LABEL=NAME")
            names[label.strip()] = name.strip()
    return {"task": args.task, "ordinal": args.ordinal, "label_names": names}


def is_main_process() -> bool:
    """False on every DDP rank but the first (torchrun / accelerate launch), so CLIs print once."""
    from accelerate import PartialState

    return PartialState().is_main_process


def setup_logging(level: str) -> None:
    """Entry points only: one line per record with time, level and module."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

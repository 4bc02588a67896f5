"""training.cli: the flags, logging and rank helpers every training CLI shares."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from r2d.errors import ConfigError
from training.cli import build_parser, meta_hints, setup_logging


def test_meta_hints_parse_label_names():
    args = SimpleNamespace(task=None, ordinal=True, label_names=["1=Resuscitation", " 2 = Emergency "])
    assert meta_hints(args) == {"task": None, "ordinal": True, "label_names": {"1": "Resuscitation", "2": "Emergency"}}
    with pytest.raises(ConfigError, match="LABEL=NAME"):
        meta_hints(SimpleNamespace(task=None, ordinal=None, label_names=["1"]))


def test_the_shared_flags_parse_and_out_is_required():
    parser = build_parser("prog", "what it does")
    args = parser.parse_args(["--out", "o", "--set", "optim.max_steps=5", "--set", "a.b=1", "--ordinal"])
    assert (args.out, args.overrides, args.ordinal, args.task, args.log_level) == (
        "o",
        ["optim.max_steps=5", "a.b=1"],
        True,
        None,
        "INFO",
    )
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_setup_logging_sets_the_level(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    setup_logging("DEBUG")
    assert root.level == logging.DEBUG and root.handlers

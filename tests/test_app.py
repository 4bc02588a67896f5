"""app.py: the command line, the config, and main() on a real tiny model."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

import app

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("gradio_temp")


def test_main_without_the_default_model_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match=r"python -m training.default_model.*--model"):
        app.main([])


def test_flags_override_the_config(tmp_path):
    args = app.parse_args(
        [
            "--model",
            "/models/x",
            "--quantization",
            "none",
            "--db",
            str(tmp_path / "r.db"),
            "--port",
            "7999",
            "--set",
            "app.low_probability=0.3",
        ]
    )
    cfg = app.resolve_config(args)
    assert (cfg.model.name_or_path, cfg.model.quantization) == ("/models/x", "none")
    assert (cfg.app.db_path, cfg.app.port, cfg.app.low_probability) == (str(tmp_path / "r.db"), 7999, 0.3)
    with pytest.raises(Exception, match="unknown config key"):
        app.resolve_config(app.parse_args(["--set", "app.nope=1"]))


def test_the_model_brings_its_own_generation_lengths(current_model):
    from r2d.config import load_config as load

    own = load(current_model / "r2d_config.json").generation
    cfg = app.resolve_config(app.parse_args(["--model", str(current_model)]))
    assert cfg.generation == own and own.max_rationale_tokens != load(None).generation.max_rationale_tokens
    cfg = app.resolve_config(
        app.parse_args(["--model", str(current_model), "--set", "generation.max_rationale_tokens=77"])
    )
    assert cfg.generation.max_rationale_tokens == 77 and cfg.generation.max_input_tokens == own.max_input_tokens


def test_main_runs_the_app_on_a_real_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    """main() loads a saved model directory through r2d and launches with the private options."""
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda demo, **kwargs: launched.update(demo=demo, **kwargs))
    app.main(
        [
            "--model",
            str(tiny_model_dir),
            "--quantization",
            "none",
            "--db",
            str(tmp_path / "r.sqlite3"),
            "--port",
            "7999",
            "--set",
            f"app.export_dir={tmp_path / 'exports'}",
        ]
    )
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == 7999
    assert launched["run_history"] is False and isinstance(launched["demo"], gr.Blocks)
    assert launched["auth"] is None


def test_main_with_auth_signs_reviewers_in(tiny_model_dir, tmp_path, monkeypatch):
    from r2d.review import auth

    users = tmp_path / "users.txt"
    auth.add_user(users, "Nurse A", "s3cret-pass")
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda demo, **kwargs: launched.update(demo=demo, **kwargs))
    app.main(
        [
            "--model",
            str(tiny_model_dir),
            "--quantization",
            "none",
            "--db",
            str(tmp_path / "r.sqlite3"),
            "--auth",
            str(users),
            "--set",
            f"app.export_dir={tmp_path / 'exports'}",
        ]
    )
    assert launched["auth"]("Nurse A", "s3cret-pass") and not launched["auth"]("Nurse A", "wrong")
    with pytest.raises(SystemExit, match="does not exist"):
        app.main(["--model", str(tiny_model_dir), "--auth", str(tmp_path / "missing.txt")])

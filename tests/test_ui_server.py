"""Serving the UI (ui/server.py): a private Gradio cache per app and the privacy-first launch options."""

from __future__ import annotations

import os
import stat

import pytest

from ui import server

pytestmark = pytest.mark.usefixtures("gradio_temp")


def test_gradio_cache_is_a_private_folder_swept_of_dead_apps(tmp_path, monkeypatch):
    """The download zip sat world-readable in Gradio's shared /tmp/gradio, never deleted."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{server.TEMP_PREFIX}{gone.stdout.strip()}-abc"
    alive = tmp_path / f"{server.TEMP_PREFIX}{os.getpid()}-def"
    for folder in (dead, alive):
        (folder / "h").mkdir(parents=True)
        (folder / "h" / "export.zip").write_text("train rows")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    exits = []
    monkeypatch.setattr(server.atexit, "register", lambda fn, *args: exits.append((fn, args)))
    folder = server.use_private_temp_dir()
    assert os.environ["GRADIO_TEMP_DIR"] == str(folder) and folder.parent == tmp_path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not dead.exists() and alive.exists()  # a killed app's cache is swept; a running one's is not
    [(fn, args)] = exits
    fn(*args)
    assert not folder.exists()  # deleted when the app exits


def test_launch_options_are_private(cfg):
    kwargs = server.launch_kwargs(cfg)
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["share"] is False
    assert kwargs["run_history"] is False and "runs" not in kwargs["footer_links"]
    assert kwargs["enable_monitoring"] is False and kwargs["mcp_server"] is False
    assert "keydown" in kwargs["js"]

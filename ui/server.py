"""Serving the app: its private Gradio cache folder and the privacy-first launch options."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r2d.config import R2DConfig
from r2d.limits import max_upload_bytes
from ui.common import ASSETS, read_asset
from webguard import MAX_REQUEST_BYTES, guard_middleware

TEMP_PREFIX = "r2d-gradio-"  # the app's private Gradio cache: TEMP_PREFIX + its process id + "-" + random
# Gradio's own clean-up of its cache (uploads, download copies): every 5 minutes, files older than 15 minutes
CACHE_CLEANUP_S = (300, 900)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def private_temp_dir(base: str | Path | None = None) -> Path:
    """A new folder only this user can open (mode 700) for Gradio's cache, under base (default: the system
    temporary folder). Gradio's shared default (/tmp/gradio) is world-readable and served by any other Gradio
    app; exports copied there once stayed readable by every local user. Folders an earlier app left behind
    (it was killed) are deleted first: this user's, whose process is gone."""
    root = Path(base or tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(f"{TEMP_PREFIX}*"):
        pid = old.name[len(TEMP_PREFIX) :].split("-")[0]
        if pid.isdigit() and old.stat().st_uid == os.getuid() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=root))


def use_private_temp_dir() -> Path:
    """Point Gradio's cache (uploads, download copies) at a private folder, deleted when the app exits.

    Called before the app is built: Gradio reads GRADIO_TEMP_DIR when Blocks and its server are created."""
    folder = private_temp_dir(os.environ.get("GRADIO_TEMP_DIR"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def launch_kwargs(cfg: R2DConfig, allowed_hosts: Sequence[str] = ()) -> dict[str, Any]:
    """Privacy-first launch options: loopback, no share link, no run history, no monitoring, no MCP server.

    Every request must name this app in its Host header (allowed_hosts: extra names) and come from its own
    origin; every response forbids outside scripts, images and connections (see webguard.py).
    """
    upload_bytes = max_upload_bytes(cfg.app.max_batch_rows, cfg.app.max_case_chars)
    # a request body: an event's bounded fields, or one upload (plus its multipart framing)
    guard = guard_middleware(
        cfg.app.host,
        cfg.app.port,
        allowed_hosts,
        max_body_bytes=MAX_REQUEST_BYTES,
        max_upload_bytes=upload_bytes + MAX_REQUEST_BYTES,
    )
    return dict(
        server_name=cfg.app.host,
        server_port=cfg.app.port,
        share=False,
        run_history=False,
        app_kwargs={"middleware": guard},
        footer_links=["settings"],
        enable_monitoring=False,
        mcp_server=False,
        pwa=False,
        ssr_mode=False,
        show_error=False,
        blocked_paths=[str(Path(cfg.app.export_dir).resolve())],  # downloads: zips
        max_file_size=upload_bytes,
        css_paths=[ASSETS / "app.css"],
        js=read_asset("shortcuts.js"),
    )

"""Does the app's memory stay flat under large requests? Launches app.py on loopback (the embedded model, a
fresh database), warms it up, sends N large requests through the app's public API (in turn: a full prediction,
a case at the case-length limit, a fact check of a rationale at the rationale limit), and prints the server's RSS after
warm-up and after the N requests. Target: the ratio within 1.10.

    .venv/bin/python benchmarks/bench_memory_plateau.py --requests 200
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from r2d.config import load_config  # noqa: E402
from r2d.limits import MAX_RATIONALE_CHARS  # noqa: E402

TARGET_RATIO = 1.10
CASE = (
    "72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124, RR 28, SpO2 89%, GCS 14, pain 9/10, "
    "arrived by ambulance. "
)
RATIONALE = "Chief complaint: chest pain. Systolic BP 88 mmHg (hypotension, below 90 mmHg), heart rate 124/min. "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _fill(text: str, limit: int) -> str:
    return (text * (limit // len(text) + 1))[:limit].rstrip()


def _launch(port: int, workdir: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--db", str(workdir / "reviews.sqlite3")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError as e:
            if proc.poll() is not None:
                raise RuntimeError("the app exited while starting") from e
            time.sleep(1)
    proc.kill()
    raise RuntimeError("the app did not listen within 300 s")


def _request(client: Client, i: int, case: str, rationale: str) -> None:
    """In turn: a full prediction, a case at the character limit (refused for its tokens after being read
    whole), a fact check of a rationale at its limit."""
    kind = i % 3
    if kind == 2:
        client.predict(rationale, "2", api_name="/check")
    else:
        client.predict(CASE * 2 if kind == 0 else case, "bench", api_name="/predict")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    args = p.parse_args(argv)
    case = _fill(CASE, load_config(None).app.max_case_chars)
    rationale = _fill(RATIONALE, MAX_RATIONALE_CHARS)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = _launch(port, Path(tmp))
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            for i in range(args.warmup):
                _request(client, i, case, rationale)
            warm = rss_mb(proc.pid)
            start = time.monotonic()
            for i in range(args.requests):
                _request(client, i, case, rationale)
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ratio = after / warm
    print(
        f"requests {args.requests} (in turn: a prediction, a {len(case):,}-character case, a fact check of a "
        f"{len(rationale):,}-character rationale) in {time.monotonic() - start:.0f} s"
    )
    print(
        f"RSS after {args.warmup} warm-up requests: {warm:.0f} MB; after {args.requests} more: {after:.0f} MB; "
        f"ratio {ratio:.3f} (target <= {TARGET_RATIO:.2f}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

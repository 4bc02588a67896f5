"""Sign-in for the review app: a users file of names and salted scrypt password hashes (stdlib only).

    python -m r2d.review.auth add users.txt "Nurse A"     # asks for the password twice, appends one line

Each line is `name<TAB>scrypt$n$r$p$salt$hash` (base64); blank lines and lines starting with # are
ignored. The file never holds a password, and a wrong password costs the same scrypt work as a right one.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from r2d.errors import ConfigError

# scrypt cost: 2**14 x 8 x 1 is the common interactive-login setting (about 16 MiB and tens of ms)
_N, _R, _P = 2**14, 8, 1
_MAX_PASSWORD = 1024  # bytes; scrypt itself has no limit, a request body should
# sign-in attempt limit per name: after FREE_FAILURES wrong passwords in a row, the name is locked for
# LOCK_BASE_S, doubling with every further failure up to LOCK_MAX_S; a locked name is refused without any
# scrypt work (even with the right password) until the lock ends; a success clears its count
FREE_FAILURES = 5
LOCK_BASE_S = 1.0
LOCK_MAX_S = 900.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, n: int = _N, r: int = _R, p: int = _P) -> str:
    """A salted scrypt hash of password, as 'scrypt$n$r$p$salt$hash'."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether password matches a hash_password() result (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        secret = password.encode("utf-8")
        if len(secret) > _MAX_PASSWORD:
            return False
        got = hashlib.scrypt(secret, salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got, expected)


def load_users(path: str | Path) -> dict[str, str]:
    """name -> stored hash from a users file. Raises ConfigError for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"users file {p} does not exist; create it with `python -m r2d.review.auth add {p} NAME`")
    users: dict[str, str] = {}
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, stored = line.partition("\t")
        if not sep or not name.strip() or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ConfigError(f"{p}:{lineno}: expected 'name<TAB>scrypt$...' (made by `python -m r2d.review.auth add`)")
        users[name.strip()] = stored.strip()
    if not users:
        raise ConfigError(f"users file {p} has no users; add one with `python -m r2d.review.auth add {p} NAME`")
    return users


class AttemptLimiter:
    """Failed sign-ins per name, and until when each name is locked (see FREE_FAILURES). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self._lock = clock, threading.Lock()
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    def allowed(self, name: str) -> bool:
        with self._lock:
            return self.clock() >= self._locked_until.get(name, 0.0)

    def record(self, name: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures.pop(name, None)
                self._locked_until.pop(name, None)
                return
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            if failures >= FREE_FAILURES:
                wait = min(LOCK_BASE_S * 2 ** (failures - FREE_FAILURES), LOCK_MAX_S)
                self._locked_until[name] = self.clock() + wait


def authenticator(users: dict[str, str], limiter: AttemptLimiter | None = None) -> Callable[[str, str], bool]:
    """The callable Gradio's launch(auth=...) takes: (username, password) -> bool.

    Attempts are limited per name (AttemptLimiter), and one scrypt runs at a time, so a flood of sign-ins
    keeps at most one core busy."""
    dummy = hash_password(secrets.token_hex(8))  # unknown names cost the same work: no name probing by timing
    limiter = limiter or AttemptLimiter()
    one_at_a_time = threading.Lock()

    def check(username: str, password: str) -> bool:
        name = (username or "").strip()[:_MAX_PASSWORD]
        if not limiter.allowed(name):
            return False
        stored = users.get(name)
        with one_at_a_time:
            ok = verify_password(password or "", stored or dummy) and stored is not None
        limiter.record(name, ok)
        return ok

    return check


def add_user(path: str | Path, name: str, password: str) -> None:
    """Append a user to a users file (created owner-only). Raises ConfigError for a bad name or a duplicate."""
    p = Path(path)
    if not name.strip() or "\t" in name or "\n" in name or len(name) > 100:
        raise ConfigError("a user name must be 1-100 characters without tabs or line breaks")
    if p.is_file() and name.strip() in load_users(p):
        raise ConfigError(f"{name!r} is already in {p}")
    if not 8 <= len(password.encode("utf-8")) <= _MAX_PASSWORD:
        raise ConfigError(f"choose a password of 8 to {_MAX_PASSWORD} bytes")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"{name.strip()}\t{hash_password(password)}\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Manage the review app's users file (--auth FILE).")
    sub = ap.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("file")
    add.add_argument("name")
    args = ap.parse_args(argv)
    password = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != password:
        sys.exit("error: the passwords differ")
    try:
        add_user(args.file, args.name, password)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    print(f"added {args.name} to {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sign-in: salted scrypt hashes in a users file, and the callable Gradio's auth= takes."""

from __future__ import annotations

import pytest

from r2d.errors import ConfigError
from r2d.review import auth


def test_hash_and_verify():
    stored = auth.hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert auth.verify_password("correct horse", stored)
    assert not auth.verify_password("correct horsf", stored)
    assert auth.hash_password("correct horse") != stored  # salted
    assert not auth.verify_password("x", "scrypt$broken") and not auth.verify_password("x" * 5000, stored)


def test_users_file_and_authenticator(tmp_path):
    users_file = tmp_path / "users.txt"
    auth.add_user(users_file, "Nurse A", "s3cret-pass")
    auth.add_user(users_file, "Nurse B", "other-pass")
    assert (users_file.stat().st_mode & 0o777) == 0o600
    check = auth.authenticator(auth.load_users(users_file))
    assert check("Nurse A", "s3cret-pass") and check(" Nurse B ", "other-pass")
    assert not check("Nurse A", "other-pass") and not check("Nobody", "s3cret-pass") and not check("", "")
    with pytest.raises(ConfigError, match="already"):
        auth.add_user(users_file, "Nurse A", "another-pass")
    with pytest.raises(ConfigError, match="at least 8|8 to"):
        auth.add_user(users_file, "Nurse C", "short")


@pytest.mark.parametrize(
    "content, message", [("", "no users"), ("alice:plain\n", "expected"), ("alice\tmd5$x\n", "expected")]
)
def test_bad_users_files_say_what_to_do(tmp_path, content, message):
    path = tmp_path / "users.txt"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        auth.load_users(path)
    with pytest.raises(ConfigError, match="does not exist"):
        auth.load_users(tmp_path / "missing.txt")


def test_sign_in_attempts_are_limited_per_name(tmp_path, monkeypatch):
    """762 wrong passwords, then the right one worked at once (about 20 attempts a second)."""
    users_file = tmp_path / "users.txt"
    auth.add_user(users_file, "Nurse A", "s3cret-pass")
    now = [0.0]
    limiter = auth.AttemptLimiter(clock=lambda: now[0])
    check = auth.authenticator(auth.load_users(users_file), limiter)
    scrypts = []
    real = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda *a: scrypts.append(a) or real(*a))
    for _ in range(auth.FREE_FAILURES):
        assert not check("Nurse A", "wrong-guess")
    assert not check("Nurse A", "s3cret-pass")  # locked: even the right password, and no scrypt work spent
    assert len(scrypts) == auth.FREE_FAILURES
    assert check("Nurse B", "anything") is False and len(scrypts) == auth.FREE_FAILURES + 1  # other names unaffected
    now[0] += auth.LOCK_BASE_S
    assert not check("Nurse A", "wrong-again")  # the lock doubles
    now[0] += auth.LOCK_BASE_S
    assert not check("Nurse A", "s3cret-pass")
    now[0] += auth.LOCK_BASE_S
    assert check("Nurse A", "s3cret-pass")  # after the lock, the right password works and clears the count
    assert not check("Nurse A", "wrong") and check("Nurse A", "s3cret-pass")

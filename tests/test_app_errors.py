"""Errors at the UI edge: domain errors read as themselves, anything else as a generic message with a log id."""

from __future__ import annotations

import logging
import re
import sqlite3

import gradio as gr
import pytest

import app
from r2d.errors import FeedbackStoreError, ReviewActionError
from r2d.review.store import ReviewStore
from ui import common, server


def _leaky(path: str):
    raise KeyError(f"{path}/reviews.sqlite3 'list' object has no attribute 'get'")


def test_internal_errors_become_a_generic_message_with_a_log_id(caplog):
    wrapped = common.ui_errors(_leaky)
    with caplog.at_level(logging.ERROR, logger="r2d.app"), pytest.raises(gr.Error) as raised:
        wrapped("/home/nurse/secret")
    message = raised.value.message
    assert "secret" not in message and "attribute" not in message
    log_id = re.search(r"log id ([0-9a-f]{8})", message).group(1)
    [record] = [r for r in caplog.records if log_id in r.getMessage()]
    assert record.exc_info and "secret" in str(record.exc_info[1])  # the details go to the log, with a traceback


def test_generator_handlers_are_wrapped_too(caplog):
    def stream():
        yield 1
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    wrapped = common.ui_errors(stream)
    with caplog.at_level(logging.ERROR, logger="r2d.app"), pytest.raises(gr.Error, match="log id") as raised:
        list(wrapped())
    assert "surrogates" not in raised.value.message


def test_domain_errors_and_gr_errors_keep_their_message():
    def refuse():
        raise FeedbackStoreError("enter your name first")

    def already_ui():
        raise gr.Error("shown as is")

    with pytest.raises(gr.Error, match="enter your name first"):
        common.ui_errors(refuse)()
    with pytest.raises(gr.Error, match="shown as is"):
        common.ui_errors(already_ui)()


def test_gradio_shows_no_raw_exception_text(tmp_path):
    cfg = app.resolve_config(app.parse_args(["--db", str(tmp_path / "r.db")]))
    assert server.launch_kwargs(cfg)["show_error"] is False  # gr.Error is still shown; a raw exception is not


def test_store_errors_do_not_reveal_the_database_path(tmp_path):
    store = ReviewStore(tmp_path / "deep" / "reviews.sqlite3")
    with pytest.raises(ReviewActionError) as missing:
        store.get_batch("b-none")
    bad = tmp_path / "not-a-db.sqlite3"
    bad.write_bytes(b"definitely not sqlite" * 10)
    with pytest.raises(FeedbackStoreError) as corrupt:
        ReviewStore(bad)
    conn = sqlite3.connect(store.path)
    conn.execute("BEGIN EXCLUSIVE")  # hold the write lock, so the store's write times out
    try:
        with pytest.raises(FeedbackStoreError) as locked:
            ReviewStore(store.path, busy_timeout_s=0.05).browser_secret()
    finally:
        conn.rollback()
        conn.close()
    for error in (missing.value, corrupt.value, locked.value):
        assert str(tmp_path) not in str(error), str(error)

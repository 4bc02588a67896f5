"""Web guards: foreign Host headers and Origins refused, security headers on every page, loopback-only binding."""

from __future__ import annotations

import socket

import gradio as gr
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import app
import webguard
from r2d.config import load_config
from r2d.errors import ConfigError
from ui import server


@pytest.mark.parametrize(
    "host, auth, allow, ok",
    [
        ("127.0.0.1", False, False, True),
        ("localhost", False, False, True),
        ("::1", False, False, True),
        ("127.0.0.2", False, False, True),
        ("0.0.0.0", False, False, False),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
        ("192.0.2.10", True, True, True),
        ("0.0.0.0", True, True, True),
    ],
)
def test_binding_beyond_loopback_needs_sign_in_and_the_flag(host, auth, allow, ok):
    if ok:
        webguard.check_bind(host, auth, allow)
    else:
        with pytest.raises(ConfigError, match="beyond this machine"):
            webguard.check_bind(host, auth, allow)


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("127.0.0.1:7860", ("127.0.0.1", 7860)),
        ("LOCALHOST:7860", ("localhost", 7860)),
        ("[::1]:7860", ("::1", 7860)),
        ("example.org", ("example.org", None)),
        ("::1", ("::1", None)),
    ],
)
def test_split_host(value, parsed):
    assert webguard.split_host(value) == parsed


def test_policy_accepts_only_the_app_itself():
    policy = webguard.GuardPolicy("127.0.0.1", 7860, extra_names=["triage.ward.local"])
    assert all(
        policy.host_allowed(h) for h in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "triage.ward.local:7860")
    )
    assert not any(
        policy.host_allowed(h)
        for h in ("attacker.example:7860", "127.0.0.1:7861", "127.0.0.1", "", None, "127.0.0.1.attacker.example:7860")
    )
    assert policy.origin_allowed("http://localhost:7860") and policy.origin_allowed("http://127.0.0.1:7860")
    assert not any(
        policy.origin_allowed(o)
        for o in ("http://localhost:3000", "null", "http://attacker.example:7860", "file://", "http://127.0.0.1:7860/x")
    )


@pytest.fixture()
def guarded_client():
    inner = Starlette(routes=[Route("/", lambda request: PlainTextResponse("case text"), methods=["GET", "POST"])])
    guarded = webguard.WebGuard(inner, webguard.GuardPolicy("127.0.0.1", 7860))
    return TestClient(guarded, base_url="http://127.0.0.1:7860")


def test_middleware_refuses_foreign_host_and_origin(guarded_client):
    assert guarded_client.get("/", headers={"Host": "attacker.example:7860"}).status_code == 403
    assert guarded_client.post("/", headers={"Origin": "http://localhost:3000"}).status_code == 403
    ok = guarded_client.post("/", headers={"Origin": "http://127.0.0.1:7860"})
    assert ok.status_code == 200 and ok.text == "case text"
    refused = guarded_client.get("/", headers={"Host": "attacker.example:7860"})
    assert "case text" not in refused.text and "DNS rebinding" in refused.text


def test_every_response_carries_the_security_headers(guarded_client):
    for response in (guarded_client.get("/"), guarded_client.get("/", headers={"Host": "attacker.example"})):
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "img-src 'self' data: blob:" in csp and "connect-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and response.headers["x-content-type-options"] == "nosniff"


def test_failed_sign_ins_are_limited_per_client_address():
    from r2d.review.auth import FREE_FAILURES

    async def login(request):
        form = await request.form()
        return PlainTextResponse(
            "ok" if form.get("password") == "right" else "Incorrect credentials.",
            status_code=200 if form.get("password") == "right" else 400,
        )

    inner = Starlette(routes=[Route("/login", login, methods=["POST"])])
    client = TestClient(
        webguard.WebGuard(inner, webguard.GuardPolicy("127.0.0.1", 7860)), base_url="http://127.0.0.1:7860"
    )
    assert client.post("/login", data={"username": "a", "password": "right"}).status_code == 200
    for i in range(FREE_FAILURES):  # a different name each time: the per-name limit never trips
        assert client.post("/login", data={"username": f"name{i}", "password": "wrong"}).status_code == 400
    refused = client.post("/login", data={"username": "a", "password": "right"})
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert "default-src 'self'" in refused.headers["content-security-policy"]


@pytest.fixture()
def bounded_client():
    async def echo_length(request):
        return PlainTextResponse(str(len(await request.body())))

    inner = Starlette(
        routes=[Route("/", echo_length, methods=["POST"]), Route("/gradio_api/upload", echo_length, methods=["POST"])]
    )
    guarded = webguard.WebGuard(
        inner, webguard.GuardPolicy("127.0.0.1", 7860), max_body_bytes=1000, max_upload_bytes=5000
    )
    return TestClient(guarded, base_url="http://127.0.0.1:7860")


def test_request_bodies_are_bounded(bounded_client):
    assert bounded_client.post("/", content=b"x" * 1000).text == "1000"
    too_big = bounded_client.post("/", content=b"x" * 1001)
    assert too_big.status_code == 413 and "1,000 bytes" in too_big.text
    assert "default-src 'self'" in too_big.headers["content-security-policy"]
    # uploads have their own limit
    assert bounded_client.post("/gradio_api/upload", content=b"x" * 5000).text == "5000"
    assert bounded_client.post("/gradio_api/upload", content=b"x" * 5001).status_code == 413
    assert bounded_client.post("/", content=b"x", headers={"Content-Length": "abc"}).status_code == 413


def test_a_chunked_body_is_cut_off_at_the_limit(bounded_client):
    def chunks(n):
        for _ in range(n):
            yield b"x" * 100

    assert bounded_client.post("/", content=chunks(10)).text == "1000"  # no Content-Length: sent chunked
    assert bounded_client.post("/", content=chunks(11)).status_code == 413


@pytest.fixture()
def launched_tiny(tmp_path, monkeypatch):
    """A tiny gr.Blocks launched on 127.0.0.1 with the app's own launch options."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(None, [f"app.port={port}", f"app.export_dir={tmp_path / 'exports'}"])
    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button("echo").click(lambda text: text, box, box, api_name="echo")
    demo.launch(**server.launch_kwargs(cfg), prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


@pytest.mark.slow
def test_launched_app_refuses_a_foreign_host_header(launched_tiny):
    base = launched_tiny
    page = httpx.get(base + "/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/", "/config", "/gradio_api/info"):
        rebound = httpx.get(base + path, headers={"Host": "attacker.example"})
        assert rebound.status_code == 403, path
    cross = httpx.post(base + "/gradio_api/call/echo", json={"data": ["x"]}, headers={"Origin": "http://localhost:1"})
    assert cross.status_code == 403
    assert httpx.post(base + "/gradio_api/call/echo", json={"data": ["x"]}, headers={"Origin": base}).status_code == 200
    huge = httpx.post(base + "/gradio_api/call/echo", json={"data": ["x" * (2 << 20)]})
    assert huge.status_code == 413


def test_main_refuses_to_listen_beyond_loopback_without_sign_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["--set", "app.host=0.0.0.0"], ["--set", "app.host=0.0.0.0", "--allow-remote"]):
        with pytest.raises(SystemExit, match=r"beyond this machine.*--auth"):
            app.main(argv)


@pytest.mark.slow
def test_the_review_app_refuses_dns_rebinding_and_other_origins(launched_app):
    base = launched_app.url.rstrip("/")
    assert httpx.get(base + "/").status_code == 200
    for path in ("/", "/gradio_api/info", "/config"):
        assert httpx.get(base + path, headers={"Host": "attacker.example"}).status_code == 403, path
    upload = httpx.post(
        base + "/gradio_api/upload",
        files={"files": ("cases.csv", b"question\nchest pain\n")},
        headers={"Origin": "http://localhost:8080"},
    )
    assert upload.status_code == 403 and launched_app.external == []

"""Web-side guards of the review app: loopback in fact, same origin only, nothing loaded from outside.

Binding to 127.0.0.1 is not enough on its own. A page on another site can make the browser talk to
the app (DNS rebinding: attacker.example resolving to 127.0.0.1), and any other local web app can
send it cross-origin requests. So every request must name the app itself in its Host header, a
request that carries an Origin must come from the app's own origin, and every response carries a
Content-Security-Policy that forbids outside scripts, images and connections.

`WebGuard` is plain ASGI middleware. It goes in through Gradio's supported hook: launch(app_kwargs=
{"middleware": guard_middleware(...)}) hands the list to FastAPI, which runs it around every route.
Gradio's own CORS middleware sits outside it and may still answer a CORS preflight, but the request
that follows is refused here, so a foreign origin never reaches a handler.

It also bounds every request body (a 100 MB body to an event endpoint was once accepted whole): a
Content-Length over the limit is answered 413 before anything is read, and a body sent without one
(chunked) is read up to the limit before the app sees it, and answered 413 once it passes it. File
uploads get their own, larger limit (Gradio's max_file_size checks each file, not the request).

Sign-ins are limited per client address as well as per name (r2d.review.auth.authenticator): Gradio's auth callable
never sees the request, so a flood of names from one client is counted here, on the login route, by the
response Gradio gives (a refused sign-in is a 4xx). After r2d.review.auth.FREE_FAILURES failures in a row the address
is answered 429 for the same doubling back-off. On loopback every local client is 127.0.0.1, so there the
limit is shared by all local clients.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware

from r2d.errors import ConfigError
from r2d.review.auth import AttemptLimiter

logger = logging.getLogger("r2d.webguard")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# Gradio's page needs inline scripts/styles and runs the app's `js=` shortcuts through Function();
# everything else (scripts, images, fonts, fetches, frames) comes from this origin or from data:/blob: URLs
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' data: blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# request body limits (bytes): an event carries a few bounded text fields (r2d.limits), an upload a case file
MAX_REQUEST_BYTES = 1 << 20
UPLOAD_PATH_SUFFIX = "/upload"  # Gradio's file upload route (/gradio_api/upload)
LOGIN_PATH_SUFFIX = "/login"  # Gradio's sign-in form posts here
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def is_loopback(host: str) -> bool:
    """Whether host (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth_enabled: bool, allow_remote: bool) -> None:
    """Refuse to listen beyond loopback unless sign-in is on AND the operator asked for it explicitly.

    Raises ConfigError naming what is missing.
    """
    if is_loopback(host):
        return
    missing = [
        what for what, ok in (("--allow-remote", allow_remote), ("--auth FILE (sign-in)", auth_enabled)) if not ok
    ]
    if missing:
        raise ConfigError(
            f"app.host={host} would expose case texts beyond this machine; that needs "
            f"{' and '.join(missing)}. Use the default 127.0.0.1 to stay on loopback"
        )


def split_host(value: str) -> tuple[str, int | None]:
    """'name:port', '[::1]:port' or 'name' -> (lower-case name without brackets, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:  # a bare name, or a bare IPv6 address
        name, port = value, ""
    return name, (int(port) if port.isdigit() else None)


class GuardPolicy:
    """Which Host headers and Origins are the app itself: the bound address, loopback names, configured names."""

    def __init__(self, host: str, port: int, extra_names: Iterable[str] = ()) -> None:
        names = {split_host(host)[0], *(n.lower() for n in extra_names)}
        if is_loopback(host) or host in ("0.0.0.0", "::"):
            names |= set(LOOPBACK_NAMES)
        names.discard("0.0.0.0")
        names.discard("::")
        self.names, self.port = frozenset(names), port

    def host_allowed(self, value: str | None) -> bool:
        if not value:
            return False
        name, port = split_host(value)
        return name in self.names and (port or 80) == self.port

    def origin_allowed(self, origin: str) -> bool:
        scheme, _, rest = origin.partition("://")
        return scheme in ("http", "https") and "/" not in rest and self.host_allowed(rest)


class WebGuard:
    """ASGI middleware: refuse foreign Host headers and Origins and over-long bodies; add the security headers
    to every response."""

    def __init__(
        self,
        app: Callable,
        policy: GuardPolicy,
        max_body_bytes: int = MAX_REQUEST_BYTES,
        max_upload_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.app, self.policy = app, policy
        self.max_body_bytes, self.max_upload_bytes = max_body_bytes, max_upload_bytes
        self.sign_ins = AttemptLimiter()  # failed sign-ins per client address

    def body_limit(self, path: str) -> int:
        """The largest body a request to path may carry."""
        return self.max_upload_bytes if path.rstrip("/").endswith(UPLOAD_PATH_SUFFIX) else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._problem(headers)
        if problem:
            logger.warning("refused %s %s: %s", scope.get("method", "WS"), scope.get("path"), problem)
            await self._refuse(scope, send, problem)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        limit = self.body_limit(scope.get("path", ""))
        length = headers.get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            await self._too_large(scope, send, limit)
            return
        if length is None:  # chunked: read up to the limit first, then replay what was read
            messages = await self._read_body(receive, limit)
            if messages is None:
                await self._too_large(scope, send, limit)
                return
            receive = self._replay(messages, receive)
        send = self._with_headers(send)
        if scope.get("method") == "POST" and scope.get("path", "").rstrip("/").endswith(LOGIN_PATH_SUFFIX):
            client = (scope.get("client") or ("unknown",))[0]
            if not self.sign_ins.allowed(client):
                logger.warning("refused a sign-in from %s: too many failures", client)
                await self._respond(send, 429, "Too many failed sign-ins from this address; wait and try again\n")
                return
            send = self._counting_sign_in(send, client)
        await self.app(scope, receive, send)

    def _counting_sign_in(self, send: Send, client: str) -> Send:
        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.sign_ins.record(client, message["status"] < 400)
            await send(message)

        return counted

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> list[dict[str, Any]] | None:
        """The request's body messages, or None as soon as they pass limit bytes (or the client leaves)."""
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            received += len(message.get("body", b""))
            if received > limit:
                return None
            if not message.get("more_body", False):
                return messages

    @staticmethod
    def _replay(messages: list[dict[str, Any]], receive: Receive) -> Receive:
        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        return replay

    @classmethod
    async def _too_large(cls, scope: Scope, send: Send, limit: int) -> None:
        logger.warning("refused %s %s: body over %d bytes", scope.get("method"), scope.get("path"), limit)
        await cls._respond(send, 413, f"Request body too large: the limit is {limit:,} bytes\n")

    def _problem(self, headers: Headers) -> str:
        if not self.policy.host_allowed(headers.get("host")):
            return f"Host {headers.get('host')!r} is not this app (possible DNS rebinding)"
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_allowed(origin):
            return f"Origin {origin!r} is not this app's origin"
        return ""

    @staticmethod
    async def _refuse(scope: Scope, send: Send, problem: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await WebGuard._respond(send, 403, f"Forbidden: {problem}\n")

    @staticmethod
    async def _respond(send: Send, status: int, text: str) -> None:
        body = text.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ]
                + [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        return send_with_headers


def guard_middleware(
    host: str,
    port: int,
    extra_names: Iterable[str] = (),
    max_body_bytes: int = MAX_REQUEST_BYTES,
    max_upload_bytes: int = MAX_REQUEST_BYTES,
) -> list[Middleware]:
    """The middleware list for launch(app_kwargs={"middleware": ...})."""
    return [
        Middleware(
            WebGuard,
            policy=GuardPolicy(host, port, extra_names),
            max_body_bytes=max_body_bytes,
            max_upload_bytes=max_upload_bytes,
        )
    ]

"""What every request to the server passes before the API sees it, and how long a client may stall.

``RequestGuard`` is ASGI middleware in front of the whole app, so nothing it refuses costs a byte of body:

1. Without a token the server is for this machine alone: the client must be on loopback, and the ``Host``
   and any ``Origin`` must name loopback too (``Origin: null``, a sandboxed frame or a local file, names
   none). A web page the user visits can otherwise send the server a job (a plain multipart POST needs no
   CORS preflight), and DNS rebinding lets it read the answers; local AI servers such as Ollama and Jupyter
   refuse such requests the same way.
2. With a token, every request but ``/v1/health`` needs it (the API, /docs and the schema alike), checked
   in constant time before the body is read.
3. A body over the limit gets 413, declared (Content-Length) or not (chunked), and a client that stops
   sending its body for the idle timeout gets 408.

``guarded_protocol`` bounds what comes before the ASGI app: headers larger than ``MAX_HEADER_BYTES`` are
refused, and a connection that has not sent a whole request head within the idle timeout is closed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from urllib.parse import urlsplit

from uvicorn.protocols.http.h11_impl import H11Protocol

from ..backends.addresses import is_loopback

PUBLIC_PATHS = frozenset({"/v1/health"})
MAX_HEADER_BYTES = 64 << 10


def host_of(authority: str) -> str:
    """The host of a Host header or an Origin (``[::1]:8700`` -> ``::1``)."""
    return urlsplit(f"//{authority}" if "//" not in authority else authority).hostname or ""


class Refusal(Exception):
    def __init__(self, status: int, detail: str, headers: tuple = ()):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


class RequestGuard:
    """ASGI middleware: the checks above, in that order, before the app reads anything."""

    def __init__(self, app, token: str, max_body: int, idle_timeout: float):
        self.app = app
        self.token = token.encode()
        self.max_body = max_body
        self.idle_timeout = idle_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            self.check_origin(scope, headers)
            self.check_token(scope, headers)
            self.check_declared_size(headers)
        except Refusal as refusal:
            return await respond(send, refusal)
        await self.pass_on(scope, receive, send)

    def check_origin(self, scope, headers) -> None:
        if self.token:
            return
        client = (scope.get("client") or ("",))[0]
        if client and not is_loopback(client):
            raise Refusal(403, "This server has no token, so it answers this machine only.")
        if headers.get(b"origin") == b"null":
            # Sandboxed frames and file: or data: pages send it, and a form POST needs no preflight.
            raise Refusal(
                403,
                "A page with no origin of its own (Origin: null: a sandboxed frame, a file or data page) "
                "cannot use a server without a token.",
            )
        for name in (b"host", b"origin"):
            value = headers.get(name, b"").decode("latin-1")
            if value and not is_loopback(host_of(value)):
                raise Refusal(
                    403,
                    f"The {name.decode().capitalize()} {value} is not this machine: a server without a token "
                    "answers only requests addressed to localhost, from its own pages or none.",
                )

    def check_token(self, scope, headers) -> None:
        if not self.token or scope["path"] in PUBLIC_PATHS:
            return
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not secrets.compare_digest(token, self.token):
            raise Refusal(
                401,
                "A valid token is needed: Authorization: Bearer <token>.",
                ((b"www-authenticate", b"Bearer"),),
            )

    def check_declared_size(self, headers) -> None:
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            raise self.too_large()

    def too_large(self) -> Refusal:
        return Refusal(413, f"The upload is larger than the server takes ({self.max_body >> 20} MB).")

    async def pass_on(self, scope, receive, send):
        """The request to the app, its body counted and timed; a refusal mid-body replaces its answer."""
        received, body_done = 0, False
        refused: Refusal | None = None
        started = False

        async def guarded_receive():
            nonlocal received, body_done, refused
            if body_done:
                return await receive()  # e.g. a streaming response waiting for the client to leave
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout)
            except TimeoutError:
                refused = Refusal(408, f"The upload stalled for {self.idle_timeout:g} s.")
                raise RequestRefused from None
            received += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            if received > self.max_body:
                refused = self.too_large()
                raise RequestRefused
            return message

        async def guarded_send(message):
            nonlocal started
            if refused is None:
                started = True
                return await send(message)
            if not started:  # the app's own answer to a body it could not read: ours instead
                started = True
                await respond(send, refused)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except RequestRefused:
            if not started:
                await respond(send, refused)


class RequestRefused(Exception):
    """Raised into the app when the guard refuses a request mid-body."""


async def respond(send, refusal: Refusal) -> None:
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"), *refusal.headers]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps({"detail": refusal.detail}).encode()})


def guarded_protocol(idle_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head does not arrive within
    ``idle_timeout`` seconds of its start or of its last response."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": idle_timeout})


class GuardedH11Protocol(H11Protocol):
    """A client stalled mid-headers would otherwise hold its connection for ever."""

    header_timeout: float

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._awaiting_head()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request head arrived whole
            self._head_arrived()

    def on_response_complete(self) -> None:
        self._awaiting_head()  # first: a pipelined request handled inside the call below stops the timer
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def _awaiting_head(self) -> None:
        self._head_arrived()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _head_arrived(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

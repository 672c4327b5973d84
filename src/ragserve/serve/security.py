"""Who may call the API and how often: API keys, rate limits, body size.

Auth is on whenever keys are configured or the service listens beyond
loopback: an index of internal docs behind an open port is a leak. Listening
publicly without keys is refused at start-up rather than silently allowed.
Keys are compared with ``hmac.compare_digest`` so timing does not reveal
them, and rate-limit buckets are keyed by a hash of the key, never the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragserve.config import ServeSettings
from ragserve.errors import ConfigError
from ragserve.serve.observability import error_json, request_id_var

logger = logging.getLogger(__name__)

#: Buckets kept before idle (full) ones are evicted; bounds memory under key/IP churn.
MAX_BUCKETS = 10_000


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_required(settings: ServeSettings) -> bool:
    """Whether requests need a key; raises ``ConfigError`` for unsafe or useless setups."""
    secrets = [key.get_secret_value() for key in settings.api_keys]
    if any(not secret.strip() for secret in secrets):
        raise ConfigError(
            "an API key in serve.api_keys is empty or blank (only whitespace): no client can "
            "present it. Remove it or set a long random key"
        )
    keys = [key for key in settings.api_keys if key.get_secret_value()]
    if settings.require_auth is False:
        if not is_loopback(settings.host):
            logger.warning(
                "serving on %s without authentication (serve.require_auth=false)", settings.host
            )
        return False
    required = bool(keys) or bool(settings.require_auth) or not is_loopback(settings.host)
    if required and not keys:
        why = (
            "serve.require_auth is true"
            if settings.require_auth
            else f"the service listens on {settings.host}, beyond this machine"
        )
        raise ConfigError(
            f"API keys are required because {why}, but none are configured. Set "
            "RAGSERVE_SERVE__API_KEYS='[\"a-long-random-key\"]' (clients send "
            "'Authorization: Bearer <key>' or 'X-API-Key: <key>'), or set "
            "RAGSERVE_SERVE__REQUIRE_AUTH=false to serve without authentication."
        )
    return required


class ApiKeys:
    """The configured keys; ``match`` says which one a presented key is."""

    def __init__(self, settings: ServeSettings) -> None:
        self.required = auth_required(settings)
        self._keys = [
            key.get_secret_value().encode() for key in settings.api_keys if key.get_secret_value()
        ]

    def match(self, presented: str) -> str | None:
        """A stable, non-secret id of the matching key, or None."""
        candidate = presented.encode()
        found: str | None = None
        for key in self._keys:  # compare with every key: time does not depend on which
            if hmac.compare_digest(candidate, key):
                found = "key-" + hashlib.sha256(key).hexdigest()[:12]
        return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries in ``Authorization: Bearer`` or ``X-API-Key``."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per client: ``per_minute`` requests, bursting up to the same.

    Single-threaded by design (it lives on the event loop). Limits are per
    process, so N Serve ingress replicas allow N times the rate in total.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._capacity = float(per_minute)
        self._refill_per_s = per_minute / 60.0
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, client: str, now: float | None = None) -> float:
        """Take one token; 0.0 when allowed, else seconds until a token is free."""
        if not self.enabled:
            return 0.0
        bucket = self._refilled(client, time.monotonic() if now is None else now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._refill_per_s

    def wait_s(self, client: str, now: float | None = None) -> float:
        """Seconds until ``client`` has a token, without taking one (0.0: it has one)."""
        if not self.enabled or client not in self._buckets:
            return 0.0
        bucket = self._refilled(client, time.monotonic() if now is None else now)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self._refill_per_s

    def _refilled(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            self._evict_if_full(now)
            bucket = self._buckets[client] = _Bucket(self._capacity, now)
        refilled = bucket.tokens + (now - bucket.updated) * self._refill_per_s
        bucket.tokens = min(self._capacity, refilled)
        bucket.updated = now
        return bucket

    def _evict_if_full(self, now: float) -> None:
        if len(self._buckets) < MAX_BUCKETS:
            return
        refill_all_s = self._capacity / self._refill_per_s
        idle = [k for k, b in self._buckets.items() if now - b.updated >= refill_all_s]
        for key in idle or list(self._buckets)[: MAX_BUCKETS // 10]:
            del self._buckets[key]


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, rounded up, as ``Retry-After`` requires."""
    return str(max(1, math.ceil(wait_s)))


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes``, 408 for ones that never end.

    A declared ``Content-Length`` is checked up front; a chunked body is read
    (up to the limit, which is small) and replayed to the app. The whole body
    must arrive within ``timeout_s``: a client that declares 100 bytes and
    sends 8 would otherwise hold a connection and a task forever (slowloris).
    The limit lives in the app, so it holds under uvicorn and under Ray
    Serve's proxy alike.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, int(declared))
            return
        body = bytearray()
        more = True
        try:
            async with asyncio.timeout(self.timeout_s):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body.extend(message.get("body", b""))
                    more = message.get("more_body", False)
                    if len(body) > self.max_bytes:
                        await self._reject(send, len(body))
                        return
        except TimeoutError:
            await self._send_error(
                send,
                408,
                error_json(
                    "body_timeout",
                    f"the request body did not arrive within {self.timeout_s:g}s "
                    "(serve.body_timeout_s, RAGSERVE_SERVE__BODY_TIMEOUT_S)",
                    request_id_var.get(),
                ),
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, size: int) -> None:
        payload = error_json(
            "body_too_large",
            f"the request body is {size} bytes; the limit is {self.max_bytes} "
            "(serve.max_body_bytes, RAGSERVE_SERVE__MAX_BODY_BYTES)",
            request_id_var.get(),
        )
        await self._send_error(send, 413, payload)

    @staticmethod
    async def _send_error(
        send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """A JSON error that closes the connection (the rest of the body is not read)."""
        await send_json_error(send, status, payload, [(b"connection", b"close"), *(headers or [])])


async def send_json_error(
    send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer from ASGI middleware, before any route: status, JSON body, extra headers."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class InFlightLimit:
    """ASGI middleware: at most ``limit`` requests in progress, the rest 503 at once.

    Admission control: under overload a queue of waiting requests only grows
    latency and memory until everything times out. Refusing the excess
    quickly, with ``Retry-After``, keeps the admitted ones fast and tells
    clients when to come back. Probes (/healthz, /readyz) are always admitted,
    so an orchestrator does not restart a replica for being busy.
    """

    #: Paths never refused: liveness and readiness must answer under load.
    ALWAYS = frozenset({"/healthz", "/readyz"})

    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in self.ALWAYS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            payload = error_json(
                "overloaded",
                f"the service is handling {self.in_flight} requests, its limit "
                f"(serve.max_in_flight, RAGSERVE_SERVE__MAX_IN_FLIGHT); retry in "
                f"{self.retry_after_s}s",
                request_id_var.get(),
            )
            await send_json_error(
                send, 503, payload, [(b"retry-after", str(self.retry_after_s).encode())]
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

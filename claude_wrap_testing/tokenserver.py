"""A real OAuth token endpoint on 127.0.0.1, scripted per test.

It speaks the protocol Claude Code's token endpoint speaks (docs/protocol.md section 4) and keeps
a log of every request it received, so that tests assert on what went over the wire, never on
mocks. By default each refresh succeeds with a new, rotated token pair; a test queues other
answers with `script()`.

It is as hard as the real service (docs/protocol.md section 10, issue 26): it knows which access
token went with each refresh token it issued or was told of (`register()`, `register_login()`: a
test's seeded login), and when a refresh token is spent (a 200 answer carrying a new access
token), the access token that came with it is revoked at once. `check(token)` says whether the
Messages API would still take a token (a FakeAnthropicAPI's `check_token`); `GET /check` asks the
same over HTTP, the token in an `Authorization: Bearer` header (the fake `claude` does, when
FAKE_CLAUDE_TOKEN_CHECK names that URL). Tokens it never heard of stay accepted. The servers
running in one process answer checks as one service.
`TokenServer(lenient=True)` or CLAUDE_WRAP_TEST_TOKENS=lenient revokes nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeAlias

RELAYED_AGENT = "relayed:"  # TokenFamilies' prefix for the real binary's requests
# The switch for the lenient service of old, where a rotated login's previous access token lives on
# until its expiry: `CLAUDE_WRAP_TEST_TOKENS=lenient`. The default is the faithful one (issue 26).
LENIENT = os.environ.get("CLAUDE_WRAP_TEST_TOKENS", "") == "lenient"
DEFAULT_SCOPE = (
    "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
)


@dataclass
class Reply:
    """One scripted answer. `body` may be a dict (sent as JSON), bytes (sent raw) or None.

    `delay` answers that long after the request arrived (`_since_arrival`); `hang` never answers
    (the connection stays open until the server stops); `truncate` declares a longer
    Content-Length than it sends, then closes.
    """

    status: int = 200
    body: dict[str, Any] | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    truncate: bool = False
    close: bool = False  # close the connection without any answer


# struct tcp_info (linux/tcp.h): tcpi_last_data_recv, ms since the last data came in, at this
# offset in every kernel since 2.6.
_TCPI_LAST_DATA_RECV = 52


def _since_arrival(sock: socket.socket) -> float:
    """Seconds since the request's last byte reached our socket, by the kernel's clock: a
    remote server's delay runs from then, however long this thread waited for a CPU to read it
    (bench/run contention: 31 shims warming up on 2 cores kept it from the request for up to
    35 ms). 0 where TCP_INFO is not to be had: then the delay runs from our reading it."""
    if not hasattr(socket, "TCP_INFO"):
        return 0.0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0.0
    if len(info) < _TCPI_LAST_DATA_RECV + 4:
        return 0.0
    last = info[_TCPI_LAST_DATA_RECV : _TCPI_LAST_DATA_RECV + 4]
    return int.from_bytes(last, sys.byteorder) / 1000


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes
    at: float


# An answer made for each request (like `ok()`), rather than one fixed Reply.
Answer: TypeAlias = Callable[["TokenServer", Request], Reply]


def ok(
    *, scope: str | None = DEFAULT_SCOPE, rotate: bool = True, expires_in: Any = 28800
) -> Answer:
    """A successful refresh answer, minted fresh for each request."""

    def make(server: TokenServer, request: Request) -> Reply:
        n = next(server.counter)
        body: dict[str, Any] = {
            "access_token": f"sk-ant-oat01-test-access-{n:04d}-{server.tag}",
            "expires_in": expires_in,
            "token_type": "Bearer",
        }
        if rotate:
            body["refresh_token"] = f"sk-ant-ort01-test-refresh-{n:04d}-{server.tag}"
        if scope is not None:
            body["scope"] = scope
        server.issued.append(body)
        return Reply(200, body)

    return make


def invalid_grant(status: int = 400) -> Reply:
    return Reply(
        status,
        {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"},
    )


class TokenServer:
    """Threaded HTTP server on 127.0.0.1:<free port>. Use as a context manager.

    The servers running in one process are one service: `check` answers for a token any of them
    revoked (a guest's token server is asked about the owner's tokens, as the one real service
    would be), and `serving(url)` finds the running server behind a URL."""

    _running: ClassVar[list[TokenServer]] = []
    _running_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, tag: str = "t", *, lenient: bool | None = None) -> None:
        self.tag = tag
        self.lenient = LENIENT if lenient is None else lenient
        self._pairs: dict[str, str] = {}  # refresh token -> the access token that came with it
        # Access tokens a spent refresh token took with it, each with its refusal (PROBLEMS key).
        self.revoked_access: dict[str, str] = {}
        self.checks = 0  # GET /check requests answered (not in `requests`: those are refreshes)
        self.refused = 0  # checks answered with a problem
        self.counter = itertools.count(1)
        self.requests: list[Request] = []
        self.issued: list[dict[str, Any]] = []
        self._script: list[Reply | Answer] = []
        self.default: Answer = ok()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/check":
                    self._answer(Reply(404, {"error": "not_found"}))
                    return
                auth = self.headers.get("Authorization") or ""
                token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
                problem = server.check(token)
                with server._lock:
                    server.checks += 1
                    server.refused += problem is not None
                self._answer(Reply(200, {"problem": problem}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                request = Request(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    raw,
                    time.time(),
                )
                with server._lock:
                    server.requests.append(request)
                    step = server._script.pop(0) if server._script else server.default
                reply = step(server, request) if callable(step) else step
                self._answer(reply, request)

            def _answer(self, reply: Reply, request: Request | None = None) -> None:
                if reply.delay:
                    time.sleep(max(0.0, reply.delay - _since_arrival(self.connection)))
                if request is not None and not (reply.hang or reply.close):
                    server._spend(request, reply)  # as it goes out: the server has committed
                if reply.hang:
                    server._stop.wait()
                    self.close_connection = True
                    return
                if reply.close:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(reply.body, dict):
                    payload = json.dumps(reply.body).encode()
                    ctype = "application/json"
                else:
                    payload = reply.body or b""
                    ctype = "text/plain"
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                declared = len(payload) + (50 if reply.truncate else 0)
                self.send_header("Content-Length", str(declared))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                if reply.truncate:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/oauth/token"
        self.check_url = f"http://127.0.0.1:{self.port}/check"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def register(self, access: str, refresh: str) -> None:
        """Tell the server that `access` came with `refresh` (a login the test seeded), so that
        spending `refresh` revokes `access`, as the real service would."""
        with self._lock:
            self._pairs[refresh] = access

    def register_login(self, doc: Any) -> None:
        """`register()` the pair of a credentials document (bytes, the whole file's dict, or its
        claudeAiOauth object); anything without both tokens is ignored."""
        if isinstance(doc, bytes):
            try:
                doc = json.loads(doc)
            except (ValueError, RecursionError):  # a test's bad input: nothing to register
                return
        if isinstance(doc, dict) and isinstance(doc.get("claudeAiOauth"), dict):
            doc = doc["claudeAiOauth"]
        if not isinstance(doc, dict):
            return
        access, refresh = doc.get("accessToken"), doc.get("refreshToken")
        if isinstance(access, str) and isinstance(refresh, str) and access and refresh:
            self.register(access, refresh)

    def _spend(self, request: Request, reply: Reply) -> None:
        """A successful refresh answer is going out: the presented refresh token's access token
        is revoked (unless lenient), and the new access token goes with the new refresh token (or
        with the presented one, when the answer does not rotate it)."""
        body = reply.body
        presented = (request.body or {}).get("refresh_token")
        if reply.status != 200 or not isinstance(body, dict) or not isinstance(presented, str):
            return
        access = body.get("access_token")
        if not isinstance(access, str):
            return
        refresh = body.get("refresh_token")
        with self._lock:
            previous = self._pairs.get(presented)
            if previous is not None and previous != access and not self.lenient:
                # The real service answers either refusal; alternate, the first a 401.
                kind = "access_revoked" if len(self.revoked_access) % 2 == 0 else "revoked_403"
                self.revoked_access.setdefault(previous, kind)
            self._pairs[refresh if isinstance(refresh, str) and refresh else presented] = access

    def check(self, token: str) -> str | None:
        """None when the Messages API would take `token`, else the key of fakeapi.PROBLEMS it
        answers with: "access_revoked" (401) or "revoked_403" (403), for an access token whose
        refresh token was spent, here or at another server running in this process. Unknown
        tokens are accepted."""
        with TokenServer._running_lock:
            others = [s for s in TokenServer._running if s is not self]
        for server in (self, *others):
            with server._lock:
                problem = server.revoked_access.get(token)
            if problem is not None:
                return problem
        return None

    @classmethod
    def serving(cls, url: str) -> TokenServer | None:
        """The running server whose `url` this is, if any."""
        with cls._running_lock:
            return next((s for s in cls._running if s.url == url), None)

    def script(self, *replies: Reply | Answer) -> None:
        """Queue answers for the next requests; after they run out, `default` answers."""
        with self._lock:
            self._script.extend(replies)

    @property
    def refresh_tokens_seen(self) -> list[str]:
        return [r.body.get("refresh_token", "") for r in self.requests if r.body]

    def __enter__(self) -> TokenServer:
        self._thread.start()
        with TokenServer._running_lock:
            TokenServer._running.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with TokenServer._running_lock:
            if self in TokenServer._running:
                TokenServer._running.remove(self)
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class TokenFamilies:
    """A token endpoint that behaves like the real one where it hurts (issues 9 and 26).

    Refresh tokens are single-use: presenting a spent one answers `invalid_grant` and, as users
    report of the real service, revokes the whole family (every token descended from the same
    login). A refresh revokes the family's previous access token at once, long before its
    expiry, as the real service does (docs/protocol.md section 10); `lenient=True` (or
    CLAUDE_WRAP_TEST_TOKENS=lenient) lets it live to its expiry instead. Access tokens live
    `access_ttl_s` seconds. `access_problem()` is what a fake Messages API asks before
    answering, so a revoked or expired token gets its refusal. Counters say what happened.
    """

    def __init__(
        self,
        access_ttl_s: float = 28800,
        tag: str = "f",
        *,
        access_valid_s: float | None = None,
        lenient: bool | None = None,
    ) -> None:
        self.lenient = LENIENT if lenient is None else lenient
        self.access_ttl_s = access_ttl_s
        # How long the Messages endpoint honours an access token; by default what `expires_in`
        # promised. The soak shortens it: see bench/soak for why.
        self.access_valid_s = access_ttl_s if access_valid_s is None else access_valid_s
        self.tag = tag
        self._lock = threading.Lock()
        self._n = itertools.count(1)
        self._family_of: dict[str, int] = {}  # every token ever issued -> its family
        self._live_refresh: dict[int, str] = {}  # family -> its one unspent refresh token
        self._access_expiry: dict[str, float] = {}
        self._live_access: dict[int, str] = {}  # family -> its newest access token
        self.superseded: set[str] = set()  # access tokens a rotation revoked
        self.revoked: set[int] = set()
        self.revoked_by: dict[int, str] = {}  # family -> User-Agent of the request that did it
        self.refreshes = 0
        self.invalid_grants = 0
        self.rejected_access = 0
        # (time, "refresh" | "invalid_grant" | "revoke", family, User-Agent), in order.
        self.events: list[tuple[float, str, int, str]] = []
        self._spent: dict[str, tuple[float, str]] = {}  # refresh token -> (when, by whom)
        # Each replay of a spent token: (when, by whom, when it was first spent, by whom).
        self.replays: list[tuple[float, str, float, str]] = []

    def login(self) -> dict[str, Any]:
        """A fresh login (what `/login` would store), as a claudeAiOauth object."""
        with self._lock:
            family = next(self._n)
            access, refresh = self._mint(family)
        return {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": int((time.time() + self.access_ttl_s) * 1000),
            "scopes": DEFAULT_SCOPE.split(),
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x",
        }

    def _mint(self, family: int) -> tuple[str, str]:
        n = next(self._n)
        access = f"sk-ant-oat01-fam{family}-{n:06d}-{self.tag}"
        refresh = f"sk-ant-ort01-fam{family}-{n:06d}-{self.tag}"
        self._family_of[access] = self._family_of[refresh] = family
        self._live_refresh[family] = refresh
        previous = self._live_access.get(family)
        if previous is not None and not self.lenient:
            self.superseded.add(previous)
        self._live_access[family] = access
        self._access_expiry[access] = time.time() + self.access_valid_s
        return access, refresh

    def __call__(self, server: TokenServer, request: Request) -> Reply:
        token = (request.body or {}).get("refresh_token")
        agent = request.headers.get("user-agent", "")
        if request.headers.get("x-relayed-by"):
            # From the real binary through tlsproxy.py: claude-wrap sends the same
            # User-Agent, so the relay is what tells them apart.
            agent = RELAYED_AGENT + agent
        with self._lock:
            now = time.time()
            family = self._family_of.get(token) if isinstance(token, str) else None
            if not isinstance(token, str) or family is None or family in self.revoked:
                self.invalid_grants += 1
                self.events.append((now, "invalid_grant", family or 0, agent))
                return invalid_grant()
            if self._live_refresh.get(family) != token:
                # A spent token came back: someone raced. Revoke the whole family.
                self.revoked.add(family)
                self.revoked_by[family] = agent
                self.invalid_grants += 1
                self.events.append((now, "revoke", family, agent))
                first_at, first_by = self._spent.get(token, (0.0, ""))
                self.replays.append((now, agent, first_at, first_by))
                return invalid_grant()
            self.refreshes += 1
            self.events.append((now, "refresh", family, agent))
            self._spent[token] = (now, agent)
            access, refresh = self._mint(family)
        return Reply(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": self.access_ttl_s,
                "scope": DEFAULT_SCOPE,
                "token_type": "Bearer",
            },
        )

    def family(self, token: str) -> int | None:
        with self._lock:
            return self._family_of.get(token)

    def access_problem(self, token: str, *, count: bool = True) -> str | None:
        """None when the Messages endpoint accepts `token`, else a key of fakeapi.PROBLEMS:
        "revoked" (the family ended), "access_revoked" or "revoked_403" (a rotation superseded
        it: the real service answers either, so each token gets one of them, by its number),
        or "expired". `count=False` asks without counting a rejection (an observer)."""
        with self._lock:
            family = self._family_of.get(token)
            if family is None or family in self.revoked:
                problem: str | None = "revoked"
            elif token in self.superseded:
                problem = "access_revoked" if _number(token) % 2 else "revoked_403"
            elif self._access_expiry.get(token, 0) <= time.time():
                problem = "expired"
            else:
                problem = None
            if problem and count:
                self.rejected_access += 1
            return problem

    def access_ok(self, token: str) -> bool:
        return self.access_problem(token) is None


def _number(token: str) -> int:
    """The serial number _mint gave a token (`...-fam1-000007-f` is 7)."""
    digits = token.rsplit("-", 2)[-2]
    return int(digits) if digits.isdigit() else 0

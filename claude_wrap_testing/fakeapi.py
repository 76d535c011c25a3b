"""A fake Anthropic API on 127.0.0.1, for `ANTHROPIC_BASE_URL` (docs/protocol.md section 7).

`POST /v1/messages` answers one streamed text reply in the Messages SSE format (message_start,
content_block_start, content_block_delta with a text_delta, content_block_stop, message_delta,
message_stop), or the 401 the real API gives for an expired token when the bearer token was
marked with `expire()`. Every other request is logged and answered harmlessly (`{}` with 200),
so a test can see which endpoints the real binary calls without the binary failing on them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The real API's answer for an expired OAuth access token (docs/protocol.md section 6).
EXPIRED_MESSAGE = (
    "OAuth token has expired. Please obtain a new token or refresh your existing token."
)
REVOKED_MESSAGE = "OAuth token has been revoked. Please obtain a new token."
# How the real API refuses a token a refresh superseded (docs/protocol.md section 10, as others
# measured it): a 401 naming the access token, or a 403 permission_error. Claude Code 2.1.332 and
# later read these two, and only these, as a revocation.
ACCESS_REVOKED_MESSAGE = "OAuth access token has been revoked."
PROBLEMS = {
    "expired": (401, "authentication_error", EXPIRED_MESSAGE),
    "revoked": (401, "authentication_error", REVOKED_MESSAGE),
    "access_revoked": (401, "authentication_error", ACCESS_REVOKED_MESSAGE),
    "revoked_403": (403, "permission_error", REVOKED_MESSAGE),
}
MODEL = "claude-fake-e2e-1"


@dataclass(frozen=True)
class ApiRequest:
    """One request as the server saw it. `token` is the bearer token, "" when there was none."""

    method: str
    path: str
    token: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def sse_events(text: str, *, model: str = MODEL) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of one streamed assistant message that answers `text`."""
    yield "message_start", {
        "type": "message_start",
        "message": {
            "id": "msg_fake_e2e_0001",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        },
    }
    yield "content_block_start", {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    yield "content_block_delta", {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }
    yield "message_stop", {"type": "message_stop"}


class FakeAnthropicAPI:
    """Threaded HTTP server on 127.0.0.1:<free port>. Use as a context manager.

    `answer` is the text every Messages call streams back; `expire(token)` makes calls with
    that bearer token get the real API's expired-token 401; `requests` logs everything.
    Two hooks, for a test that needs more: `check_token(token)` returns None to accept a bearer
    token or a key of PROBLEMS ("expired", "revoked", ...) to refuse it (e.g.
    `TokenFamilies.access_problem`, or `TokenServer.check`: the test fixtures set one wherever a
    token server exists, so that a token a refresh revoked is refused as the real API refuses
    it), and `reply(request)` chooses the answer's text per call.
    """

    def __init__(
        self,
        answer: str = "Hello from the fake API",
        *,
        check_token: Callable[[str], str | None] | None = None,
    ) -> None:
        self.answer = answer
        self.check_token = check_token
        self.refused = 0  # Messages calls refused for their token
        self.reply: Callable[[ApiRequest], str] | None = None
        self.requests: list[ApiRequest] = []
        self._expired: set[str] = set()
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> ApiRequest:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization") or ""
                token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
                request = ApiRequest(
                    self.command,
                    self.path,
                    token,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with api._lock:
                    api.requests.append(request)
                return request

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._record()
                self._send(200, b"")

            def do_GET(self) -> None:
                self._record()
                self._send(200, b"{}")

            def do_POST(self) -> None:
                request = self._record()
                if not request.path.startswith("/v1/messages") or "count_tokens" in request.path:
                    self._send(200, b"{}")
                    return
                with api._lock:
                    problem = "expired" if request.token in api._expired else None
                if problem is None and api.check_token is not None:
                    problem = api.check_token(request.token)
                if problem is not None:
                    with api._lock:
                        api.refused += 1
                    status, kind, message = PROBLEMS[problem]
                    error = {"type": "error", "error": {"type": kind, "message": message}}
                    self._send(status, json.dumps(error).encode())
                    return
                text = api.reply(request) if api.reply is not None else api.answer
                stream = b"".join(
                    f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                    for name, data in sse_events(text)
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Content-Length", str(len(stream)))
                self.end_headers()
                self.wfile.write(stream)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def expire(self, token: str) -> None:
        """Answer every later Messages call carrying `token` with the expired-token 401."""
        with self._lock:
            self._expired.add(token)

    def messages_calls(self) -> list[ApiRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.startswith(
                "/v1/messages") and "count_tokens" not in r.path]

    def tokens_used(self) -> list[str]:
        """The bearer tokens of the Messages calls, a call repeated at once with the same token
        counted once: under load the real binary sometimes sends one call twice (seen in CI)."""
        out: list[str] = []
        for call in self.messages_calls():
            if not out or out[-1] != call.token:
                out.append(call.token)
        return out

    def paths(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}" for r in self.requests]

    def __enter__(self) -> FakeAnthropicAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

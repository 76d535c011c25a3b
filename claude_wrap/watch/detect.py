"""Does this output show Claude Code refusing the stored login? Pure logic: no I/O, no clock.

Headless runs: `Watch` is fed stdout chunks as they arrive. It holds bytes back only while what
has been printed so far could still be the whole of a login failure (docs/protocol.md
section 6), and hands them over the moment it cannot: a healthy run goes through at once. At the
end, given the exit status, it says whether the run printed the failure and nothing else, which
is when a retry is safe (no tool can have run, nothing of it reached the consumer).

The failure, as the real binary prints it on stdout (exit 1, stderr empty):
- text: one line, `Not logged in · Please run /login` (or the 401 / revoked forms);
- `--output-format json`: one `{"type":"result","is_error":true,...}` object;
- `--output-format stream-json`: three lines, the `system`/`init` line, a synthetic assistant
  message (`"model": "<synthetic>"`, top-level `"error": "authentication_failed"`) and a result
  with `"is_error": true`; when the server refused the token (401), `system`/`api_retry` lines
  with `"error": "authentication_failed"` come between init and the synthetic message (seen
  with 2.1.197).
A run that merely quotes the phrase (exit 0, `is_error` false, a real model's message) is healthy.

Interactive runs: `TuiMatcher` finds the failure in raw terminal output, where the TUI draws each
word at an absolute column instead of printing spaces: it strips escapes and whitespace, across
chunk boundaries.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays off the hot path (see settings.py)
if TYPE_CHECKING:
    from typing import Any



class Output:
    """What a run's output is, as the Watch sees it so far (strings: see login.State)."""

    UNDECIDED = "undecided"
    HEALTHY = "healthy"
    FAILURE = "failure"
    # The run printed exactly "another Claude Code process is refreshing the login": not a login
    # failure; wait for that process's lock, never refresh over it (relay.py).
    BUSY = "busy"


# Beginnings of the one-line failures (docs/protocol.md section 6), as printed. "Invalid API
# key" is not here: it concerns ANTHROPIC_API_KEY, which no refresh of the stored login can fix.
_LOGIN_HEADS = ("Not logged in", "OAuth token revoked", "Login expired")
# 2.1.332's failures (section 6: after its own refresh met invalid_grant, the expiry forms and
# the revoked form of --print), matched whole: their heads are common words.
_LOGIN_WHOLE = (
    "Failed to authenticate: OAuth session expired and could not be refreshed",
    "OAuth refresh token is no longer valid; run /login to re-authenticate",
    "Your session has expired. Please run /login to sign in again.",
    "Session expired. Please run /login to sign in again.",
    "Failed to authenticate: OAuth token revoked. Please log in again or contact your "
    "administrator.",
    # 2.1.87 and 2.1.197, headless, on a 403 "OAuth token has been revoked" (read in their
    # bundles, seen on a guest whose owner rotated: issue 26); the TUI says "OAuth token revoked
    # · Please run /login" for it. Its organization twin is not here: no token fixes that.
    "Your account does not have access to Claude. Please login again or contact your "
    "administrator.",
)
_401_HEADS = ("Failed to authenticate. API Error: 401", "Please run /login · API Error: 401")
# Not a login failure: another Claude Code process holds the refresh lock, or left it when it
# exited mid-refresh (section 6, as 2.1.332 and later print it: --print, json and stream-json
# alike; then the interactive form). A refresh of ours over it would spend the token that process
# is spending: wait for its lock instead.
BUSY_LOCK_FORMS = (
    "Failed to refresh OAuth token: another Claude Code process is refreshing it or exited "
    "mid-refresh",
    "Could not refresh your login because another Claude Code process is refreshing it (or "
    "exited mid-refresh)",
)
# Not failures a refresh can fix (section 6), passed through untouched with no token request:
# the login reached its time limit (only /login helps), and organization ("hybrid" / gateway)
# sign-ins, which are not the stored login at all.
LOGIN_ENDED_FORMS = (
    "Login reached its time limit",
    "Failed to authenticate: this login reached its time limit",
)
ORGANIZATION_FORMS = (
    "Not logged in · Run /status for details",
    "Not logged in · /status",
    "No usable connection · /status",
    "Not signed in to gateway · /login",
    "Run /status for details · API Error:",
)
# json / stream-json `api_error` (2.1.337): a structural signal, judged before any wording.
API_LOGIN_FAILURES = ("no_credential", "token_revoked")
# The headless watcher holds a first line back only while it may become one of these, in the
# case each version prints, so that healthy text goes through from its first byte.
_HEADS = tuple(
    h.encode() for h in (*_LOGIN_HEADS, *_LOGIN_WHOLE, *_401_HEADS, BUSY_LOCK_FORMS[0])
)
# The text judge compares lower-case, with runs of blanks made one space.
_LOW_LOGIN = tuple(h.lower() for h in _LOGIN_HEADS)
_LOW_WHOLE = tuple(h.lower().rstrip(".") for h in _LOGIN_WHOLE)
_LOW_401 = tuple(h.lower() for h in _401_HEADS)
_LOW_BUSY = tuple(h.lower() for h in BUSY_LOCK_FORMS)
_LOW_NOT_OURS = tuple(h.lower() for h in (*LOGIN_ENDED_FORMS, *ORGANIZATION_FORMS))
MAX_HOLD = 1 << 20  # a failure is a few hundred bytes; past this, nothing held can be one


def _low(text: str) -> str:
    return " ".join(text.lower().split())


def is_failure_text(text: str) -> bool:
    """True for the text of a login failure message, as a whole (not a text quoting one)."""
    text = text.strip()
    if len(text) > 4096 or "\n" in text:
        return False
    low = _low(text)
    if low.startswith(_LOW_BUSY) or low.startswith(_LOW_NOT_OURS):
        return False
    if low.startswith(_LOW_401) or low.rstrip(".") in _LOW_WHOLE:
        return True
    return low.startswith(_LOW_LOGIN) and low.endswith("/login")


def is_busy_lock(text: str) -> bool:
    """Another Claude Code process holds the refresh lock: wait, never refresh over it."""
    text = text.strip()
    return len(text) <= 4096 and "\n" not in text and _low(text).startswith(_LOW_BUSY)


def is_beyond_refresh(text: str) -> bool:
    """The login reached its time limit, or an organization sign-in failed: no refresh of the
    stored login fixes either, so the output goes through as it is."""
    return _low(text).startswith(_LOW_NOT_OURS)


def needs_force(text: str) -> bool:
    """The server refused a token that looked fine: a plain re-read cannot fix that."""
    return "401" in text or "revoked" in text.lower()


def _text_kind(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    if is_failure_text(text):
        return Output.FAILURE
    return Output.BUSY if is_busy_lock(text) else None


def _api_error_kind(obj: Any) -> str | None:
    """2.1.337's `api_error`: FAILURE for a login a refresh repairs, HEALTHY for any other value
    (an organization sign-in, a request too large, ...: none of ours), None when absent."""
    value = obj.get("api_error")
    if not isinstance(value, str):
        return None
    return Output.FAILURE if value in API_LOGIN_FAILURES else Output.HEALTHY


def _result_kind(obj: Any) -> str | None:
    """FAILURE or BUSY for an error result that is one, else None."""
    if not (isinstance(obj, dict) and obj.get("type") == "result" and obj.get("is_error") is True):
        return None
    by_api = _api_error_kind(obj)
    if by_api is not None:
        return Output.FAILURE if by_api == Output.FAILURE else None
    text = obj.get("result")
    if isinstance(text, str) and is_beyond_refresh(text):
        return None
    # 2.1.332's results carry the API's status (section 6): a structural signal, before wording.
    if obj.get("api_error_status") == 401:
        return Output.FAILURE
    return _text_kind(text)


def _is_init(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "system" and obj.get("subtype") == "init"


def _synthetic_kind(obj: Any) -> str | None:
    """FAILURE or BUSY for claude's own (`<synthetic>`) assistant message saying so, else None."""
    if not isinstance(obj, dict) or obj.get("type") != "assistant":
        return None
    message = obj.get("message")
    if not isinstance(message, dict) or message.get("model") != "<synthetic>":
        return None
    by_api = _api_error_kind(obj)
    if by_api is not None:
        return Output.FAILURE if by_api == Output.FAILURE else None
    content = message.get("content")
    texts = [
        t for t in (
            [c.get("text") for c in content if isinstance(c, dict)]
            if isinstance(content, list) else []
        ) if isinstance(t, str)
    ]
    if any(is_beyond_refresh(t) for t in texts):
        return None
    if any(is_busy_lock(t) for t in texts):
        # Tagged `"error": "server_error"` (section 6), as an API's 5xx is: only the text
        # tells the busy lock apart, whatever the tag.
        return Output.BUSY
    if obj.get("error") == "authentication_failed":
        return Output.FAILURE
    return Output.FAILURE if any(is_failure_text(t) for t in texts) else None


def _is_auth_retry(obj: Any) -> bool:
    # stream-json, 401: `{"type":"system","subtype":"api_retry","error_status":401,
    # "error":"authentication_failed",...}` lines come between init and the synthetic message.
    return (
        isinstance(obj, dict)
        and obj.get("type") == "system"
        and obj.get("subtype") == "api_retry"
        and (obj.get("error") == "authentication_failed" or obj.get("error_status") == 401)
    )


def _is_error_result(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "result" and obj.get("is_error") is True


def _parse(line: bytes) -> Any:
    import json  # noqa: PLC0415 - only when the output starts like JSON: healthy text runs skip it

    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


class Watch:
    """Incremental judge of one headless run's stdout.

    `feed(chunk)` returns the bytes that may go to the consumer now; `finish(status)` ends the
    run and returns Output.FAILURE (the held output is exactly the failure: retry instead of
    showing it), BUSY (exactly the busy-lock message: wait for the lock, then retry) or HEALTHY
    (then `release()` gives whatever is still held).
    """

    __slots__ = ("_held", "_lines", "kind", "message", "state")

    def __init__(self) -> None:
        self.state = Output.UNDECIDED
        self.message = ""  # the failure's text, once seen
        self.kind = Output.FAILURE  # or BUSY: what the message is
        self._held = bytearray()
        self._lines: list[Any] = []  # judgements of the complete lines held so far

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, chunk: bytes) -> bytes:
        if self.state == Output.HEALTHY:
            return chunk
        self._held += chunk
        self._judge(final=False)
        return self.release() if self.state == Output.HEALTHY else b""

    def release(self) -> bytes:
        """Give up watching: everything held goes to the consumer, and so does all that follows."""
        self.state = Output.HEALTHY
        out = bytes(self._held)
        self._held.clear()
        return out

    def finish(self, status: int) -> str:
        if self.state == Output.UNDECIDED and self._held:
            self._judge(final=True)
        if self.state == Output.UNDECIDED and self._held and status == 1 and self.message:
            self.state = self.kind
        elif self.state != Output.HEALTHY:
            self.state = Output.HEALTHY
        return self.state

    def _judge(self, *, final: bool) -> None:
        buf = bytes(self._held)
        if len(buf) > MAX_HOLD:
            self.state = Output.HEALTHY
            return
        if buf.startswith(b"{"):
            self._judge_json(buf, final=final)
        else:
            self._judge_text(buf, final=final)

    def _judge_text(self, buf: bytes, *, final: bool) -> None:
        first, newline, rest = buf.partition(b"\n")
        if not any(h.startswith(first) or first.startswith(h) for h in _HEADS):
            self.state = Output.HEALTHY
            return
        if not newline and not final:
            return  # the first line is still coming
        if rest:
            self.state = Output.HEALTHY  # more than the one failure line
            return
        text = first.decode("utf-8", "replace").rstrip("\r")
        kind = _text_kind(text)
        if kind is None:
            self.state = Output.HEALTHY
        else:
            self.message, self.kind = text, kind

    def _judge_json(self, buf: bytes, *, final: bool) -> None:
        lines = buf.split(b"\n")
        partial = lines.pop()
        if final and partial:
            lines.append(partial)
            partial = b""
        if partial and not partial.startswith(b"{"):
            self.state = Output.HEALTHY
            return
        self.message = ""
        phase = "start"
        said = None  # what the synthetic message said: the result must say the same
        for i, line in enumerate(lines):
            if i == len(self._lines):
                self._lines.append(_parse(line))
            obj = self._lines[i]
            kind = None
            if phase == "start" and (kind := _result_kind(obj)) is not None:
                phase = "done"
            elif phase == "start" and _is_init(obj):
                phase = "init"
            elif phase == "init" and _is_auth_retry(obj):
                pass  # the API refused the token and claude tried again: still the failure
            elif phase == "init" and (said := _synthetic_kind(obj)) is not None:
                phase = "synthetic"
            elif phase == "synthetic" and _is_error_result(obj) and (
                said == Output.FAILURE or _result_kind(obj) == Output.BUSY
            ):
                kind, phase = said, "done"
            else:
                self.state = Output.HEALTHY
                return
            if phase == "done":
                if i != len(lines) - 1 or partial:
                    self.state = Output.HEALTHY  # something follows the failure
                    return
                result = obj.get("result")
                self.kind = kind or Output.FAILURE
                self.message = result if isinstance(result, str) else "authentication failed"


# --- the interactive TUI -------------------------------------------------------------------------

# The failures as the TUI draws them, lower-case, with every escape and every blank removed:
# 2.1.197 draws words at absolute columns (ESC[<n>G), 2.1.332 with real spaces in colour escapes,
# and "Run" became "run".
TUI_PATTERNS = tuple(
    p.replace(" ", "").lower().encode()
    for p in (
        "Not logged in · Run /login",
        "Not logged in · Please run /login",
        "Please run /login · API Error: 401",
        "OAuth token revoked · Please run /login",
        "Login expired · Please run /login",
        "Failed to authenticate. API Error: 401",
        # 2.1.332 (docs/protocol.md section 6)
        "Failed to authenticate: OAuth session expired and could not be refreshed",
        "OAuth refresh token is no longer valid; run /login to re-authenticate",
        "Your session has expired. Please run /login to sign in again.",
        "Session expired. Please run /login to sign in again.",
        # 2.1.332 and later (section 6); the time limit and the organization sign-ins are
        # deliberately absent: no refresh fixes those.
        "Failed to authenticate: OAuth token revoked. Please log in again or contact your "
        "administrator.",
    )
)
_TAIL = max(map(len, TUI_PATTERNS))


class TuiMatcher:
    """Finds a login failure in raw TUI output fed chunk by chunk.

    `feed` returns the matched failure (normalised text) or None. Each match consumes the text it
    matched, so one drawing of the status line is one match.
    """

    __slots__ = ("_carry", "_res", "_tail")

    def __init__(self) -> None:
        import re  # noqa: PLC0415 - interactive runs only

        self._carry = b""  # an escape sequence cut off at the end of the last chunk
        self._tail = b""  # the end of the normalised text, for phrases split across chunks
        self._res = (
            # CSI, OSC (ended by BEL or ST), charset selection, any other two-byte escape;
            # then every control character and blank.
            re.compile(
                rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                rb"|\x1b[()*+].|\x1b[^\[\]]|[\x00-\x20\x7f]",
                re.DOTALL,
            ),
            re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[()*+])?\Z"),
        )

    def feed(self, chunk: bytes) -> str | None:
        strip, unfinished = self._res
        data = self._carry + chunk
        cut = unfinished.search(data)
        if cut is not None and len(data) - cut.start() < 4096:
            data, self._carry = data[: cut.start()], data[cut.start() :]
        else:
            self._carry = b""
        text = self._tail + strip.sub(b"", data).lower()
        found = None
        best = len(text)
        for pattern in TUI_PATTERNS:
            at = text.find(pattern)
            if 0 <= at < best:
                found, best = pattern, at
        if found is not None:
            text = text[best + len(found) :]
        self._tail = text[-_TAIL:]
        return found.decode() if found is not None else None

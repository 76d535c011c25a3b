"""The token endpoint: the only module that talks HTTP (httpx, imported only when refreshing).

A refresh token is single-use. So the one rule above all: once a request may have reached the
server, it is never sent again in this run. Only failures that prove the token was not consumed
are retried: the connection never opened (refused, DNS, TLS), or the server answered 5xx or 429.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from claude_wrap import __version__
from claude_wrap.errors import (
    RefreshOutcomeUnknownError,
    RefreshRejectedError,
    RefreshUnavailableError,
)

CONNECT_TIMEOUT_S = 5.0
MAX_ATTEMPTS = 4
BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
RETRY_AFTER_CAP_S = 10.0


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        import email.utils  # noqa: PLC0415

        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - time.time())


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str):
            return error
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return ""


def validate(body: object) -> dict[str, Any]:
    """A usable token response, or ValueError saying what is wrong with it."""
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the answer has no access_token")
    expires = body.get("expires_in")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not expires > 0:
        raise ValueError("the answer's expires_in is not a positive number")
    if expires > 10 * 365 * 86400:
        raise ValueError("the answer's expires_in is implausibly large")
    refresh = body.get("refresh_token")
    if refresh is not None and not isinstance(refresh, str):
        raise ValueError("the answer's refresh_token is not a string")
    scope = body.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise ValueError("the answer's scope is not a string")
    return body


def refresh_tokens(
    refresh_token: str,
    scopes: list[str],
    *,
    url: str,
    client_id: str,
    budget_s: float,
    sleep: Any = time.sleep,
    latest: Callable[[], tuple[str, list[str]]] | None = None,
    user_agent: str | None = None,
    sent: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """POST the refresh grant as Claude Code does; returns the validated token response.

    `user_agent`: the real binary's (binary.user_agent); ours when not given.
    `latest`, when given, is called right before each request goes out, with the client built:
    it returns the (refresh token, scopes) to send now, or raises to send nothing. A tool that
    takes no lock may spend the token between our read of the file and our request; asking the
    file again at the last moment shrinks that window from the client's setup (an SSL context,
    a second or more on a loaded machine) to a few microseconds.
    `sent`, when given, is called once a request has left in full (before its answer).
    """
    import httpx  # noqa: PLC0415 - only a process that really refreshes pays for it

    # The real binary's own User-Agent (binary.py): the endpoint's WAF is reported to answer 429
    # to some User-Agents, so we look like the release in use.
    agent = user_agent or f"claude-wrap/{__version__}"
    headers = {"Content-Type": "application/json", "User-Agent": agent}
    attempt = 0
    reason = ""
    retry_after: float | None = None
    trace = _on_sent(sent)
    # trust_env: honour HTTPS_PROXY / NO_PROXY / SSL_CERT_FILE as Claude Code does, or users
    # behind a corporate proxy could never refresh.
    with httpx.Client(follow_redirects=False) as client:
        # The budget is for the network, so it starts once the client is built: loading the CA
        # bundle can take seconds on a loaded machine, and used to leave no time for any request.
        deadline = time.monotonic() + budget_s
        while attempt < MAX_ATTEMPTS:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            attempt += 1
            timeout = httpx.Timeout(remaining, connect=min(CONNECT_TIMEOUT_S, remaining))
            if latest is not None:
                refresh_token, scopes = latest()
            tokens, reason, retry_after = _post(
                client,
                url,
                _grant(refresh_token, scopes, client_id),
                headers=headers,
                timeout=timeout,
                trace=trace,
                budget_s=budget_s,
                attempt=attempt,
            )
            if tokens is not None:
                return tokens
            if attempt >= MAX_ATTEMPTS:
                break
            pause = _pause(attempt, reason, retry_after, deadline)
            if pause is None:
                break
            sleep(pause)
    raise RefreshUnavailableError(reason or "out of time", attempt, retry_after)


def _grant(token: str, wanted: list[str], client_id: str) -> str:
    """The refresh grant's body, as Claude Code sends it."""
    return json.dumps(
        {
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": client_id,
            "scope": " ".join(wanted),
        }
    )


def _on_sent(sent: Callable[[], None] | None) -> Callable[[str, object], None]:
    """httpx's trace hook that calls `sent` once a request is on the wire."""

    def trace(event: str, _info: object) -> None:
        # httpcore's trace extension (http11.send_request_body.complete, or http2's): the
        # request is on the wire. Were the name ever to change, `sent` would not be called
        # and the caller's waiters would warm up later, after the answer: slower, never wrong.
        if sent is not None and event.endswith(".send_request_body.complete"):
            try:
                sent()
            except Exception:  # noqa: BLE001, S110 - the token is on the wire: nothing of
                pass  # ours may now keep its answer from being read (and the new token stored)

    return trace


def _post(
    client: httpx.Client,
    url: str,
    payload: str,
    *,
    headers: dict[str, str],
    timeout: httpx.Timeout,
    trace: Callable[[str, object], None],
    budget_s: float,
    attempt: int,
) -> tuple[dict[str, Any] | None, str, float | None]:
    """One request: the token response, or (None, reason, Retry-After) when it may be sent again
    (the connection never opened, or the server said try later); raises for everything else."""
    import httpx  # noqa: PLC0415 - loaded already by refresh_tokens

    try:
        response = client.post(
            url,
            content=payload,
            headers=headers,
            timeout=timeout,
            extensions={"trace": trace},
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # The connection never opened, so the token never left: safe to try again.
        return None, _connect_reason(exc), None
    except httpx.TimeoutException:
        raise RefreshOutcomeUnknownError(f"no answer within {budget_s:.0f} s") from None
    except httpx.HTTPError as exc:
        raise RefreshOutcomeUnknownError(
            f"the connection failed mid-request: {type(exc).__name__}"
        ) from None
    return _answer(response, attempt)


def _answer(
    response: httpx.Response, attempt: int
) -> tuple[dict[str, Any] | None, str, float | None]:
    """What the server's answer means: the token response (200), or (None, reason, Retry-After)
    for an answer that proves the token unspent (429, 5xx); raises for every other answer."""
    status = response.status_code
    if status == 200:
        try:
            return validate(response.json()), "", None
        except ValueError as exc:
            # The server processed the request: the old token may well be spent.
            text = str(exc) if "answer" in str(exc) else "the answer is not JSON"
            raise RefreshOutcomeUnknownError(text) from None
    code = _error_code(response)
    if code == "invalid_grant" or status in (400, 401):
        raise RefreshRejectedError(status, code or f"HTTP {status}")
    if status == 429 or status >= 500:
        return None, f"HTTP {status}", _retry_after(response)
    raise RefreshUnavailableError(f"unexpected HTTP {status}", attempt)


def _pause(attempt: int, reason: str, retry_after: float | None, deadline: float) -> float | None:
    """How long to wait before the next attempt; None when the budget leaves no time for one.
    Raises when the server asks for a longer wait than the cap or the budget allows."""
    pause = BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]
    if retry_after is not None:
        if retry_after > min(RETRY_AFTER_CAP_S, deadline - time.monotonic()):
            raise RefreshUnavailableError(reason, attempt, retry_after)
        pause = max(pause, retry_after)
    if time.monotonic() + pause >= deadline:
        return None
    return pause


def _connect_reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "name or service" in text or "nodename" in text or "name resolution" in text:
        return "the host name could not be resolved"
    if "ssl" in text or "certificate" in text or "tls" in text:
        return "the TLS handshake failed"
    if "refused" in text:
        return "connection refused"
    if type(exc).__name__ == "ConnectTimeout":
        return "the connection timed out"
    return "the connection failed"

"""The judge is a pure function of the content and the clock: tested as plain functions."""

from __future__ import annotations

from typing import Any

import pytest

from claude_wrap.config.protocol import DEFAULT_SCOPES
from claude_wrap.judging import login

NOW = 1_800_000_000_000
WINDOW = 600_000


def doc(**oauth: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "accessToken": "sk-ant-oat01-xxxxxxxxxxxx1234",
        "refreshToken": "sk-ant-ort01-yyyyyyyyyyyy",
        "expiresAt": NOW + 3_600_000,
        "scopes": ["user:inference", "user:profile"],
    }
    base.update(oauth)
    return {"claudeAiOauth": {k: v for k, v in base.items() if v is not ...}}


@pytest.mark.parametrize(
    ("content", "state", "usable"),
    [
        (doc(), login.State.OK, True),
        (doc(expiresAt=NOW + WINDOW - 1), login.State.EXPIRING, True),
        (doc(expiresAt=NOW + WINDOW), login.State.EXPIRING, True),
        (doc(expiresAt=NOW + WINDOW + 1), login.State.OK, True),
        (doc(expiresAt=NOW), login.State.EXPIRED, False),
        (doc(expiresAt=NOW - 1), login.State.EXPIRED, False),
        (doc(scopes=...), login.State.MISSING_SCOPES, False),
        (doc(scopes=None), login.State.MISSING_SCOPES, False),
        (doc(scopes=["user:profile"]), login.State.MISSING_SCOPES, False),
        (doc(scopes="user:inference user:profile"), login.State.MISSING_SCOPES, False),
        (doc(accessToken="", refreshToken="", expiresAt=0), login.State.LOGGED_OUT, False),
        (doc(accessToken=""), login.State.EXPIRED, False),
        (doc(refreshToken=..., expiresAt=NOW - 1), login.State.NO_REFRESH_TOKEN, False),
        (doc(refreshToken=..., scopes=...), login.State.NO_REFRESH_TOKEN, False),
        # Fine as it is, even without a refresh token: Claude Code accepts it.
        (doc(refreshToken=...), login.State.OK, True),
        (doc(expiresAt=...), login.State.OK, True),
        ({"mcpOAuth": {}}, login.State.LOGGED_OUT, False),
        ([], login.State.MALFORMED, False),
        ("text", login.State.MALFORMED, False),
        ({"claudeAiOauth": []}, login.State.MALFORMED, False),
        (doc(expiresAt="1800000000000"), login.State.MALFORMED, False),
        (doc(expiresAt=1_800_000_000), login.State.MALFORMED, False),  # seconds, not ms
        (doc(expiresAt=-5), login.State.MALFORMED, False),
        (doc(expiresAt=10**20), login.State.MALFORMED, False),
        (doc(expiresAt=True), login.State.MALFORMED, False),
        (doc(expiresAt=float("nan")), login.State.MALFORMED, False),
        (doc(accessToken=12), login.State.MALFORMED, False),
        (doc(refreshToken=["x"]), login.State.MALFORMED, False),
    ],
)
def test_states(content: Any, state: str, usable: bool) -> None:
    verdict = login.judge(content, NOW, WINDOW)
    assert verdict.state == state, verdict.detail
    assert verdict.usable is usable
    if state not in (login.State.OK,):
        assert verdict.detail


def test_messages_say_what_is_wrong() -> None:
    assert "seconds" in login.judge(doc(expiresAt=1_800_000_000), NOW, WINDOW).detail
    assert "scopes is a string" in login.judge(doc(scopes="a b"), NOW, WINDOW).detail
    assert "not a JSON object" in login.judge([], NOW, WINDOW).detail


def test_access_tail_is_at_most_four_characters() -> None:
    verdict = login.judge(doc(), NOW, WINDOW)
    assert verdict.access_tail == "1234"
    assert login.judge(doc(accessToken="short"), NOW, WINDOW).access_tail == ""


def test_merged_keeps_every_other_field_in_place() -> None:
    original: dict[str, Any] = {
        "claudeAiOauth": {
            "accessToken": "old-a",
            "refreshToken": "old-r",
            "expiresAt": 1,
            "subscriptionType": "max",
            "rateLimitTier": "t",
            "clientId": "c",
            "unknownField": {"nested": [1, 2]},
        },
        "mcpOAuth": {"srv": {"accessToken": "mcp"}},
        "zzz": None,
    }
    response = {"access_token": "new-a", "refresh_token": "new-r", "expires_in": 100}
    out = login.merged(original, response, NOW)
    oauth = out["claudeAiOauth"]
    assert list(oauth) == [
        "accessToken",
        "refreshToken",
        "expiresAt",
        "scopes",
        "subscriptionType",
        "rateLimitTier",
        "clientId",
        "unknownField",
    ]
    assert oauth["accessToken"] == "new-a"
    assert oauth["refreshToken"] == "new-r"
    assert oauth["expiresAt"] == NOW + 100_000
    assert oauth["scopes"] == list(DEFAULT_SCOPES)
    assert oauth["unknownField"] == {"nested": [1, 2]}
    assert out["mcpOAuth"] == original["mcpOAuth"]
    assert list(out) == ["claudeAiOauth", "mcpOAuth", "zzz"]
    assert original["claudeAiOauth"]["accessToken"] == "old-a"  # input untouched


@pytest.mark.parametrize(
    ("stored", "scope", "expected"),
    [
        (["user:inference", "x"], "a user:inference", ["a", "user:inference"]),
        (["user:inference", "x"], None, ["user:inference", "x"]),
        (None, None, list(DEFAULT_SCOPES)),
        (["user:profile"], None, list(DEFAULT_SCOPES)),
        ("user:inference", None, list(DEFAULT_SCOPES)),
    ],
)
def test_merged_scopes(stored: Any, scope: str | None, expected: list[str]) -> None:
    content = doc(scopes=stored)
    response: dict[str, Any] = {"access_token": "a", "expires_in": 10}
    if scope is not None:
        response["scope"] = scope
    out = login.merged(content, response, NOW)
    assert out["claudeAiOauth"]["scopes"] == expected
    # No refresh_token in the answer: the old one is kept.
    assert out["claudeAiOauth"]["refreshToken"] == "sk-ant-ort01-yyyyyyyyyyyy"


def test_request_scopes() -> None:
    assert login.request_scopes(doc()) == ["user:inference", "user:profile"]
    assert login.request_scopes(doc(scopes=...)) == list(DEFAULT_SCOPES)
    assert login.request_scopes([]) == list(DEFAULT_SCOPES)

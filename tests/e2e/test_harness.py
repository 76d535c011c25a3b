"""The harness itself: network isolation, and the fake API speaking the Messages stream format."""

from __future__ import annotations

import errno
import http.client
import json
import socket

import pytest

from .fakeapi import EXPIRED_MESSAGE, FakeAnthropicAPI
from .install import CLAUDE_CODE_VERSION
from .isolation import ClaudeBinary, ClaudeHome
from .netns import namespace_id


def test_only_loopback_is_reachable(loopback_only: str) -> None:
    assert namespace_id() == loopback_only
    # 192.0.2.1 is TEST-NET-1, unroutable by design: even outside the namespace this sends
    # nothing anywhere. Inside it there is no route at all, so connect fails at once instead
    # of timing out.
    with pytest.raises(OSError) as caught:
        socket.create_connection(("192.0.2.1", 443), timeout=5)
    assert caught.value.errno == errno.ENETUNREACH
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("platform.claude.com", 443)


def test_loopback_works_inside(fake_api: FakeAnthropicAPI) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", fake_api.port, timeout=10)
    connection.request("HEAD", "/")
    assert connection.getresponse().status == 200


def _post_messages(api: FakeAnthropicAPI, token: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    body = json.dumps({"model": "m", "max_tokens": 5, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]})
    connection.request("POST", "/v1/messages?beta=true", body=body,
                       headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/json"})
    return connection.getresponse()


def test_fake_api_streams_one_text_message(fake_api: FakeAnthropicAPI) -> None:
    fake_api.answer = "streamed words"
    response = _post_messages(fake_api, "sk-ant-oat01-harness")
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    events = [
        block.split("\n") for block in response.read().decode().strip().split("\n\n")
    ]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == ["message_start", "content_block_start", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert [d["type"] for d in datas] == names
    assert datas[2]["delta"] == {"type": "text_delta", "text": "streamed words"}
    assert fake_api.messages_calls()[0].token == "sk-ant-oat01-harness"


def test_fake_api_answers_expired_tokens_with_401(fake_api: FakeAnthropicAPI) -> None:
    fake_api.expire("sk-ant-oat01-old")
    response = _post_messages(fake_api, "sk-ant-oat01-old")
    assert response.status == 401
    assert json.loads(response.read()) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": EXPIRED_MESSAGE},
    }
    assert _post_messages(fake_api, "sk-ant-oat01-new").status == 200


def test_the_pinned_binary_runs(claude: ClaudeBinary, claude_home: ClaudeHome) -> None:
    run = claude.run(claude_home, "--version")
    assert (run.returncode, run.out) == (0, f"{CLAUDE_CODE_VERSION} (Claude Code)\n")

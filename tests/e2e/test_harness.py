"""The harness itself: network isolation, and the fake API speaking the Messages stream format."""

from __future__ import annotations

import errno
import http.client
import json
import socket
import ssl

import pytest

from claude_wrap_testing.fakeapi import EXPIRED_MESSAGE, FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome
from claude_wrap_testing.netns import namespace_id
from claude_wrap_testing.tlsproxy import CertFiles, OAuthProxy
from claude_wrap_testing.tokenserver import TokenServer


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


def test_the_pinned_binary_runs(
    claude: ClaudeBinary, claude_version: str, claude_home: ClaudeHome
) -> None:
    run = claude.run(claude_home, "--version")
    assert (run.returncode, run.out) == (0, f"{claude_version} (Claude Code)\n")


def _through(proxy: OAuthProxy, ca: CertFiles, host: str) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(ca.ca))
    connection = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context, timeout=10)
    connection.set_tunnel(host, 443)
    return connection


def test_proxy_serves_claude_hosts_with_the_throwaway_ca(
    oauth_proxy: OAuthProxy, throwaway_ca: CertFiles, token_server: TokenServer
) -> None:
    connection = _through(oauth_proxy, throwaway_ca, "platform.claude.com")
    body = json.dumps({"grant_type": "refresh_token", "refresh_token": "sk-ant-ort01-h"})
    connection.request("POST", "/v1/oauth/token", body=body,
                       headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 200
    assert json.loads(answer.read()) == token_server.issued[0]
    assert token_server.refresh_tokens_seen == ["sk-ant-ort01-h"]

    connection = _through(oauth_proxy, throwaway_ca, "api.anthropic.com")
    connection.request("GET", "/api/oauth/profile", headers={"Authorization": "Bearer tok"})
    answer = connection.getresponse()
    assert answer.status == 200
    assert json.loads(answer.read())["organization"]["organization_type"] == "claude_max"
    assert oauth_proxy.tunnels == ["platform.claude.com:443", "api.anthropic.com:443"]
    assert [(r.host, r.method, r.path, r.token) for r in oauth_proxy.requests] == [
        ("platform.claude.com", "POST", "/v1/oauth/token", ""),
        ("api.anthropic.com", "GET", "/api/oauth/profile", "tok"),
    ]


def test_proxy_refuses_any_other_host(
    oauth_proxy: OAuthProxy, throwaway_ca: CertFiles
) -> None:
    connection = _through(oauth_proxy, throwaway_ca, "example.com")
    with pytest.raises(OSError, match="403"):
        connection.request("GET", "/")
    assert oauth_proxy.tunnels == ["example.com:443"]
    assert oauth_proxy.requests == []

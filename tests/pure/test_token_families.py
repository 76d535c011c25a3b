"""The realistic token endpoint's bookkeeping alone, without its server: an access token past
its lifetime is refused (the server's own checks: tests/process/test_tokenserver.py)."""

from __future__ import annotations

from claude_wrap_testing.tokenserver import TokenFamilies


def test_access_tokens_expire() -> None:
    families = TokenFamilies(access_ttl_s=0.0)
    login = families.login()
    assert not families.access_ok(login["accessToken"])
    assert families.rejected_access == 1

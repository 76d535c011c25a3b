"""Test support, shared by tests/ and bench/: the fakes and servers they run against, and the
harness around the real Claude Code. Not part of claude-wrap (pyproject installs only
`claude_wrap`), and it never imports `tests` (tests/pure/test_architecture.py checks it).

- Fakes at the edges: `fakeclaude.py` (a `claude` executable), `fakesecurity.py` (macOS's
  `security`), `tokenserver.py` (the OAuth token endpoint on loopback), `sshd.py` (a real sshd
  for the guests), `fakeapi.py` (the Anthropic API the real binary talks to).
- The real binary, isolated: `install.py` (npm, one folder per version), `isolation.py` (a HOME
  and environment of its own), `netns.py` (a loopback-only network namespace), `tlsproxy.py`
  (the real binary's HTTPS, relayed to the fakes), `wrapped.py` (the shim in front of it),
  `clients.py` and `drivers/` (the real clients: the Agent SDKs, Zed's ACP adapter).
- The soak: `soak.py`, and `hostile.py`, the refresher it races.
"""

"""The shim's hot path: every `claude` run passes through here, so these modules import nothing
beyond `posix`, `sys` and each other (config/fspath.py says why). Installed shims run
`from claude_wrap.shim import main`: that name stays here."""

from claude_wrap.shim.launch import main

__all__ = ["main"]

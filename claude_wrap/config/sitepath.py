"""Leaving the hot path: the installed shim runs Python with -S (no `site`), which saves the
import of site-packages' .pth files on every healthy run. Whatever needs httpx, loguru, psutil or
pexpect calls `enable_site()` first."""

from __future__ import annotations

import sys


def enable_site() -> None:
    """Put site-packages back on sys.path, once."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site  # noqa: PLC0415

        site.main()

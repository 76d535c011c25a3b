"""Small files of claude-wrap's own (caches, memories, records), replaced whole and private.

Each is written to a temporary file beside it, 0600 from birth (never a chmod afterwards), then
renamed over the old one: a reader sees the old content or the new, never half. None of them
holds a token, and none is worth failing for: a write that cannot be done is reported as False
and the caller goes on. The login itself is written by store.py, durably and under the locks.
"""

from __future__ import annotations

import os

from claude_wrap.config import fspath


def replace(path: str, data: bytes) -> bool:
    """Put `data` at `path` atomically, creating its folders 0700; False when it cannot."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fspath.make_private_dirs(os.path.dirname(path))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True

"""binary.py asks the real claude its version at most once per binary: a stand-in claude that
counts its runs (the rest of binary.py's checks run none: tests/pure/test_binary.py)."""

from __future__ import annotations

import os
from pathlib import Path

from claude_wrap.config.settings import Settings
from claude_wrap.refresh import binary
from tests.pure.test_binary import counting_claude


def test_version_is_asked_once_and_cached_on_path_size_and_mtime(tmp_path: Path) -> None:
    exe = counting_claude(tmp_path)
    count = tmp_path / "count"
    env = {
        **os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "COUNT_FILE": str(count),
    }
    assert binary.version_of(str(exe), Settings(env)) == "2.1.250"
    assert binary.version_of(str(exe), Settings({**env, "ANSWER": "9.9.9"})) == "2.1.250"  # cached
    assert count.read_text() == "x"
    # An update replaces the binary (another mtime): asked again.
    st = exe.stat()
    os.utime(exe, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert binary.version_of(str(exe), Settings({**env, "ANSWER": "2.1.400"})) == "2.1.400"
    assert count.read_text() == "xx"

"""paths.py keeps errors.py off the hot path, seen from a real interpreter (a process, so not in
tests/pure/test_settings.py with the rest of the settings' checks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_paths_leaves_errors_py_off_the_hot_path() -> None:
    code = (
        "import sys, claude_wrap.config.paths as p\n"
        "p.credentials_file({'HOME': '/h'}); p.refresh_window({})\n"
        "print('claude_wrap.errors' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.strip() == "False"

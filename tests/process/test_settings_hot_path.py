"""settings.py keeps errors.py off the hot path, and a Settings for one HOME writes nothing under
another, seen from a real interpreter (processes, so not in tests/pure/test_settings.py with the
rest of the settings' checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import login_doc


def test_settings_leaves_errors_py_off_the_hot_path() -> None:
    code = (
        "import sys\nfrom claude_wrap.config.settings import Settings\n"
        "Settings({'HOME': '/h'}).credentials_file; Settings({}).refresh_window\n"
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


# Issue 27: `refresher.ensure_fresh({"HOME": a, ...})` run with HOME=b wrote b's verdict cache and
# logins/*.json (two functions fell back to the process's environment). Now only the Settings
# given says where anything goes.
LEAK = """
import sys
from claude_wrap.config.settings import Settings
from claude_wrap.refresh import refresher
settings = Settings({"HOME": sys.argv[1], "PATH": "/usr/bin:/bin"})
print(refresher.ensure_fresh(settings).after.state)
"""


def test_a_settings_for_one_home_writes_nothing_under_the_processs_home(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / ".claude").mkdir(parents=True)
    b.mkdir()
    (a / ".claude" / ".credentials.json").write_text(json.dumps(login_doc()))
    done = subprocess.run(
        [sys.executable, "-c", LEAK, str(a)],
        env={"HOME": str(b), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert sorted(p.name for p in b.rglob("*")) == []
    state = a / ".local" / "state" / "claude-wrap"
    assert (state / "verdict").is_file()
    assert list((state / "logins").glob("*.json"))

"""The log's set-up: once per process, whichever threads ask for it at the same moment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# Two threads set the log up at once; a barrier inside the set-up lets both in together if
# nothing keeps the second one out (and times out, harmlessly, if something does).
TWO_AT_ONCE = r"""
import sys, threading
sys.path.insert(0, sys.argv[1])
from claude_wrap.logfile import log
from claude_wrap.config import fspath
from claude_wrap.config.settings import Settings
barrier = threading.Barrier(2, timeout=2)
make_dirs = fspath.make_private_dirs
def both_inside(folder):
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    make_dirs(folder)
fspath.make_private_dirs = both_inside
env = Settings({"CLAUDE_WRAP_LOG_FILE": sys.argv[2], "HOME": sys.argv[3]})
threads = [threading.Thread(target=log.logger, args=(env,)) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
log.logger(env).info("the one line")
"""


def test_two_threads_setting_the_log_up_at_once_write_each_line_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "claude-wrap.log"
    result = subprocess.run(
        [sys.executable, "-c", TWO_AT_ONCE, str(REPO), str(path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert path.read_text().count("the one line") == 1


# Issue 27: the logger was set up by its first caller, and every later Settings was ignored.
TWO_SETTINGS = r"""
import sys
sys.path.insert(0, sys.argv[1])
from claude_wrap.logfile import log
from claude_wrap.config.settings import Settings
first = Settings({"CLAUDE_WRAP_LOG_FILE": sys.argv[2], "HOME": sys.argv[4]})
second = Settings({"CLAUDE_WRAP_LOG_FILE": sys.argv[3], "HOME": sys.argv[4]})
log.logger(first).info("to the first")
log.logger(second).info("to the second")
log.logger(first).info("to the first again")
"""


def test_the_logger_writes_where_the_settings_it_is_given_say(tmp_path: Path) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    result = subprocess.run(
        [sys.executable, "-c", TWO_SETTINGS, str(REPO), str(first), str(second), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "to the second" not in first.read_text()
    assert first.read_text().count("to the first") == 2
    assert "to the second" in second.read_text()
    assert "to the first" not in second.read_text()

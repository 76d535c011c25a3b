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
from claude_wrap.config import paths
barrier = threading.Barrier(2, timeout=2)
make_dirs = paths.make_private_dirs
def both_inside(folder):
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    make_dirs(folder)
paths.make_private_dirs = both_inside
env = {"CLAUDE_WRAP_LOG_FILE": sys.argv[2], "HOME": sys.argv[3]}
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

"""`claude-wrap log`: the last refreshes, repairs, adoptions and failures, one line each."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from claude_wrap import console
from claude_wrap.errors import EXIT_OK
from claude_wrap.logfile import eventlog

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "log", help="the last refreshes, repairs, adoptions and failures, from the log file"
    )
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many lines (default 20)")
    p.add_argument("-f", "--follow", action="store_true", help="then show new ones as they come")
    p.set_defaults(func=run)


def run(ns: argparse.Namespace, settings: Settings) -> int:
    path = settings.log_file
    home = settings.home
    for line in eventlog.last(path, ns.n, home):
        console.out(line)
    if not ns.follow:
        return EXIT_OK
    console.flush()
    try:
        for line in eventlog.follow(path, home):
            console.out(line, flush=True)
    except KeyboardInterrupt:
        return 130  # Ctrl-C is how -f ends: quietly
    return EXIT_OK

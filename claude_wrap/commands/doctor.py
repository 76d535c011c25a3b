"""`claude-wrap doctor`: check everything the shim depends on, and say how to fix each problem.

Each check lives with what it checks and returns findings (findings.py): a level (ok, warn,
fail), one line saying what was found, and for anything not ok the fix. This module only asks
them, in order, and renders what they found. `--fix` applies the fixes that are safe to apply
unattended: removing stale lock directories (under our flock, re-checked just before) and our
own leftover temp files, and making a readable credentials file 0600. The exit status is 0 only
when every finding is ok.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from claude_wrap import console
from claude_wrap.commands import install, status
from claude_wrap.config import locate
from claude_wrap.config.settings import StorageKind
from claude_wrap.errors import EXIT_NOT_USABLE, EXIT_OK
from claude_wrap.findings import Finding, Level
from claude_wrap.keeper import service
from claude_wrap.locks import health
from claude_wrap.logfile import log
from claude_wrap.refresh import binary
from claude_wrap.storage import backends, filestore
from claude_wrap.system import processes

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check the setup and the login; explain each fix")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--fix",
        action="store_true",
        help=(
            "apply the safe fixes: remove stale lock folders, the leftovers of a killed"
            " claude-wrap (temp files, half-made lock folders), chmod 600"
        ),
    )
    p.set_defaults(func=run)


def run(ns: argparse.Namespace, settings: Settings) -> int:
    findings = examine(settings, fix=ns.fix)
    healthy = all(f.level == Level.OK for f in findings)
    if ns.json:
        data = {"healthy": healthy, "findings": [f.as_dict() for f in findings]}
        console.out(json.dumps(data, indent=2))
    else:
        console.out(render(findings, healthy))
    return EXIT_OK if healthy else EXIT_NOT_USABLE


def render(findings: list[Finding], healthy: bool) -> str:
    lines = []
    for f in findings:
        lines.append(f"{f.level.upper():<5} {f.check}: {f.message}")
        if f.fix:
            lines.append(f"      fix: {f.fix}")
    lines.append("all healthy" if healthy else "problems found: see the fixes above")
    return "\n".join(lines)


def examine(settings: Settings, *, fix: bool = False) -> list[Finding]:
    first = install.first_on_path(settings)
    shim = first if first is not None and locate.is_shim(first) else None
    findings = [
        *binary.check_real_binary(settings, shim),
        *install.check_path(settings, first, shim),
        *install.check_recursion(settings),
    ]
    storage = backends.open_storage(settings)
    findings += status.check_login(settings, storage)
    if storage.kind == StorageKind.FILE:
        findings += filestore.check_mode(storage.where, fix=fix)
    findings += health.check_locks(storage.lock_dir, settings, fix=fix)
    if storage.kind == StorageKind.FILE:
        findings += filestore.check_temps(storage.where, fix=fix)
    findings += [
        log.check_log(settings),
        service.check_keeper(settings),
        processes.check_processes(settings),
    ]
    return findings

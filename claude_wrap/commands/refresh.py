"""`claude-wrap refresh`: renew the login when needed (or always, with --force)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from claude_wrap import console, feedback
from claude_wrap.errors import EXIT_OK
from claude_wrap.refresh import refresher, renewal

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("refresh", help="refresh the stored login if it needs it")
    p.add_argument("--force", action="store_true", help="refresh even if the login looks fine")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)


def run(ns: argparse.Namespace, settings: Settings) -> int:
    with feedback.Spinner() as spinner:
        outcome = renewal.ensure_fresh(settings, force=ns.force, on_slow=spinner.start)
    for warning in outcome.warnings:
        console.say(f"warning: {warning}")
    data = {
        "action": outcome.action,
        "state_before": outcome.before.state,
        "state": outcome.after.state,
        "changes": outcome.changes,
        "expires_at": outcome.after.expires_at,
    }
    if ns.json:
        console.out(json.dumps(data, indent=2))
    elif outcome.action == refresher.Action.REFRESHED:
        console.out(
            f"refreshed ({outcome.before.state} -> {outcome.after.state}): "
            + "; ".join(outcome.changes)
        )
    elif outcome.action == refresher.Action.REPAIRED:
        console.out(f"repaired without a refresh: {'; '.join(outcome.changes)}")
    elif outcome.action == refresher.Action.ADOPTED:
        console.out(f"another process had already refreshed the login; it is {outcome.after.state}")
    else:
        console.out(f"nothing to do: the login is {outcome.after.state}")
    return EXIT_OK

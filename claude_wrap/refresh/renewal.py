"""ensure_fresh for this machine, whoever holds its login: an owner refreshes its own login
under Claude Code's locks (refresher.py); a guest pulls a token from its owner and never
refreshes (guest.py). The one place that picks, so that neither of those imports the other
back: guest.py's owner side uses the refresher, and the refresher knows nothing of guests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from claude_wrap.config.settings import Settings
from claude_wrap.refresh import refresher

if TYPE_CHECKING:
    from collections.abc import Callable

    from claude_wrap.locks.flock import FolderFlock


def ensure_fresh(
    settings: Settings,
    *,
    force: bool = False,
    on_slow: Callable[[], None] | None = None,
    held: FolderFlock | None = None,
    revoked: str | None = None,
) -> refresher.FreshnessReport:
    """refresher.ensure_fresh's contract (see there), on a guest the guest's pull (`revoked`
    matters there only for a login of the guest's own: a guest never spends the owner's)."""
    owner = settings.guest_setting
    if owner:  # a guest borrows its owner's login: it pulls, it never refreshes (guest.py)
        from claude_wrap.guests import guest  # noqa: PLC0415 - subprocess and json: guests only

        return guest.ensure_fresh(settings, owner, force=force, held=held, revoked=revoked)
    return refresher.ensure_fresh(
        settings, force=force, on_slow=on_slow, held=held, revoked=revoked
    )

"""Every Claude Code config folder on this machine, each with the settings that select it.

People keep several logins side by side: `~/.claude`, and folders such as `~/.claude-work` used
through `CLAUDE_CONFIG_DIR`. `status --all`, `keep --all` and `doctor` look at each of them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


class ConfigDir:
    __slots__ = ("current", "path", "settings")

    def __init__(self, path: str, settings: Settings, *, current: bool) -> None:
        self.path = path
        self.settings = settings
        self.current = current


def find(settings: Settings) -> list[ConfigDir]:
    """The current folder first (even when it does not exist), then `~/.claude` and every
    `~/.claude-*` folder, each once."""
    current = settings.config_dir
    found = [ConfigDir(current, settings, current=True)]
    seen = {os.path.realpath(current)}
    home = settings.home
    candidates = [os.path.join(home, ".claude")]
    try:
        names = sorted(os.listdir(home))
    except OSError:
        names = []
    candidates += [os.path.join(home, n) for n in names if n.startswith(".claude-")]
    default = os.path.join(home, ".claude")
    for path in candidates:
        real = os.path.realpath(path)
        if real in seen or not os.path.isdir(path):
            continue
        seen.add(real)
        # ~/.claude is Claude Code's default: selected by *no* CLAUDE_CONFIG_DIR.
        sub = settings.selecting(None if path == default else path)
        found.append(ConfigDir(path, sub, current=False))
    return found

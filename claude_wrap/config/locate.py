"""find_real_claude: the real binary behind the shim, never the shim itself (hot path: posix,
fspath and settings only; not `os`, see fspath.py).

PATH is searched with the shim's own folder taken off, and any candidate that is a claude-wrap
shim (the same file, or a file carrying our marker) is skipped, so two shims on PATH never loop.
"The same" is by identity, (device, inode) through any symlinks, which is what comparing
canonical paths meant. Editors may start us with a minimal PATH, so the usual install places are
tried last.
"""

from __future__ import annotations

import posix

from claude_wrap.config import fspath
from claude_wrap.config.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from claude_wrap import errors

MARKER = b"claude-wrap-shim"
_SHIM_MAX = 65536  # a shim is a few hundred bytes; the real binary is a few hundred megabytes


def __getattr__(name: str) -> type[errors.ClaudeNotFoundError]:
    # errors.py owns ClaudeNotFoundError; `locate.ClaudeNotFoundError` is a name for it that does
    # not import errors.py on the hot path (settings.SettingError says how): only a missing claude,
    # or an `except locate.ClaudeNotFoundError` that meets an exception, loads it.
    if name == "ClaudeNotFoundError":
        from claude_wrap.errors import ClaudeNotFoundError  # noqa: PLC0415

        return ClaudeNotFoundError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_shim(path: str, shim: str | None = None) -> bool:
    """`path` is the shim itself (the same file, symlinks followed) or carries our marker."""
    try:
        st = posix.stat(path)
        if shim is not None and (st.st_dev, st.st_ino) == fspath.file_id(shim):
            return True
        if st.st_size > _SHIM_MAX:
            return False
        with open(path, "rb") as f:
            return MARKER in f.read(4096)
    except OSError:
        return False


def _executable(path: str) -> bool:
    # access() first: most PATH folders hold no `claude`, and access() says so without the
    # exception isfile() raises and swallows inside; twice as fast per folder (bench/run growth).
    return posix.access(path, posix.X_OK) and fspath.isfile(path)


def usual_places(settings: Settings) -> Iterator[str]:
    h = settings.home
    yield fspath.join(h, ".local", "bin", "claude")
    yield fspath.join(h, ".claude", "local", "claude")
    for prefix in settings.npm_prefixes:
        yield fspath.join(prefix, "bin", "claude")
    yield fspath.join(h, ".npm-global", "bin", "claude")
    yield "/usr/local/bin/claude"
    yield "/opt/homebrew/bin/claude"
    yield "/usr/bin/claude"


def find_real_claude(settings: Settings, shim: str | None) -> str:
    """The real claude's path. Raises errors.ClaudeNotFoundError when there is none."""
    shim_dir = fspath.file_id(fspath.dirname(shim)) if shim else None
    seen: set[str] = set()
    for folder in settings.path_folders:
        if folder in seen:
            continue
        seen.add(folder)
        candidate = fspath.join(folder, "claude")
        if not _executable(candidate):
            continue
        if shim_dir is not None and fspath.file_id(folder) == shim_dir:
            continue
        if not is_shim(candidate, shim):
            return candidate
    for candidate in usual_places(settings):
        if _executable(candidate) and not is_shim(candidate, shim):
            return candidate
    from claude_wrap.errors import ClaudeNotFoundError  # noqa: PLC0415 - only when none

    raise ClaudeNotFoundError


def on_path(settings: Settings) -> list[str]:
    """Every executable `claude` on PATH, in order, each once, shims included (doctor: which
    comes first, and which of them are shims)."""
    out: list[str] = []
    for folder in settings.path_folders:
        candidate = fspath.join(folder, "claude")
        if candidate not in out and _executable(candidate):
            out.append(candidate)
    return out


def check_override(path: str, shim: str | None) -> str | None:
    """Why CLAUDE_WRAP_REAL_CLAUDE cannot be used, or None when it can."""
    if not fspath.exists(path):
        return "does not exist"
    if not _executable(path):
        return "is not an executable file"
    if is_shim(path, shim):
        return "is a claude-wrap shim, not the real claude"
    return None


def find_node(settings: Settings) -> str | None:
    """node, for a cli.js handed to the shim in wrapper mode: PATH, then the usual places."""
    folders = settings.path_folders
    folders += ["/usr/local/bin", "/opt/homebrew/bin", "/usr/bin"]
    for folder in folders:
        candidate = fspath.join(folder, "node")
        if _executable(candidate):
            return candidate
    return None

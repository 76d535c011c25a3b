"""Choosing where the login lives: the one module that knows both backends of the storage
layer (store.py), the file (filestore.py) and the macOS Keychain (keychain.py). It sits above
them so that the layer imports neither and they import the layer, never each other: no cycle.

Light on purpose (config/settings.py and config/fspath.py, no `os`): every watched run asks
`identity` before it launches claude, on the hot path.
"""

from __future__ import annotations

from claude_wrap.config.fspath import file_identity
from claude_wrap.config.settings import StorageKind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings
    from claude_wrap.storage.store import Ident, Storage


def open_storage(settings: Settings) -> Storage:
    """The storage CLAUDE_WRAP_STORAGE selects (auto: the Keychain on macOS, else the file)."""
    if settings.storage_kind == StorageKind.KEYCHAIN:
        from claude_wrap.storage import keychain  # noqa: PLC0415 - macOS only

        return keychain.KeychainStorage.for_settings(settings)
    from claude_wrap.storage import filestore  # noqa: PLC0415 - off the hot path (see identity)

    return filestore.FileStorage(settings.credentials_file)


def identity(settings: Settings) -> Ident | None:
    """The stored login's identity now, None when there is none (or it cannot be known): what
    the watcher compares to tell "the login claude started with" from a changed one. For the
    file one stat (and no backend module imported: this runs before every watched launch); for
    the Keychain, one `security` call."""
    try:
        if settings.storage_kind == StorageKind.FILE:
            return file_identity(settings.credentials_file)
    except ValueError:  # a bad setting: the pre-flight has said so already
        return None
    return open_storage(settings).identity()

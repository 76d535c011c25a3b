"""Choosing where the login lives: the one module that knows both backends of the storage
layer (store.py), the file (filestore.py) and the macOS Keychain (keychain.py). It sits above
them so that the layer imports neither and they import the layer, never each other: no cycle.

Light on purpose (config/paths.py and storage/identity.py, no `os`): every watched run asks
`identity` before it launches claude, on the hot path.
"""

from __future__ import annotations

from claude_wrap.config import paths
from claude_wrap.storage.identity import file_identity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from claude_wrap.storage.identity import Ident
    from claude_wrap.storage.store import Storage


def open_storage(env: Mapping[str, str]) -> Storage:
    """The storage CLAUDE_WRAP_STORAGE selects (auto: the Keychain on macOS, else the file)."""
    if paths.storage_kind(env) == "keychain":
        from claude_wrap.storage import keychain  # noqa: PLC0415 - macOS only

        return keychain.KeychainStorage.for_env(env)
    from claude_wrap.storage import filestore  # noqa: PLC0415 - off the hot path (see identity)

    return filestore.FileStorage(paths.credentials_file(env))


def identity(env: Mapping[str, str]) -> Ident | None:
    """The stored login's identity now, None when there is none (or it cannot be known): what
    the watcher compares to tell "the login claude started with" from a changed one. For the
    file one stat (and no backend module imported: this runs before every watched launch); for
    the Keychain, one `security` call."""
    try:
        if paths.storage_kind(env) == "file":
            return file_identity(paths.credentials_file(env))
    except ValueError:  # a bad setting: the pre-flight has said so already
        return None
    return open_storage(env).identity()

"""Claude Code's own names, values and times that claude-wrap must match (docs/protocol.md).

Facts about the program we stand in front of, not settings of ours: each is what a release was
seen or read to use, and changing one here changes what every module sends, reads or respects.
Constants only, no imports: the shim's hot path imports this module (through settings).
"""

from __future__ import annotations

# The login (docs/protocol.md section 1) -----------------------------------------------------

CREDENTIALS_NAME = ".credentials.json"  # in the config folder (or CLAUDE_SECURESTORAGE_CONFIG_DIR)
OAUTH_KEY = "claudeAiOauth"  # the credentials document's section claude-wrap owns
# macOS: the login Keychain's generic password; a per-folder suffix is appended when a folder
# was chosen (Settings.keychain_service).
KEYCHAIN_SERVICE = "Claude Code-credentials"

# The token endpoint (section 4) --------------------------------------------------------------

TOKEN_URL = "https://platform.claude.com/v1/oauth/token"  # noqa: S105 - a URL
CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
# Without this scope Claude Code counts the stored login as logged out (section 2).
INFERENCE_SCOPE = "user:inference"
# The claude.ai scopes every release asks for, in its order; also what a login without any
# stored scopes is refreshed with.
DEFAULT_SCOPES = (
    "user:profile",
    INFERENCE_SCOPE,
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
)
# Asked for on top by releases after 2.1.197 whose OAuth config registers it (section 4; see
# binary.refresh_scopes for the rule).
PLUGINS_SCOPE = "user:plugins"

# The locks around a refresh (section 3) --------------------------------------------------

REFRESH_LOCK_NAME = ".oauth_refresh.lock"  # in the config folder
LEGACY_LOCK_SUFFIX = ".lock"  # appended to realpath(config folder): `~/.claude.lock`
WRITE_LOCK_NAME = ".storage-write.lock"  # in the config folder, around the file write only
# The refresh and legacy locks count as stale after 10 s up to 2.1.197 (proper-lockfile's
# default) and after 60 s from 2.1.332 on, which touches them every 5 s; the longest wins.
LOCK_STALE_S = 60.0
OLD_LOCK_STALE_S = 10.0
LOCK_UPDATE_S = 5.0
WRITE_LOCK_STALE_S = 15.0  # the same in every supported release

# 2.1.332's owner record of the refresh lock (section 3, lockowner.py).
OWNER_RECORD_NAME = ".oauth_refresh.lock.owner"  # in the config folder
OWNER_RECORD_MAX_BYTES = 4096  # Claude Code reads at most this much of it

"""The one place that turns environment variables into paths and settings.

Every function takes the environment as an argument (default: the process's), which is the seam
tests use. This module is on the hot path of every `claude` run: it imports nothing beyond `os`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds here
if TYPE_CHECKING:
    from collections.abc import Mapping

# Claude Code's own defaults (shared/protocol.md section 4).
DEFAULT_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"  # noqa: S105 - a URL
DEFAULT_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
DEFAULT_SCOPES = (
    "user:profile",
    "user:inference",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
)
# Claude Code refreshes on its own 5 minutes before expiry; refreshing earlier than that means we,
# not it, spend the refresh token, under the same locks. Ten minutes leaves room for a long run.
DEFAULT_REFRESH_WINDOW_S = 600.0
DEFAULT_REFRESH_BUDGET_S = 30.0
DEFAULT_LOCK_WAIT_S = 15.0
# The login's hard end (refreshTokenExpiresAt) is shown and warned of from this long before it.
DEFAULT_LOGIN_END_WINDOW_S = 3 * 86400.0

CREDENTIALS_NAME = ".credentials.json"


class SettingError(ValueError):
    """An environment variable of ours holds a value we cannot use."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"{name}={value!r} is not {expected}; unset it or fix its value")
        self.name = name


def home(env: Mapping[str, str] = os.environ) -> str:
    """HOME, or the password database when an editor started us without one."""
    value = env.get("HOME")
    if value:
        return value
    import pwd  # noqa: PLC0415 - rare path; editors launching with no HOME

    return pwd.getpwuid(os.getuid()).pw_dir


def config_dir(env: Mapping[str, str] = os.environ) -> str:
    value = env.get("CLAUDE_CONFIG_DIR")
    path = value if value else os.path.join(home(env), ".claude")
    if not path.isascii():
        # Claude Code NFC-normalises the folder name; so must we, or we judge another file.
        import unicodedata  # noqa: PLC0415

        path = unicodedata.normalize("NFC", path)
    return path


def credentials_file(env: Mapping[str, str] = os.environ) -> str:
    folder = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR") or config_dir(env)
    return os.path.join(folder, CREDENTIALS_NAME)


def refresh_lock(cfg: str) -> str:
    return os.path.join(cfg, ".oauth_refresh.lock")


def legacy_lock(cfg: str) -> str:
    return os.path.realpath(cfg) + ".lock"


def write_lock(cfg: str) -> str:
    return os.path.join(cfg, ".storage-write.lock")


def state_dir(env: Mapping[str, str] = os.environ) -> str:
    base = env.get("XDG_STATE_HOME") or os.path.join(home(env), ".local", "state")
    return os.path.join(base, "claude-wrap")


def log_file(env: Mapping[str, str] = os.environ) -> str:
    return env.get("CLAUDE_WRAP_LOG_FILE") or os.path.join(state_dir(env), "claude-wrap.log")


def make_private_dirs(path: str) -> None:
    """os.makedirs, but every folder it creates is 0700, not only the last one (os.makedirs
    gives the ones above it 0777 minus the umask: world-writable under umask 000)."""
    if not path or os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        make_private_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


def lock_records(env: Mapping[str, str] = os.environ) -> str:
    """Where we note the lock folders we hold (lock.py): abandoned ones are taken over at once."""
    return os.path.join(state_dir(env), "locks")


def verdict_cache(env: Mapping[str, str] = os.environ) -> str:
    return os.path.join(state_dir(env), "verdict")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(name, raw, "a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise SettingError(name, raw, "a number of seconds") from None
    return value


def refresh_window(env: Mapping[str, str] = os.environ) -> float:
    return _seconds(env, "CLAUDE_WRAP_REFRESH_WINDOW", DEFAULT_REFRESH_WINDOW_S)


def refresh_budget(env: Mapping[str, str] = os.environ) -> float:
    return _seconds(env, "CLAUDE_WRAP_REFRESH_TIMEOUT", DEFAULT_REFRESH_BUDGET_S)


def lock_wait(env: Mapping[str, str] = os.environ) -> float:
    return _seconds(env, "CLAUDE_WRAP_LOCK_TIMEOUT", DEFAULT_LOCK_WAIT_S)


def login_end_window(env: Mapping[str, str] = os.environ) -> float:
    return _seconds(env, "CLAUDE_WRAP_LOGIN_END_WINDOW", DEFAULT_LOGIN_END_WINDOW_S)


def notified_state(env: Mapping[str, str] = os.environ) -> str:
    """What the keeper told the user about each login's end (notify.py): no secret in it."""
    return os.path.join(state_dir(env), "notified.json")


def shim_notice_stamp(env: Mapping[str, str] = os.environ) -> str:
    """Its mtime is when a shim last printed the login-end line (at most once an hour)."""
    return os.path.join(state_dir(env), "login-end-notice")


WATCH_KINDS = ("auto", "inotify", "kqueue", "poll")


def watch_kind(env: Mapping[str, str] = os.environ) -> str:
    """How long sessions and `keep --watch` learn of a change to the credentials file
    (filewatch.py): auto (inotify on Linux, kqueue on macOS), or one of them, or poll."""
    raw = env.get("CLAUDE_WRAP_NOTIFY", "") or "auto"
    if raw not in WATCH_KINDS:
        raise SettingError("CLAUDE_WRAP_NOTIFY", raw, "one of " + ", ".join(WATCH_KINDS))
    return raw


def token_url(env: Mapping[str, str] = os.environ) -> str:
    return env.get("CLAUDE_WRAP_TOKEN_URL") or DEFAULT_TOKEN_URL


def client_id(env: Mapping[str, str] = os.environ) -> str:
    return env.get("CLAUDE_CODE_OAUTH_CLIENT_ID") or DEFAULT_CLIENT_ID


def debug(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("CLAUDE_WRAP_DEBUG", "") not in ("", "0")


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw not in ("0", "false", "no", "off")


STORAGE_KINDS = ("file", "keychain")
KEYCHAIN_SERVICE = "Claude Code-credentials"


def storage_kind(env: Mapping[str, str] = os.environ) -> str:
    """Where the login lives: the file, or (macOS) the login Keychain (protocol.md section 1)."""
    raw = env.get("CLAUDE_WRAP_STORAGE", "")
    if raw in ("", "auto"):
        return "keychain" if sys.platform == "darwin" else "file"
    if raw not in STORAGE_KINDS:
        raise SettingError("CLAUDE_WRAP_STORAGE", raw, "one of auto, file, keychain")
    return raw


def keychain_service(env: Mapping[str, str] = os.environ) -> str:
    """Claude Code's Keychain service name: a per-folder suffix only when a folder was chosen
    (CLAUDE_SECURESTORAGE_CONFIG_DIR when set, else CLAUDE_CONFIG_DIR), so that the default login
    of every user keeps the plain name."""
    secure = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR")
    if secure is not None:
        folder = secure
    elif env.get("CLAUDE_CONFIG_DIR"):
        folder = config_dir(env)
    else:
        folder = ""
    if not folder:
        return KEYCHAIN_SERVICE
    import hashlib  # noqa: PLC0415 - keychain path only

    return f"{KEYCHAIN_SERVICE}-{hashlib.sha256(folder.encode()).hexdigest()[:8]}"


def keychain_account(env: Mapping[str, str] = os.environ) -> str:
    """$USER, else the password database (editors may start us without USER)."""
    value = env.get("USER")
    if value:
        return value
    import pwd  # noqa: PLC0415

    return pwd.getpwuid(os.getuid()).pw_name


def python_for_shim() -> str:
    """The interpreter an installed shim runs: this package's own."""
    return sys.executable


# Guests (guest.py): a machine or container that borrows an owner's login ----------------------

GUEST_ENV = "CLAUDE_WRAP_GUEST"


def wrap_config_dir(env: Mapping[str, str] = os.environ) -> str:
    """claude-wrap's own settings (not Claude Code's folder): $XDG_CONFIG_HOME/claude-wrap."""
    base = env.get("XDG_CONFIG_HOME") or os.path.join(home(env), ".config")
    return os.path.join(base, "claude-wrap")


def guest_file(env: Mapping[str, str] = os.environ) -> str:
    """Where `claude-wrap guest --ssh/--folder` stores this machine's owner (one line)."""
    return os.path.join(wrap_config_dir(env), "guest")


def shares_file(env: Mapping[str, str] = os.environ) -> str:
    """Where `claude-wrap share DIR` lists the folders the owner's keeper keeps a token in."""
    return os.path.join(wrap_config_dir(env), "shares")


def guest_setting(env: Mapping[str, str] = os.environ) -> str:
    """"ssh:HOST", "folder:/path" or "" (not a guest): CLAUDE_WRAP_GUEST, which wins (containers
    set it in their image or `docker run -e`), else the line `claude-wrap guest` stored. Only
    read once the verdict cache has missed: never on the hot path of a healthy run."""
    raw = env.get(GUEST_ENV)
    if raw is None:
        try:
            with open(guest_file(env), encoding="utf-8") as f:
                raw = f.read(4096).strip()
        except OSError:
            return ""
        where = guest_file(env)
    else:
        raw = raw.strip()
        where = GUEST_ENV
    if raw in ("", "off"):
        return ""
    kind, _, target = raw.partition(":")
    if kind not in ("ssh", "folder") or not target:
        raise SettingError(where, raw, "ssh:HOST, folder:/path or off")
    if kind == "folder" and not os.path.isabs(target):
        raise SettingError(where, raw, "folder: with an absolute path")
    return raw


def guest_ssh_command(env: Mapping[str, str] = os.environ) -> str:
    """The ssh a guest runs (words split like a shell's): CLAUDE_WRAP_GUEST_SSH, default `ssh`.
    Options such as `-F config` or `-i key` go here; the host comes from the guest setting."""
    return env.get("CLAUDE_WRAP_GUEST_SSH") or "ssh"


def guest_remote_command(env: Mapping[str, str] = os.environ) -> str:
    """What the guest asks the owner to run; a forced command in authorized_keys overrides it."""
    return env.get("CLAUDE_WRAP_GUEST_REMOTE") or "claude-wrap token --json"


def guest_timeout(env: Mapping[str, str] = os.environ) -> float:
    return _seconds(env, "CLAUDE_WRAP_GUEST_TIMEOUT", 20.0)


def guest_period(env: Mapping[str, str] = os.environ) -> float:
    """How often a session on a guest looks whether its token is due (guest.Rollover)."""
    return _seconds(env, "CLAUDE_WRAP_GUEST_PERIOD", 30.0)


# The shim, the relay and the interactive session

NESTED_ENV = "CLAUDE_WRAP_ACTIVE"  # set for claude's children: a nested shim only execs
DEFAULT_REPLAY_LIMIT = 64 << 20  # bytes of stdin kept for a replay; past it, no retry
DEFAULT_KILL_GRACE_S = 5.0  # after SIGTERM/SIGHUP, how long claude gets before its tree is killed
# A consumer that keeps stdin open may wait for our output before it writes more; the output
# we hold waits for the child's next line. Past this much quiet, release it: no deadlock.
DEFAULT_HOLD_QUIET_S = 2.0
DEFAULT_GUARD_PERIOD_S = 0.5


def nested(env: Mapping[str, str] = os.environ) -> bool:
    """Run by a claude that another shim of ours started (which already did the pre-flight)."""
    return env.get(NESTED_ENV) == "1"


def disabled(env: Mapping[str, str] = os.environ) -> bool:
    """CLAUDE_WRAP_DISABLE: the shim only execs claude."""
    return flag(env, "CLAUDE_WRAP_DISABLE", default=False)


def watching(env: Mapping[str, str] = os.environ) -> bool:
    """CLAUDE_WRAP_WATCH (default on): run claude as our child and watch it for a login failure;
    off, the shim execs it after the pre-flight."""
    return flag(env, "CLAUDE_WRAP_WATCH", default=True)


def real_claude_override(env: Mapping[str, str] = os.environ) -> str:
    """CLAUDE_WRAP_REAL_CLAUDE: the real binary to run instead of the one on PATH ("" if unset);
    checked by locate.check_override where it is used."""
    return env.get("CLAUDE_WRAP_REAL_CLAUDE") or ""


def replay_limit(env: Mapping[str, str] = os.environ) -> int:
    """CLAUDE_WRAP_REPLAY_LIMIT: bytes of stdin kept to replay on a retry; past it, no retry."""
    raw = env.get("CLAUDE_WRAP_REPLAY_LIMIT")
    if not raw:
        return DEFAULT_REPLAY_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise SettingError("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes") from None
    if value < 0:
        raise SettingError("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes")
    return value


def kill_grace(env: Mapping[str, str] = os.environ) -> float:
    """CLAUDE_WRAP_KILL_GRACE: after SIGTERM/SIGHUP, seconds before claude's tree is killed."""
    return _seconds(env, "CLAUDE_WRAP_KILL_GRACE", DEFAULT_KILL_GRACE_S)


def hold_quiet(env: Mapping[str, str] = os.environ) -> float:
    """CLAUDE_WRAP_HOLD_QUIET: seconds of quiet after which held-back output is released."""
    return _seconds(env, "CLAUDE_WRAP_HOLD_QUIET", DEFAULT_HOLD_QUIET_S)


def guard_period(env: Mapping[str, str] = os.environ) -> float:
    """CLAUDE_WRAP_GUARD_PERIOD: the guard's poll period in long sessions (guard.py); 0: off."""
    return _seconds(env, "CLAUDE_WRAP_GUARD_PERIOD", DEFAULT_GUARD_PERIOD_S)


def temp_dir(env: Mapping[str, str] = os.environ) -> str:
    """Where the relay keeps its replay copy of stdin when the system has no memory file
    (memfd): TMPDIR, else /tmp. The file is unlinked as soon as it is made."""
    return env.get("TMPDIR") or "/tmp"  # noqa: S108 - unlinked at once, opened O_EXCL

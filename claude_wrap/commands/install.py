"""`claude-wrap install` / `uninstall`: put a `claude` shim in a folder, or take it away.

The shim runs this package's own interpreter with -I -S: isolated from PYTHON* variables and
without the cost of `site` (3 ms here). It puts the package's folder on sys.path itself; the
slow path turns `site` on when it needs httpx and friends (see config/sitepath.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

import claude_wrap
from claude_wrap import console
from claude_wrap.config import locate
from claude_wrap.config.settings import Settings, python_for_shim
from claude_wrap.errors import EXIT_OK, InstallError
from claude_wrap.findings import Finding, Level
from claude_wrap.keeper import service

if TYPE_CHECKING:
    pass

SHIM_TEMPLATE = """#!{python} -IS
# {marker}: installed by `claude-wrap install`; `claude-wrap uninstall` removes it.
import sys
sys.path.insert(0, {root!r})
from claude_wrap.shim import main
main()
"""


def default_dir(settings: Settings) -> str:
    return os.path.join(settings.home, ".local", "share", "claude-wrap", "bin")


def shim_text() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(claude_wrap.__file__)))
    return SHIM_TEMPLATE.format(
        python=python_for_shim(), marker=locate.MARKER.decode(), root=root
    )


def register(sub: Any) -> None:
    p = sub.add_parser("install", help="write the `claude` shim into a folder (or the keeper)")
    p.add_argument(
        "--dir", default=None, help="folder for the shim (default: ~/.local/share/claude-wrap/bin)"
    )
    p.set_defaults(func=run_install)
    u = sub.add_parser("uninstall", help="remove the `claude` shim from a folder (or the keeper)")
    u.add_argument("--dir", default=None, help="folder of the shim")
    u.set_defaults(func=run_uninstall)
    for parser in (p, u):
        parser.add_argument(
            "--keeper",
            nargs="?",
            const=service.DEFAULT_MODE,
            default=None,
            choices=service.MODES,
            help="the background keeper instead: --keeper (=watch) a user service that repairs "
            "each change to the login within milliseconds and refreshes ahead of expiry; "
            "--keeper=timer a systemd timer or launchd job that runs `claude-wrap keep --all` "
            "every 5 minutes, for those who want no daemon",
        )
        parser.add_argument(
            "--manager",
            choices=service.MANAGERS,
            default=None,
            help="service manager for --keeper (default: launchd on macOS, else systemd)",
        )


def install(folder: str) -> tuple[str, bool]:
    """Write the shim; returns (its path, whether anything changed)."""
    path = os.path.join(folder, "claude")
    text = shim_text()
    if os.path.lexists(path):
        if not locate.is_shim(path) or os.path.islink(path):
            raise InstallError(
                f"{path} exists and is not a claude-wrap shim; refusing to overwrite it "
                "(choose another --dir, or move it away first)"
            )
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path, False
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path, True


def uninstall(folder: str) -> bool:
    path = os.path.join(folder, "claude")
    if not os.path.lexists(path):
        return False
    if os.path.islink(path) or not locate.is_shim(path):
        raise InstallError(f"{path} is not a claude-wrap shim; leaving it alone")
    os.unlink(path)
    return True


def run_install(ns: argparse.Namespace, settings: Settings) -> int:
    if ns.keeper:
        return install_keeper(settings, ns.manager or service.default_manager(), ns.keeper)
    folder = os.path.abspath(ns.dir or default_dir(settings))
    try:
        path, changed = install(folder)
    except OSError as exc:
        raise InstallError(f"cannot write the shim into {folder}: {exc.strerror}") from None
    console.out(f"{'installed' if changed else 'already installed'}: {path}")
    wrap = os.path.join(os.path.dirname(sys.executable), "claude-wrap")
    console.out("Put it first on PATH (add this line to your shell's rc file):")
    console.out(f'  export PATH="{folder}:$PATH"')
    console.out("or use an alias instead:")
    console.out(f"  alias claude='{wrap} run --'")
    return EXIT_OK


def run_uninstall(ns: argparse.Namespace, settings: Settings) -> int:
    if ns.keeper:
        return uninstall_keeper(settings, ns.manager or service.default_manager())
    folder = os.path.abspath(ns.dir or default_dir(settings))
    try:
        removed = uninstall(folder)
    except OSError as exc:
        raise InstallError(f"cannot remove the shim from {folder}: {exc.strerror}") from None
    console.out(f"removed: {os.path.join(folder, 'claude')}" if removed else "no shim to remove")
    return EXIT_OK


def install_keeper(settings: Settings, manager: str, mode: str = service.Mode.TIMER) -> int:
    other = service.Mode.TIMER if mode == service.Mode.WATCH else service.Mode.WATCH
    if service.installed(manager, settings, mode=other):
        # One keeper at a time: the other mode's files go (and its job stops) first.
        _remove_keeper(settings, manager, other)
    folder, texts = service.files(manager, settings, mode=mode)
    try:
        if manager == service.Manager.LAUNCHD:
            # launchd opens the job's output files but does not create their folder.
            os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
        written = service.write(folder, texts)
    except FileExistsError as exc:
        raise InstallError(
            f"{exc} exists and was not written by claude-wrap; refusing to overwrite it"
        ) from None
    except OSError as exc:
        raise InstallError(f"cannot write the keeper into {folder}: {exc.strerror}") from None
    for path, changed in written:
        console.out(f"{'installed' if changed else 'already installed'}: {path}")
    commands = service.start_commands(manager, settings, mode=mode)
    shown = "\n".join("  " + " ".join(argv) for argv in commands)
    if not service.reachable(manager, settings):
        console.out(
            f"{manager} is not reachable from this session; to start the keeper, run:\n{shown}"
        )
        return EXIT_OK
    problem = service.run(commands, settings, tolerate_first=manager == service.Manager.LAUNCHD)
    if problem:
        raise InstallError(f"the keeper files are written but could not be started: {problem}")
    if mode == service.Mode.WATCH:
        console.out("started: `claude-wrap keep --all --watch` runs as a user service; it repairs "
                    "each change to the login at once and refreshes ahead of expiry")
    else:
        minutes = service.INTERVAL_S // 60
        console.out(f"started: it runs `claude-wrap keep --all` every {minutes} minutes")
    return EXIT_OK


def uninstall_keeper(settings: Settings, manager: str) -> int:
    if not service.installed(manager, settings):
        console.out("no keeper to remove")
        return EXIT_OK
    for mode in service.MODES:
        _remove_keeper(settings, manager, mode, reload=False)
    if manager == service.Manager.SYSTEMD and service.reachable(manager, settings):
        service.run([["systemctl", "--user", "daemon-reload"]], settings)
    return EXIT_OK


def _remove_keeper(settings: Settings, manager: str, mode: str, *, reload: bool = True) -> None:
    found = service.installed(manager, settings, mode=mode)
    if not found:
        return
    if service.reachable(manager, settings):
        # not loaded is fine: the files go anyway
        service.run(service.stop_commands(manager, settings, mode=mode), settings)
    for path in found:
        try:
            os.unlink(path)
        except OSError as exc:
            raise InstallError(f"cannot remove {path}: {exc.strerror}") from None
        console.out(f"removed: {path}")
    if reload and manager == service.Manager.SYSTEMD and service.reachable(manager, settings):
        service.run([["systemctl", "--user", "daemon-reload"]], settings)


# doctor's checks: does `claude` run the shim, and the shim never itself ---------------------

RC_FILES = (".bashrc", ".bash_profile", ".profile", ".zshrc", ".config/fish/config.fish")


def first_on_path(settings: Settings) -> str | None:
    found = locate.on_path(settings)
    return found[0] if found else None


def alias_in_rc(settings: Settings) -> str | None:
    home = settings.home
    for name in RC_FILES:
        path = os.path.join(home, name)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            continue
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("alias claude") and "claude-wrap" in stripped:
                return path
    return None


def check_path(settings: Settings, first: str | None, shim: str | None) -> list[Finding]:
    name = "shim"
    if shim is not None:
        return [Finding(name, Level.OK, f"the shim comes first on PATH: {shim}", path=shim)]
    rc = alias_in_rc(settings)
    if rc is not None:
        said = f"`claude` is an alias to claude-wrap (set in {rc})"
        return [Finding(name, Level.OK, said, rc=rc)]
    later = [p for p in locate.on_path(settings) if locate.is_shim(p)]
    if later and first is not None:
        return [
            Finding(
                name,
                Level.FAIL,
                f"a shim is on PATH ({later[0]}) but {first} comes before it",
                f'put {os.path.dirname(later[0])} first: export PATH="'
                f'{os.path.dirname(later[0])}:$PATH" in your shell rc file',
            )
        ]
    what = (
        "there is no `claude` command on PATH"
        if first is None
        else f"`claude` runs {first} directly: nothing checks the login before a run"
    )
    return [
        Finding(
            name,
            Level.FAIL,
            what,
            "run `claude-wrap install` and add the PATH line it prints to your shell rc file "
            "(or the alias it prints)",
        )
    ]


def check_recursion(settings: Settings) -> list[Finding]:
    name = "recursion"
    found = []
    if settings.nested:
        found.append(
            Finding(
                name,
                Level.WARN,
                "CLAUDE_WRAP_ACTIVE=1 is set here, so every shim started from this shell skips "
                "its pre-flight (normal only inside a claude session the shim started)",
                "if this is not a claude session, remove CLAUDE_WRAP_ACTIVE from your shell "
                "rc file and open a new shell",
            )
        )
    for path in locate.on_path(settings):
        if not locate.is_shim(path):
            continue
        python = shim_python(path)
        if python is not None and not os.access(python, os.X_OK):
            found.append(
                Finding(
                    name,
                    Level.FAIL,
                    f"the shim {path} runs {python}, which no longer exists",
                    "reinstall claude-wrap, then run `claude-wrap install` again",
                )
            )
    shims = [p for p in locate.on_path(settings) if locate.is_shim(p)]
    if not found:
        detail = f" ({len(shims)} shims on PATH; each skips the others)" if len(shims) > 1 else ""
        found.append(Finding(name, Level.OK, f"no loop: the shim never runs itself{detail}"))
    return found


def shim_python(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    return words[0] if words else None

"""The real programs users drive Claude Code with, installed once into the e2e cache.

Pinned here and nowhere else:
- npm: Zed's ACP adapter and the TypeScript Agent SDK it depends on (one install folder, the
  SDK at the adapter's own pin, so the TS SDK driver and the adapter share one copy); and the
  newest TS SDK in a folder of its own, without its optional dependencies: those are a ~400 MB
  native Claude Code per platform, which a client that names its executable never runs (the
  issue's hang was seen on 0.3.333; 69 MB installed so).
- PyPI: the Python Agent SDK, into a virtual environment of its own in the cache. Not the dev
  extras: its wheel is ~190 MB (it bundles a Claude Code binary), which every fresh CI venv
  would download again; the cached venv is made once and reused by later runs, like the npm
  installs of the binary.

Each lives under install.cache_root() (`$CLAUDE_WRAP_E2E_CACHE`, default
`~/.cache/claude-wrap/npm`) in a folder named for its pins, with a marker written only after a
complete install; a folder without it is installed again. Installs happen before the namespace
move (conftest.py), and only in a session that collected a test using them.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .install import NPM_TIMEOUT, InstallError, cache_root

ACP_ADAPTER = "@zed-industries/claude-agent-acp"
TS_SDK = "@anthropic-ai/claude-agent-sdk"
NPM_PINS = {ACP_ADAPTER: "0.23.1", TS_SDK: "0.2.83"}
NEWEST_TS_PINS = {TS_SDK: "0.3.337"}
PY_SDK = ("claude-agent-sdk", "0.2.190")

DRIVERS = Path(__file__).resolve().parent / "drivers"
TS_DRIVER = DRIVERS / "sdk_ts.mjs"
PY_DRIVER = DRIVERS / "sdk_py.py"
DONE = ".installed"


def npm_folder(pins: dict[str, str] = NPM_PINS) -> Path:
    return cache_root() / ("clients-npm-" + "-".join(f"{n.split('/')[-1]}@{v}"
                                                for n, v in sorted(pins.items())))


def venv_folder() -> Path:
    name, version = PY_SDK
    python = "{}.{}".format(*sys.version_info[:2])
    return cache_root() / f"clients-pypi-{name}@{version}-py{python}"


def _run(command: list[str], what: str, timeout: float = NPM_TIMEOUT) -> None:
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"`{' '.join(command)}` did not finish in {timeout} s") from exc
    except OSError as exc:
        raise InstallError(f"cannot run {command[0]} to install {what}: {exc}") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        shown = lines if len(lines) <= 14 else [*lines[:10], "...", *lines[-3:]]
        raise InstallError(
            f"`{' '.join(command)}` failed with exit code {done.returncode}:\n" + "\n".join(shown)
        )


def installed_as_pinned(folder: Path, pins: object) -> bool:
    try:
        return bool(json.loads((folder / DONE).read_text()) == pins)
    except (OSError, ValueError):
        return False


def ensure_npm_clients() -> Path:
    """The node_modules folder holding the pinned ACP adapter and TS SDK (npm if needed)."""
    return _ensure_npm(NPM_PINS)


def ensure_newest_ts_sdk() -> Path:
    """The node_modules folder holding the newest TS SDK, without its bundled Claude Code."""
    return _ensure_npm(NEWEST_TS_PINS, "--omit=optional")


def _ensure_npm(pins: dict[str, str], *flags: str) -> Path:
    folder = npm_folder(pins)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed_as_pinned(folder, pins):
            npm = shutil.which("npm")
            if npm is None:
                raise InstallError("npm is not on PATH: cannot install " + ", ".join(pins))
            (folder / DONE).unlink(missing_ok=True)
            _run([npm, "install", "--no-audit", "--no-fund", "--save-exact", *flags, "--prefix",
                  str(folder), *(f"{n}@{v}" for n, v in pins.items())], "the npm clients")
            for name, version in pins.items():
                meta = folder / "node_modules" / name / "package.json"
                found = json.loads(meta.read_text()).get("version") if meta.exists() else None
                if found != version:
                    raise InstallError(f"after npm install, {meta} says version {found!r}, "
                                       f"not {version}: delete {folder} and run again")
            (folder / DONE).write_text(json.dumps(pins))
    return folder / "node_modules"


def ensure_python_sdk() -> Path:
    """The python of a venv holding the pinned Python Agent SDK (pip if needed)."""
    folder = venv_folder()
    folder.parent.mkdir(parents=True, exist_ok=True)
    python = folder / "bin" / "python"
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed_as_pinned(folder, list(PY_SDK)):
            name, version = PY_SDK
            _run([sys.executable, "-m", "venv", "--clear", str(folder)], "a venv", timeout=120)
            _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  f"{name}=={version}"], f"{name}=={version}")
            (folder / DONE).write_text(json.dumps(list(PY_SDK)))
    return python

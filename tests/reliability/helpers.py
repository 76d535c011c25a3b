"""Small helpers shared by the reliability tests."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import psutil

from claude_wrap_testing.tokenserver import Reply, Request, TokenServer, ok
from tests.conftest import login_doc

LOCK_NAMES = (".oauth_refresh.lock", ".storage-write.lock")
TMP_PREFIX = ".credentials.json.tmp."


def unique_login(tag: str, **kw: Any) -> dict[str, Any]:
    """A login whose tokens are unique to `tag`, so old and new can never be confused."""
    return login_doc(
        access=f"sk-ant-oat01-rel-access-{tag}-XXXXXXXX",
        refresh=f"sk-ant-ort01-rel-refresh-{tag}-YYYYYYYY",
        **kw,
    )


def delayed_ok(rng: random.Random, most_s: float) -> Any:
    """A successful answer after a random delay of up to `most_s` seconds."""
    make = ok()

    def step(server: TokenServer, request: Request) -> Reply:
        reply = make(server, request)
        reply.delay = rng.uniform(0, most_s)
        return reply

    return step


def lock_dirs(cfg: Path) -> list[str]:
    found = [name for name in LOCK_NAMES if (cfg / name).exists()]
    legacy = Path(os.path.realpath(cfg) + ".lock")
    if legacy.exists():
        found.append(legacy.name)
    return found


def temp_files(cfg: Path) -> list[Path]:
    return sorted(p for p in cfg.iterdir() if p.name.startswith(TMP_PREFIX))


def classify(raw: bytes, old: dict[str, Any], server: TokenServer) -> str:
    """'old' or 'new' for a whole login; AssertionError for anything else (a mix, a partial)."""
    doc = json.loads(raw)  # must always parse
    assert isinstance(doc, dict), doc
    oauth = doc["claudeAiOauth"]
    extra = {k: v for k, v in doc.items() if k != "claudeAiOauth"}
    assert extra == {k: v for k, v in old.items() if k != "claudeAiOauth"}, "other keys changed"
    if oauth == old["claudeAiOauth"]:
        return "old"
    bodies = {b["access_token"]: b for b in server.issued}
    body = bodies.get(oauth.get("accessToken"))
    assert body is not None, "an access token the server never issued"
    assert oauth["refreshToken"] == body["refresh_token"], "access and refresh tokens mixed"
    assert oauth["scopes"] == body["scope"].split(), "scopes not from the same answer"
    assert isinstance(oauth["expiresAt"], int)
    kept = {k: v for k, v in old["claudeAiOauth"].items() if k not in _OWNED}
    assert {k: oauth[k] for k in kept} == kept, "fields the refresh does not own changed"
    return "new"


_OWNED = ("accessToken", "refreshToken", "expiresAt", "scopes")


def expired(tag: str) -> dict[str, Any]:
    return unique_login(tag, expires_in_s=-60)


def argv_env_leaks(proc: psutil.Process, secrets: set[str]) -> tuple[str, list[str]]:
    """(its argv, the first characters of each secret found in its argv or environment)."""
    try:
        argv = " ".join(proc.cmdline())
        environ = proc.environ()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return "", []
    text = argv + "\n" + "\n".join(f"{k}={v}" for k, v in environ.items())
    return argv, [s[:14] for s in secrets if s in text]

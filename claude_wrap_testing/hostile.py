"""A hostile third-party refresher, as the old tools behaved (docs/protocol.md section 8).

Run as its own process: `python -m claude_wrap_testing.hostile CREDENTIALS TOKEN_URL MEAN_GAP SEED`.
At random intervals it reads the credentials file, spends its refresh token at the token endpoint
without taking any lock, and rewrites the file with only accessToken, refreshToken and expiresAt
(no `scopes`, no subscriptionType, no other top-level key), non-atomically: truncate, then write.
The write comes in two halves with a short pause between them, which widens the moment in which
a reader finds the file half-written to something a poller can see; the old tools' window was
narrower, but it was there.

Each action is one JSON line on stdout, for the soak to count. It stops on SIGTERM.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import sys
import time
import urllib.parse

AGENT = "soak-hostile/1.0"
HALF_WRITE_PAUSE_S = 0.005


def say(**event: object) -> None:
    sys.stdout.write(json.dumps({"at": time.time(), **event}) + "\n")
    sys.stdout.flush()


def act(path: str, url: str) -> None:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        refresh = doc["claudeAiOauth"]["refreshToken"]
    except (OSError, ValueError, KeyError, TypeError):
        say(action="skip", why="unreadable")
        return
    if not refresh:
        say(action="skip", why="blank")
        return
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    # No scope in the request: the old tools never sent one.
    body = json.dumps({
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    })
    try:
        conn.request("POST", parts.path, body=body,
                     headers={"Content-Type": "application/json", "User-Agent": AGENT})
        answer = conn.getresponse()
        status, payload = answer.status, answer.read()
    except (OSError, http.client.HTTPException) as exc:
        say(action="error", why=type(exc).__name__)
        return
    finally:
        conn.close()
    if status != 200:
        say(action="rejected", status=status)
        return
    token = json.loads(payload)
    new = {"claudeAiOauth": {
        "accessToken": token["access_token"],
        "refreshToken": token.get("refresh_token") or refresh,
        "expiresAt": int((time.time() + token["expires_in"]) * 1000),
    }}
    data = json.dumps(new).encode()
    # Truncate and write in place: no temp file, no rename, no lock.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data[: len(data) // 2])
        time.sleep(HALF_WRITE_PAUSE_S)
        os.write(fd, data[len(data) // 2 :])
    finally:
        os.close(fd)
    say(action="refreshed")


def main() -> None:
    path, url, mean_gap, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(rng.uniform(0.2, 2 * mean_gap))
        act(path, url)


if __name__ == "__main__":
    main()

"""The soak's forced command on the owner (soak.py): docs/guests.md's `claude-wrap token --json
--for-guest`, with the guest's `--min-valid` compressed as the soak compresses time.

A guest asks for its refresh window plus guest.MARGIN_S (5 minutes): against a real 8-hour
token a small share of its life, against the soak's 310-second tokens more than a fresh one
holds, so every one-shot pull would be refused. The soak already compresses the window (the
guest's CLAUDE_WRAP_REFRESH_WINDOW); this compresses the margin the same way: the 300 s the guest
adds become MARGIN_SHARE of a compressed lifetime. Nothing else of the request changes; what is
asked for still goes through claude-wrap's own strict parsing.

    python -m claude_wrap_testing.soakowner COMPRESSED_MARGIN_S
"""

from __future__ import annotations

import os
import sys

MARGIN_S = 300.0  # guests/guest.py MARGIN_S, in real seconds
SOURCE = "SSH_ORIGINAL_COMMAND"


def compress(original: str, margin: float) -> str:
    """`original` with the value after --min-valid (or in --min-valid=) given `margin` in place
    of the real margin. Anything that is not a number is left for claude-wrap to refuse."""
    words = original.split()
    out = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--min-valid" and i + 1 < len(words):
            out += [word, _compressed(words[i + 1], margin)]
            i += 2
            continue
        if word.startswith("--min-valid="):
            word = "--min-valid=" + _compressed(word.partition("=")[2], margin)
        out.append(word)
        i += 1
    return " ".join(out)


def _compressed(value: str, margin: float) -> str:
    try:
        seconds = float(value)
    except ValueError:
        return value
    return f"{max(0.0, seconds - MARGIN_S + margin):.3f}" if seconds >= MARGIN_S else value


def main() -> None:
    margin = float(sys.argv[1])
    env = dict(os.environ)
    if SOURCE in env:
        env[SOURCE] = compress(env[SOURCE], margin)
    argv = [sys.executable, "-m", "claude_wrap", "token", "--json", "--for-guest"]
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    main()

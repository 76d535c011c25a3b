"""Output samples of the real binary, kept in samples/<version>/ for the output-watching code's
tests (tests/pure/test_watch_detect.py runs its detectors over every sample of every version).

Each sample holds the exact bytes one run printed. A normal test run checks that the live output
still has the sample's shape (the same lines, types, texts and keys; ids, paths and durations may
differ); with CLAUDE_WRAP_E2E_RECORD=1 it rewrites the sample from the live output instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent / "samples"


def recording() -> bool:
    return os.environ.get("CLAUDE_WRAP_E2E_RECORD") == "1"


def json_lines_shape(data: bytes) -> list[dict[str, Any]]:
    """What must not drift in a JSON-lines output: per line its keys, kind, texts and error.

    `api_retry` lines are left out: how many a run prints depends on timing (2.1.197 on a login
    past its time limit printed one in a CI run and none when recorded: its request can go out
    before its refresh fails). The detectors still read them in the recorded samples."""
    shape = []
    for line in data.decode().splitlines():
        record = json.loads(line)
        if record.get("type") == "system" and record.get("subtype") == "api_retry":
            continue
        message = record.get("message") or {}
        shape.append(
            {
                "keys": sorted(record),
                "type": record.get("type"),
                "subtype": record.get("subtype"),
                "is_error": record.get("is_error"),
                "result": record.get("result"),
                "error": record.get("error"),
                "model": message.get("model"),
                "content": message.get("content"),
            }
        )
    return shape


def sample_path(version: str, name: str) -> Path:
    return SAMPLES / version / name


def check_sample(
    version: str, name: str, live: bytes, shape: Callable[[bytes], Any]
) -> Path:
    """Records `live` as `version`'s sample `name` (record mode), or asserts it has the sample's
    shape."""
    path = sample_path(version, name)
    if recording():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(live)
        return path
    assert path.exists(), f"missing sample {path}: run once with CLAUDE_WRAP_E2E_RECORD=1"
    assert shape(live) == shape(path.read_bytes()), (
        f"the real binary's output no longer matches {path}; if that is the version's output, "
        f"re-record with CLAUDE_WRAP_E2E_RECORD=1. Live output:\n{live.decode()}"
    )
    return path

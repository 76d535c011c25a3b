"""Drives Claude Code through the Python Agent SDK (PyPI claude-agent-sdk), as an application does.

Run by the SDK's own virtual environment (claude_wrap_testing/clients.py), not the test suite's:

    python sdk_py.py EXECUTABLE once     query() with the first line of our stdin as the prompt
    python sdk_py.py EXECUTABLE session  ClaudeSDKClient: each line of our stdin is one more turn
                                         of the same session, sent when it arrives; EOF ends it

`ClaudeAgentOptions(cli_path=EXECUTABLE)`; the SDK spawns it with pipes and passes this process's
environment on (less CLAUDECODE, plus CLAUDE_CODE_ENTRYPOINT=sdk-py). Each result goes to stdout
as one JSON line {"type": "result", "subtype", "is_error", "result"}; a failure of the SDK itself
as {"type": "error", "message"} and exit status 1.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import anyio
from claude_agent_sdk import (  # type: ignore[import-not-found]
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ResultMessage,
    query,
)


def say(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def said(message: Any) -> None:
    if isinstance(message, ResultMessage):
        say({"type": "result", "subtype": message.subtype, "is_error": message.is_error,
             "result": message.result})


async def once(options: Any) -> None:
    prompt = sys.stdin.readline().rstrip("\n")
    async for message in query(prompt=prompt, options=options):
        said(message)


async def session(options: Any) -> None:
    async with ClaudeSDKClient(options=options) as client:
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return
            await client.query(line.rstrip("\n"))
            async for message in client.receive_response():
                said(message)


def main() -> int:
    executable, mode = sys.argv[1:3]
    options = ClaudeAgentOptions(cli_path=executable, stderr=sys.stderr.write)
    try:
        anyio.run(once if mode == "once" else session, options)
    except Exception:  # the test reads what went wrong from this line
        say({"type": "error", "message": traceback.format_exc()})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

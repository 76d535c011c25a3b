"""A minimal Agent Client Protocol client, as an editor (Zed) speaks it to its agent.

JSON-RPC 2.0, one JSON object per line on the agent's stdio: `initialize`, `session/new`,
`session/prompt`; the agent's notifications (`session/update`: the answer arrives as
`agent_message_chunk`s) are collected, and its own requests are answered the way an editor
would: `session/request_permission` with the first "allow" option, anything else (fs/*,
terminal/*, which this client does not offer) with "method not found". A reader thread takes
the agent's stdout; every wait has a deadline, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any, TypeAlias

Message: TypeAlias = dict[str, Any]


class AcpError(RuntimeError):
    """The agent answered a request with a JSON-RPC error, or did not answer in time."""


@dataclass
class Turn:
    """One `session/prompt`: how it ended and the text the agent streamed for it."""

    stop_reason: str
    text: str
    updates: list[Message] = field(default_factory=list)


class AcpClient:
    def __init__(self, agent: subprocess.Popen[bytes], *, timeout: float = 120) -> None:
        self.agent = agent
        self.timeout = timeout
        self._ids = iter(range(1, 1_000_000))
        self._answers: dict[int, queue.Queue[Message]] = {}
        self._lock = threading.Lock()
        self._write = threading.Lock()
        self.updates: list[Message] = []
        self.permission_requests: list[Message] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _send(self, message: Message) -> None:
        assert self.agent.stdin is not None
        with self._write:
            self.agent.stdin.write(json.dumps(message).encode() + b"\n")
            self.agent.stdin.flush()

    def _read(self) -> None:
        assert self.agent.stdout is not None
        for raw in self.agent.stdout:
            message: Message = json.loads(raw)
            if "method" in message and "id" in message:
                self._answer_agent(message)
            elif "method" in message:
                with self._lock:
                    self.updates.append(message)
            else:
                with self._lock:
                    waiting = self._answers.get(message.get("id", -1))
                if waiting is not None:
                    waiting.put(message)

    def _answer_agent(self, request: Message) -> None:
        if request["method"] == "session/request_permission":
            with self._lock:
                self.permission_requests.append(request)
            options = request["params"]["options"]
            chosen = next((o for o in options if o["kind"].startswith("allow")), options[0])
            result = {"outcome": {"outcome": "selected", "optionId": chosen["optionId"]}}
            self._send({"jsonrpc": "2.0", "id": request["id"], "result": result})
            return
        error = {"code": -32601, "message": f"method not found: {request['method']}"}
        self._send({"jsonrpc": "2.0", "id": request["id"], "error": error})

    def request(self, method: str, params: Message, timeout: float | None = None) -> Message:
        """Sends one request and waits for its answer; AcpError on an error or no answer."""
        number = next(self._ids)
        answer: queue.Queue[Message] = queue.Queue()
        with self._lock:
            self._answers[number] = answer
        self._send({"jsonrpc": "2.0", "id": number, "method": method, "params": params})
        try:
            message = answer.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            raise AcpError(f"no answer to {method} in {timeout or self.timeout} s") from None
        if "error" in message:
            raise AcpError(f"{method}: {json.dumps(message['error'])}")
        result: Message = message["result"]
        return result

    def initialize(self) -> Message:
        return self.request("initialize", {
            "protocolVersion": 1,
            "clientCapabilities": {
                "fs": {"readTextFile": False, "writeTextFile": False}, "terminal": False,
            },
        })

    def new_session(self, cwd: str) -> str:
        session: str = self.request("session/new", {"cwd": cwd, "mcpServers": []})["sessionId"]
        return session

    def prompt(self, session: str, text: str) -> Turn:
        with self._lock:
            seen = len(self.updates)
        result = self.request("session/prompt", {
            "sessionId": session, "prompt": [{"type": "text", "text": text}],
        })
        with self._lock:
            updates = [u["params"]["update"] for u in self.updates[seen:]
                       if u["method"] == "session/update"
                       and u["params"].get("sessionId") == session]
        chunks = [u["content"].get("text", "") for u in updates
                  if u.get("sessionUpdate") == "agent_message_chunk"]
        return Turn(result["stopReason"], "".join(chunks), updates)

    def close(self) -> int:
        """Closes the agent's stdin and ends it, as an editor does on quitting (the adapter
        keeps running after EOF on its stdin: it holds stdin open on purpose, index.js)."""
        if self.agent.stdin is not None:
            self.agent.stdin.close()
        self.agent.terminate()
        try:
            return self.agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            return self.agent.wait(timeout=30)

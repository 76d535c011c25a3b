"""The offline demo behind `scripts/demo`: claude-wrap repairing a login the real Claude Code
rejects, with no account and no network.

It installs the pinned real `claude` (npm, once, into the e2e cache), then leaves the network:
the process moves into a network namespace that has only loopback (as root, or through
`unshare -rn` in a user namespace of its own otherwise). There it starts the fake Anthropic API
and the test token server on 127.0.0.1, makes a throwaway HOME holding a login without `scopes`
(what third-party refreshers leave behind), installs the shim into that folder, and shows:
`claude auth status` failing directly and passing through the shim, and `echo hello | claude
--print` answering through the shim. The access token is good, so the shim repairs the login
locally, with no token request, although it has never seen that login before: it writes back the
scopes this release asks for (issue 28). Your own ~/.claude is never read or written.

Run it as `./scripts/demo` (which sets up .venv first), or `python -m tests.e2e.demo`;
`--claude-version=2.1.87` runs it against another release than the newest tested.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.install import CLAUDE_CODE_VERSION, InstallError, ensure_claude
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome, Run, new_tokens
from claude_wrap_testing.netns import IsolationError, _bring_up, enter_loopback_only
from claude_wrap_testing.tokenserver import TokenServer
from claude_wrap_testing.wrapped import Shim, install_shim

INSIDE = "--inside-namespace"
VERSION_FLAG = "--claude-version="
INFERENCE = "user:inference"
ANSWER = "Hello! This answer comes from the fake Anthropic API on 127.0.0.1."


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"\n==> {text}")


def show(run: Run, command: str, where: str) -> None:
    say(f"$ {command}    # {where}")
    for line in (run.out + run.err).rstrip("\n").splitlines():
        say(f"  {line}")
    say(f"  (exit status {run.returncode})")


def leave_the_network() -> None:
    """Moves this process into a loopback-only network namespace, or re-runs it inside one
    made by `unshare -rn` (no root needed where user namespaces are allowed)."""
    if INSIDE in sys.argv:
        _bring_up("lo")  # unshare -rn made the namespace; lo starts down
        return
    try:
        enter_loopback_only()
    except IsolationError as exc:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise SystemExit(f"demo: {exc}") from None
        # Not allowed (not root, or a container without CAP_SYS_ADMIN): a user namespace of our
        # own, in which we may make a network namespace.
        probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
        if probe.returncode != 0:
            raise SystemExit(
                f"demo: {exc}\nand `unshare -rn` failed too "
                f"({probe.stderr.decode(errors='replace').strip()}): run the demo as root, or "
                "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
            ) from None
        say("  (no privilege for that here: entering a user namespace of our own, `unshare -rn`)")
        argv = [unshare, "-rn", "--", sys.executable, "-m", "tests.e2e.demo", *sys.argv[1:],
                INSIDE]
        try:
            os.execv(unshare, argv)
        except OSError as err:
            raise SystemExit(f"demo: cannot run {shlex.join(argv)}: {err.strerror}") from None


def chosen_version() -> str:
    for arg in sys.argv[1:]:
        if arg.startswith(VERSION_FLAG):
            return arg.removeprefix(VERSION_FLAG)
    return CLAUDE_CODE_VERSION


def main() -> int:
    version = chosen_version()
    if INSIDE not in sys.argv:
        say("claude-wrap demo: the real Claude Code, a login it rejects, and the shim repairing")
        say("it. Everything runs offline, against servers on 127.0.0.1; no account is needed.")
        step(f"the real Claude Code {version} (npm, installed once into a cache)")
        try:
            path = ensure_claude(version)
        except (InstallError, OSError) as exc:
            say(f"demo: could not install the real Claude Code: {exc}")
            return 1
        say(f"  {path}")
    else:
        path = ensure_claude(version)  # installed before the re-run: a check only
    leave_the_network()
    step("a network namespace with only loopback: nothing below can leave this machine")
    with tempfile.TemporaryDirectory(prefix="claude-wrap-demo-") as tmp:
        return demo(ClaudeBinary(path, version=version), Path(tmp))


def demo(claude: ClaudeBinary, root: Path) -> int:
    with TokenServer(tag="demo") as tokens, FakeAnthropicAPI(
        answer=ANSWER, check_token=tokens.check
    ) as api:
        say(f"  fake Anthropic API: {api.url}   (claude's ANTHROPIC_BASE_URL)")
        say(f"  OAuth token endpoint: {tokens.url}   (the shim's CLAUDE_WRAP_TOKEN_URL)")

        home = ClaudeHome(root, api.url, tokens)
        step(f"a throwaway HOME, {home.home}: your own ~/.claude is not touched")
        pair = new_tokens("demo")
        written = home.write_credentials(pair, scopes=None)
        say("  its .credentials.json holds a valid login without `scopes`, as third-party")
        say("  refreshers leave it (tokens shortened):")
        oauth = home.read_credentials()["claudeAiOauth"]
        short = {k: (v[:20] + "…" if isinstance(v, str) and v.startswith("sk-ant-") else v)
                 for k, v in oauth.items()}
        say(f"  {json.dumps({'claudeAiOauth': short}, ensure_ascii=False)}")

        shim = Shim(install_shim(root / "shimbin"), claude)
        env = shim.env(home, tokens.url)
        step(f"the claude-wrap shim, installed into {shim.path.parent}, first on PATH")

        step("Claude Code on its own calls that login logged out")
        direct = claude.run(home, "auth", "status")
        show(direct, "claude auth status", "the real binary, directly")
        printed = claude.run(home, "--print", input=b"hello\n")
        show(printed, "echo hello | claude --print", "the real binary, directly")

        step("through the shim, the same commands work")
        status = shim.run(home, "auth", "status", env=env)
        show(status, "claude auth status", "through the shim")
        answered = shim.run(home, "--print", input=b"hello\n", env=env)
        show(answered, "echo hello | claude --print", "through the shim")

        after = home.read_credentials()
        stored = after["claudeAiOauth"]
        step("what the shim did")
        say(f"  requests to the token endpoint: {len(tokens.requests)}")
        same = stored.get("accessToken") == oauth.get("accessToken")
        say(f"  access token: {'the same, still good' if same else 'a new one'}")
        say(f"  scopes now stored: {' '.join(stored.get('scopes') or [])}   (what claude "
            f"{claude.version} asks for)")
        kept = sorted(k for k, v in oauth.items() if stored.get(k) == v) + sorted(
            k for k, v in written.items() if k != "claudeAiOauth" and after.get(k) == v)
        say(f"  fields kept as they were: {', '.join(kept)}")
        say(f"  its log ({Shim.log_file(home).name}, tokens masked):")
        for line in Shim.log_file(home).read_text().splitlines():
            say(f"    {line}")

    ok = (
        direct.returncode == 1
        and json.loads(direct.stdout).get("loggedIn") is False
        and status.returncode == 0
        and json.loads(status.stdout).get("loggedIn") is True
        and (answered.returncode, answered.out) == (0, ANSWER + "\n")
        and not tokens.requests  # a good access token: repaired locally, nothing spent
        and stored.get("accessToken") == oauth.get("accessToken")
        and INFERENCE in (stored.get("scopes") or [])
    )
    step("done: the shim repaired the login locally, with no token request" if ok
         else "FAILED: see the output above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

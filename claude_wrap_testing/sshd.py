"""A real OpenSSH server on 127.0.0.1 for the guest tests: its own sshd_config (no system config,
no PAM), host key and client key made for the test, and an authorized_keys whose one line has
the forced command docs/guests.md documents, so the key can run nothing else.

The client side gets its own ssh config (-F) with UserKnownHostsFile in the temp folder, holding
the host key we made: no prompt, no ~/.ssh of the machine touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path


def find_sshd() -> str:
    """sshd on PATH, looked up when a server starts (scripts/test and scripts/compat put
    /usr/sbin on it). PATH alone, so that a test can hide it: scripts/compat must then say SKIP
    and name the package (issue 28)."""
    found = shutil.which("sshd")
    if found is None:
        raise FileNotFoundError(
            "sshd is not on PATH (Debian: apt-get install openssh-server; it lives in /usr/sbin)"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "claude-wrap-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return Path(f"{path}.pub").read_text().strip()


class Sshd:
    """sshd -D on a free loopback port, forced command `command` for the test's key."""

    def __init__(self, root: Path, command: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.port = free_port()
        self.host_key = root / "host_ed25519"
        host_pub = keygen(self.host_key)
        self.client_key = root / "client_ed25519"
        client_pub = keygen(self.client_key)
        self.authorized = root / "authorized_keys"
        # docs/guests.md's line, word for word but for the command.
        self.authorized.write_text(f'command="{command}",restrict {client_pub}\n')
        self.authorized.chmod(0o600)
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized}\n"
            f"PidFile {root / 'sshd.pid'}\n"
            "UsePAM no\n"
            "StrictModes no\n"  # temp folders: their owners and modes are the test's
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            f"AllowUsers {user}\n"
            "MaxStartups 64:30:100\n"
            "MaxSessions 64\n"
            "LogLevel INFO\n"  # one "Accepted publickey" line per login: tests count them
        )
        known = root / "known_hosts"
        known.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        self.client_config = root / "ssh_config"
        self.client_config.write_text(
            "Host owner\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {user}\n"
            f"  IdentityFile {self.client_key}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ssh_command(self) -> str:
        """CLAUDE_WRAP_GUEST_SSH for a guest using this server."""
        return f"ssh -F {shlex.quote(str(self.client_config))}"

    def __enter__(self) -> Sshd:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.log = open(self.root / "sshd.log", "wb")
        self.proc = subprocess.Popen(
            [find_sshd(), "-D", "-e", "-f", str(self.config)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 20 s")

    def logins(self) -> int:
        return (self.root / "sshd.log").read_text(errors="replace").count("Accepted publickey")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()

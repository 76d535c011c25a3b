"""Moves the test process into a network namespace that has only loopback.

The real `claude` keeps resolving api.anthropic.com and platform.claude.com in the background
(docs/protocol.md section 7). Rather than trusting every environment variable to keep it
offline, the pytest process itself leaves the host's network: after `unshare(CLONE_NEWNET)` the
process (and every thread and child it creates afterwards) sees a fresh namespace whose only
interface is `lo`, which we bring up. Any non-loopback connect then fails at once with
ENETUNREACH, and DNS lookups fail the same way, so nothing can leave the machine.

The move is one-way for the rest of the session. That is harmless for the other tests, which
only ever talk to 127.0.0.1 by design.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import threading

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class IsolationError(RuntimeError):
    """The process could not be moved into a loopback-only network namespace."""


def namespace_id() -> str:
    """Identifies the current network namespace, e.g. "net:[4026531840]"."""
    return os.readlink("/proc/thread-self/ns/net")


def _bring_up(interface: str) -> None:
    # ioctl(SIOCSIFFLAGS) on struct ifreq {char ifr_name[16]; short ifr_flags; ...}, as
    # `ip link set lo up` does, without depending on iproute2 being installed.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", interface.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", interface.encode(), flags | IFF_UP))


def enter_loopback_only() -> None:
    """unshare(CLONE_NEWNET) for this process, then bring `lo` up. Raises IsolationError."""
    # A network namespace belongs to a thread: threads that exist already keep the old one,
    # new threads and children inherit the caller's. So this must run on the main thread,
    # which creates every server thread and child process afterwards.
    if threading.current_thread() is not threading.main_thread():
        raise IsolationError("enter_loopback_only() must run on the main thread")
    before = namespace_id()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise IsolationError(
            f"unshare(CLONE_NEWNET) failed: {os.strerror(err)} (errno {err}). The end-to-end "
            "tests run the real claude binary only inside a loopback-only network namespace, "
            "which needs root or CAP_SYS_ADMIN (run them as root, e.g. in the CI container, "
            "or set CLAUDE_WRAP_SKIP_E2E=1 to skip them)"
        )
    try:
        _bring_up("lo")
    except OSError as exc:
        raise IsolationError(f"could not bring up lo in the new network namespace: {exc}") from exc
    if namespace_id() == before:
        raise IsolationError(f"unshare(CLONE_NEWNET) returned 0, yet this is still {before}")

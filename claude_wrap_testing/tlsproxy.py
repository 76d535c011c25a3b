"""A loopback HTTPS proxy that lets the real `claude` refresh its own login against a test server.

No Claude environment variable can point its refresh anywhere but platform.claude.com
(docs/protocol.md section 7), but it honours HTTPS_PROXY and NODE_EXTRA_CA_CERTS. So this
proxy answers `CONNECT platform.claude.com:443` (and api.anthropic.com:443) itself, terminates
TLS with a leaf certificate for those names signed by a throwaway CA minted at test time with
the `openssl` CLI, and serves inside the tunnel:
- `POST /v1/oauth/token`: relayed to a `tokenserver.TokenServer` on loopback, which
  scripts the answers and logs what the binary sent;
- `GET /api/oauth/profile`: a Max-plan profile, so the binary's bookkeeping after a refresh works;
- anything else: logged, and answered 404.
Every other CONNECT target is refused with 403: the proxy never opens a connection anywhere.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .tokenserver import TokenServer

TUNNELLED_HOSTS = ("platform.claude.com", "api.anthropic.com")
PROFILE = {
    "account": {
        "uuid": "00000000-0000-4000-8000-00000000e2e0",
        "email": "e2e@example.invalid",
        "full_name": "E2E Test",
        "display_name": "e2e",
        "has_claude_max": True,
        "has_claude_pro": False,
    },
    "organization": {
        "uuid": "00000000-0000-4000-8000-00000000e2e1",
        "name": "E2E Org",
        "organization_type": "claude_max",
        "billing_type": "stripe_subscription",
        "rate_limit_tier": "default_claude_max_20x",
    },
}


RELAYED_HEADER = "X-Relayed-By"  # on every token request relayed from the real binary


@dataclass(frozen=True)
class CertFiles:
    """A throwaway CA (`ca`, for NODE_EXTRA_CA_CERTS) and a leaf for TUNNELLED_HOSTS it signed."""

    ca: Path
    leaf: Path
    leaf_key: Path


def mint_throwaway_ca(folder: Path, hosts: tuple[str, ...] = TUNNELLED_HOSTS) -> CertFiles:
    """Mints a CA and a leaf certificate with the `openssl` CLI into `folder` (valid 2 days)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("the openssl CLI is needed to mint the proxy's throwaway CA")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    leaf, leaf_key, csr = folder / "leaf.pem", folder / "leaf.key", folder / "leaf.csr"
    extensions = folder / "leaf.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=" + ",".join(f"DNS:{host}" for host in hosts) + "\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=claude-wrap e2e throwaway CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", "-new", *ec, "-keyout", leaf_key, "-out", csr,
         "-subj", f"/CN={hosts[0]}"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", leaf, "-days", "2", "-sha256", "-extfile", extensions],
    ]
    for step in steps:
        subprocess.run([str(arg) for arg in step], check=True, capture_output=True, timeout=60)
    return CertFiles(ca, leaf, leaf_key)


@dataclass(frozen=True)
class TunnelRequest:
    host: str
    method: str
    path: str
    token: str  # the bearer token, "" when there was none


class OAuthProxy:
    """CONNECT proxy on 127.0.0.1:<free port>. Use as a context manager; `env()` points a run
    of the real binary at it."""

    def __init__(self, certs: CertFiles, token_server: TokenServer) -> None:
        self.certs = certs
        self.token_server = token_server
        self.tunnels: list[str] = []  # every CONNECT target asked for, allowed or not
        self.requests: list[TunnelRequest] = []  # every request made inside a tunnel
        self._lock = threading.Lock()
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(certs.leaf, certs.leaf_key)
        inner = _tunnel_handler(self)
        outer = _connect_handler(self, tls, inner)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), outer)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def env(self) -> dict[str, str]:
        """What a run needs to send Claude's own hosts through this proxy, and only those."""
        return {
            "HTTPS_PROXY": self.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "NODE_EXTRA_CA_CERTS": str(self.certs.ca),
        }

    def __enter__(self) -> OAuthProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _tunnel_handler(proxy: OAuthProxy) -> type[BaseHTTPRequestHandler]:
    """The handler of HTTP inside one TLS tunnel: the requests recorded, the token request
    relayed to the scripted token server, the profile answered."""

    class Inner(BaseHTTPRequestHandler):
        """HTTP inside one TLS tunnel; `server.tunnel_host` says which host it stands for."""

        protocol_version = "HTTP/1.1"
        timeout = 60
        tunnel_host = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization") or ""
            with proxy._lock:
                proxy.requests.append(TunnelRequest(
                    self.tunnel_host, self.command, self.path,
                    auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else "",
                ))
            return body

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._record()
            if self.path.split("?")[0] == "/api/oauth/profile":
                self._send(200, json.dumps(PROFILE).encode())
            else:
                self._not_found()

        def do_POST(self) -> None:
            body = self._record()
            if (self.tunnel_host, self.path) != ("platform.claude.com", "/v1/oauth/token"):
                self._not_found()
                return
            # Relay to the scripted token server, which logs and answers it.
            upstream = http.client.HTTPConnection(
                "127.0.0.1", proxy.token_server.port, timeout=60
            )
            try:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "user-agent", "accept")}
                # claude-wrap sends the real binary's User-Agent, so this is what tells
                # the token server that the real binary sent it (the soak counts by it).
                headers[RELAYED_HEADER] = "tlsproxy"
                upstream.request("POST", "/v1/oauth/token", body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
                ctype = answer.getheader("Content-Type") or "application/json"
                self._send(answer.status, payload, ctype)
            except (OSError, http.client.HTTPException):
                # The token server closed or truncated on purpose: do the same.
                self.close_connection = True
            finally:
                upstream.close()

        def _not_found(self) -> None:
            error = {"type": "error", "error": {"type": "not_found_error",
                                                "message": "not served by the e2e proxy"}}
            self._send(404, json.dumps(error).encode())

    return Inner


def _connect_handler(
    proxy: OAuthProxy, tls: ssl.SSLContext, inner: type[BaseHTTPRequestHandler]
) -> type[BaseHTTPRequestHandler]:
    """The proxy's own handler: CONNECT to Claude's hosts opens a TLS tunnel served by `inner`;
    anything else is refused."""

    class Outer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Unbuffered, so no byte of the TLS handshake that follows CONNECT is read ahead.
        rbufsize = 0

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_CONNECT(self) -> None:
            host, _, port = self.path.rpartition(":")
            with proxy._lock:
                proxy.tunnels.append(self.path)
            self.close_connection = True
            if host not in TUNNELLED_HOSTS or port != "443":
                self.send_error(403, "the e2e proxy only tunnels to Claude's own hosts")
                return
            self.send_response(200, "Connection Established")
            self.end_headers()
            self.wfile.flush()
            try:
                stream = tls.wrap_socket(self.connection, server_side=True)
            except (OSError, ssl.SSLError):
                return  # the client rejected our certificate: it shows in its own output
            handler = type("Tunnel", (inner,), {"tunnel_host": host})
            try:
                handler(stream, self.client_address, self.server)
            except OSError:
                pass  # the client went away mid-request
            finally:
                stream.close()

        def do_GET(self) -> None:
            # A plain-HTTP proxy request: refused, nothing is fetched.
            self.send_error(405, "the e2e proxy only does CONNECT")

        do_POST = do_HEAD = do_GET

    return Outer

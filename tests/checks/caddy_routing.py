#!/usr/bin/env python3
"""Runs the real Caddy with the top-level Caddyfile on loopback and checks the
preview routing: project hosts (and WebSocket upgrades) reach the upstream,
every other host reaches nothing, and a dead upstream gets the waking page.

The Caddyfile's upstream is pointed at a loopback server with
APNA_PREVIEW_UPSTREAM_FROM=env; the server records what it receives, including
the X-Apna-Project header carrying the id Caddy captured from the Host.
"""

import base64
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

DOMAIN = "preview.example.test"
API = "https://api.example.test"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """A tiny HTTP/1.1 server: records each request; answers WebSocket
    upgrades with 101 and then echoes bytes, everything else with 200."""

    def __init__(self):
        self.requests = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            self.requests.append((head[0], headers))
            if headers.get("upgrade", "").lower() == "websocket":
                accept = base64.b64encode(
                    hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()
                ).decode()
                conn.sendall(
                    (
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                    ).encode()
                )
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    conn.sendall(chunk)
            body = f"upstream project={headers.get('x-apna-project', '')}".encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )


def start_caddy(port, upstream, workdir):
    env = dict(
        os.environ,
        CADDY_DOMAIN=DOMAIN,
        CADDY_SCHEME="http",
        CADDY_BIND="127.0.0.1",
        CADDY_HTTP_PORT=str(port),
        APNA_PREVIEW_UPSTREAM_FROM="env",
        # Host routing alone; the gate's cases run against the real gate in
        # functions/tests/preview_gate.rs (caddy.sh runs them too).
        APNA_PREVIEW_GATE="off",
        APNA_PREVIEW_UPSTREAM=upstream,
        APNA_API_ORIGIN=API,
        XDG_DATA_HOME=os.path.join(workdir, "data"),
        XDG_CONFIG_HOME=os.path.join(workdir, "config"),
        HOME=workdir,
    )
    log = open(os.path.join(workdir, f"caddy-{port}.log"), "w")
    proc = subprocess.Popen(
        ["caddy", "run", "--config", os.path.join(ROOT, "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"caddy exited: see {log.name}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("caddy did not start listening")


def get(port, host):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/src/main.tsx", headers={"Host": host})
    res = conn.getresponse()
    body = res.read().decode("utf-8", "replace")
    conn.close()
    return res.status, body


def websocket(port, host):
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            (
                f"GET /?token=hmr HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n"
                f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Protocol: vite-hmr\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        status_line = data.split(b"\r\n", 1)[0].decode()
        if " 101 " not in status_line + " ":
            return status_line, None
        s.sendall(b"ping-through-caddy")
        echoed = b""
        while len(echoed) < len(b"ping-through-caddy"):
            chunk = s.recv(4096)
            if not chunk:
                break
            echoed += chunk
        return status_line, echoed


failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def production_redirects():
    """With the default https scheme, plain HTTP on a preview host redirects."""
    env = dict(os.environ, CADDY_DOMAIN=DOMAIN)
    out = subprocess.run(
        ["caddy", "adapt", "--config", os.path.join(ROOT, "Caddyfile"), "--adapter", "caddyfile"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    import json

    servers = json.loads(out)["apps"]["http"]["servers"].values()
    plain = [s for s in servers if any(l.endswith(":80") for l in s["listen"])]
    text = json.dumps(plain)
    check(
        len(plain) == 1 and f'"*.{DOMAIN}"' in text and '"https://{http.request.host}{http.request.uri}"' in text,
        "https mode: port 80 redirects preview hosts to https",
    )


def main():
    production_redirects()
    upstream = Upstream()
    workdir = tempfile.mkdtemp(prefix="apna-caddy-")
    live_port, dead_port = free_port(), free_port()
    live = start_caddy(live_port, f"127.0.0.1:{upstream.port}", workdir)
    dead = start_caddy(dead_port, f"127.0.0.1:{free_port()}", workdir)
    try:
        for host, project in [
            (f"abc123.{DOMAIN}", "abc123"),
            (f"abc123.{DOMAIN}:8443", "abc123"),
            (f"0b9e6c1e-8f6f-4c53-9d0c-3f0f6a1c2b7d.{DOMAIN}", "0b9e6c1e-8f6f-4c53-9d0c-3f0f6a1c2b7d"),
            (f"{'a' * 55}.{DOMAIN}", "a" * 55),
        ]:
            before = len(upstream.requests)
            status, body = get(live_port, host)
            check(
                status == 200 and body == f"upstream project={project}" and len(upstream.requests) == before + 1,
                f"{host} reaches the upstream as project {project} ({status} {body[:60]!r})",
            )
            check(
                upstream.requests[-1][1].get("host") == host if len(upstream.requests) > before else False,
                f"{host}: the upstream sees the original Host",
            )

        status_line, echoed = websocket(live_port, f"abc123.{DOMAIN}")
        check(echoed == b"ping-through-caddy", f"WebSocket upgrade passes ({status_line}, echo {echoed!r})")
        check(upstream.requests[-1][1].get("upgrade", "").lower() == "websocket", "the upstream saw the Upgrade")

        for host in [
            f"x.default.svc.cluster.local.{DOMAIN}",
            f"a.b.{DOMAIN}",
            f"ABC.{DOMAIN}",
            f"Abc123.{DOMAIN}",
            "evil.com",
            f"abc123.evil.com",
            f"abc123.previewXexample.test",
            f"abc123.preview.exampleXtest",
            f"abc123-preview.example.test",
            f"abc123.{DOMAIN}.evil.com",
            f"abc-.{DOMAIN}",
            f"-abc.{DOMAIN}",
            f"a_b.{DOMAIN}",
            f"{'a' * 56}.{DOMAIN}",
            DOMAIN,
            f".{DOMAIN}",
        ]:
            before = len(upstream.requests)
            status, body = get(live_port, host)
            check(
                len(upstream.requests) == before and status == 404 and "upstream" not in body,
                f"{host} reaches nothing ({status})",
            )
            ws_status, _ = websocket(live_port, host)
            check(len(upstream.requests) == before and " 101 " not in ws_status + " ", f"{host}: no WebSocket either ({ws_status})")

        status, body = get(dead_port, f"abc123.{DOMAIN}")
        check(status == 503 and "Waking up" in body, f"dead upstream: the waking page ({status})")
        check(f'var api = "{API}";' in body and "/preview-wake/" in body, "the waking page calls the API's wake route")
        status, body = get(dead_port, f"a.b.{DOMAIN}")
        check(status == 404 and "Waking" not in body, f"dead upstream, bad host: still 404 ({status})")
    finally:
        for p in (live, dead):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    if failures:
        print(f"\n{len(failures)} Caddy routing check(s) failed; logs in {workdir}")
        sys.exit(1)
    print("caddy routing: all checks passed")


if __name__ == "__main__":
    main()

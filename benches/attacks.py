#!/usr/bin/env python3
"""Before/after figures for the edge-limit attacks (DESIGN 10), two preflightd binaries side
by side on loopback, each in front of examples/test_upstream.

    python3 benches/attacks.py OLD_BINARY NEW_BINARY UPSTREAM_BINARY

Every attack is bounded in time and count and talks only to 127.0.0.1. Prints one line per
attack and binary. The integration tests (tests/integration/limits.rs) assert the outcomes;
this only measures them against an older build.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

RULES = """
[[rule]]
name = "web"
hosts = ["api.example.com"]
origins = ["https://app.example.com"]
methods = ["PUT"]
"""

PREFLIGHT = (
    b"OPTIONS /v1/x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\n"
    b"Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n"
)


def start(binary, args, upstream=None):
    rules = tempfile.mkdtemp()
    with open(os.path.join(rules, "rules.toml"), "w") as f:
        f.write(RULES)
    command = [binary, "serve", "--rules", rules, "--listen", "127.0.0.1:0",
               "--admin-listen", "127.0.0.1:0", "--log-format", "json", "--workers", "1"] + args
    if upstream:
        command += ["--upstream", upstream]
    log = tempfile.NamedTemporaryFile(delete=False)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline:
        with open(log.name) as f:
            for line in f:
                if '"serving"' in line:
                    entry = json.loads(line)
                    data = tuple_address(entry["listen"])
                    admin = tuple_address(entry["admin"])
                    return process, data, admin, log.name
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{binary} did not start")


def tuple_address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def start_upstream(binary):
    process = subprocess.Popen([binary, "127.0.0.1:0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline().split()
    return process, f"http://{line[1]}"


def request(address, raw, timeout=5.0):
    """Sends raw bytes on a new connection; the response's first line, or the error."""
    try:
        with socket.create_connection(address, timeout=timeout) as s:
            s.sendall(raw)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n")[0].decode() or "(closed)"
    except OSError as e:
        return f"({type(e).__name__})"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(admin, name):
    try:
        with socket.create_connection(admin, timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        for line in data.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    except OSError:
        pass
    return None


def silent_sockets(binary, _upstream):
    process, data, _, _ = start(binary, ["--max-connections", "20", "--header-read-timeout", "3s"])
    held = [socket.create_connection(data) for _ in range(20)]
    started = time.time()
    first = request(data, PREFLIGHT, timeout=10)
    waited = time.time() - started
    process.kill()
    for s in held:
        s.close()
    return f"20 silent sockets, new preflight: {first!r} after {waited:.1f} s (10 s bound)"


def stalled_downloads(binary, upstream):
    process, data, _, _ = start(binary, [], upstream)
    request(data, b"GET /stream?bytes=1000000 HTTP/1.1\r\nHost: api.example.com\r\n"
                  b"Connection: close\r\n\r\n")
    time.sleep(0.5)
    before = rss_kib(process.pid)
    clients = []
    for _ in range(200):
        s = socket.create_connection(data)
        s.sendall(b"GET /stream?bytes=100000000 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        s.recv(1024)
        clients.append(s)
    time.sleep(3)
    during = rss_kib(process.pid)
    for s in clients:
        s.close()
    time.sleep(2)
    after = rss_kib(process.pid)
    process.kill()
    return (f"200 stalled downloads: RSS {before // 1024} -> {during // 1024} MiB "
            f"({(during - before) // 200} KiB each), {after // 1024} MiB after they closed")


def tunnels(binary, upstream):
    process, data, admin, _ = start(binary, [], upstream)
    held = []
    for _ in range(2):
        s = socket.create_connection(data)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\n\r\n")
        s.recv(4096)
        held.append(s)
    time.sleep(0.3)
    gauge = metric(admin, "preflightd_connections_open")
    process.kill()
    return f"2 WebSocket tunnels open: preflightd_connections_open = {gauge}"


def h2c(binary, upstream):
    process, data, _, _ = start(binary, [], upstream)
    line = request(data, b"GET /h2c HTTP/1.1\r\nHost: api.example.com\r\n"
                         b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                         b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
    process.kill()
    return f"Upgrade: h2c answered {line!r}"


def half_close(binary, upstream):
    process, data, _, _ = start(binary, [], upstream)
    try:
        with socket.create_connection(data, timeout=5) as s:
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n"
                      b"\r\nhello")
            s.shutdown(socket.SHUT_WR)
            line = s.recv(4096).split(b"\r\n")[0].decode() or "(closed, no answer)"
    except OSError as e:
        line = f"({type(e).__name__})"
    process.kill()
    return f"half-closed POST: {line!r}"


def hosts(binary, upstream):
    process, data, _, _ = start(binary, [], upstream)
    cases = {
        "two Host lines": b"GET /two HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        "Host: a b@c/d": b"GET /bad HTTP/1.1\r\nHost: a b@c/d\r\nConnection: close\r\n\r\n",
        "CONNECT": b"CONNECT evil.test:80 HTTP/1.1\r\nHost: evil.test:80\r\n\r\n",
    }
    out = [f"{name}: {request(data, raw)!r}" for name, raw in cases.items()]
    process.kill()
    return "; ".join(out)


def admin_flood(binary, _upstream):
    process, data, admin, _ = start(binary, ["--header-read-timeout", "3s"])
    held = []
    for _ in range(3000):
        try:
            held.append(socket.create_connection(admin, timeout=0.05))
        except OSError:
            pass
    time.sleep(0.5)
    fds = len(os.listdir(f"/proc/{process.pid}/fd"))
    started = time.time()
    answered = metric(admin, "preflightd_build_info")
    waited = time.time() - started
    preflight = request(data, PREFLIGHT)
    process.kill()
    for s in held:
        s.close()
    return (f"{len(held)} idle admin connections: preflightd holds {fds} fds; /metrics "
            f"{'answered' if answered else 'not answered'} after {waited:.1f} s; data: {preflight!r}")


def failure_burst(binary, _upstream):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    process, data, _, log = start(binary, [], f"http://127.0.0.1:{port}")
    s = socket.create_connection(data)
    for _ in range(500):
        s.sendall(b"GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response or not response.endswith(b"\n"):
            response += s.recv(4096)
    s.close()
    time.sleep(0.5)
    process.kill()
    with open(log) as f:
        lines = sum("upstream request failed" in line for line in f)
    return f"500 upstream failures: {lines} warning lines"


def cookies(binary, upstream):
    process, data, _, _ = start(binary, [], upstream)
    line = request(data, b"GET /cookies?n=100 HTTP/1.1\r\nHost: api.example.com\r\n"
                         b"Connection: close\r\n\r\n")
    process.kill()
    return f"upstream response with 100 Set-Cookie lines: {line!r}"


def main():
    old, new, upstream_binary = sys.argv[1:4]
    upstream, url = start_upstream(upstream_binary)
    try:
        for attack in [silent_sockets, stalled_downloads, tunnels, h2c, half_close, hosts,
                       admin_flood, failure_burst, cookies]:
            for label, binary in (("before", old), ("after", new)):
                print(f"{attack.__name__:18} {label:6} {attack(binary, url)}", flush=True)
    finally:
        upstream.kill()


if __name__ == "__main__":
    main()

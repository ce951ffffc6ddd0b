#!/usr/bin/env python3
"""Load benchmarks: preflightd beside nginx and the socket floors, on loopback, in one run.

    python3 benches/load/run.py [--rounds 5] [--duration 5] [--only SCENARIO ...] [--bin-dir DIR]

Installs what is missing (wrk, nginx from Debian), builds preflightd and the floors in
release (or, with --bin-dir DIR, takes DIR/preflightd, DIR/examples/floor_raw and
DIR/examples/floor_hyper as they are, without building; a missing floor is reported as not
measured), then for each scenario checks that every target answers the scenario's request with
the same status and CORS headers (a target that answers differently is not measured), and
runs wrk against the targets interleaved (A B C A B C ...) for --rounds rounds. It reports
medians with min/max of requests/s, p50/p99 latency, server CPU time per request, user and
system apart and their total (from /proc/PID/stat, all threads and, for nginx, all its
processes), and syscalls per request (`perf stat -e raw_syscalls:sys_enter` attached to the
server's processes for exactly the measured wrk run; "n/a" when perf cannot count it). Each
preflight table ends with preflightd's ratios to nginx (and to the raw floor), beside the
issue's targets where it sets them. Servers run on CPU 0 with one worker; wrk (and the
upstream, for proxy scenarios) on CPU 1, except in two-workers. Every run is bounded in time;
every process started is stopped by pid. The report goes to stdout as Markdown.

Scenarios (--only takes any of these; default: all, in this order):
  preflight-100     allowed preflight, 100 origins; with floor-raw and floor-hyper
  preflight-10k     allowed preflight, 10 000 origins (1 000 globs): a glob-matched origin, an exact one
  denied-100        denied preflight, 100 origins; with floor-raw
  denied-10k        denied preflight, 10 000 origins ("denied" is accepted for it)
  after-get         as preflight-100, but each connection's first request is a proxied GET /small
                    (so preflightd's connection is on its hyper path); with floor-raw
  after-get-denied  the same with a denied preflight
  pipelined         allowed preflight, 100 origins, 16 pipelined per write; with floor-raw
  two-workers       allowed preflight, 100 origins, 2 workers each (preflightd --workers 2, nginx
                    worker_processes 2, floors 2 threads), nothing pinned, wrk -t2
  tls               allowed preflight, 100 origins, over TLS with keep-alive, against nginx with
                    the same ECDSA P-256 certificate
  hostile-acrh      4 KiB Access-Control-Request-Headers
  proxy-small       proxied GET, 13-byte body (and wrk straight to the upstream)
  proxy-1mib        proxied GET, 1 MiB body
  access-log        the access log's cost: preflightd with --access-log json to a file beside
                    preflightd without, on an allowed preflight (fast path and hyper's path)
                    and a proxied GET /small
  reload            100 reloads of 10 000 rules under a mixed load
  memory            RSS after 10 k and 1 M requests
  shadow            allowed preflight, 100 origins, with mode = "shadow" (proxied to test_upstream --cors
                    and compared, the answers agreeing and not), beside the same preflight forwarded
                    uncompared, answered in enforce mode, and answered by the upstream alone
"""

import argparse
import http.client
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Executables by target name ("preflightd", "floor_raw", ...), as cargo reports them in build():
# wherever the target directory is (CARGO_TARGET_DIR, build.target-dir, --target); or as found
# in --bin-dir by bins_from().
BIN = {}
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"
CONNECTIONS = 64
PIPELINE_DEPTH = 16
VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
SYSCALL_EVENT = "raw_syscalls:sys_enter"
# Syscall counting: "why" is None when perf can count SYSCALL_EVENT (perf_probe()), else the
# reason, printed once; "failures" collects why a single count failed.
PERF = {"why": "not probed", "failures": set()}
NAN = float("nan")

# ---------------------------------------------------------------------------------------------
# setup


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def install_missing():
    need = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not shutil.which(tool)]
    if need:
        print(f"installing {' '.join(need)}", file=sys.stderr)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(*sudo, "apt-get", "update", "-qq")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *need, env=env)


def bins_from(directory):
    """--bin-dir: the executables as they are, no build. A missing floor is left out of BIN
    (scenarios report it as not measured); test_upstream stands in for the upstream when
    floor_raw is missing."""
    preflightd = os.path.join(directory, "preflightd")
    if not os.access(preflightd, os.X_OK):
        raise SystemExit(f"--bin-dir {directory}: no executable preflightd")
    BIN["preflightd"] = os.path.abspath(preflightd)
    for name in ("floor_raw", "floor_hyper", "test_upstream"):
        path = os.path.join(directory, "examples", name)
        if os.access(path, os.X_OK):
            BIN[name] = os.path.abspath(path)


def build():
    out = sh("cargo", "build", "--release", "--locked", "--quiet", "--message-format=json-render-diagnostics",
             "--bin", "preflightd", "--example", "floor_raw", "--example", "floor_hyper", cwd=ROOT,
             stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            BIN[msg["target"]["name"]] = msg["executable"]
    missing = {"preflightd", "floor_raw", "floor_hyper"} - BIN.keys()
    if missing:
        raise RuntimeError(f"cargo build reported no executable for {sorted(missing)}")


def build_test_upstream():
    """The shadow scenario's upstream (examples/test_upstream.rs), in release."""
    out = sh("cargo", "build", "--release", "--locked", "--quiet", "--message-format=json-render-diagnostics",
             "--example", "test_upstream", cwd=ROOT, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            BIN[msg["target"]["name"]] = msg["executable"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def perf_probe():
    """None if `perf stat` can count SYSCALL_EVENT here, else why not. Mounts tracefs (as root)
    when the event is missing because it is not mounted."""
    if not shutil.which("perf"):
        return "perf is not installed"

    def attempt():
        try:
            out = subprocess.run(["perf", "stat", "-x,", "-e", SYSCALL_EVENT, "--", "true"],
                                 capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"perf stat failed: {e}"
        if re.search(rf"^\s*\d+,[^,]*,{SYSCALL_EVENT}", out.stderr, re.M):
            return None
        lines = [l.strip() for l in (out.stderr + out.stdout).splitlines() if l.strip() and not l.startswith("#")]
        return f"perf stat -e {SYSCALL_EVENT} counts nothing: {lines[0] if lines else f'exit {out.returncode}'}"

    why = attempt()
    if why and os.geteuid() == 0 and not os.path.isdir("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], capture_output=True, timeout=20)
        why = attempt()
    return why


# ---------------------------------------------------------------------------------------------
# rules, for preflightd and the same allowlist for nginx


def origins(n):
    """n origins, every tenth a subdomain glob (as in benches/decision.rs)."""
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append(("glob", f"https://*.tenant{i:05}.example.net", f"tenant{i:05}.example.net"))
        else:
            out.append(("exact", f"https://app{i:05}.customer{i % 97:02}.example.com", None))
    return out


def rules_toml(n):
    entries = ",\n  ".join(f'"{o}"' for _, o, _ in origins(n))
    return (
        "[[rule]]\nname = \"web\"\n"
        f"origins = [\n  {entries},\n]\n"
        'methods = ["PUT", "DELETE"]\nheaders = ["content-type", "x-api-key"]\nmax_age = 7200\n'
    )


def allowed_origin(n, kind):
    """An origin in the middle of the list: exact, or one that a glob matches."""
    items = origins(n)
    mid = [o for o in items[len(items) // 2:] if o[0] == kind]
    if kind == "exact" or not mid:
        return next(o for k, o, _ in items[len(items) // 2:] if k == "exact")
    return f"https://eu.api.{mid[0][2]}"


def nginx_conf(prefix, port, n, upstream_port, workers=1, tls=None):
    lines = []
    for kind, origin, domain in origins(n):
        if kind == "exact":
            lines.append(f'    "{origin}" 1;')
        else:
            lines.append(f'    "~^https://[a-z0-9_-]+(\\.[a-z0-9_-]+)*\\.{re.escape(domain)}$" 1;')
    allowlist = "\n".join(lines)
    tls_lines = "" if not tls else (
        f"\n    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};"
        "\n    ssl_protocols TLSv1.2 TLSv1.3;")
    return f"""
worker_processes {workers};
daemon off;
master_process on;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
pcre_jit on;
events {{ worker_connections 10240; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  map_hash_max_size 262144;
  map_hash_bucket_size 128;
  map $http_origin $cors_ok {{
    default 0;
{allowlist}
  }}
  map "$request_method:$cors_ok" $preflight {{
    default proxy;
    "OPTIONS:1" allow;
    "OPTIONS:0" deny;
  }}
  upstream backend {{
    server 127.0.0.1:{upstream_port};
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096{" ssl" if tls else ""};{tls_lines}
    location / {{
      if ($preflight = allow) {{
        add_header Access-Control-Allow-Origin $http_origin always;
        add_header Access-Control-Allow-Methods "PUT, DELETE" always;
        add_header Access-Control-Allow-Headers "content-type, x-api-key" always;
        add_header Access-Control-Max-Age 7200 always;
        add_header Vary "{VARY}" always;
        add_header Cache-Control no-store always;
        return 204;
      }}
      if ($preflight = deny) {{
        add_header Vary "{VARY}" always;
        add_header Cache-Control no-store always;
        return 403 "CORS preflight denied: origin not allowed\\n";
      }}
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""


# ---------------------------------------------------------------------------------------------
# processes


class Server:
    def __init__(self, name, argv, port, cpu=SERVER_CPU, env=None):
        """cpu None: not pinned."""
        self.name, self.port, self.floor = name, port, False
        pin = ["taskset", "-c", cpu] if cpu is not None else []
        self.proc = subprocess.Popen([*pin, *argv], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        wait_port(port)

    def pids(self):
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return [self.proc.pid, *map(int, children)]

    def cpu_seconds(self):
        """(user, system) seconds of all the server's processes and threads."""
        user = system = 0
        for pid in self.pids():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            user += int(fields[11])  # field 14, utime
            system += int(fields[12])  # field 15, stime
        return user / TICKS, system / TICKS

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


# Ports served over TLS (the tls scenario): answers() and wrk speak https to them.
TLS_PORTS = set()

# The target name of --baseline-bin.
BASELINE = "preflightd-before"


def start_preflightd(workdir, n, upstream_port, extra=(), workers=1, cpu=SERVER_CPU, name="preflightd",
                     variant=None, text=None, label=None):
    """variant, text: rules of their own (in rules-N-VARIANT) instead of rules_toml(n); name: the
    executable (BIN's key); label: the target's name in the report (default: name)."""
    rules = os.path.join(workdir, f"rules-{n}" + (f"-{variant}" if variant else ""))
    os.makedirs(rules, exist_ok=True)
    with open(os.path.join(rules, "rules.toml"), "w") as f:
        f.write(text if text is not None else rules_toml(n))
    port, admin = free_port(), free_port()
    server = Server(label or name, [BIN[name], "serve", "--rules", rules,
                                   "--upstream", f"http://127.0.0.1:{upstream_port}",
                                   "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                                   "--workers", str(workers), *extra], port, cpu=cpu,
                    env=dict(os.environ, RUST_LOG="warn"))
    server.admin, server.rules_dir = admin, rules
    return server


def start_nginx(workdir, n, upstream_port, workers=1, cpu=SERVER_CPU, tls=None):
    prefix = os.path.join(workdir, f"nginx-{n}-w{workers}{'-tls' if tls else ''}")
    os.makedirs(prefix, exist_ok=True)
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(prefix, port, n, upstream_port, workers, tls))
    return Server("nginx", ["nginx", "-p", prefix, "-c", conf], port, cpu=cpu)


def start_floor(kind, response_file, workers=1, cpu=SERVER_CPU):
    port = free_port()
    server = Server(f"floor-{kind}", [BIN[f"floor_{kind}"], f"127.0.0.1:{port}",
                                       response_file, str(workers)], port, cpu=cpu)
    server.floor = True
    return server


class Perf:
    """`perf stat -e raw_syscalls:sys_enter` attached to a server's processes (-p, their threads
    included), started with its counters disabled; count() enables them through perf's control
    FIFO, waits for its ack, runs the measured wrk run, disables them (ack again) and stops perf by
    pid with SIGINT. Only the wrk run is counted; every wait is bounded. The enabled tracepoint
    costs each syscall of the server a little (about 20 ns on the 2-vCPU benchmark machine, from
    a loop of write(2) with and without it), about 1% of a preflight's CPU at two syscalls each."""

    def __init__(self, pids, pinned=True):
        self.dir = tempfile.mkdtemp(prefix="perf-")
        ctl, ack = os.path.join(self.dir, "ctl"), os.path.join(self.dir, "ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        # Opened read-write before perf starts, so that neither side blocks opening a FIFO.
        self.ctl, self.ack = os.open(ctl, os.O_RDWR), os.open(ack, os.O_RDWR)
        self.out = os.path.join(self.dir, "out")
        self.err = open(os.path.join(self.dir, "err"), "w+")
        pin = ["taskset", "-c", CLIENT_CPU] if pinned else []
        self.proc = subprocess.Popen([*pin, "perf", "stat", "-x,", "-e", SYSCALL_EVENT, "-p", ",".join(map(str, pids)),
                                      "-D", "-1", "--control", f"fifo:{ctl},{ack}", "-o", self.out],
                                     stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)
        self.why = None

    def command(self, word, timeout=10):
        """Send enable/disable; True once perf acknowledges it."""
        os.write(self.ctl, word.encode() + b"\n")
        deadline, got = time.time() + timeout, b""
        while time.time() < deadline and self.proc.poll() is None:
            if select.select([self.ack], [], [], 0.1)[0]:
                got += os.read(self.ack, 64)
                if b"ack" in got:
                    return True
        self.why = f"perf did not acknowledge '{word}'" + (f" (exited {self.proc.returncode})" if self.proc.poll() is not None else "")
        return False

    def count(self, run):
        """run() under the counters: (its result, the syscall count or None, with self.why)."""
        try:
            enabled = self.command("enable")
            result = run()
            if enabled:
                self.command("disable")
        finally:
            total = self.stop()
        return result, (total if enabled else None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        os.close(self.ctl)
        os.close(self.ack)
        self.err.seek(0)
        err = self.err.read()
        self.err.close()
        try:
            out = open(self.out).read()
        except OSError:
            out = ""
        shutil.rmtree(self.dir, ignore_errors=True)
        m = re.search(rf"^\s*(\d+),[^,]*,{SYSCALL_EVENT}", out, re.M)
        if m:
            return int(m.group(1))
        if not self.why:
            lines = [l.strip() for l in (out + err).splitlines() if l.strip() and not l.startswith("#")]
            self.why = f"perf counted nothing: {lines[0] if lines else 'no output'}"
        return None


# ---------------------------------------------------------------------------------------------
# requests


def lua_request(method, path, headers):
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return f'wrk.method = "{method}"\nwrk.path = "{path}"\n{header_lines}\n'


def lua_format(method, path, headers):
    """A wrk.format() call for a Lua script."""
    fields = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
    return f'wrk.format("{method}", "{path}", {{{fields}}})'


# Every connection's first request is `first`, every later one `later`. wrk calls request() once
# before its threads start (script_verify_request, to count the requests in what it returns);
# after that, with -t1, the first CONNECTIONS calls are the first requests of distinct
# connections (all connect and become writable before any response can arrive). A connection
# that wrk reconnects after an error starts with `later`.
AFTER_FIRST = """
local calls = 0
local first, later
function init(args)
  first = %s
  later = %s
end
function request()
  calls = calls + 1
  if calls <= %d then return first end
  return later
end
"""

# wrk's scripts/pipeline.lua: one write of DEPTH requests; wrk counts each response.
PIPELINE = """
local batch
function init(args)
  local r = {}
  for i = 1, %d do r[i] = %s end
  batch = table.concat(r)
end
function request()
  return batch
end
"""


def preflight_headers(origin, acrh="content-type"):
    return {"Host": "api.example.com", "Origin": origin, "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": acrh}


def cors_headers(pairs):
    return {k.lower(): v for k, v in pairs
            if k.lower().startswith("access-control-") or k.lower() in ("vary", "cache-control")}


def answers(port, requests):
    """Status, CORS-relevant headers (lowercased) and body of each (method, path, headers) in
    `requests`, sent one after the other on one connection."""
    if port in TLS_PORTS:
        import ssl
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        for method, path, headers in requests:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            out.append((response.status, cors_headers(response.getheaders()), body))
    finally:
        conn.close()
    return out


def answer(port, method, path, headers):
    """Status, the CORS-relevant headers (lowercased) and the body of one request."""
    return answers(port, [(method, path, headers)])[0]


def pipelined_answers(port, method, path, headers, depth):
    """Status and CORS-relevant headers of each of `depth` requests written at once."""
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() * depth)
        f = s.makefile("rb")
        for _ in range(depth):
            status_line = f.readline()
            if not status_line:
                break
            status, fields = int(status_line.split()[1]), []
            while (line := f.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                fields.append((name.strip(), value.strip()))
            lengths = [v for k, v in fields if k.lower() == "content-length"]
            if any(k.lower() == "transfer-encoding" for k, _ in fields):
                out.append((status, "a chunked body (not read)"))
                break
            f.read(int(lengths[0]) if lengths and status not in (204, 304) else 0)
            out.append((status, cors_headers(fields)))
    return out


def raw_response(port, method, path, headers):
    """The exact response bytes, for the floors to replay (Date, Connection and headers other than
    the CORS ones dropped; a body kept, with its length: floor_hyper sends none)."""
    status, keep, body = answer(port, method, path, headers)
    reason = {204: "No Content", 403: "Forbidden", 200: "OK"}[status]
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in keep.items()]
    if status != 204:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body if status != 204 else b"")


# ---------------------------------------------------------------------------------------------
# wrk


def wrk(port, script, duration, connections=CONNECTIONS, threads=1, pinned=True):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    pin = ["taskset", "-c", CLIENT_CPU] if pinned else []
    try:
        out = subprocess.run([*pin, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                              "--latency", "--timeout", "5s", "-s", f.name,
                              f"{'https' if port in TLS_PORTS else 'http'}://127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=duration + 30).stdout
    finally:
        os.unlink(f.name)
    return parse_wrk_output(out)


def measure(server, script, duration, threads=1, pinned=True, syscalls=True):
    """One wrk run against server: wrk's figures, the server's user, system and total CPU per
    request, and its syscalls per request (NaN when perf cannot count them)."""
    def run():
        before = server.cpu_seconds()
        result = wrk(server.port, script, duration, threads=threads, pinned=pinned)
        after = server.cpu_seconds()
        return result, before, after

    count = None
    if syscalls and PERF["why"] is None:
        perf = Perf(server.pids(), pinned)
        (result, before, after), count = perf.count(run)
        if count is None:
            PERF["failures"].add(perf.why)
    else:
        result, before, after = run()
    requests = max(result["requests"], 1)
    result["user_us"] = (after[0] - before[0]) * 1e6 / requests
    result["sys_us"] = (after[1] - before[1]) * 1e6 / requests
    result["cpu_us"] = result["user_us"] + result["sys_us"]
    result["syscalls"] = count / requests if count is not None else NAN
    return result


# ---------------------------------------------------------------------------------------------
# scenarios


def compare_answers(targets, method, path, headers, expect_status, first=None, depth=1):
    """Every target must answer the request with the same status and CORS headers as the first
    target (and with expect_status). first: a (method, path, headers) request sent before it on
    the same connection, which every target but the floors must answer 200. depth > 1: the
    request is also written `depth` times at once, and every answer must be that same one."""
    measured, skipped = [], []
    reference = None
    for t in targets:
        try:
            got_all = answers(t.port, [first, (method, path, headers)] if first else [(method, path, headers)])
            status, cors, _ = got_all[-1]
            got = (status, cors)
            if reference is None:
                reference = got
            if first and not t.floor and got_all[0][0] != 200:
                skipped.append((t.name, f"answers {got_all[0][0]} to the first {first[0]} {first[1]}, expected 200"))
                continue
            if status != expect_status or got != reference:
                skipped.append((t.name, f"answers {status} {cors}, expected {reference}"))
                continue
            if depth > 1:
                piped = pipelined_answers(t.port, method, path, headers, depth)
                wrong = [a for a in piped if a != reference]
                if len(piped) != depth or wrong:
                    skipped.append((t.name, f"answers {depth} pipelined requests with {len(piped)} answers"
                                            + (f", e.g. {wrong[0]}" if wrong else "") + f", expected {reference} each"))
                    continue
            measured.append(t)
        except (OSError, http.client.HTTPException, ValueError, IndexError) as e:
            skipped.append((t.name, f"no answer: {e!r}"))
    return measured, skipped


def run_rounds(targets, script, rounds, duration, threads=1, pinned=True):
    results = {t.name: [] for t in targets}
    for _ in range(rounds):
        for t in targets:
            results[t.name].append(measure(t, script, duration, threads=threads, pinned=pinned))
    return results


def median_of(runs, key):
    values = [r[key] for r in runs if not math.isnan(r[key])]
    return statistics.median(values) if values else NAN


def summarize(results):
    rows = {}
    for name, runs in results.items():
        rps = [r["rps"] for r in runs]
        rows[name] = {
            "rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p50": statistics.median(r["p50"] for r in runs), "p99": statistics.median(r["p99"] for r in runs),
            "user_us": median_of(runs, "user_us"), "sys_us": median_of(runs, "sys_us"),
            "cpu_us": median_of(runs, "cpu_us"), "syscalls": median_of(runs, "syscalls"),
            "non2xx": sum(r["non2xx"] for r in runs), "errors": sum(r["errors"] for r in runs),
        }
    return rows


def figure(value, spec):
    return "n/a" if math.isnan(value) else format(value, spec)


def table(title, rows, baseline=None, skipped=()):
    out = [f"### {title}", "",
           "| target | req/s median (min-max) | p50 µs | p99 µs | user CPU µs/req | system CPU µs/req | "
           "total CPU µs/req | syscalls/req | non-2xx | socket errors |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        ratio = f" ({r['rps'] / rows[baseline]['rps']:.2f}x)" if baseline and name != baseline and baseline in rows else ""
        out.append(f"| {name} | {r['rps']:,.0f}{ratio} ({r['rps_min']:,.0f}-{r['rps_max']:,.0f}) | "
                   f"{r['p50']:.0f} | {r['p99']:.0f} | {figure(r['user_us'], '.2f')} | {figure(r['sys_us'], '.2f')} | "
                   f"{figure(r['cpu_us'], '.2f')} | {figure(r['syscalls'], '.2f')} | {r['non2xx']} | {r['errors']} |")
    for name, why in skipped:
        out.append(f"| {name} | not measured: {why} | | | | | | | | |")
    return "\n".join(out) + "\n"


# The issue's targets for preflightd against nginx (allowed and denied preflights, at 100 and
# 10 000 origins): (measure, row key, target ratio, "min" or "max"), and against the raw floor.
TARGETS = [
    ("req/s", "rps", 1.00, "min"),
    ("total CPU µs/req", "cpu_us", 0.95, "max"),
    ("user CPU µs/req", "user_us", 0.50, "max"),
    ("system CPU µs/req", "sys_us", None, None),
    ("syscalls/req", "syscalls", 1.00, "max"),
]
FLOOR_TARGET = 1.05


def ratio_line(label, ours, theirs, against, spec, target, sense, targets):
    if math.isnan(ours) or math.isnan(theirs) or not theirs:
        measured, verdict = "n/a", "n/a"
    else:
        ratio = ours / theirs
        measured = f"{ratio:.3f}x"
        verdict = "" if target is None else "met" if (ratio >= target if sense == "min" else ratio <= target) else "missed"
    if not targets or target is None:
        goal, verdict = "", ""
    else:
        goal = f"{'≥' if sense == 'min' else '≤'} {target:.2f}x"
    return (f"| {label} | {figure(ours, spec)} | {against} {figure(theirs, spec)} | {measured} | {goal} | {verdict} |")


def ratios(rows, targets, floor=None, floor_from=None):
    """preflightd's ratios to nginx, and its total CPU/req to the raw floor's (the row of this
    table, or floor_from: another table's), beside the issue's targets when `targets`."""
    if "preflightd" not in rows or "nginx" not in rows:
        return ""
    ours, theirs = rows["preflightd"], rows["nginx"]
    out = ["", "preflightd against nginx" + (" and the raw floor" if floor else "")
           + ("; targets set by the issue:" if targets else " (the issue sets no target for this scenario):"), "",
           "| measure | preflightd | against | ratio | target | |", "|---|---|---|---|---|---|"]
    for label, key, target, sense in TARGETS:
        spec = ",.0f" if key == "rps" else ".2f"
        out.append(ratio_line(label, ours[key], theirs[key], "nginx", spec, target, sense, targets))
    if floor:
        against = "floor-raw" + (f" ({floor_from})" if floor_from else "")
        out.append(ratio_line("total CPU µs/req, to the raw floor", ours["cpu_us"], floor["cpu_us"], against, ".2f",
                              FLOOR_TARGET, "max", targets))
    if BASELINE in rows:
        before = rows[BASELINE]
        out.append(ratio_line("req/s, to the build before", ours["rps"], before["rps"], BASELINE, ",.0f",
                              None, None, False))
        out.append(ratio_line("total CPU µs/req, to the build before", ours["cpu_us"], before["cpu_us"], BASELINE,
                              ".2f", None, None, False))
        out.append(ratio_line("user CPU µs/req, to the build before", ours["user_us"], before["user_us"], BASELINE,
                              ".2f", None, None, False))
    return "\n".join(out) + "\n"


def skip_report(ctx, title, why):
    ctx.report.append(f"### {title}\n\nnot run: {why}\n")


def scenario_preflight(ctx, n, origin_kind, title, extra_targets=(), acrh="content-type", expect=204, baseline="nginx",
                       mode="plain", workers=1, pinned=True, targets=False, floor_key=None):
    """mode: "plain" (one preflight per request), "after-get" (each connection's first request a
    proxied GET /small, then preflights) or "pipelined" (PIPELINE_DEPTH preflights per write).
    workers: of every target; pinned False: nothing on a fixed CPU, wrk with as many threads as
    workers. targets: print the issue's targets beside the ratios. floor_key: the raw floor row of
    a plain, pinned, one-worker run is kept in ctx.floors under it, and a table without its own
    raw floor is compared with the one kept."""
    if mode == "after-get" and ctx.upstream is None:
        return skip_report(ctx, title, ctx.no_upstream)
    origin = allowed_origin(n, origin_kind) if origin_kind != "denied" else "https://app00001.customer01.example.org"
    headers = preflight_headers(origin, acrh)
    cpu = SERVER_CPU if pinned else None
    pre = start_preflightd(ctx.workdir, n, ctx.upstream_port, workers=workers, cpu=cpu)
    servers = [pre]
    skipped = []
    try:
        servers.append(start_nginx(ctx.workdir, n, ctx.upstream_port, workers=workers, cpu=cpu))
        if BASELINE in BIN:
            servers.append(start_preflightd(ctx.workdir, n, ctx.upstream_port, workers=workers, cpu=cpu,
                                            name=BASELINE))
        for kind in extra_targets:
            if f"floor_{kind}" not in BIN:
                skipped.append((f"floor-{kind}", f"no floor_{kind} executable in {ctx.bin_dir}/examples"))
                continue
            response = os.path.join(ctx.workdir, f"canned-{kind}-{n}-{origin_kind}.http")
            with open(response, "wb") as f:
                f.write(raw_response(pre.port, "OPTIONS", "/v1/items", headers))
            servers.append(start_floor(kind, response, workers=workers, cpu=cpu))
        get = ("GET", "/small", {"Host": "api.example.com"})
        measured, wrong = compare_answers(servers, "OPTIONS", "/v1/items", headers, expect,
                                          first=get if mode == "after-get" else None,
                                          depth=PIPELINE_DEPTH if mode == "pipelined" else 1)
        skipped = wrong + skipped
        if mode == "after-get":
            script = AFTER_FIRST % (lua_format(*get), lua_format("OPTIONS", "/v1/items", headers), CONNECTIONS + 1)
        elif mode == "pipelined":
            script = PIPELINE % (PIPELINE_DEPTH, lua_format("OPTIONS", "/v1/items", headers))
        else:
            script = lua_request("OPTIONS", "/v1/items", headers)
        rows = summarize(run_rounds(measured, script, ctx.rounds, ctx.duration,
                                    threads=1 if pinned else workers, pinned=pinned))
        floor, floor_from = rows.get("floor-raw"), None
        if floor and floor_key and mode == "plain" and pinned and workers == 1:
            ctx.floors[floor_key] = (floor, title)
        elif not floor and floor_key in ctx.floors:
            floor, floor_from = ctx.floors[floor_key][0], f"of the table \"{ctx.floors[floor_key][1]}\""
        summary = ratios(rows, targets, floor, floor_from) if baseline == "nginx" else ""
        ctx.report.append(table(title, rows, baseline, skipped) + summary)
        return rows
    finally:
        for t in servers:
            t.stop()


def scenario_tls(ctx):
    """Allowed preflights at 100 origins over TLS (keep-alive: wrk's connections stay open, so
    the handshake is amortized and what is measured is the record layer around each request),
    preflightd against nginx with the same ECDSA P-256 certificate and TLS 1.2 / 1.3."""
    title = "Allowed preflight over TLS (keep-alive), 100 exact origins"
    cert, key = os.path.join(ctx.workdir, "tls.crt"), os.path.join(ctx.workdir, "tls.key")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
       "-keyout", key, "-out", cert, stderr=subprocess.DEVNULL)
    headers = preflight_headers(allowed_origin(100, "exact"))
    pre = start_preflightd(ctx.workdir, 100, ctx.upstream_port, extra=("--tls-cert", cert, "--tls-key", key))
    TLS_PORTS.add(pre.port)
    servers = [pre]
    try:
        ngx = start_nginx(ctx.workdir, 100, ctx.upstream_port, tls=(cert, key))
        TLS_PORTS.add(ngx.port)
        servers.append(ngx)
        measured, skipped = compare_answers(servers, "OPTIONS", "/v1/items", headers, 204)
        rows = summarize(run_rounds(measured, lua_request("OPTIONS", "/v1/items", headers), ctx.rounds,
                                    ctx.duration))
        ctx.report.append(table(title, rows, "nginx", skipped) + ratios(rows, False))
        return rows
    finally:
        for t in servers:
            t.stop()


def scenario_proxy(ctx, path, title, big=False):
    direct = ctx.upstream_big if big else ctx.upstream
    if direct is None:
        return skip_report(ctx, title, ctx.no_upstream if ctx.upstream is None else
                           "the stand-in upstream (test_upstream) has no 1 MiB Content-Length answer")
    upstream_port = ctx.upstream_big_port if big else ctx.upstream_port
    pre = start_preflightd(ctx.workdir, 100, upstream_port)
    ngx = start_nginx(ctx.workdir, 100, upstream_port)
    ours = [pre, ngx]
    if BASELINE in BIN:
        ours.append(start_preflightd(ctx.workdir, 100, upstream_port, name=BASELINE))
    headers = {"Host": "api.example.com"}
    try:
        targets = [*ours, direct]
        statuses = {t.name: answer(t.port, "GET", path, headers)[0] for t in targets}
        measured = [t for t in targets if statuses[t.name] == 200]
        skipped = [(name, f"answers {s}") for name, s in statuses.items() if s != 200]
        rows = summarize(run_rounds(measured, lua_request("GET", path, headers), ctx.rounds, ctx.duration))
        ctx.report.append(table(title, rows, "nginx", skipped))
        return rows
    finally:
        for t in ours:
            t.stop()


ACCESS_LOGGED = "preflightd-access-log"


def admin_metric(server, series):
    """One sample of the server's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[1])
    return 0.0


def scenario_access_log(ctx):
    """What the access log costs per request: preflightd with `--access-log json` appending to a
    file (preflightd-access-log) beside preflightd without it, interleaved, on the same loads. After
    each load, the lines written plus the lines dropped must account for every request answered
    (wrk's count, plus the checks'), and the file is emptied (it would grow by gigabytes)."""
    # On tmpfs when there is one: what preflightd itself spends (render, queue, the writer's
    # write into the page cache). On a disk the kernel's writeback of ~0.5 GB per load would
    # also steal both CPUs from every target alike, the one without the log included.
    shm = "/dev/shm"
    log_dir = tempfile.mkdtemp(dir=shm) if os.path.isdir(shm) else ctx.workdir
    log = os.path.join(log_dir, "access.log")
    plain = start_preflightd(ctx.workdir, 100, ctx.upstream_port)
    logged = start_preflightd(ctx.workdir, 100, ctx.upstream_port, label=ACCESS_LOGGED,
                              extra=("--access-log", "json", "--access-log-path", log))
    servers = [plain, logged]
    headers = preflight_headers(allowed_origin(100, "exact"))
    get = ("GET", "/small", {"Host": "api.example.com"})
    loads = [("Allowed preflight, 100 exact origins, fast path", "OPTIONS", "/v1/items", headers, 204, None,
              lua_request("OPTIONS", "/v1/items", headers))]
    if ctx.upstream is not None:
        loads.append(("Allowed preflight after a proxied GET on each connection (hyper's path)", "OPTIONS",
                      "/v1/items", headers, 204, get,
                      AFTER_FIRST % (lua_format(*get), lua_format("OPTIONS", "/v1/items", headers), CONNECTIONS + 1)))
        loads.append(("Proxied GET, 13-byte body", "GET", "/small", get[2], 200, None, lua_request(*get)))
    else:
        skip_report(ctx, "Access log: hyper's path and proxied GET", ctx.no_upstream)
    try:
        for title, method, path, request_headers, status, first, script in loads:
            title = f"Access log: {title}"
            measured, skipped = compare_answers(servers, method, path, request_headers, status, first=first)
            if logged not in measured:
                skip_report(ctx, title, f"{ACCESS_LOGGED} not measured: {skipped}")
                continue
            open(log, "w").close()
            dropped_before = admin_metric(logged, "preflightd_access_log_dropped_total")
            results = run_rounds(measured, script, ctx.rounds, ctx.duration)
            answered = sum(r["requests"] for r in results[ACCESS_LOGGED])
            time.sleep(1)  # the writer's last batch
            with open(log, "rb") as f:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            dropped = admin_metric(logged, "preflightd_access_log_dropped_total") - dropped_before
            open(log, "w").close()
            rows = summarize(results)
            out = [table(title, rows, "preflightd", skipped)]
            if "preflightd" in rows:
                ours, theirs = rows[ACCESS_LOGGED], rows["preflightd"]
                out.append(f"Cost of the access log: {figure(ours['cpu_us'] - theirs['cpu_us'], '+.2f')} µs CPU per "
                           f"request (user {figure(ours['user_us'] - theirs['user_us'], '+.2f')}, system "
                           f"{figure(ours['sys_us'] - theirs['sys_us'], '+.2f')}), "
                           f"{ours['rps'] / theirs['rps']:.3f}x the requests/s. ")
            # wrk counts the requests it completed; a few more may have been answered as a run
            # ended, so lines + dropped may exceed it slightly, never fall short.
            out.append(f"Lines written: {lines:,}, dropped: {dropped:,.0f}, for {answered:,} requests wrk "
                       f"completed{'' if lines + dropped >= answered else ' (LINES MISSING)'}.\n")
            ctx.report.append("\n".join(out))
    finally:
        for t in servers:
            t.stop()
        if log_dir != ctx.workdir:
            shutil.rmtree(log_dir, ignore_errors=True)


MIXED = """
local i = 0
local preflight = nil
local get = nil
function init(args)
  preflight = wrk.format("OPTIONS", "/v1/items", {
    ["Host"] = "api.example.com", ["Origin"] = "%s",
    ["Access-Control-Request-Method"] = "PUT", ["Access-Control-Request-Headers"] = "content-type"})
  get = wrk.format("GET", "/small", {["Host"] = "api.example.com"})
end
function request()
  i = i + 1
  if i %% 2 == 0 then return preflight else return get end
end
"""


def scenario_reload(ctx):
    """100 reloads of a 10 000-rule file under a mixed load. A writer thread rewrites the rules
    (both versions allow the benchmark origin) and waits for each new generation through
    /rules; meanwhile wrk runs in 10 s segments until the writer is done (bounded at 10 min).
    Reports the steady figures, then every segment's aggregate: requests, errors, median and
    worst p99."""
    import threading

    if ctx.upstream is None:
        return skip_report(ctx, "Reloads under load", ctx.no_upstream)
    n = 10_000
    origin = allowed_origin(n, "glob")
    pre = start_preflightd(ctx.workdir, n, ctx.upstream_port, ("--reload-debounce", "10ms"))
    try:
        script = MIXED % origin
        steady = measure(pre, script, 10, syscalls=False)
        base = rules_toml(n)
        rules_file = os.path.join(pre.rules_dir, "rules.toml")
        done = threading.Event()
        reloads = [0]
        deadline = time.time() + 600

        def writer():
            generation = rules_generation(pre.admin)
            while reloads[0] < 100 and time.time() < deadline:
                with open(rules_file, "w") as rf:
                    rf.write(base + f"# version {reloads[0]}\n")
                while rules_generation(pre.admin) == generation and time.time() < deadline:
                    time.sleep(0.01)
                generation = rules_generation(pre.admin)
                reloads[0] += 1
            done.set()

        thread = threading.Thread(target=writer, daemon=True)
        started = time.time()
        thread.start()
        segments = []
        while not done.is_set() and time.time() < deadline:
            segments.append(wrk(pre.port, script, 10))
        thread.join(timeout=30)
        took = time.time() - started
        total = sum(r["requests"] for r in segments)
        non2xx = sum(r["non2xx"] for r in segments)
        errors = sum(r["errors"] for r in segments)
        p99s = [r["p99"] for r in segments]
        ctx.report.append(
            "### Reloads under load (10 000 rules, preflights and proxied GETs mixed)\n\n"
            f"{reloads[0]} reloads in {took:.0f} s, measured in {len(segments)} wrk segments of 10 s.\n\n"
            "| run | req/s | p50 µs | p99 µs | requests | non-2xx | socket errors |\n|---|---|---|---|---|---|---|\n"
            f"| steady (10 s) | {steady['rps']:,.0f} | {steady['p50']:.0f} | {steady['p99']:.0f} | {steady['requests']:,} | {steady['non2xx']} | {steady['errors']} |\n"
            f"| during reloads | {total / max(took, 1):,.0f} | {statistics.median(r['p50'] for r in segments):.0f} | "
            f"median {statistics.median(p99s):.0f}, worst {max(p99s):.0f} | {total:,} | {non2xx} | {errors} |\n\n"
            f"p99 during reloads / steady: median segment {statistics.median(p99s) / steady['p99']:.2f}x, "
            f"worst segment {max(p99s) / steady['p99']:.2f}x\n")
    finally:
        pre.stop()


def parse_wrk_output(out):
    def latency(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": latency("50"), "p99": latency("99"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": sum(map(int, errors.groups())) if errors else 0}


def rules_generation(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/rules", timeout=5) as r:
        return json.load(r)["generation"]


STOP_AFTER = """
local seen = 0
function response(status, headers, body)
  seen = seen + 1
  if seen >= %d then wrk.thread:stop() end
end
"""


def scenario_memory(ctx):
    """RSS after exactly 10 000 requests and after 1 000 000 (wrk stops itself at a count),
    both at the same concurrency, so only what the extra requests leave behind shows."""
    if ctx.upstream is None:
        return skip_report(ctx, "Memory under load", ctx.no_upstream)
    pre = start_preflightd(ctx.workdir, 100, ctx.upstream_port)
    try:
        mixed = MIXED % allowed_origin(100, "exact")
        first = wrk(pre.port, mixed + STOP_AFTER % 10_000, 30)
        rss_10k = pre.rss_kib()
        second = wrk(pre.port, mixed + STOP_AFTER % 990_000, 120)
        rss_1m = pre.rss_kib()
        total = first["requests"] + second["requests"]
        ctx.report.append(
            "### Memory under load (100 origins, preflights and proxied GETs mixed, 64 connections)\n\n"
            f"| after | requests | RSS |\n|---|---|---|\n"
            f"| 10 k requests | {first['requests']:,} | {rss_10k / 1024:.1f} MiB |\n"
            f"| 1 M requests | {total:,} | {rss_1m / 1024:.1f} MiB ({rss_1m / rss_10k:.2f}x) |\n")
    finally:
        pre.stop()


def scenario_shadow(ctx):
    """What mode = "shadow" costs per preflight. The upstream is test_upstream --cors (an
    application that answers preflights itself, allowing the benchmark origin with credentials
    and max-age 300) on the client CPU. Targets, interleaved:
      upstream-alone           the application answering wrk itself;
      preflightd-forward       the preflight proxied and not compared (unmatched = "forward", out
                               of every rule's scope): what proxying a preflight costs;
      preflightd-shadow        shadow mode, the rules' answer agreeing with the application's
                               (credentials, max-age 300): proxied, judged twice, counted;
      preflightd-shadow-differ shadow mode, the rules' answer differing (no credentials, max-age
                               7200): also a mismatch recorded in the table (and logged once a second);
      preflightd-enforce       the same rules answering at the edge (mode = "enforce").
    Every target but enforce must give the application's answer; enforce must answer 204. The
    comparison's own cost is shadow minus forward; what shadow mode costs preflightd against
    answering is shadow minus enforce."""
    title = "Shadow mode: allowed preflight, 100 exact origins, proxied to an application that answers CORS itself"
    if "test_upstream" not in BIN:
        return skip_report(ctx, title, f"no test_upstream executable (build it: cargo build --release --example "
                                       f"test_upstream, or put it in {ctx.bin_dir}/examples)")
    n = 100
    origin = allowed_origin(n, "exact")
    headers = preflight_headers(origin)
    app_port = free_port()
    app = Server("upstream-alone", [BIN["test_upstream"], f"127.0.0.1:{app_port}", "--cors", "--cors-origin", origin],
                 app_port, cpu=CLIENT_CPU)
    base = rules_toml(n)
    agreeing = base.replace("max_age = 7200", "max_age = 300\ncredentials = true")
    out_of_scope = base.replace('name = "web"\n', 'name = "web"\nhosts = ["elsewhere.example.com"]\n')
    variants = [
        ("preflightd-forward", "forward", '[settings]\nunmatched = "forward"\n' + out_of_scope),
        ("preflightd-shadow", "shadow", '[settings]\nmode = "shadow"\n' + agreeing),
        ("preflightd-shadow-differ", "shadow-differ", '[settings]\nmode = "shadow"\n' + base),
    ]
    servers = [app]
    try:
        for name, variant, text in variants:
            server = start_preflightd(ctx.workdir, n, app_port, variant=variant, text=text)
            server.name = name
            servers.append(server)
        enforce = start_preflightd(ctx.workdir, n, app_port, variant="enforce", text=agreeing)
        enforce.name = "preflightd-enforce"
        servers.append(enforce)
        measured, skipped = compare_answers(servers[:-1], "OPTIONS", "/v1/items", headers, 204)
        edge, edge_skipped = compare_answers([enforce], "OPTIONS", "/v1/items", headers, 204)
        rows = summarize(run_rounds(measured + edge, lua_request("OPTIONS", "/v1/items", headers), ctx.rounds,
                                    ctx.duration))
        lines = [table(title, rows, "preflightd-enforce", skipped + edge_skipped)]
        costs = [("shadow, agreeing", "preflightd-shadow"), ("shadow, differing", "preflightd-shadow-differ")]
        cost_lines = []
        for label, name in costs:
            for against, what in (("preflightd-forward", "comparing, over proxying alone"),
                                  ("preflightd-enforce", "shadow mode, over answering at the edge")):
                if name in rows and against in rows:
                    cost_lines.append(f"| {label} | {what} | {rows[name]['cpu_us'] - rows[against]['cpu_us']:+.2f} | "
                                      f"{rows[name]['user_us'] - rows[against]['user_us']:+.2f} |")
        if cost_lines:
            lines.append("preflightd's CPU per preflight in shadow mode, against proxying the same preflight "
                         "uncompared and against answering it:\n\n| target | what the difference is | total CPU "
                         "µs/req | user CPU µs/req |\n|---|---|---|---|\n" + "\n".join(cost_lines) + "\n")
        ctx.report.append("\n".join(lines))
        return rows
    finally:
        for t in servers:
            t.stop()


class Context:
    pass


SCENARIOS = ["preflight-100", "preflight-10k", "denied-100", "denied-10k", "after-get", "after-get-denied",
             "pipelined", "two-workers", "tls", "hostile-acrh", "proxy-small", "proxy-1mib", "access-log", "reload",
             "memory", "shadow"]
ALIASES = {"denied": "denied-10k"}


def start_upstreams(ctx):
    """The upstream: the raw floor replaying a canned 200, on the client CPU. The cheapest and
    steadiest upstream there is, so the proxies' own cost shows. With --bin-dir and no floor_raw,
    test_upstream stands in (GET /small only); with neither, scenarios that need an upstream are
    reported as not run."""
    ctx.upstream = ctx.upstream_big = None
    ctx.upstream_port = ctx.upstream_big_port = free_port()  # nothing listening, unless replaced
    ctx.upstream_note = ""
    ctx.no_upstream = f"no upstream: neither floor_raw nor test_upstream in {ctx.bin_dir}/examples"
    if "floor_raw" not in BIN:
        if "test_upstream" in BIN:
            port = free_port()
            ctx.upstream = Server("direct", [BIN["test_upstream"], f"127.0.0.1:{port}"], port, cpu=CLIENT_CPU)
            ctx.upstream_port = port
            ctx.upstream_note = (f"Upstream: test_upstream (hyper) standing in for floor_raw, missing in {ctx.bin_dir}/"
                                 "examples; proxy figures are not comparable with other runs' and proxy-1mib is not run.")
        return
    port = free_port()
    small = os.path.join(ctx.workdir, "upstream-small.http")
    with open(small, "wb") as f:
        f.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nhello, world\n")
    ctx.upstream = Server("direct", [BIN["floor_raw"], f"127.0.0.1:{port}", small, "1"],
                          port, cpu=CLIENT_CPU)
    ctx.upstream_port = port
    big_port = free_port()
    big = os.path.join(ctx.workdir, "upstream-1mib.http")
    with open(big, "wb") as f:
        f.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1048576\r\n\r\n")
        f.write(b"x" * 1048576)
    ctx.upstream_big = Server("direct", [BIN["floor_raw"], f"127.0.0.1:{big_port}", big, "1"],
                              big_port, cpu=CLIENT_CPU)
    ctx.upstream_big_port = big_port


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS + list(ALIASES), metavar="SCENARIO",
                        help=f"scenario names (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--baseline-bin", metavar="PATH",
                        help=f"an earlier preflightd build, run as the target {BASELINE!r} beside the others in "
                             "every preflight and proxy scenario (side by side with the build under test)")
    parser.add_argument("--bin-dir", metavar="DIR",
                        help="take preflightd from DIR and floor_raw, floor_hyper from DIR/examples; no build")
    args = parser.parse_args()
    chosen = [ALIASES.get(name, name) for name in args.only] if args.only else SCENARIOS

    install_missing()
    ctx = Context()
    if args.bin_dir:
        bins_from(args.bin_dir)
        ctx.bin_dir = args.bin_dir
    else:
        build()
        ctx.bin_dir = os.path.dirname(BIN["preflightd"])
    if args.baseline_bin:
        BIN[BASELINE] = os.path.abspath(args.baseline_bin)
    if args.bin_dir is None and "shadow" in chosen:
        build_test_upstream()
    PERF["why"] = perf_probe()
    ctx.rounds, ctx.duration, ctx.report, ctx.floors = args.rounds, args.duration, [], {}
    ctx.workdir = tempfile.mkdtemp(prefix="preflightd-bench-")
    ctx.upstream = ctx.upstream_big = None
    started = time.time()
    try:
        start_upstreams(ctx)
        syscalls = (f"Syscalls per request: `perf stat -e {SYSCALL_EVENT} -p` on the server's processes, enabled "
                    "for exactly each measured wrk run." if PERF["why"] is None
                    else f"Syscalls per request: n/a, {PERF['why']}.")
        header = [
            "## Load benchmarks", "",
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs "
            f"({cpu_model()}), Linux {os.uname().release}; {tool_version(['wrk', '-v'])}; "
            f"{tool_version(['nginx', '-v'])}; {tool_version([BIN['preflightd'], '--version'])}"
            + (f" ({BIN['preflightd']}, not built by this run)" if args.bin_dir else "") + ".",
            f"Servers pinned to CPU {SERVER_CPU} with one worker, wrk (-t1 -c{CONNECTIONS}) and the upstream on CPU "
            f"{CLIENT_CPU} (two-workers: two workers each, nothing pinned, wrk -t2 -c{CONNECTIONS}); "
            f"{ctx.rounds} rounds of {ctx.duration} s per target, interleaved; medians (min-max).",
            syscalls,
            *([ctx.upstream_note] if ctx.upstream_note else []),
            f"Command: python3 benches/load/run.py --rounds {ctx.rounds} --duration {ctx.duration}"
            + (f" --only {' '.join(chosen)}" if args.only else "")
            + (f" --bin-dir {args.bin_dir}" if args.bin_dir else "")
            + (f" --baseline-bin {args.baseline_bin}" if args.baseline_bin else ""), ""]
        ctx.report.append("\n".join(header))
        if "preflight-100" in chosen:
            scenario_preflight(ctx, 100, "exact", "Allowed preflight, 100 exact origins",
                               extra_targets=("raw", "hyper"), targets=True, floor_key="allowed")
        if "preflight-10k" in chosen:
            scenario_preflight(ctx, 10_000, "glob", "Allowed preflight, 10 000 origins (1 000 globs), origin matched by a glob",
                               targets=True, floor_key="allowed")
            scenario_preflight(ctx, 10_000, "exact", "Allowed preflight, 10 000 origins (1 000 globs), exact origin",
                               targets=True, floor_key="allowed")
        if "denied-100" in chosen:
            scenario_preflight(ctx, 100, "denied", "Denied preflight, 100 origins", extra_targets=("raw",), expect=403,
                               targets=True, floor_key="denied")
        if "denied-10k" in chosen:
            scenario_preflight(ctx, 10_000, "denied", "Denied preflight, 10 000 origins (1 000 globs)", expect=403,
                               targets=True, floor_key="denied")
        if "after-get" in chosen:
            scenario_preflight(ctx, 100, "exact", "Allowed preflight after a proxied GET on each connection, 100 exact origins",
                               extra_targets=("raw",), mode="after-get")
        if "after-get-denied" in chosen:
            scenario_preflight(ctx, 100, "denied", "Denied preflight after a proxied GET on each connection, 100 origins",
                               extra_targets=("raw",), expect=403, mode="after-get")
        if "pipelined" in chosen:
            scenario_preflight(ctx, 100, "exact", f"Allowed preflight, 100 exact origins, pipelined {PIPELINE_DEPTH} deep "
                               "(latency per batch)", extra_targets=("raw",), mode="pipelined")
        if "two-workers" in chosen:
            scenario_preflight(ctx, 100, "exact", "Allowed preflight, 100 exact origins, two workers, nothing pinned",
                               extra_targets=("raw", "hyper"), workers=2, pinned=False)
        if "tls" in chosen:
            scenario_tls(ctx)
        if "hostile-acrh" in chosen:
            hostile = ",".join(f"x-h{i:03d}" for i in range(800))[:4090]
            scenario_preflight(ctx, 100, "exact", "Hostile 4 KiB Access-Control-Request-Headers (preflightd denies: malformed)",
                               acrh=hostile, expect=403, baseline=None)
        if "proxy-small" in chosen:
            scenario_proxy(ctx, "/small", "Proxied GET, 13-byte body")
        if "proxy-1mib" in chosen:
            scenario_proxy(ctx, "/big", "Proxied GET, 1 MiB body", big=True)
        if "access-log" in chosen:
            scenario_access_log(ctx)
        if "reload" in chosen:
            scenario_reload(ctx)
        if "memory" in chosen:
            scenario_memory(ctx)
        if "shadow" in chosen:
            scenario_shadow(ctx)
    finally:
        for upstream in (ctx.upstream, ctx.upstream_big):
            if upstream is not None:
                upstream.stop()
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    if PERF["failures"]:
        ctx.report.append("Syscall counts missing from some runs (n/a): " + "; ".join(sorted(PERF["failures"])) + ".\n")
    ctx.report.append(f"Total run time: {time.time() - started:.0f} s.\n")
    print("\n".join(ctx.report))


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return f"{argv[0]}: unknown version"


if __name__ == "__main__":
    main()

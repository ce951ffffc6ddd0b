#!/usr/bin/env python3
"""Load benchmarks: preflightd beside nginx and the socket floor, on loopback, in one run.

    python3 benches/load/run.py [--rounds 5] [--duration 5] [--only SCENARIO ...]

Installs what is missing (wrk, nginx from Debian), builds preflightd and the floors in
release, then for each scenario checks that every target answers the scenario's request with
the same status and CORS headers (a target that answers differently is not measured), and
runs wrk against the targets interleaved (A B C A B C ...) for --rounds rounds. It reports
medians with min/max of requests/s, p50/p99 latency, and server CPU time per request (from
/proc/PID/stat, all threads and, for nginx, all its processes). Servers run on CPU 0 with one
worker; wrk (and the upstream, for proxy scenarios) on CPU 1. Every run is bounded in time;
every process started is stopped. The report goes to stdout as Markdown.
"""

import argparse
import http.client
import json
import os
import re
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
# wherever the target directory is (CARGO_TARGET_DIR, build.target-dir, --target).
BIN = {}
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"
CONNECTIONS = 64
VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

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


def nginx_conf(prefix, port, n, upstream_port):
    lines = []
    for kind, origin, domain in origins(n):
        if kind == "exact":
            lines.append(f'    "{origin}" 1;')
        else:
            lines.append(f'    "~^https://[a-z0-9_-]+(\\.[a-z0-9_-]+)*\\.{re.escape(domain)}$" 1;')
    allowlist = "\n".join(lines)
    return f"""
worker_processes 1;
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
    listen 127.0.0.1:{port} backlog=4096;
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
        self.name, self.port = name, port
        self.proc = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        wait_port(port)

    def pids(self):
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return [self.proc.pid, *map(int, children)]

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICKS

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


def start_preflightd(workdir, n, upstream_port, extra=()):
    rules = os.path.join(workdir, f"rules-{n}")
    os.makedirs(rules, exist_ok=True)
    with open(os.path.join(rules, "rules.toml"), "w") as f:
        f.write(rules_toml(n))
    port, admin = free_port(), free_port()
    server = Server("preflightd", [BIN["preflightd"], "serve", "--rules", rules,
                                   "--upstream", f"http://127.0.0.1:{upstream_port}",
                                   "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                                   "--workers", "1", *extra], port, env=dict(os.environ, RUST_LOG="warn"))
    server.admin, server.rules_dir = admin, rules
    return server


def start_nginx(workdir, n, upstream_port):
    prefix = os.path.join(workdir, f"nginx-{n}")
    os.makedirs(prefix, exist_ok=True)
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(prefix, port, n, upstream_port))
    return Server("nginx", ["nginx", "-p", prefix, "-c", conf], port)


def start_floor(kind, response_file):
    port = free_port()
    return Server(f"floor-{kind}", [BIN[f"floor_{kind}"], f"127.0.0.1:{port}",
                                     response_file, "1"], port)


# ---------------------------------------------------------------------------------------------
# requests


def lua_request(method, path, headers):
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return f'wrk.method = "{method}"\nwrk.path = "{path}"\n{header_lines}\n'


def preflight_headers(origin, acrh="content-type"):
    return {"Host": "api.example.com", "Origin": origin, "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": acrh}


def answer(port, method, path, headers):
    """Status and the CORS-relevant headers (lowercased) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    keep = {k.lower(): v for k, v in response.getheaders()
            if k.lower().startswith("access-control-") or k.lower() in ("vary", "cache-control")}
    return response.status, keep, len(body)


def raw_response(port, method, path, headers):
    """The exact response bytes, for the floors to replay (Date and Connection dropped)."""
    status, keep, _ = answer(port, method, path, headers)
    reason = {204: "No Content", 403: "Forbidden", 200: "OK"}[status]
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in keep.items()]
    if status != 204:
        lines.append("content-length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------------------------------------
# wrk


def wrk(port, script, duration, connections=CONNECTIONS):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
                              "--latency", "--timeout", "5s", "-s", f.name, f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=duration + 30).stdout
    finally:
        os.unlink(f.name)

    def latency(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": requests,
        "p50": latency("50"), "p99": latency("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": sum(map(int, errors.groups())) if errors else 0,
    }


def measure(server, script, duration):
    before = server.cpu_seconds()
    result = wrk(server.port, script, duration)
    used = server.cpu_seconds() - before
    result["cpu_us"] = used * 1e6 / max(result["requests"], 1)
    return result


# ---------------------------------------------------------------------------------------------
# scenarios


def compare_answers(targets, method, path, headers, expect_status):
    measured, skipped = [], []
    reference = None
    for t in targets:
        status, cors, _ = answer(t.port, method, path, headers)
        got = (status, cors)
        if reference is None:
            reference = got
        if status != expect_status or got != reference:
            skipped.append((t.name, f"answers {status} {cors}, expected {reference}"))
        else:
            measured.append(t)
    return measured, skipped


def run_rounds(targets, script, rounds, duration):
    results = {t.name: [] for t in targets}
    for _ in range(rounds):
        for t in targets:
            results[t.name].append(measure(t, script, duration))
    return results


def summarize(results):
    rows = {}
    for name, runs in results.items():
        rps = [r["rps"] for r in runs]
        rows[name] = {
            "rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p50": statistics.median(r["p50"] for r in runs), "p99": statistics.median(r["p99"] for r in runs),
            "cpu_us": statistics.median(r["cpu_us"] for r in runs),
            "non2xx": sum(r["non2xx"] for r in runs), "errors": sum(r["errors"] for r in runs),
        }
    return rows


def table(title, rows, baseline=None, skipped=()):
    out = [f"### {title}", "",
           "| target | req/s median (min-max) | p50 µs | p99 µs | server CPU µs/req | non-2xx | socket errors |",
           "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        ratio = f" ({r['rps'] / rows[baseline]['rps']:.2f}x)" if baseline and name != baseline and baseline in rows else ""
        out.append(f"| {name} | {r['rps']:,.0f}{ratio} ({r['rps_min']:,.0f}-{r['rps_max']:,.0f}) | "
                   f"{r['p50']:.0f} | {r['p99']:.0f} | {r['cpu_us']:.2f} | {r['non2xx']} | {r['errors']} |")
    for name, why in skipped:
        out.append(f"| {name} | not measured: {why} | | | | | |")
    return "\n".join(out) + "\n"


def scenario_preflight(ctx, n, origin_kind, title, extra_targets=(), acrh="content-type", expect=204, baseline="nginx"):
    origin = allowed_origin(n, origin_kind) if origin_kind != "denied" else "https://app00001.customer01.example.org"
    headers = preflight_headers(origin, acrh)
    pre = start_preflightd(ctx.workdir, n, ctx.upstream_port)
    ngx = start_nginx(ctx.workdir, n, ctx.upstream_port)
    targets = [pre, ngx]
    try:
        for kind in extra_targets:
            response = os.path.join(ctx.workdir, f"canned-{kind}-{n}.http")
            with open(response, "wb") as f:
                f.write(raw_response(pre.port, "OPTIONS", "/v1/items", headers))
            targets.append(start_floor(kind, response))
        measured, skipped = compare_answers(targets, "OPTIONS", "/v1/items", headers, expect)
        rows = summarize(run_rounds(measured, lua_request("OPTIONS", "/v1/items", headers), ctx.rounds, ctx.duration))
        ctx.report.append(table(title, rows, baseline, skipped))
        return rows
    finally:
        for t in targets:
            t.stop()


def scenario_proxy(ctx, path, title, big=False):
    upstream_port = ctx.upstream_big_port if big else ctx.upstream_port
    pre = start_preflightd(ctx.workdir, 100, upstream_port)
    ngx = start_nginx(ctx.workdir, 100, upstream_port)
    direct = ctx.upstream_big if big else ctx.upstream
    headers = {"Host": "api.example.com"}
    try:
        statuses = {t.name: answer(t.port, "GET", path, headers)[0] for t in (pre, ngx, direct)}
        measured = [t for t in (pre, ngx, direct) if statuses[t.name] == 200]
        skipped = [(name, f"answers {s}") for name, s in statuses.items() if s != 200]
        rows = summarize(run_rounds(measured, lua_request("GET", path, headers), ctx.rounds, ctx.duration))
        ctx.report.append(table(title, rows, "nginx", skipped))
        return rows
    finally:
        pre.stop()
        ngx.stop()


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

    n = 10_000
    origin = allowed_origin(n, "glob")
    pre = start_preflightd(ctx.workdir, n, ctx.upstream_port, ("--reload-debounce", "10ms"))
    try:
        script = MIXED % origin
        steady = measure(pre, script, 10)
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


class Context:
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--only", nargs="*", help="scenario names (default: all)")
    args = parser.parse_args()
    scenarios = ["preflight-100", "preflight-10k", "denied", "hostile-acrh", "proxy-small", "proxy-1mib", "reload", "memory"]
    chosen = args.only or scenarios

    install_missing()
    build()
    ctx = Context()
    ctx.rounds, ctx.duration, ctx.report = args.rounds, args.duration, []
    ctx.workdir = tempfile.mkdtemp(prefix="preflightd-bench-")
    port = free_port()
    # The upstream: the raw floor replaying a canned 200, on the client CPU. The cheapest and
    # steadiest upstream there is, so the proxies' own cost shows.
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
    started = time.time()
    try:
        header = [
            "## Load benchmarks", "",
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs "
            f"({cpu_model()}), Linux {os.uname().release}; {tool_version(['wrk', '-v'])}; "
            f"{tool_version(['nginx', '-v'])}; {tool_version([BIN['preflightd'], '--version'])}.",
            f"Servers pinned to CPU {SERVER_CPU} with one worker, wrk (-t1 -c{CONNECTIONS}) and the upstream on CPU "
            f"{CLIENT_CPU}; {ctx.rounds} rounds of {ctx.duration} s per target, interleaved; medians (min-max).",
            f"Command: python3 benches/load/run.py --rounds {ctx.rounds} --duration {ctx.duration}"
            + (f" --only {' '.join(chosen)}" if args.only else ""), ""]
        ctx.report.append("\n".join(header))
        if "preflight-100" in chosen:
            ctx.rows100 = scenario_preflight(ctx, 100, "exact", "Allowed preflight, 100 exact origins",
                                             extra_targets=("raw", "hyper"))
        if "preflight-10k" in chosen:
            scenario_preflight(ctx, 10_000, "glob", "Allowed preflight, 10 000 origins (1 000 globs), origin matched by a glob")
            scenario_preflight(ctx, 10_000, "exact", "Allowed preflight, 10 000 origins (1 000 globs), exact origin")
        if "denied" in chosen:
            scenario_preflight(ctx, 10_000, "denied", "Denied preflight, 10 000 origins (1 000 globs)", expect=403)
        if "hostile-acrh" in chosen:
            hostile = ",".join(f"x-h{i:03d}" for i in range(800))[:4090]
            scenario_preflight(ctx, 100, "exact", "Hostile 4 KiB Access-Control-Request-Headers (preflightd denies: malformed)",
                               acrh=hostile, expect=403, baseline=None)
        if "proxy-small" in chosen:
            scenario_proxy(ctx, "/small", "Proxied GET, 13-byte body")
        if "proxy-1mib" in chosen:
            scenario_proxy(ctx, "/big", "Proxied GET, 1 MiB body", big=True)
        if "reload" in chosen:
            scenario_reload(ctx)
        if "memory" in chosen:
            scenario_memory(ctx)
    finally:
        ctx.upstream.stop()
        ctx.upstream_big.stop()
        shutil.rmtree(ctx.workdir, ignore_errors=True)
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

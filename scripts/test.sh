#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing, then runs every test.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Before installing anything: a toolchain older than Cargo.toml's rust-version cannot build.
require_rust_version

# Debian packages the suites drive for real (Chromium for the browser tests: Debian's
# package, never a downloaded browser build). Installed only when absent.
need=()
for pkg in $(sed 's/#.*//' scripts/test-packages.txt); do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt_install "${need[@]}"
fi

# playwright-core (drives /usr/bin/chromium; it downloads no browser), pinned by the lock file.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi

# Unit tests, integration tests (real binary, real upstream process, real Chromium, on
# loopback), doc tests. `cargo test` also builds examples/test_upstream.rs, which they run.
cargo test --locked -- --test-threads="${TEST_THREADS:-2}"

# shellcheck shell=bash
# Shared by .ci/run, scripts/test.sh and scripts/check-deploy.sh (sourced from the repository
# root): installs Debian packages, running apt-get update once first (as root, or through
# sudo); unpacks a package without installing it; checks the Rust toolchain.
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=""
apt_update_once() {
  [ -n "$apt_updated" ] || { $sudo apt-get update -qq; apt_updated=1; }
}
apt_install() {
  apt_update_once
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# apt_extract PKG DIR: unpack Debian package PKG's files into DIR (DIR/usr/bin/...) without
# installing it: no dependencies, no maintainer scripts, no service enabled or started. For a
# tool that ships inside a bigger package (promtool inside the prometheus server's).
apt_extract() {
  local pkg=$1 dest=$2 tmp
  apt_update_once
  tmp=$(mktemp -d)
  # apt-get download writes to the current directory; as root it fetches as the _apt user,
  # which must be able to write there.
  chmod 755 "$tmp"; [ "$(id -u)" -ne 0 ] || chown _apt "$tmp" 2>/dev/null || true
  (cd "$tmp" && apt-get download -qq "$pkg")
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.partial"
  dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dest.partial"
  rm -rf "$dest" "$tmp"
  mv "$dest.partial" "$dest"
}

# require_rust_version: cargo and rustc must be installed, and rustc at least the
# rust-version that Cargo.toml declares; says so and exits 1 otherwise.
require_rust_version() {
  local rustc=${RUSTC:-rustc} need have
  if ! command -v cargo >/dev/null || ! command -v "$rustc" >/dev/null; then
    echo "cargo or rustc not found: install Rust (https://rustup.rs)" >&2
    exit 1
  fi
  need=$(sed -n 's/^rust-version *= *"\([^"]*\)".*/\1/p' Cargo.toml | sed -n 1p)
  have=$("$rustc" --version | awk '{print $2}')
  have=${have%%-*} # 1.90.0-nightly -> 1.90.0
  [ -n "$need" ] || return 0
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | sed -n 1p)" != "$need" ]; then
    echo "error: this Rust toolchain is too old: $("$rustc" --version) is older than" \
      "rust-version = \"$need\" in Cargo.toml. Update it (rustup update stable) and retry." >&2
    exit 1
  fi
}

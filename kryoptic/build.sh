#!/usr/bin/env bash
# Builds kryoptic 1.5.4 (the Rust PKCS#11 soft token, from crates.io, pinned by
# kryoptic/Cargo.lock) against the system's OpenSSL 3, once, into target/kryoptic, and
# prints the path of its PKCS#11 module (libkryoptic_pkcs11.so). A later call finds the
# library up to date and only prints the path. Installs the build's system packages
# when they are missing (Debian/Ubuntu with apt): the OpenSSL and SQLite headers,
# pkg-config, and libclang for bindgen.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$root/target}/kryoptic"
lib="$target/release/libkryoptic_pkcs11.so"

# Up to date: newer than the files that pin the build.
if [ -e "$lib" ] && [ "$lib" -nt "$here/Cargo.toml" ] && [ "$lib" -nt "$here/Cargo.lock" ]; then
  echo "$lib"
  exit 0
fi

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists 'openssl >= 3.0.7' 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists sqlite3 2>/dev/null || missing+=(libsqlite3-dev)
# bindgen loads libclang at build time and needs clang's own headers.
if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 && ! ls /usr/lib/*/libclang.so >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  bash "$root/scripts/apt-install.sh" "${missing[@]}"
fi

echo "kryoptic/build.sh: building kryoptic 1.5.4 into $target (once)" >&2
CARGO_TARGET_DIR="$target" cargo build --release --locked --quiet \
  --manifest-path "$here/Cargo.toml" -p kryoptic >&2
# Cargo leaves the file alone when nothing changed; the stamp keeps the check above true.
touch "$lib"
echo "$lib"

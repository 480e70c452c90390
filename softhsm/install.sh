#!/usr/bin/env bash
# Installs SoftHSM2 when no libsofthsm2.so is present (Debian/Ubuntu with apt, Fedora
# with dnf, macOS with Homebrew). Does nothing when SoftHSM2 is already there, or when
# P11KMS_PKCS11_MODULE names an existing module.
set -euo pipefail

if [ -n "${P11KMS_PKCS11_MODULE:-}" ] && [ -e "${P11KMS_PKCS11_MODULE}" ]; then
  exit 0
fi
for p in /usr/lib/softhsm/libsofthsm2.so \
         /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib64/pkcs11/libsofthsm2.so \
         /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -e "$p" ] && exit 0
done

echo "softhsm/install.sh: SoftHSM2 not found; installing it" >&2
if command -v apt-get >/dev/null 2>&1; then
  bash "$(dirname "$0")/../scripts/apt-install.sh" softhsm2
elif command -v dnf >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then sudo dnf install -y softhsm; else dnf install -y softhsm; fi
elif command -v brew >/dev/null 2>&1; then
  brew install softhsm
else
  echo "softhsm/install.sh: no apt-get, dnf or brew; install SoftHSM2 yourself and set P11KMS_PKCS11_MODULE" >&2
  exit 1
fi

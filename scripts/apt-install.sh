#!/usr/bin/env bash
# Installs Debian packages with apt-get, through sudo when not root: the one place the
# set-up scripts (softhsm/install.sh, kryoptic/build.sh, scripts/python-deps.sh) install
# system packages. Fails, naming the packages, where there is no apt-get or no way to
# become root.
#
#   scripts/apt-install.sh PACKAGE...
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-install.sh: no apt-get here; install $* (or your system's equivalents) yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "apt-install.sh: installing $* needs root; run as root, or install them yourself" >&2
    exit 1
  fi
  sudo="sudo"
fi
echo "apt-install.sh: installing $*" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null

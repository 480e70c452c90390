#!/usr/bin/env bash
# Prints the path of a Python that has the official AWS Encryption SDK, boto3, the AWS
# CLI (awscli), gRPC (grpcio, grpcio-tools) and the Prometheus client's text parser
# (prometheus-client, pinned) and PyJWT, for the interop, AWS protocol and metrics tests: the
# system python3 when it already has them, otherwise a virtualenv under target/ made and
# filled here (Debian's python3 refuses global pip installs).
set -euo pipefail
cd "$(dirname "$0")/.."
if python3 -c 'import aws_encryption_sdk, grpc, grpc_tools, prometheus_client, awscli, jwt' 2>/dev/null; then
  command -v python3
  exit 0
fi
venv=target/interop-venv
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      bash scripts/apt-install.sh python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
fi
if ! "$venv/bin/python" -c 'import aws_encryption_sdk, grpc, grpc_tools, prometheus_client, awscli, jwt' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    aws-encryption-sdk grpcio grpcio-tools prometheus-client==0.26.0 awscli pyjwt >&2
fi
echo "$PWD/$venv/bin/python"

#!/usr/bin/env bash
# Installs what bench/ uses (Debian packages; boto3 from PyPI). Run as root.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk linux-perf valgrind strace util-linux
# nginx-light's package starts a system nginx on port 80; the benches start their own.
systemctl disable --now nginx 2>/dev/null || service nginx stop 2>/dev/null || true
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install -q boto3

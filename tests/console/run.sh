#!/usr/bin/env bash
# Browser test of the imdsd web console: installs playwright-core (pinned in
# package-lock.json) if needed and runs the test with Node's test runner
# against Debian's Chromium (/usr/bin/chromium, package `chromium`).
#
#   IMDSD_BIN=$PWD/target/debug/imdsd tests/console/run.sh
#
# IMDSD_BIN defaults to target/debug/imdsd of this checkout. The exit code
# is the test result.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export IMDSD_BIN="${IMDSD_BIN:-$root/target/debug/imdsd}"
if [ ! -x "$IMDSD_BIN" ]; then
  echo "run.sh: IMDSD_BIN=$IMDSD_BIN is not an executable (cargo build --bin imdsd first)" >&2
  exit 2
fi
cd "$here"
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
exec node --test console.test.mjs

#!/usr/bin/env bash
# Runs every benchmark once, in order, printing each report (about 40
# minutes on the 2-core machine): throughput (with and without 100k
# instances), scale, abuse, profile, then the criterion micro-benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 bench/throughput.py "$@"
python3 bench/scale.py
python3 bench/abuse.py
python3 bench/profile.py
cargo bench -p imds-token -p imds-net -p imds-dataplane --bench token --bench source_lookup --bench hot_path \
  -- --warm-up-time 1 --measurement-time 3

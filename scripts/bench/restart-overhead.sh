#!/usr/bin/env bash
# Benchmark: what opsctl adds per relay to a no-downtime restart, beyond the
# drain and the service's own restart. The lab's three relayd relays with no
# calls (the drain is immediate), so a full `restart --no-downtime --all`
# (safety checks, un-advertise, drain gate, restart, verify, re-advertise)
# is opsctl's work plus three service restarts, timed separately.
#
#   scripts/bench/restart-overhead.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v hyperfine >/dev/null 2>&1; then
    apt-get install -y -qq hyperfine >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
fi
cargo build --release --locked -q -p opsctl
bin=$PWD/target/release/opsctl
dir=$(mktemp -d)
trap '"$bin" lab down --dir "$dir/lab" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
cd "$dir"
OPSCTL_LAB_NET=${OPSCTL_LAB_NET:-127.78.9} "$bin" lab up --dir lab 2>/dev/null
# No calls: stop the simulator and let its calls end.
touch lab/run/simulator.stop
sleep 7
export OPSCTL_STATE_DIR=$dir/state
hyperfine --warmup 1 --runs 10 -N \
    "$bin -q -i lab/inventory.yaml restart --no-downtime --all --yes" \
    "$bin lab service --dir lab node-1 restart"
echo "per relay: (first mean / 3) - second mean is what opsctl adds"

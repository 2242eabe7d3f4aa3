#!/usr/bin/env bash
# Benchmark: load and validate a 1,000-node inventory (10 sites x 90 relays,
# 3 URLs each in a values file, plus 10 etcd clusters of 10 members), and plan
# a no-downtime restart of one site (90 relays, 2,700 values-file lines).
#
#   scripts/bench/inventory-load.sh
#
# Prints hyperfine's summary: wall time per command, including process start.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v hyperfine >/dev/null 2>&1; then
    apt-get install -y -qq hyperfine >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
fi
cargo build --release --locked -q -p opsctl
bin=$PWD/target/release/opsctl

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
inv = ["advertise: {backend: values-file, file: values.yaml, apply: ./bin/prod-setup.sh}",
       "defaults:", "  ssh: {user: ops, connect_timeout: 5s}",
       "  relay: {kind: restund, drain: {timeout: 12h, poll: 10s}}", "sites:"]
values = ["brig:", "  turnStatic:", "    v2:"]
n = 0
for s in range(10):
    inv += [f"  - name: site{s}", "    defaults: {min_healthy_relays: 2}", "    relays:"]
    for r in range(90):
        n += 1
        urls = [f"turn:turn{n}.example.com:3478", f"turn:turn{n}.example.com:3478?transport=tcp",
                f"turns:turn{n}.example.com:5349?transport=tcp"]
        inv.append(f"      - name: relay-{n}")
        inv.append(f"        host: 10.{s}.{r // 250}.{r % 250 + 1}")
        inv.append("        urls: [" + ", ".join(f"'{u}'" for u in urls) + "]")
        values += [f"      - {u}" for u in urls]
    inv += ["    cluster:", "      flavor: etcd", "      members:"]
    for m in range(10):
        inv.append(f"        - {{name: etcd-{s}-{m}, host: 10.{s}.9.{m + 1}}}")
open(f"{d}/inventory.yaml", "w").write("\n".join(inv) + "\n")
open(f"{d}/values.yaml", "w").write("\n".join(values) + "\n")
PY
echo "inventory: $(grep -c 'name: relay-' "$dir/inventory.yaml") relays, $(grep -c 'name: etcd-' "$dir/inventory.yaml") etcd members, $(wc -l <"$dir/inventory.yaml") lines"
cd "$dir"
hyperfine --warmup 3 --runs 30 -N \
    "$bin inventory check" \
    "$bin --run-id bench restart --no-downtime --site site0 --dry-run" \
    "$bin --run-id bench --output json restart --no-downtime --site site0 --dry-run"

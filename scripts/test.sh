#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the command-line tests against
# the shipped inventory and playbooks, and (as they land) the lab tests.
# Installs what the tests need when it is missing, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is not installed; install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# The lab (tests/lab) runs real sshd nodes (Debian's openssh-server) and real
# services on them (Debian's coturn, etcd-server and etcd-client).
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
[ -x /usr/bin/turnserver ] || need+=(coturn)
[ -x /usr/bin/etcd ] || need+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need+=(etcd-client)
# rtpengine in userspace and its CLI, and Redis, for the redundancy lab.
[ -x /usr/bin/rtpengine ] || need+=(rtpengine-daemon)
[ -x /usr/bin/rtpengine-ctl ] || need+=(rtpengine-utils)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
# openssl makes the certificates rcgen cannot (an RSA key of 1024 bits).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# ss and ip (iproute2) for the lab; iptables cuts a lab etcd member off its
# peers, as a partition between hosts would.
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
# curl: opsctl's `via: prometheus` stats reader runs it (the lab's relayd metrics).
command -v curl >/dev/null 2>&1 || need+=(curl)
# The Debian packages' test (tests/cli/packages.rs): relayd's dependency
# ssl-cert, man to read the pages, systemd-analyze to check the unit, strace
# for the system calls its filter must allow.
[ -f /usr/share/doc/ssl-cert/copyright ] || need+=(ssl-cert)
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v strace >/dev/null 2>&1 || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${need[*]} for the lab" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}"; }
fi

# The packages the packages' test installs on a clean lab node.
scripts/packages.sh >/dev/null

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Two cores: keep test binaries from competing with each other's builds.
status=0
cargo test --workspace --locked -- --test-threads="${OPSCTL_TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?

# One closing line for the whole run: the sum over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

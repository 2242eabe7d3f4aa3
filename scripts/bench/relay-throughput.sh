#!/usr/bin/env bash
# Benchmark: relayd against Debian's coturn on the same machine in the same
# run, each server pinned to one core (SERVER_CPU, default 0), its load on
# another (LOAD_CPU, default 1):
#   - STUN Binding requests answered per second,
#   - TURN ChannelData messages relayed per second (client -> relayed socket
#     -> relayed socket -> client, 100-byte payloads),
#   both from relay_load (relay/benches/relay_load.rs), the median of ROUNDS
#   interleaved rounds, with the server's CPU use and CPU time per message;
#   - bursts: coturn's own client (`turnutils_uclient -c -y -m 50 -n 2000
#     -l 120`: 50 clients sending to each other through the relay at once,
#     100,000 messages) against both, ROUNDS times each, interleaved: the
#     messages lost, and the datagrams the kernel dropped on the server's
#     listening socket (/proc/net/udp) because its receive buffer was full;
#   - turnutils_uclient (coturn's own client, 50 sessions, channels) against
#     both: it is the slower side, so compare the servers' CPU per message;
#   - the latency each server adds to a ChannelData message: 20,000 sent one
#     at a time through a pair of allocations, beside plain loopback, p50
#     and p99 (relay_load latency), median of ROUNDS;
#   - memory per held allocation: HOLD (default 10,000) allocations held on
#     each server in turn (relay_load hold), its VmRSS before and while held;
#   - relayd's memory (VmRSS) during a SOAK_SECONDS run of ChannelData load
#     plus allocation churn: idle, start, middle, end, peak, after.
#
#   scripts/bench/relay-throughput.sh [SOAK_SECONDS=60] [PHASE_SECONDS=5] [ROUNDS=3]
#
# With BASELINE=PATH, a second relayd binary (one built from an earlier
# commit, say) runs beside them, pinned to the same core, in the same
# interleaved Binding, ChannelData and burst rounds, and is reported
# against this tree's relayd.
#
# Everything runs on loopback with ports picked free, every load is bounded
# in time, and every process started here is stopped on exit. Other work on
# the machine skews the numbers: run it on a quiet one.
set -euo pipefail
cd "$(dirname "$0")/../.."

soak=${1:-60}
phase=${2:-5}
rounds=${3:-3}
for n in "$soak" "$phase" "$rounds"; do
    case "$n" in
        '' | *[!0-9]* | 0) echo "relay-throughput.sh: arguments are whole numbers above 0, not \`$n\`" >&2; exit 2 ;;
    esac
done
server_cpu=${SERVER_CPU:-0}
baseline=${BASELINE:-}
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    echo "relay-throughput.sh: BASELINE=$baseline is not an executable relayd" >&2
    exit 2
fi
hold_count=${HOLD:-10000}
# A socket per held allocation on both sides: room for them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
load_cpu=${LOAD_CPU:-1}

need=()
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "relay-throughput.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "relay-throughput.sh: warning: one CPU; server and load share it" >&2
    load_cpu=$server_cpu
fi

echo "building relayd and relay_load (release)..." >&2
cargo build --release --locked -q -p relay --bin relayd
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
relayd_bin=$target/release/relayd
load=$(cargo bench --locked -q -p relay --bench relay_load --no-run --message-format=json |
    grep -o '"executable":"[^"]*relay_load[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$load" ] || { echo "relay-throughput.sh: cannot find the relay_load bench binary" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | tail -1; }

# relayd's `turnstats` (restund's format), read as opsctl's node probe does.
turnstats() {
    exec 3<>"/dev/udp/127.0.0.1/$status_port"
    printf 'turnstats' >&3
    timeout 0.5 cat <&3 || true
    exec 3>&-
}

# Waits (up to 10 s) until a STUN server answers on 127.0.0.1:$1.
wait_up() {
    for _ in $(seq 50); do
        if timeout 2 turnutils_stunclient -p "$1" 127.0.0.1 2>/dev/null | grep -q 'reflexive addr'; then
            return 0
        fi
        sleep 0.2
    done
    echo "relay-throughput.sh: nothing answers on port $1; logs in $dir:" >&2
    tail -n 20 "$dir"/*.log >&2 || true
    exit 1
}

# relayd, pinned.
relayd_port=$("$load" free-port)
status_port=$("$load" free-port)
cat >"$dir/relayd.yaml" <<EOF
realm: bench.example
relay: [{bind: 127.0.0.1}]
status: 127.0.0.1:$status_port
users: {alice: alice-pw}
allow_loopback_peers: true
EOF
taskset -c "$server_cpu" "$relayd_bin" -c "$dir/relayd.yaml" \
    --listen-udp "127.0.0.1:$relayd_port" --listen-tcp "127.0.0.1:$relayd_port" >"$dir/relayd.log" 2>&1 &
relayd_pid=$!
pids+=("$relayd_pid")
wait_up "$relayd_port"

# coturn, pinned, same user and realm; relayed ports above Linux's ephemeral range.
coturn_port=$("$load" free-port)
cat >"$dir/turnserver.conf" <<EOF
listening-ip=127.0.0.1
listening-port=$coturn_port
relay-ip=127.0.0.1
min-port=40000
max-port=60999
realm=bench.example
lt-cred-mech
user=alice:alice-pw
allow-loopback-peers
no-tls
no-dtls
no-rfc5780
no-cli
userdb=$dir/turndb
pidfile=$dir/turnserver.pid
log-file=$dir/turnserver.log
simple-log
no-stdout-log
EOF
taskset -c "$server_cpu" turnserver -c "$dir/turnserver.conf" >/dev/null 2>&1 &
coturn_pid=$!
pids+=("$coturn_pid")
wait_up "$coturn_port"

declare -A port=([relayd]=$relayd_port [coturn]=$coturn_port)
declare -A pid=([relayd]=$relayd_pid [coturn]=$coturn_pid)
servers=(relayd coturn)

# The baseline relayd, pinned beside them, its own ports.
if [ -n "$baseline" ]; then
    port[baseline]=$("$load" free-port)
    sed "s/^status: .*/status: 127.0.0.1:$("$load" free-port)/" "$dir/relayd.yaml" >"$dir/baseline.yaml"
    taskset -c "$server_cpu" "$baseline" -c "$dir/baseline.yaml" \
        --listen-udp "127.0.0.1:${port[baseline]}" >"$dir/baseline.log" 2>&1 &
    pid[baseline]=$!
    pids+=("${pid[baseline]}")
    wait_up "${port[baseline]}"
    servers+=(baseline)
fi
declare -A rates cpus uss

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One relay_load run against $1 in mode $2; keeps its rate, CPU use and CPU per message.
measure() {
    local server=$1 mode=$2 before after out rate seconds count ticks
    before=$(cpu_ticks "${pid[$server]}")
    out=$(taskset -c "$load_cpu" timeout $((phase + 30)) "$load" "$mode" --server "127.0.0.1:${port[$server]}" \
        --seconds "$phase" --user alice --password alice-pw)
    after=$(cpu_ticks "${pid[$server]}")
    echo "  $server: $out" >&2
    rate=$(field rate <<<"$out")
    seconds=$(field seconds <<<"$out")
    count=$(field answered <<<"$out")
    [ -n "$count" ] || count=$(field received <<<"$out")
    ticks=$((after - before))
    rates[$server.$mode]+="$rate "
    cpus[$server.$mode]+="$(awk -v t="$ticks" -v s="$seconds" 'BEGIN { printf "%.0f", t / s }') "
    uss[$server.$mode]+="$(awk -v t="$ticks" -v c="$count" 'BEGIN { printf "%.1f", c ? t * 10000 / c : 0 }') "
}

for round in $(seq "$rounds"); do
    echo "round $round of $rounds (${phase}s per run):" >&2
    for mode in binding channel; do
        for server in "${servers[@]}"; do
            measure "$server" "$mode"
        done
    done
done

declare -A best best_cpu best_us
for key in "${!rates[@]}"; do
    # shellcheck disable=SC2086 # the samples are space-separated numbers
    best[$key]=$(median ${rates[$key]})
    # shellcheck disable=SC2086
    best_cpu[$key]="$(median ${cpus[$key]})%"
    # shellcheck disable=SC2086
    best_us[$key]=$(median ${uss[$key]})
done

# Datagrams the kernel dropped on the UDP sockets bound to 127.0.0.1:$1 (a
# full receive buffer), summed: coturn opens one per thread on its port.
udp_drops() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    awk -v a="$hex" '$2 == a { s += $NF } END { print s + 0 }' /proc/net/udp
}

# Bursts: coturn's own load client, 50 clients at once, 100,000 messages.
declare -A lost drops
for round in $(seq "$rounds"); do
    for server in "${servers[@]}"; do
        d0=$(udp_drops "${port[$server]}")
        out=$(taskset -c "$load_cpu" timeout 300 turnutils_uclient -c -y -m 50 -n 2000 -l 120 \
            -u alice -w alice-pw -p "${port[$server]}" 127.0.0.1 2>&1) || {
            echo "relay-throughput.sh: turnutils_uclient (bursts) against $server failed:" >&2
            tail -n 5 <<<"$out" >&2
            exit 1
        }
        d1=$(udp_drops "${port[$server]}")
        totals=$(grep 'start_mclient: tot_send_msgs=' <<<"$out" | tail -1)
        sent=$(sed -n 's/.*tot_send_msgs=\([0-9]*\).*/\1/p' <<<"$totals")
        received=$(sed -n 's/.*tot_recv_msgs=\([0-9]*\).*/\1/p' <<<"$totals")
        lost[$server]+="$((sent - received)) "
        drops[$server]+="$((${d1:-0} - ${d0:-0})) "
        echo "  bursts round $round, $server: sent $sent, received $received, kernel drops on its listening socket $((${d1:-0} - ${d0:-0}))" >&2
    done
done

# coturn's own client against both; it paces itself, so CPU per message is the comparison.
declare -A uc_rate uc_us
for server in relayd coturn; do
    before=$(cpu_ticks "${pid[$server]}")
    out=$(taskset -c "$load_cpu" timeout 120 turnutils_uclient -c -y -m 50 -n 1000 -l 100 -z 1 \
        -u alice -w alice-pw -p "${port[$server]}" 127.0.0.1 2>&1) || {
        echo "relay-throughput.sh: turnutils_uclient against $server failed:" >&2
        tail -n 5 <<<"$out" >&2
        exit 1
    }
    after=$(cpu_ticks "${pid[$server]}")
    # A 437 is uclient meeting its own earlier allocation on a reused port; it retries.
    errors=$(grep -i error <<<"$out" | grep -vc 'error 437' || true)
    if [ "$errors" -gt 0 ]; then
        echo "relay-throughput.sh: turnutils_uclient against $server reported errors:" >&2
        grep -i error <<<"$out" | grep -v 'error 437' | head -5 >&2
        exit 1
    fi
    totals=$(grep 'start_mclient: tot_send_msgs=' <<<"$out" | tail -1)
    received=$(sed -n 's/.*tot_recv_msgs=\([0-9]*\).*/\1/p' <<<"$totals")
    transmit=$(sed -n 's/.*Total transmit time is \([0-9]*\).*/\1/p' <<<"$out" | tail -1)
    echo "  uclient -> $server: ${totals#*: : } in ${transmit}s ($(grep -c 'error 437' <<<"$out" || true) allocations retried after 437)" >&2
    uc_rate[$server]=$(awk -v r="$received" -v t="$transmit" 'BEGIN { printf "%.0f", t ? r / t : 0 }')
    uc_us[$server]=$(awk -v t="$((after - before))" -v r="$received" 'BEGIN { printf "%.1f", r ? t * 10000 / r : 0 }')
done

# The latency each server adds, one message at a time.
declare -A lat50 lat99
for round in $(seq "$rounds"); do
    for server in "${servers[@]}"; do
        out=$(taskset -c "$load_cpu" timeout 120 "$load" latency --server "127.0.0.1:${port[$server]}" \
            --user alice --password alice-pw --count 20000)
        echo "  latency round $round, $server: $out" >&2
        lat50[$server]+="$(field added_p50_us <<<"$out") "
        lat99[$server]+="$(field added_p99_us <<<"$out") "
    done
done

# Memory per held allocation, each server in turn.
declare -A hold_kib
for server in relayd coturn; do
    before=$(rss_kib "${pid[$server]}")
    ready="$dir/held-$server"
    taskset -c "$load_cpu" timeout 600 "$load" hold --server "127.0.0.1:${port[$server]}" \
        --user alice --password alice-pw --count "$hold_count" --seconds 3 --ready "$ready" >"$dir/hold-$server.out" &
    hold_pid=$!
    pids+=("$hold_pid")
    for _ in $(seq 1500); do
        [ -e "$ready" ] && break
        kill -0 "$hold_pid" 2>/dev/null || break
        sleep 0.2
    done
    if [ ! -e "$ready" ]; then
        echo "relay-throughput.sh: $hold_count allocations could not be held on $server:" >&2
        wait "$hold_pid" || true
        cat "$dir/hold-$server.out" >&2
        exit 1
    fi
    sleep 1
    held=$(rss_kib "${pid[$server]}")
    wait "$hold_pid"
    hold_kib[$server]=$(awk -v a="$held" -v b="$before" -v n="$hold_count" 'BEGIN { printf "%.2f", (a - b) / n }')
    echo "  hold $server: VmRSS $before KiB, holding $hold_count allocations $held KiB; $(cat "$dir/hold-$server.out")" >&2
done

# relayd's memory under a long, bounded mixed load.
echo "soak: ${soak}s of ChannelData load and allocation churn against relayd..." >&2
idle=$(rss_kib "$relayd_pid")
# uclient leaves some allocations behind (it does not release them all).
allocs_before=$(turnstats | sed -n 's/^allocs_cur //p')
taskset -c "$load_cpu" timeout $((soak + 60)) "$load" soak --server "127.0.0.1:$relayd_port" \
    --seconds "$soak" --user alice --password alice-pw >"$dir/soak.out" &
soak_pid=$!
pids+=("$soak_pid")
samples=()
for _ in $(seq "$soak"); do
    sleep 1
    samples+=("$(rss_kib "$relayd_pid")")
done
wait "$soak_pid"
after_soak=$(rss_kib "$relayd_pid")
allocs_after=$(turnstats | sed -n 's/^allocs_cur //p')
soak_out=$(cat "$dir/soak.out")
echo "  relayd: $soak_out" >&2
n=${#samples[@]}
peak=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }
# A row of a table: what, relayd's figure, the other's, and (row_ratio) their ratio.
row() { printf '%-38s %12s %12s\n' "$1" "$2" "$3"; }
row_ratio() { printf '%-38s %12s %12s %14s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
# The rows every table has: relayd against the server $1, same rounds.
# shellcheck disable=SC2086 # the latency samples are space-separated numbers
against() {
    row_ratio "STUN Binding answers/s" "${best[relayd.binding]}" "${best[$1.binding]}"
    row "  server CPU us per answer" "${best_us[relayd.binding]}" "${best_us[$1.binding]}"
    row_ratio "ChannelData relayed/s (relay_load)" "${best[relayd.channel]}" "${best[$1.channel]}"
    row "  server CPU us per message" "${best_us[relayd.channel]}" "${best_us[$1.channel]}"
    row "added latency p50 (us)" "$(median ${lat50[relayd]})" "$(median ${lat50[$1]})"
    row "added latency p99 (us)" "$(median ${lat99[relayd]})" "$(median ${lat99[$1]})"
    row "bursts: messages lost, each round" "${lost[relayd]% }" "${lost[$1]% }"
    row "  kernel drops (listening socket)" "${drops[relayd]% }" "${drops[$1]% }"
}
echo
echo "relay throughput, one core each (server on CPU $server_cpu, load on CPU $load_cpu), median of $rounds x ${phase}s"
printf '%-38s %12s %12s %14s\n' "" relayd coturn relayd/coturn
against coturn
row "server CPU, Bindings" "${best_cpu[relayd.binding]}" "${best_cpu[coturn.binding]}"
row "server CPU, ChannelData" "${best_cpu[relayd.channel]}" "${best_cpu[coturn.channel]}"
row_ratio "ChannelData relayed/s (uclient)" "${uc_rate[relayd]}" "${uc_rate[coturn]}"
row_ratio "  server CPU us per message" "${uc_us[relayd]}" "${uc_us[coturn]}"
row_ratio "KiB per held allocation ($hold_count)" "${hold_kib[relayd]}" "${hold_kib[coturn]}"
if [ -n "$baseline" ]; then
    echo
    echo "against the baseline relayd ($baseline), same core, same rounds"
    printf '%-38s %12s %12s %14s\n' "" relayd baseline relayd/baseline
    against baseline
fi
echo
echo "relayd VmRSS over a ${soak}s soak (KiB): idle $idle, start ${samples[0]}, middle ${samples[$((n / 2))]}, end ${samples[$((n - 1))]}, peak $peak, after $after_soak"
echo "  load: $(field received <<<"$soak_out") ChannelData messages relayed, $(field churned_allocations <<<"$soak_out") allocations made and released" \
    "($(field stale_allocate <<<"$soak_out") Allocates met a stale allocation, $(field churn_timeouts <<<"$soak_out") rounds timed out); allocations before ${allocs_before:-unknown}, after ${allocs_after:-unknown}"

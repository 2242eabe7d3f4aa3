#!/bin/sh
# A lab node's init: pid 1 of the node's own pid and mount namespaces.
# Each pass of the loop is one boot: a new boot id, the node's sshd, and the
# services that were running when the node was rebooted. A reboot (the
# `reboot` shim writes run/reboot) ends every process of the node, waits the
# requested number of seconds, and boots again. Killing this process from
# outside ends the node for good, with everything in it.
# A Clearwater node has its files under $node/root: before the first boot,
# each of Clearwater's directories found there is bound over the real path,
# seen by this node only (its mount namespace is private). /var/lib is bound
# whole, so the node can rename its /var/lib/clearwater-etcd aside (a mount
# point cannot be renamed).
set -u
node=$1
sshd=$2
empty=$3
# A clean node (LAB_CLEAN=1) has a root of its own: an overlay of this
# machine's whose writes (a package installed with dpkg, say) land on a
# tmpfs of the node's, gone with it. The lab's directory stays shared, so
# the node's record, logs and pid files are where the lab reads them.
if [ "${LAB_CLEAN:-}" = 1 ]; then
    lab=$(dirname "$node")
    layer=$node/layer
    mkdir -p "$layer" && mount -t tmpfs tmpfs "$layer" &&
        mkdir -p "$layer/upper" "$layer/work" "$layer/root" &&
        mount -t overlay overlay -o "lowerdir=/,upperdir=$layer/upper,workdir=$layer/work" "$layer/root" &&
        mount --rbind /dev "$layer/root/dev" && mount --rbind /sys "$layer/root/sys" &&
        mount --bind "$lab" "$layer/root$lab" || exit 1
    LAB_CLEAN=done exec chroot "$layer/root" sh "$0" "$@"
fi
# Root's .bashrc is masked for the node's shells: a clean, fast environment.
mount --bind "$empty" /root/.bashrc 2>/dev/null
# The node's own /proc: its pids (a service's pid file, /proc/PID/exe) mean
# its own processes, as on a host of its own.
mount -t proc proc /proc || exit 1
for d in etc/clearwater etc/chronos usr/share/clearwater var/lib; do
    if [ -d "$node/root/$d" ]; then
        mkdir -p "/$d" && mount --bind "$node/root/$d" "/$d" || exit 1
    fi
done
# opsctl's site locks (/var/lib/opsctl) are each node's own.
mkdir -p "$node/opsctl-lib" /var/lib/opsctl && mount --bind "$node/opsctl-lib" /var/lib/opsctl || exit 1
# The reboot shim wakes this init through a FIFO once it has written
# run/reboot: the init sleeps in `read` meanwhile, using no CPU (a lab of
# hundreds of nodes polling would load the machine it measures).
rm -f "$node/run/wake" && mkfifo "$node/run/wake" || exit 1
while :; do
    cat /proc/sys/kernel/random/uuid > "$node/boot_id"
    # Every boot, in order: how many times the node was rebooted.
    cat "$node/boot_id" >> "$node/boots"
    # Pid files of the previous boot name processes that are gone.
    rm -f "$node/run/reboot" "$node"/run/*.pid
    "$sshd" -D -e -f "$node/sshd_config" &
    if [ -f "$node/run/on-boot" ]; then
        while read -r unit; do
            LAB_NODE="$node" "$node/bin/systemctl" start "$unit"
        done < "$node/run/on-boot"
        rm -f "$node/run/on-boot"
    fi
    while [ ! -f "$node/run/reboot" ]; do read -r _ < "$node/run/wake"; done
    # Let the command that asked for the reboot return over SSH first.
    sleep 1
    down=$(cat "$node/run/reboot")
    kill -KILL -1 2>/dev/null
    sleep "${down:-2}"
done

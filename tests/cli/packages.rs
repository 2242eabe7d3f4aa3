//! The Debian packages (`scripts/packages.sh`, built with cargo-deb),
//! installed with `dpkg -i` on a clean lab node: one whose root is its own
//! (an overlay of this machine's, with no opsctl or relayd on it), so what
//! the install writes stays on the node. The installed relayd checks the
//! shipped example, then serves as its systemd unit runs it.

use std::path::PathBuf;

use crate::lab::Lab;

/// The two packages of this version, which `scripts/packages.sh` builds
/// into target/debian (scripts/test.sh runs it first).
fn packages() -> [PathBuf; 2] {
    let dir = crate::util::root().join("target/debian");
    let version = env!("CARGO_PKG_VERSION");
    ["opsctl", "relayd"].map(|name| {
        let deb = dir.join(format!("{name}_{version}-1_amd64.deb"));
        assert!(
            deb.exists(),
            "{} is missing: build the packages with scripts/packages.sh (scripts/test.sh does)",
            deb.display()
        );
        deb
    })
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command lines of `key=` in the unit file `unit`, in order.
fn unit_lines<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_packages_install_on_a_clean_node_and_the_installed_relayd_serves() {
    let [opsctl, relayd] = packages();
    let lab = Lab::start_clean(1).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let ip = lab.nodes[0].ip.to_string();
    // Nothing of them is there before.
    let before = lab.ssh(
        0,
        "command -v relayd || command -v opsctl || test -e /usr/lib/systemd/system/relayd.service",
    );
    assert!(!before.status.success(), "the node is not clean: {before:?}");

    ok(
        &lab.ssh(0, &format!("dpkg -i {} {}", opsctl.display(), relayd.display())),
        "dpkg -i",
    );
    let files = ok(&lab.ssh(0, "dpkg -L opsctl relayd"), "dpkg -L");
    for f in [
        "/usr/bin/opsctl",
        "/usr/share/man/man1/opsctl.1.gz",
        "/usr/share/man/man1/opsctl-restart.1.gz",
        "/usr/share/man/man1/opsctl-renew-cert.1.gz",
        "/usr/share/bash-completion/completions/opsctl",
        "/usr/share/zsh/vendor-completions/_opsctl",
        "/usr/share/fish/vendor_completions.d/opsctl.fish",
        "/usr/bin/relayd",
        "/usr/lib/systemd/system/relayd.service",
        "/usr/share/man/man1/relayd.1.gz",
        "/usr/share/doc/relayd/examples/relayd.yaml",
        "/usr/share/doc/relayd/examples/low-ports.conf",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} is not in the packages:\n{files}"
        );
    }
    // The man pages read as pages, with relayd's own sections.
    let page = ok(
        &lab.ssh(0, "MANWIDTH=100 man -P cat relayd 2>/dev/null"),
        "man relayd",
    );
    for heading in ["SYNOPSIS", "OPTIONS", "FILES", "SIGNALS", "EXIT STATUS"] {
        assert!(
            page.lines().any(|l| l == heading),
            "no {heading} in relayd(1):\n{page}"
        );
    }
    assert!(page.contains("--check-config"), "{page}");
    let page = ok(
        &lab.ssh(0, "MANWIDTH=100 man -P cat opsctl-restart 2>/dev/null"),
        "man opsctl-restart",
    );
    assert!(page.contains("--no-downtime"), "{page}");
    let version = ok(&lab.ssh(0, "opsctl --version"), "opsctl --version");
    assert_eq!(version.trim(), format!("opsctl {}", env!("CARGO_PKG_VERSION")));

    // The shipped example checks clean, as installed.
    let checked = ok(
        &lab.ssh(
            0,
            "relayd --config /usr/share/doc/relayd/examples/relayd.yaml --check-config",
        ),
        "check-config",
    );
    assert!(
        checked.starts_with("relayd: /usr/share/doc/relayd/examples/relayd.yaml: ok\n"),
        "{checked}"
    );
    // The unit is sound to systemd, with the binary and page it names installed.
    ok(
        &lab.ssh(0, "systemd-analyze verify /usr/lib/systemd/system/relayd.service"),
        "systemd-analyze verify",
    );

    // Started as the unit starts it: the config (the example, on the
    // node's address) handed over as a credential, the unit's own command
    // lines, a user of no privilege in group ssl-cert, no capabilities.
    let unit = ok(
        &lab.ssh(0, "cat /usr/lib/systemd/system/relayd.service"),
        "the unit",
    );
    let (pre, start, reload) = (
        unit_lines(&unit, "ExecStartPre"),
        unit_lines(&unit, "ExecStart"),
        unit_lines(&unit, "ExecReload"),
    );
    assert_eq!((pre.len(), start.len(), reload.len()), (1, 1, 1), "{unit}");
    assert_eq!(
        unit_lines(&unit, "LoadCredential"),
        ["relayd.yaml:/etc/relayd/relayd.yaml"]
    );
    let creds = "/run/credentials/relayd.service";
    // TLS too, with the example's TLS part switched on and the certificate
    // kept as the unit expects (mode 0640, root:ssl-cert); and relaying to
    // peers on loopback, where the lab's are.
    let setup = format!(
        "set -e; mkdir -p /etc/relayd {creds}; \
         sed -e 's/192\\.0\\.2\\.10/{ip}/g; s/127\\.0\\.0\\.1/{ip}/g' \
             -e 's/^  # tls: \\[/  tls: [/; s/^# tls:$/tls:/; s|^  # cert: |  cert: |' \
             -e 's/^allow_loopback_peers: false$/allow_loopback_peers: true/' \
             /usr/share/doc/relayd/examples/relayd.yaml > /etc/relayd/relayd.yaml; \
         chmod 600 /etc/relayd/relayd.yaml; install -m 0400 -o nobody /etc/relayd/relayd.yaml {creds}/relayd.yaml; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=relay.test -days 2 \
             -keyout /etc/relayd/key.pem -out /etc/relayd/cert.pem 2>/dev/null; \
         cat /etc/relayd/cert.pem /etc/relayd/key.pem > /etc/relayd/relayd.pem; rm /etc/relayd/key.pem; \
         chown root:ssl-cert /etc/relayd/relayd.pem; chmod 640 /etc/relayd/relayd.pem"
    );
    ok(&lab.ssh(0, &setup), "the config");
    let as_unit = |line: &str| {
        format!(
            "setpriv --reuid=nobody --regid=nogroup --groups=ssl-cert --inh-caps=-all --bounding-set=-all --no-new-privs {}",
            line.replace("%d", creds)
        )
    };
    let checked = ok(&lab.ssh(0, &as_unit(pre[0])), "ExecStartPre");
    assert!(checked.contains(&format!("udp {ip}:3478")), "{checked}");
    assert!(checked.contains(&format!("tls {ip}:5349")), "{checked}");
    lab.service(0, "relayd", &as_unit(start[0]));
    ok(&lab.systemctl(0, "start relayd"), "start");
    lab.wait_tcp(0, 5349).unwrap();
    let pid = ok(&lab.systemctl(0, "show-pid relayd"), "pid");
    // The certificate it serves is the one kept for group ssl-cert.
    let served = ok(
        &lab.ssh(
            0,
            &format!(
                "openssl s_client -connect {ip}:5349 </dev/null 2>/dev/null | openssl x509 -noout -subject"
            ),
        ),
        "the served certificate",
    );
    assert!(served.contains("CN = relay.test"), "{served}");
    // It answers a STUN Binding from here, and its status port and metrics.
    let stun = std::process::Command::new("turnutils_stunclient")
        .args(["-p", "3478", &ip])
        .output()
        .unwrap();
    let said = ok(&stun, "a STUN binding");
    assert!(said.contains("UDP reflexive addr"), "{said}");
    let metrics = ok(
        &std::process::Command::new("curl")
            .args(["-fsS", "--max-time", "5", &format!("http://{ip}:9641/metrics")])
            .output()
            .unwrap(),
        "metrics",
    );
    assert!(
        metrics.contains("\nturn_total_allocations{type=\"UDP\"} 0\n"),
        "{metrics}"
    );
    // It runs as nobody, with no capability.
    let status = ok(
        &lab.ssh(
            0,
            &format!("grep -E '^(Uid|CapEff):' /proc/{}/status", pid.trim()),
        ),
        "status",
    );
    assert!(status.contains("Uid:\t65534\t65534"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    // The unit's reload is SIGHUP: taken without a restart.
    let reload = reload[0].replace("$MAINPID", pid.trim());
    ok(&lab.ssh(0, &reload), "ExecReload");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(ok(&lab.systemctl(0, "show-pid relayd"), "pid"), pid);
    let log = ok(&lab.ssh(0, "cat \"$LAB_NODE/log/relayd.log\""), "the log");
    assert!(log.contains("certificate reloaded: now serving"), "{log}");
    ok(&lab.systemctl(0, "stop relayd"), "stop");
    // A port below 1024 takes the capability the unit leaves out: refused,
    // the error says how to add it (where this kernel reserves such ports).
    let reserved = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok())
        .is_none_or(|first| first > 443);
    let low = lab.ssh(
        0,
        &format!(
            "timeout 3 {}",
            as_unit(&format!("{} --listen-udp {ip}:443", start[0]))
        ),
    );
    let said = String::from_utf8_lossy(&low.stderr);
    if reserved {
        assert_eq!(low.status.code(), Some(1), "{low:?}");
        assert!(
            said.contains(&format!("relayd: error: cannot listen on udp {ip}:443: Permission denied (os error 13)\nhelp: a port below 1024 needs CAP_NET_BIND_SERVICE; under relayd's systemd unit, add the drop-in /usr/share/doc/relayd/examples/low-ports.conf")),
            "{said}"
        );
    } else {
        // This kernel lets anyone bind it: relayd serves until stopped.
        assert_eq!(low.status.code(), Some(124), "{low:?}");
    }

    // The unit's system call filter (@system-service, less @privileged)
    // lets relayd do what it does: every call it makes serving a Binding,
    // an allocation and a relayed packet, its metrics, a reload and a stop
    // (strace'd, as the unit's user) is in the set systemd allows.
    // Written as the unit's user, on the node's own layer.
    let trace = "/var/lib/opsctl-test-trace/relayd.strace";
    ok(
        &lab.ssh(0, "install -d -o nobody /var/lib/opsctl-test-trace"),
        "the trace's directory",
    );
    lab.service(
        0,
        "relayd",
        &as_unit(&format!("strace -f -qq -o {trace} {}", start[0])),
    );
    ok(&lab.systemctl(0, "start relayd"), "start under strace");
    if let Err(why) = lab.wait_tcp(0, 9641) {
        let log = std::fs::read_to_string(lab.nodes[0].dir.join("log/relayd.log")).unwrap_or_default();
        panic!("relayd under strace: {why}\n{log}");
    }
    ok(
        &std::process::Command::new("turnutils_stunclient")
            .args(["-p", "3478", &ip])
            .output()
            .unwrap(),
        "a STUN binding",
    );
    // An allocation (and a relayed packet) by coturn's own client, as the example's user.
    lab.idle_allocations(0, 1, "alice", "change-me", &[]);
    ok(
        &std::process::Command::new("curl")
            .args(["-fsS", "--max-time", "5", &format!("http://{ip}:9641/metrics")])
            .output()
            .unwrap(),
        "metrics",
    );
    let calls = ok(
        &lab.ssh(
            0,
            &format!(
                r#"set -e; tracer=$(systemctl show-pid relayd); pkill -HUP -P "$tracer"; sleep 0.3; pkill -TERM -P "$tracer"
for _ in $(seq 50); do kill -0 "$tracer" 2>/dev/null || break; sleep 0.1; done
set_of() {{ systemd-analyze syscall-filter "$1" | tail -n +2 | sed 's/^ *//' | grep -v -e '^#' -e '^$' | while read -r s; do case $s in @*) set_of "$s" ;; *) echo "$s" ;; esac; done; }}
set_of @system-service | sort -u > "$LAB_NODE/allowed"; set_of @privileged | sort -u > "$LAB_NODE/privileged"
sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' {trace} | grep -v '^execve$' | sort -u > "$LAB_NODE/used"
echo "used: $(tr '
' ' ' < "$LAB_NODE/used")"
echo "outside: $(comm -23 "$LAB_NODE/used" "$LAB_NODE/allowed" | tr '
' ' ')"
echo "privileged: $(comm -12 "$LAB_NODE/used" "$LAB_NODE/privileged" | tr '
' ' ')""#
            ),
        ),
        "the system calls",
    );
    for needed in ["recvmmsg", "sendto", "setsockopt", "accept4", "rt_sigreturn"] {
        assert!(
            calls
                .lines()
                .next()
                .unwrap_or("")
                .contains(&format!(" {needed} ")),
            "{calls}"
        );
    }
    assert!(calls.contains("\noutside: \nprivileged: \n"), "{calls}");

    // What the install wrote stayed on the node (which had no relayd of
    // this machine's to begin with).
    assert!(!std::path::Path::new("/usr/bin/relayd").exists());
    assert!(!std::path::Path::new("/usr/lib/systemd/system/relayd.service").exists());
}

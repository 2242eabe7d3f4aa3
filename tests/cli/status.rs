//! `opsctl status` against lab nodes: real sshd, real processes.

use crate::lab::Lab;
use crate::util::Scratch;

fn lab(n: usize) -> Lab {
    Lab::start(n).unwrap_or_else(|why| panic!("cannot start the lab: {why}"))
}

/// Each relay's stats port on the node's own loopback address, so nodes
/// sharing this machine do not share a port.
fn inventory(lab: &Lab, extra: &str) -> String {
    let mut inv = lab.inventory("relayd", extra);
    for n in &lab.nodes {
        inv = inv.replace(
            &format!("host: {}}}", n.ip),
            &format!("host: {}, stats: {{addr: '{}:33000'}}}}", n.ip, n.ip),
        );
    }
    inv
}

#[test]
fn status_reports_each_node_and_fails_closed_on_silent_stats() {
    let mut lab = lab(3);
    for i in 0..3 {
        lab.service(i, "relayd", "sleep 600");
    }
    let started = lab.systemctl(0, "start relayd");
    assert!(started.status.success(), "{started:?}");
    // node-2's relay service is stopped; node-3 is down altogether.
    lab.stop_sshd(2);
    let scratch = Scratch::new();
    scratch.write("inventory.yaml", &inventory(&lab, ""));
    let out = scratch.opsctl(&["status"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        rows[0],
        "NODE    SITE  KIND    REACHABLE  SERVICE  ALLOCATIONS  ADVERTISED  ETCD  CERT",
        "{}",
        out.dump()
    );
    assert_eq!(
        rows[1],
        "node-1  lab   relayd  yes        up       -            -           -     -"
    );
    assert_eq!(
        rows[2],
        "node-2  lab   relayd  yes        DOWN     -            -           -     -"
    );
    assert_eq!(
        rows[3],
        "node-3  lab   relayd  NO         -        -            -           -     -"
    );
    let ip = |i: usize| lab.nodes[i].ip;
    // Nothing answers on the stats port: that is an error, never "0 allocations".
    assert!(
        out.stdout.contains(&format!("node-1: stats: turnstats on udp {}:33000 on node-1 failed (exit status 1): dd: error reading 'standard input': Connection refused\n", ip(0))),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains(
            "node-2: service is not up: `systemctl is-active relayd` exited 3 and printed `inactive`\n"
        ),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains(&format!(
            "node-3: cannot connect to `node-3` (ssh://root@{}:2022): connection refused\n    help: is sshd running there, and listening on port 2022?\n",
            ip(2)
        )),
        "{}",
        out.dump()
    );
    assert_eq!(
        out.stderr,
        "opsctl: error: 3 of 3 nodes unhealthy: node-1, node-2, node-3\n"
    );
}

#[test]
fn a_changed_host_key_is_refused_under_strict_checking() {
    let lab = lab(1);
    // Pretend the node was known with another key.
    let other = Scratch::new();
    let key = other.0.join("k");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let pubkey: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let known = other.write(
        "known_hosts",
        &format!("[{}]:2022 {}\n", lab.nodes[0].ip, pubkey.join(" ")),
    );
    let inv = inventory(&lab, "").replace(
        &lab.known_hosts.display().to_string(),
        &known.display().to_string(),
    );
    other.write("inventory.yaml", &inv);
    let out = other.opsctl(&["status"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(out.stdout.contains("node-1  lab   relayd  NO "), "{}", out.dump());
    assert!(
        out.stdout.contains(&format!(
            "node-1: cannot connect to `node-1` (ssh://root@{}:2022): its host key does not match the known_hosts entry (strict checking)\n    help: if the host was really reinstalled, check the new key out of band and replace its entry (`ssh-keygen -R {}`)\n",
            lab.nodes[0].ip, lab.nodes[0].ip
        )),
        "{}",
        out.dump()
    );
    // Strict checking wrote nothing to the known_hosts file.
    assert_eq!(std::fs::read_to_string(&known).unwrap().lines().count(), 1);
}

#[test]
fn a_command_that_hangs_is_stopped_at_the_command_timeout() {
    let lab = lab(1);
    let scratch = Scratch::new();
    let inv = inventory(&lab, ", service: {status: 'sleep 30'}").replace(
        "connect_timeout: 3s",
        "connect_timeout: 3s\n    command_timeout: 1s",
    );
    scratch.write("inventory.yaml", &inv);
    let started = std::time::Instant::now();
    let out = scratch.opsctl(&["status"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stdout
            .contains("node-1: `sleep 30` on `node-1` did not finish within 1s; it was stopped\n"),
        "{}",
        out.dump()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "status waited for the hung command"
    );
}

/// With `--ssh-persist`, the next command reuses the master connection the
/// previous one left open instead of a new key exchange; cold or warm,
/// status asks each node everything in one command.
#[test]
fn a_second_command_reuses_the_kept_master() {
    let lab = lab(2);
    for i in 0..2 {
        lab.service(i, "relayd", "sleep 600");
        assert!(lab.systemctl(i, "start relayd").status.success());
        lab.commands_run(i);
    }
    let one_command_each = |what: &str| {
        for i in 0..2 {
            let sent = lab.commands_run(i);
            assert_eq!(sent.len(), 1, "{what}: node-{} was sent {sent:#?}", i + 1);
            assert!(sent[0].contains("systemctl is-active relayd") && sent[0].contains("turnstats"));
        }
    };
    let scratch = Scratch::new();
    scratch.write("inventory.yaml", &inventory(&lab, ""));
    let persist = [("OPSCTL_SSH_PERSIST", "30s")];
    let first = crate::util::opsctl_env(&scratch.0, &["-vv", "status"], &persist);
    assert!(
        !first.stderr.contains("reusing the ssh master"),
        "{}",
        first.dump()
    );
    let records = std::fs::read_dir(scratch.0.join(".opsctl-ssh/masters"))
        .unwrap()
        .count();
    assert_eq!(records, 2, "one kept master per node\n{}", first.dump());
    one_command_each("cold");
    let second = crate::util::opsctl_env(&scratch.0, &["-vv", "status"], &persist);
    assert_eq!(
        second
            .stderr
            .matches("reusing the ssh master kept from an earlier command")
            .count(),
        2,
        "{}",
        second.dump()
    );
    assert_eq!(first.stdout, second.stdout);
    one_command_each("warm");
    // The masters end with the lab: stopping a node's sshd drops their connection.
}

/// Allocation counts come from real relays: Debian's coturn on each node,
/// read through its admin CLI over SSH, with allocations made by coturn's
/// own client.
#[test]
fn status_counts_a_real_coturn_s_allocations() {
    if !std::path::Path::new("/usr/bin/turnserver").exists() {
        panic!("Debian's coturn is missing: scripts/test.sh installs it");
    }
    let lab = lab(2);
    for i in 0..2 {
        lab.coturn(i, "lab-cli-pw");
        let started = lab.systemctl(i, "start coturn");
        assert!(started.status.success(), "{started:?}");
        lab.wait_tcp(i, 5766).unwrap();
    }
    lab.coturn_idle_allocations(0, 2);
    let scratch = Scratch::new();
    let inv = lab.coturn_inventory(&[], "");
    scratch.write("inventory.yaml", &inv);
    let out = crate::util::opsctl_env(&scratch.0, &["status"], &[("LAB_CLI_PW", "lab-cli-pw")]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let rows: Vec<&str> = out.stdout.lines().collect();
    // turnutils_uclient's count varies from run to run: ask coturn directly,
    // counting its session blocks, and compare.
    let sessions = coturn_sessions(&lab, 0, "lab-cli-pw");
    assert!(sessions > 0, "turnutils_uclient made no allocation");
    assert_eq!(
        rows[1],
        format!("node-1  lab   coturn  yes        up       {sessions:<11}  -           -     -"),
        "{}",
        out.dump()
    );
    assert_eq!(
        rows[2],
        "node-2  lab   coturn  yes        up       0            -           -     -",
        "{}",
        out.dump()
    );
    // The password went in on stdin: it is in no output.
    assert!(!out.stdout.contains("lab-cli-pw") && !out.stderr.contains("lab-cli-pw"));
}

/// The number of session blocks (`N) id=...`) in coturn's `ps` on node `i`,
/// read over a plain TCP connection from the test itself.
fn coturn_sessions(lab: &Lab, i: usize, password: &str) -> usize {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((lab.nodes[i].ip, 5766)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let upto = |s: &mut std::net::TcpStream, end: &str| {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !String::from_utf8_lossy(&got).ends_with(end) {
            assert_eq!(s.read(&mut b).unwrap(), 1, "coturn closed the CLI early");
            got.push(b[0]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    upto(&mut s, "password: ");
    s.write_all(format!("{password}\r\n").as_bytes()).unwrap();
    upto(&mut s, "> ");
    s.write_all(b"ps\r\n").unwrap();
    let reply = upto(&mut s, "> ");
    let _ = s.write_all(b"quit\r\n");
    reply.lines().filter(|l| l.contains(") id=")).count()
}

/// relayd on five lab nodes, its turnstats read on each node through SSH
/// (bash's /dev/udp, no netcat), with allocations made by the relay crate's
/// client: status shows exactly how many each relay holds.
#[test]
fn status_counts_relayd_allocations_through_ssh() {
    let lab = lab(5);
    for i in 0..lab.nodes.len() {
        lab.relayd(i, "relayd");
        let started = lab.systemctl(i, "start relayd");
        assert!(started.status.success(), "{started:?}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Node N holds N-1 allocations (node-1 none, node-5 four); the clients
    // stay alive (and their allocations with them) until the end of the test.
    let _clients: Vec<relay::client::Client> = runtime.block_on(async {
        let mut clients = Vec::new();
        for (i, n) in lab.nodes.iter().enumerate() {
            for _ in 0..i {
                let server = std::net::SocketAddr::from((n.ip, 3478));
                let mut c = loop {
                    // The relay may still be binding its socket.
                    match relay::client::Client::udp(server).await {
                        Ok(c) => break c,
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                    }
                };
                let mut tries = 0;
                while let Err(e) = c.allocate("caller", "pw", None).await {
                    tries += 1;
                    assert!(tries < 30, "allocate: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                clients.push(c);
            }
        }
        clients
    });
    let scratch = Scratch::new();
    scratch.write("inventory.yaml", &inventory(&lab, ""));
    let out = scratch.opsctl(&["status"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(rows.len(), 6, "{}", out.dump());
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(
            *row,
            format!(
                "node-{}  lab   relayd  yes        up       {i:<11}  -           -     -",
                i + 1
            ),
            "{}",
            out.dump()
        );
    }
}

/// Config-cluster members: Debian's etcd 3.4 on three lab nodes, their health
/// read with etcdctl on each node through SSH.
#[test]
fn status_reads_etcd_member_health() {
    if !std::path::Path::new("/usr/bin/etcd").exists() {
        panic!("Debian's etcd-server is missing: scripts/test.sh installs it");
    }
    let mut lab = lab(3);
    let peers: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| format!("{}=http://{}:2380", n.name, n.ip))
        .collect();
    for (i, n) in lab.nodes.iter().enumerate() {
        lab.service(
            i,
            "etcd",
            &format!(
                "/usr/bin/etcd --name {name} --data-dir {dir}/etcd --listen-client-urls http://{ip}:2379 \
                 --advertise-client-urls http://{ip}:2379 --listen-peer-urls http://{ip}:2380 \
                 --initial-advertise-peer-urls http://{ip}:2380 --initial-cluster {cluster} \
                 --initial-cluster-state new --initial-cluster-token lab",
                name = n.name,
                dir = n.dir.display(),
                ip = n.ip,
                cluster = peers.join(",")
            ),
        );
    }
    for i in 0..3 {
        let started = lab.systemctl(i, "start etcd");
        assert!(started.status.success(), "{started:?}");
    }
    for i in 0..3 {
        lab.wait_tcp(i, 2379).unwrap();
    }
    let members: String = lab
        .nodes
        .iter()
        .map(|n| format!("        - {{name: {}, host: {}}}\n", n.name, n.ip))
        .collect();
    let inv = lab.inventory("relayd", "");
    let head = &inv[..inv.find("sites:").unwrap()];
    let scratch = Scratch::new();
    scratch.write(
        "inventory.yaml",
        &format!("{head}sites:\n  - name: lab\n    cluster:\n      flavor: etcd\n      members:\n{members}"),
    );
    // The members elect a leader within a few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = scratch.opsctl(&["status"]);
        if out.code == 0 || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(out.code, 0, "{}", out.dump());
    for (i, row) in out.stdout.lines().skip(1).enumerate() {
        assert_eq!(
            row,
            format!(
                "node-{}  lab   etcd  yes        -        -            -           healthy  -",
                i + 1
            )
        );
    }
    // A member whose host is down: unreachable, and the exit status says so.
    lab.stop_sshd(2);
    let out = scratch.opsctl(&["status"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(out.stdout.contains("node-3  lab   etcd  NO "), "{}", out.dump());
}

/// The CERT column: the certificate each relay serves on its `turns:` port,
/// read with a TLS handshake from here and verified as a client would (for
/// its host, against the system's trust store and the inventory's
/// `cert.ca`): days left, or what is wrong, which makes the relay unhealthy.
/// A relay advertised under `turns:` that serves no TLS is unhealthy too.
#[test]
fn status_verifies_the_served_certificate_as_a_client_would() {
    use crate::certs::{CURRENT, Ca};
    let lab = lab(4);
    let root = Ca::root("Lab Root");
    let inter = root.intermediate("Lab Issuing CA");
    for i in 0..4 {
        lab.coturn(i, "lab-cli-pw");
        let ip = lab.nodes[i].ip.to_string();
        match i {
            // Right: for its address, with the intermediate.
            0 => {
                let leaf = inter.leaf(&[&ip], CURRENT);
                lab.coturn_tls(i, &format!("{}{}", leaf.pem, inter.pem), &leaf.key_pem);
            }
            // For another name.
            1 => {
                let leaf = inter.leaf(&["turn.other.example"], CURRENT);
                lab.coturn_tls(i, &format!("{}{}", leaf.pem, inter.pem), &leaf.key_pem);
            }
            // Without the intermediate.
            2 => {
                let leaf = inter.leaf(&[&ip], CURRENT);
                lab.coturn_tls(i, &leaf.pem, &leaf.key_pem);
            }
            // No TLS at all.
            _ => {}
        }
        let started = lab.systemctl(i, "start coturn");
        assert!(started.status.success(), "{started:?}");
        lab.wait_tcp(i, 5766).unwrap();
    }
    for i in 0..3 {
        lab.wait_tcp(i, 5349).unwrap();
    }
    let scratch = Scratch::new();
    scratch.write("root.pem", &root.pem);
    let inv = lab.coturn_inventory(&["turn:{ip}:3478", "turns:{ip}:5349?transport=tcp"], "");
    scratch.write("inventory.yaml", &format!("cert: {{ca: root.pem}}\n{inv}"));
    let out = crate::util::opsctl_env(&scratch.0, &["status"], &[("LAB_CLI_PW", "lab-cli-pw")]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let rows: Vec<&str> = out.stdout.lines().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // 2090-01-01T00:00:00Z.
    let days = (3_786_912_000 - now).div_euclid(86_400);
    assert!(rows[1].ends_with(&format!("  {days}d")), "{}", out.dump());
    assert!(rows[2].ends_with("  name mismatch"), "{}", out.dump());
    assert!(rows[3].ends_with("  chain incomplete"), "{}", out.dump());
    assert!(rows[4].ends_with("  -"), "{}", out.dump());
    let ip = |i: usize| lab.nodes[i].ip.to_string();
    for (node, why) in [
        ("node-2", format!("it is not valid for {}, the host clients connect to", ip(1))),
        (
            "node-3",
            "an intermediate certificate is missing from the chain it sends: clients fail with \"unable to get local issuer certificate\"".into(),
        ),
        ("node-4", format!("served certificate: cannot connect to {}:5349", ip(3))),
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&format!("{node}: ")) && l.contains(&why)),
            "{node}: {why}\n{}",
            out.dump()
        );
    }
    assert_eq!(
        out.stderr,
        "opsctl: error: 3 of 4 nodes unhealthy: node-2, node-3, node-4\n"
    );
}

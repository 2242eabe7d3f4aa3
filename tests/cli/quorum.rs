//! `recover-quorum` on Debian's etcd 3.4, on real sshd nodes: clusters that
//! lost quorum rebuilt with every key, and the refusals.

use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::util::{Output, Scratch, opsctl_env};

/// An etcd cluster of `n` lab members, each started by the node's
/// `systemctl` from its own env file (`ETCD_*`, as Debian's unit reads
/// /etc/default/etcd), and an inventory for it.
struct EtcdLab {
    lab: Lab,
    s: Scratch,
    /// Run ids given so far (each invocation its own: an id names one run).
    ids: std::cell::Cell<usize>,
    /// The run [`EtcdLab::kill_after`] started first, which later ones continue.
    killed: std::cell::RefCell<Option<String>>,
}

impl EtcdLab {
    fn start(n: usize) -> EtcdLab {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "Debian's etcd-server is missing: scripts/test.sh installs it"
        );
        let lab = Lab::start(n).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
        let cluster: Vec<String> = lab
            .nodes
            .iter()
            .map(|m| format!("{}=http://{}:2380", m.name, m.ip))
            .collect();
        let mut members = String::new();
        for (i, m) in lab.nodes.iter().enumerate() {
            let (ip, dir) = (m.ip, m.dir.display());
            std::fs::write(
                m.dir.join("etcd.env"),
                format!(
                    "# etcd settings of {name}\nETCD_NAME={name}\nETCD_DATA_DIR={dir}/etcd-data\n\
                     ETCD_LISTEN_CLIENT_URLS=http://{ip}:2379\nETCD_ADVERTISE_CLIENT_URLS=http://{ip}:2379\n\
                     ETCD_LISTEN_PEER_URLS=http://{ip}:2380\nETCD_INITIAL_ADVERTISE_PEER_URLS=http://{ip}:2380\n\
                     ETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_CLUSTER_STATE=new\nETCD_INITIAL_CLUSTER_TOKEN=lab\n",
                    cluster.join(","),
                    name = m.name
                ),
            )
            .unwrap();
            lab.service(
                i,
                "etcd",
                &format!("sh -c 'set -a; . {dir}/etcd.env; exec /usr/bin/etcd'"),
            );
            members.push_str(&format!(
                "        - {{name: {}, host: {ip}, data_dir: '{dir}/etcd-data', env_file: '{dir}/etcd.env'}}\n",
                m.name
            ));
        }
        for i in 0..n {
            let started = lab.systemctl(i, "start etcd");
            assert!(started.status.success(), "{started:?}");
        }
        let inv = lab.inventory("relayd", "");
        let head = &inv[..inv.find("sites:").unwrap()];
        let s = Scratch::new();
        s.write(
            "inventory.yaml",
            &format!(
                "{head}sites:\n  - name: lab\n    cluster:\n      flavor: etcd\n      members:\n{members}"
            ),
        );
        let e = EtcdLab {
            lab,
            s,
            ids: Default::default(),
            killed: Default::default(),
        };
        e.until("the cluster elects a leader", || {
            e.etcdctl(0, "endpoint health").status.success()
        });
        e
    }

    fn until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 30s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// etcdctl on member `i`, against its own client URL.
    fn etcdctl(&self, i: usize, args: &str) -> std::process::Output {
        self.lab.ssh(
            i,
            &format!(
                "etcdctl --endpoints=http://{}:2379 --command-timeout=3s {args}",
                self.lab.nodes[i].ip
            ),
        )
    }

    fn put(&self, count: usize, prefix: &str) {
        for k in 0..count {
            let out = self.etcdctl(0, &format!("put {prefix}/{k} value-{k}"));
            assert!(out.status.success(), "{out:?}");
        }
    }

    fn stop(&self, members: &[usize]) {
        for &i in members {
            let out = self.lab.systemctl(i, "stop etcd");
            assert!(out.status.success(), "{out:?}");
        }
    }

    /// A run id of its own, not given before: the snapshot lives in
    /// /var/tmp, which the lab's nodes (and parallel tests) share.
    fn fresh_id(&self) -> String {
        self.ids.set(self.ids.get() + 1);
        format!(
            "quorum-{}-{}-{}",
            std::process::id(),
            self.lab.nodes[0].ip,
            self.ids.get()
        )
    }

    fn run(&self, args: &[&str]) -> Output {
        let id = self.fresh_id();
        let mut argv = vec!["--run-id", &id];
        argv.extend_from_slice(args);
        opsctl_env(&self.s.0, &argv, &[])
    }

    /// Every key under `prefix`, read from member `i`.
    fn keys(&self, i: usize, prefix: &str) -> Vec<String> {
        let out = self.etcdctl(i, &format!("get {prefix}/ --prefix --consistency=s"));
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn recovers(n: usize, stopped: &[usize]) {
    let e = EtcdLab::start(n);
    e.put(20, "before");
    e.stop(stopped);
    // Quorum lost: a write fails.
    let write = e.etcdctl(0, "put lost/x y");
    assert!(
        !write.status.success(),
        "a write succeeded without quorum: {write:?}"
    );
    let before = e.keys(0, "before");
    assert_eq!(before.len(), 40, "20 keys and their values");
    let out = e.run(&["-v", "--yes", "recover-quorum"]);
    out.success();
    for want in [
        "no member answers as healthy: the cluster has lost quorum",
        "node-1 holds 20 keys at revision",
        "written, read back and deleted",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.dump());
    }
    for i in 0..n {
        assert!(
            e.etcdctl(i, "endpoint health").status.success(),
            "node-{} healthy",
            i + 1
        );
        assert_eq!(e.keys(i, "before"), before, "node-{} has every key", i + 1);
    }
    let list = String::from_utf8_lossy(&e.etcdctl(0, "member list").stdout).into_owned();
    assert_eq!(list.lines().count(), n, "{list}");
    assert!(!list.contains("true"), "no learner: {list}");
    // The old data directories are kept, renamed aside.
    for m in &e.lab.nodes {
        let kept = std::fs::read_dir(&m.dir)
            .unwrap()
            .filter_map(|d| d.ok())
            .any(|d| {
                d.file_name()
                    .to_string_lossy()
                    .starts_with("etcd-data.opsctl-quorum-")
            });
        assert!(kept, "{}'s old data is kept", m.name);
    }
    // A second run finds quorum and refuses, changing nothing.
    let again = e.run(&["--yes", "recover-quorum"]);
    assert_eq!(again.code, 1, "{}", again.dump());
    assert!(
        again
            .stderr
            .contains("the cluster has quorum: node-1, node-2, node-3"),
        "{}",
        again.dump()
    );
}

#[test]
fn a_three_member_cluster_that_lost_two_is_rebuilt_with_every_key() {
    recovers(3, &[1, 2]);
}

#[test]
fn a_five_member_cluster_that_lost_three_is_rebuilt_with_every_key() {
    recovers(5, &[2, 3, 4]);
}

#[test]
fn a_healthy_cluster_is_refused() {
    let e = EtcdLab::start(3);
    let out = e.run(&["--yes", "recover-quorum"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains(
            "opsctl: error: refusing: safety check `quorum-lost` failed; nothing was changed: the cluster has quorum: node-1, node-2, node-3 answer as healthy, so there is nothing to recover and it is not rebuilt\nhelp: pass --force to rebuild a healthy cluster from the seed anyway"
        ),
        "{}",
        out.dump()
    );
    assert!(e.etcdctl(0, "endpoint health").status.success());
}

/// A paused lab member cut off from its peers, as a partition between
/// hosts would: every TCP connection its etcd process has is aborted (those
/// it dialled too, whose source address on loopback is not its own), and
/// new connections to its peer port are dropped until this is dropped.
struct Partition {
    rule: Vec<String>,
}

impl Partition {
    fn cut(e: &EtcdLab, i: usize) -> Partition {
        let node = &e.lab.nodes[i];
        // Its etcd's pid on this machine, by the data directory it was given.
        let marker = format!("ETCD_DATA_DIR={}/etcd-data", node.dir.display());
        let pid = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|d| d.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "etcd")
                    && std::fs::read(format!("/proc/{p}/environ"))
                        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
            })
            .expect("the member's etcd process");
        let rule: Vec<String> = [
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            &node.ip.to_string(),
            "--dport",
            "2380",
            "-j",
            "DROP",
        ]
        .map(String::from)
        .to_vec();
        let out = std::process::Command::new("iptables")
            .arg("-I")
            .args(&rule)
            .output()
            .unwrap();
        assert!(out.status.success(), "iptables -I {}: {out:?}", rule.join(" "));
        let cut = Partition { rule };
        let listed = std::process::Command::new("ss").arg("-tnpH").output().unwrap();
        for line in String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (lh, lp) = cols[3].rsplit_once(':').unwrap();
            let (ph, pp) = cols[4].rsplit_once(':').unwrap();
            let (sport, dport) = (format!(":{lp}"), format!(":{pp}"));
            let out = std::process::Command::new("ss")
                .args([
                    "-K", "src", lh, "dst", ph, "(", "sport", "=", &sport, "and", "dport", "=", &dport, ")",
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "ss -K: {out:?}");
        }
        cut
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = std::process::Command::new("iptables")
            .arg("-D")
            .args(&self.rule)
            .output();
    }
}

/// The seed cut off (paused, never restarted: a member restarted without
/// quorum serves no client), and the cluster went on without it: another
/// survivor holds writes the seed never saw.
#[test]
fn a_seed_behind_another_member_is_refused_naming_the_member_to_use() {
    let e = EtcdLab::start(5);
    e.put(5, "early");
    let pid = String::from_utf8_lossy(&e.lab.systemctl(0, "show-pid etcd").stdout)
        .trim()
        .to_owned();
    let signal = |sig: &str| {
        let out = e.lab.ssh(0, &format!("kill -{sig} {pid}"));
        assert!(out.status.success(), "{out:?}");
    };
    signal("STOP");
    let _cut = Partition::cut(&e, 0);
    // Written through node-5 once the others have a leader without node-1
    // (it may have been the leader).
    for k in 0..5 {
        e.until("a write through node-5 succeeds", || {
            e.etcdctl(4, &format!("put late/{k} v")).status.success()
        });
    }
    e.stop(&[1, 2, 3]);
    // node-5 steps down (no quorum): no leader is left to send node-1 anything.
    e.until("node-5 reports no leader", || {
        let out = e.etcdctl(4, "endpoint status -w json");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        // etcdctl leaves out a leader of 0.
        (out.status.success() && text.contains("\"raftIndex\"") && !text.contains("\"leader\":"))
            || err.contains("no leader")
    });
    signal("CONT");
    e.until("node-1 answers its status", || {
        e.etcdctl(0, "endpoint status").status.success()
    });
    let out = e.run(&["--yes", "recover-quorum"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains("`node-5` is ahead of the seed `node-1`")
            && out.stderr.contains(
                "help: make `node-5` the seed: set `seed: node-5` for the cluster in the inventory"
            ),
        "{}",
        out.dump()
    );
    // Nothing was changed: both still answer, node-5 with its data.
    assert!(e.etcdctl(0, "endpoint status").status.success());
    assert_eq!(e.keys(4, "late").len(), 10);
}

/// A member whose host is down is left out of the rebuilt cluster, and the
/// operator is told how to add it back.
#[test]
fn a_member_whose_host_is_down_is_left_out_of_the_rebuilt_cluster() {
    let mut e = EtcdLab::start(3);
    e.put(10, "before");
    // node-3's host goes down (and its etcd with it), node-2's etcd stops.
    e.lab.stop_sshd(2);
    e.stop(&[1]);
    let before = e.keys(0, "before");
    let out = e.run(&["-v", "--yes", "recover-quorum"]);
    out.success();
    assert!(
        out.stderr.contains("node-3 does not answer SSH (")
            && out.stderr.contains(
                "it is left out of the rebuilt cluster; when its host is back, add it with `member add`"
            ),
        "{}",
        out.dump()
    );
    for i in 0..2 {
        assert!(
            e.etcdctl(i, "endpoint health").status.success(),
            "node-{} healthy",
            i + 1
        );
        assert_eq!(e.keys(i, "before"), before);
    }
    let list = String::from_utf8_lossy(&e.etcdctl(0, "member list").stdout).into_owned();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(!list.contains("node-3"), "{list}");
}

/// With fewer than a majority of the members' hosts answering, nothing is done.
#[test]
fn too_few_reachable_members_are_refused_before_anything_changes() {
    let mut e = EtcdLab::start(3);
    e.lab.stop_sshd(1);
    e.lab.stop_sshd(2);
    let out = e.run(&["--yes", "recover-quorum"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr
            .starts_with("opsctl: error: too few members answer SSH: 1 of 3 (down: node-2 (")
            && out
                .stderr
                .contains("a rebuilt cluster needs a majority of the inventory's members (2)"),
        "{}",
        out.dump()
    );
    assert!(
        e.etcdctl(0, "endpoint status").status.success(),
        "node-1 still runs"
    );
    assert!(!e.s.0.join(".opsctl-state").exists(), "no run was started");
}

impl EtcdLab {
    /// Starts `recover-quorum` and kills it (SIGKILL, no chance to clean up)
    /// once its journal records step `after` done; returns that run's journal.
    fn kill_after(&self, after: usize) -> String {
        let id = self.fresh_id();
        let first = self.killed.borrow_mut().get_or_insert_with(|| id.clone()).clone();
        crate::util::kill_recover_quorum_after(&self.s.0, &id, &first, after)
    }
}

/// Killed at three points (etcd stopped on one member, the seed's copy
/// restored, the seed running alone), each time run again from the start:
/// the rebuild is continued where it was cut, and completes with every key.
#[test]
fn a_rebuild_killed_at_three_points_completes_when_run_again() {
    let e = EtcdLab::start(3);
    e.put(20, "before");
    e.stop(&[1, 2]);
    let before = e.keys(0, "before");
    let dry = e.run(&["-n", "-o", "json", "recover-quorum"]);
    dry.success();
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let points = [
        crate::util::plan_step(&plan, "node-1", "run"),
        crate::util::plan_step(&plan, "node-2", "move "),
        crate::util::plan_step(&plan, "node-1", "wait: keys-preserved"),
    ];
    let restored = points[0] + 3;
    assert_eq!(
        crate::util::plan_step(&plan, "node-1", "stop the service"),
        restored + 1,
        "{}",
        dry.stdout
    );
    // In the order they come: a member stopped (the first change), the
    // seed's copy restored, the seed running alone.
    let points = [points[1], restored, points[2]];
    assert!(points.is_sorted(), "{points:?}");
    for (i, after) in points.into_iter().enumerate() {
        let journal = e.kill_after(after);
        if i > 0 {
            assert!(
                journal.contains("\"event\":\"resume\""),
                "run {i} continued the first:\n{journal}"
            );
        }
    }
    // And the last time, to the end.
    let out = e.run(&["-v", "--yes", "recover-quorum"]);
    out.success();
    assert!(out.stderr.contains("Continuing run quorum-"), "{}", out.dump());
    for i in 0..3 {
        assert!(
            e.etcdctl(i, "endpoint health").status.success(),
            "node-{} healthy",
            i + 1
        );
        assert_eq!(e.keys(i, "before"), before, "node-{} has every key", i + 1);
    }
    // Finished: the next run finds quorum and refuses.
    let again = e.run(&["--yes", "recover-quorum"]);
    assert_eq!(again.code, 1, "{}", again.dump());
    assert!(
        again.stderr.contains("the cluster has quorum"),
        "{}",
        again.dump()
    );
}

/// A rebuild cut short after it stopped a member, and the cluster came back
/// meanwhile (another member's etcd started again): continuing would stop a
/// cluster that takes writes and lose them, so the next run refuses.
#[test]
fn a_cut_short_rebuild_of_a_cluster_that_came_back_is_not_continued() {
    let e = EtcdLab::start(3);
    e.put(5, "before");
    e.stop(&[1, 2]);
    let dry = e.run(&["-n", "-o", "json", "recover-quorum"]);
    dry.success();
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    e.kill_after(crate::util::plan_step(&plan, "node-2", "stop the service"));
    let started = e.lab.systemctl(2, "start etcd");
    assert!(started.status.success(), "{started:?}");
    e.until("node-1 and node-3 have quorum again", || {
        e.etcdctl(0, "put after/x y").status.success()
    });
    let out = e.run(&["--yes", "recover-quorum"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains("refusing: safety check `quorum-lost` failed; nothing more was changed: the cluster has quorum: node-1, node-3 answer as healthy"),
        "{}",
        out.dump()
    );
    assert!(out.stderr.contains("stays unfinished"), "{}", out.dump());
    // Nothing more was stopped: the write made since is still there.
    assert!(e.etcdctl(0, "get after/x").status.success());
    assert_eq!(e.keys(0, "after").len(), 2);
}

/// The restore follows the etcd the seed runs, read when the plan is made:
/// `etcdutl` from 3.5 on. Debian 12 ships etcd 3.4 only, so the nodes'
/// `etcdctl` here is a stand-in that reports 3.5 to `endpoint status`; the
/// plan is checked, not a 3.5 restore.
#[test]
fn a_seed_on_etcd_3_5_is_restored_with_etcdutl() {
    let lab = Lab::start(3).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let status = r#"[{"Endpoint":"x","Status":{"header":{"cluster_id":1,"member_id":2,"revision":5,"raft_term":2},"version":"3.5.17","dbSize":1,"leader":2,"raftIndex":9,"raftTerm":2}}]"#;
    for n in &lab.nodes {
        let shim = n.dir.join("bin/etcdctl");
        std::fs::write(
            &shim,
            format!("#!/bin/sh\ncase \"$*\" in *'endpoint status'*) echo '{status}' ;; *) echo 'a stand-in' >&2; exit 1 ;; esac\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let inv = lab.inventory("relayd", "");
    let head = &inv[..inv.find("sites:").unwrap()];
    let members: String = lab
        .nodes
        .iter()
        .map(|m| format!("        - {{name: {}, host: {}}}\n", m.name, m.ip))
        .collect();
    let s = Scratch::new();
    s.write(
        "inventory.yaml",
        &format!("{head}sites:\n  - name: lab\n    cluster:\n      flavor: etcd\n      members:\n{members}"),
    );
    let out = opsctl_env(&s.0, &["-n", "recover-quorum"], &[]);
    out.success();
    for want in [
        "the seed `node-1` runs etcd 3.5.17: it is restored with `etcdutl snapshot restore`",
        "$ etcdutl --write-out=table snapshot status /var/tmp/opsctl-",
        "$ etcdutl snapshot restore /var/tmp/opsctl-",
    ] {
        assert!(out.stdout.contains(want), "{want}\n{}", out.dump());
    }
    assert!(
        !out.stdout.contains("$ etcdctl snapshot restore"),
        "{}",
        out.dump()
    );
}

/// Killed inside a step (a member's start, before it was seen healthy),
/// the rebuild is continued with `opsctl resume` and ends with every key;
/// `opsctl runs show` tells the step that was cut short.
#[test]
fn a_rebuild_killed_inside_a_step_is_finished_by_resume() {
    let e = EtcdLab::start(3);
    e.put(10, "before");
    e.stop(&[1, 2]);
    let before = e.keys(0, "before");
    let dry = e.run(&["-n", "-o", "json", "recover-quorum"]);
    dry.success();
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let healthy = crate::util::plan_step(&plan, "node-2", "wait: member-healthy");
    let id = e.fresh_id();
    crate::util::kill_when(
        &e.s.0,
        &["--run-id", &id, "--yes", "recover-quorum"],
        &[],
        &id,
        "node-2's member-healthy wait begun",
        |j| crate::util::journal_has(j, "step-start", healthy),
    );
    let show = opsctl_env(&e.s.0, &["runs", "show", &id], &[]);
    show.success();
    assert!(
        show.stdout.contains("state: killed") && show.stdout.contains(&format!("{healthy:>3}. interrupted ")),
        "{}",
        show.dump()
    );
    let out = opsctl_env(&e.s.0, &["--yes", "resume", &id], &[]);
    out.success();
    assert!(
        out.stderr
            .contains(&format!("step {healthy} began and did not finish")),
        "{}",
        out.dump()
    );
    for i in 0..3 {
        assert_eq!(e.keys(i, "before"), before, "node-{} has every key", i + 1);
    }
    let show = opsctl_env(&e.s.0, &["runs", "show", &id], &[]);
    assert!(show.stdout.contains("state: done"), "{}", show.dump());
}

/// The lock held in etcd, as `opsctl` left it: the holder's record, or
/// nothing.
fn etcd_lock(e: &EtcdLab) -> String {
    let out = e.etcdctl(0, "get /opsctl/locks/lab --print-value-only");
    assert!(out.status.success(), "{out:?}");
    let b64 = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if b64.is_empty() {
        return String::new();
    }
    let decoded = std::process::Command::new("sh")
        .args(["-c", "printf '%s' \"$1\" | base64 -d", "sh", &b64])
        .output()
        .unwrap();
    String::from_utf8_lossy(&decoded.stdout).into_owned()
}

/// Relays on a site with an etcd cluster lock it there, under a lease: two
/// restarts at once, one proceeds and the other names the holder; the
/// holder killed, its lock dies with its lease (no --break-lock needed),
/// and the killed run is resumed under its own lock.
#[test]
fn relays_of_a_site_with_etcd_lock_it_under_a_lease_that_dies_with_its_holder() {
    let e = EtcdLab::start(3);
    let mut values = String::from("brig:\n  turnStatic:\n    v2:\n");
    let mut relays = String::from("    relays:\n");
    for (i, n) in e.lab.nodes.iter().enumerate() {
        e.lab.relayd(i, "relayd");
        assert!(e.lab.systemctl(i, "start relayd").status.success());
        values.push_str(&format!("      - turn:{}:3478\n", n.ip));
        relays.push_str(&format!(
            "      - {{name: relay-{}, host: {ip}, kind: relayd, urls: ['turn:{ip}:3478'], stats: {{addr: '{ip}:33000'}}, drain: {{poll: 1s}}}}\n",
            i + 1,
            ip = n.ip
        ));
    }
    e.s.write("values.yaml", &values);
    let inv = std::fs::read_to_string(e.s.0.join("inventory.yaml"))
        .unwrap()
        .replace("  - name: lab\n", &format!("  - name: lab\n{relays}"));
    e.s.write(
        "inventory.yaml",
        &format!("lock: {{lease: 6s}}\nadvertise: {{backend: values-file, file: values.yaml, apply: 'true'}}\n{inv}"),
    );
    // Calls that stay: whichever run gets the site waits in its drain.
    for i in 0..2 {
        e.lab.idle_allocations(i, 1, "caller", "pw", &["-c"]);
    }
    // Each operator with its own run id, state and SSH directories.
    let operator = |who: &str, args: &[&str]| {
        let mut c = crate::lock::operator(&e.s, who, args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let plan = Output::of(
        "dry run",
        operator("a", &["-n", "restart", "--no-downtime", "relay-1"])
            .output()
            .unwrap(),
    );
    plan.success();
    assert!(
        plan.stdout
            .contains("lock: site lab, the key /opsctl/locks/lab in its etcd cluster, under a lease of 6s"),
        "{}",
        plan.dump()
    );
    let args = |relay: &'static str| ["--yes", "restart", "--no-downtime", relay];
    let a = operator("a", &args("relay-1")).spawn().unwrap();
    let b = operator("b", &args("relay-2")).spawn().unwrap();
    let (loser, mut winner, a_holds) = crate::util::one_ends(a, b);
    let who = if a_holds { "a" } else { "b" };
    let refused = Output::of("the second operator", loser.wait_with_output().unwrap());
    assert_eq!(refused.code, 1, "{}", refused.dump());
    assert!(
        refused.stderr.contains("site `lab` is locked by run ")
            && refused.stderr.contains(&format!(", pid {}, since ", winner.id()))
            && refused.stderr.contains("(as /opsctl/locks/lab on "),
        "{}",
        refused.dump()
    );
    let held = etcd_lock(&e);
    assert!(held.contains(&format!("\"pid\":{}", winner.id())), "{held}");
    // The holder is killed: no release, and its lock outlives it only as
    // long as its lease.
    winner.kill().unwrap();
    winner.wait().unwrap();
    let journal = std::fs::read_dir(e.s.0.join(format!(".state-{who}")))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let run = journal.file_stem().unwrap().to_string_lossy().into_owned();
    // Meanwhile a third run is refused, told the lock frees itself.
    let third = Output::of(
        "a third operator",
        operator("c", &["--yes", "restart", "--no-downtime", "relay-3"])
            .output()
            .unwrap(),
    );
    assert_eq!(third.code, 1, "{}", third.dump());
    assert!(
        third.stderr.contains(
            "its process is gone from this machine: the lock frees itself once its lease runs out (within 6s)"
        ),
        "{}",
        third.dump()
    );
    e.until("the killed holder's lock dies with its lease", || {
        etcd_lock(&e).is_empty()
    });
    // The calls end; the killed run is resumed, and locks the site anew.
    for i in 0..2 {
        assert!(e.lab.systemctl(i, "restart relayd").status.success());
    }
    let resumed = Output::of(
        "resume",
        operator(who, &["--yes", "resume", &run]).output().unwrap(),
    );
    resumed.success();
    assert!(
        resumed
            .stderr
            .contains("locked site `lab` in its etcd cluster, through node-1, under lease "),
        "{}",
        resumed.dump()
    );
    assert_eq!(
        std::fs::read_to_string(e.s.0.join("values.yaml")).unwrap(),
        values
    );
    assert_eq!(etcd_lock(&e), "", "released at the end");
}

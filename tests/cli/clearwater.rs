//! `recover-quorum` for a Project Clearwater site, on real sshd nodes laid
//! out with Clearwater's files at Clearwater's paths (each node sees its own
//! /etc/clearwater, /etc/chronos, /usr/share/clearwater and /var/lib), whose
//! etcd is Debian's etcd 3.4 started from local_config as clearwater-etcd
//! starts it: `etcd_cluster` makes a member, `etcd_proxy` a v2 proxy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::util::{Output, Scratch, opsctl_env};

const SHARED: &str =
    "# Deployment-wide settings\nhome_domain=lab.example\nsprout_hostname=sprout.lab.example\n";

struct CwLab {
    lab: Lab,
    s: Scratch,
    /// Each node's name (vellum-1, ...) and role.
    names: Vec<(String, &'static str)>,
    masters: Vec<usize>,
    /// Run ids given so far (each invocation gets its own: an id names one run).
    ids: std::cell::RefCell<Vec<String>>,
    /// The run [`CwLab::kill_after`] started first, which later ones continue.
    killed: std::cell::RefCell<Option<String>>,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

impl CwLab {
    /// Nodes of `roles`, the masters Clearwater's rule picks among them,
    /// etcd formed on the masters and the others joined as proxies, every
    /// manager running.
    fn start(roles: &[&'static str]) -> CwLab {
        assert!(
            Path::new("/usr/bin/etcd").exists(),
            "Debian's etcd-server is missing: scripts/test.sh installs it"
        );
        let mut lab = Lab::start(roles.len()).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
        let mut names = Vec::new();
        let mut count = std::collections::BTreeMap::<&str, usize>::new();
        for r in roles {
            let n = count.entry(r).or_default();
            *n += 1;
            names.push((format!("{r}-{n}"), *r));
        }
        let vellum: Vec<usize> = (0..roles.len()).filter(|&i| roles[i] == "vellum").collect();
        let masters = if vellum.len() >= 3 {
            vellum.clone()
        } else {
            (0..roles.len()).collect()
        };
        let ips: Vec<String> = lab.nodes.iter().map(|n| n.ip.to_string()).collect();
        let ip = |i: usize| ips[i].clone();
        let master_ips: Vec<String> = masters.iter().map(|&i| ip(i)).collect();
        let vellum_ips: Vec<String> = vellum.iter().map(|&i| ip(i)).collect();
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lab/clearwater");
        for (i, role) in roles.iter().enumerate() {
            let node = lab.nodes[i].dir.clone();
            let root = node.join("root");
            for d in ["etc/clearwater", "etc/chronos", "var/lib/clearwater-etcd"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            copy_tree(
                &here.join("usr/share/clearwater"),
                &root.join("usr/share/clearwater"),
            );
            copy_tree(&here.join("bin"), &node.join("bin"));
            let etc = root.join("etc/clearwater");
            let join = if masters.contains(&i) {
                format!("etcd_cluster={}", master_ips.join(","))
            } else {
                format!("etcd_proxy={}", master_ips.join(","))
            };
            std::fs::write(
                etc.join("local_config"),
                format!(
                    "# Node-specific settings\nlocal_ip={ip}\nmanagement_local_ip={ip}\npublic_ip={ip}\nlocal_site_name=site1\n{join}\n",
                    ip = ip(i)
                ),
            )
            .unwrap();
            std::fs::write(etc.join("shared_config"), SHARED).unwrap();
            std::fs::write(
                etc.join("config"),
                ". /etc/clearwater/shared_config\n. /etc/clearwater/local_config\n",
            )
            .unwrap();
            if *role == "vellum" {
                let mut chronos = format!("[cluster]\nlocalhost = {}\n", ip(i));
                for v in &vellum_ips {
                    chronos.push_str(&format!("node = {v}\n"));
                }
                std::fs::write(root.join("etc/chronos/chronos_cluster.conf"), chronos).unwrap();
                let servers: Vec<String> = vellum_ips.iter().map(|v| format!("{v}:11211")).collect();
                std::fs::write(
                    etc.join("cluster_settings"),
                    format!("servers={}\n", servers.join(",")),
                )
                .unwrap();
                let mut status = "Datacenter: site1\n=================\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n--  Address     Load       Tokens  Owns    Host ID                               Rack\n".to_owned();
                for (k, v) in vellum_ips.iter().enumerate() {
                    status.push_str(&format!(
                        "UN  {v}  210.5 KiB  256     ?       6a1b2c3d-0000-4000-8000-00000000000{k}  RAC1\n"
                    ));
                }
                std::fs::write(node.join("nodetool-status"), status).unwrap();
            }
            if *role == "sprout" {
                std::fs::write(etc.join("enum.json"), "{\"number_blocks\": []}\n").unwrap();
                std::fs::write(etc.join("s-cscf.json"), "{\"s-cscfs\": []}\n").unwrap();
                std::fs::write(etc.join("bgcf.json"), "{\"routes\": []}\n").unwrap();
            }
            let bin = "/usr/share/clearwater/bin";
            lab.service(i, "etcd", &format!("{bin}/clearwater-etcd-run"));
            for m in ["config", "queue", "cluster"] {
                lab.service(
                    i,
                    &format!("clearwater_{m}_manager"),
                    &format!("{bin}/clearwater-{m}-manager-run"),
                );
            }
        }
        // The node's init binds its Clearwater paths when it boots.
        for i in 0..roles.len() {
            lab.stop_sshd(i);
            lab.start_sshd(i).unwrap();
        }
        let inv = lab.inventory("relayd", "");
        let head = &inv[..inv.find("sites:").unwrap()];
        let mut members = String::new();
        for (i, (name, role)) in names.iter().enumerate() {
            members.push_str(&format!(
                "        - {{name: {name}, host: {}, role: {role}}}\n",
                ip(i)
            ));
        }
        let s = Scratch::new();
        s.write(
            "inventory.yaml",
            &format!("{head}sites:\n  - name: lab\n    cluster:\n      flavor: clearwater\n      members:\n{members}"),
        );
        let cw = CwLab {
            lab,
            s,
            names,
            masters,
            ids: Default::default(),
            killed: Default::default(),
        };
        for &i in &cw.masters {
            cw.ok(i, "monit monitor -g etcd");
        }
        cw.until("the masters form a cluster", || {
            cw.lab
                .ssh(cw.masters[0], "clearwater-etcdctl cluster-health")
                .status
                .success()
        });
        for i in 0..roles.len() {
            if !cw.masters.contains(&i) {
                cw.ok(i, "monit monitor -g etcd");
            }
            for m in ["config", "queue", "cluster"] {
                cw.ok(i, &format!("monit monitor -g clearwater_{m}_manager"));
            }
        }
        cw.until("every node reaches the cluster", || {
            (0..roles.len()).all(|i| {
                cw.lab
                    .ssh(i, "clearwater-etcdctl cluster-health")
                    .status
                    .success()
            })
        });
        cw
    }

    fn ok(&self, i: usize, cmd: &str) -> String {
        let out = self.lab.ssh(i, cmd);
        assert!(out.status.success(), "{}: {cmd}: {out:?}", self.names[i].0);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 60s");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A file of node `i`, as the node sees it at `path`.
    fn file(&self, i: usize, path: &str) -> PathBuf {
        self.lab.nodes[i]
            .dir
            .join("root")
            .join(path.trim_start_matches('/'))
    }

    /// A run id not given before.
    fn fresh_id(&self) -> String {
        let mut ids = self.ids.borrow_mut();
        let id = format!(
            "cw-{}-{}-{}",
            std::process::id(),
            self.lab.nodes[0].ip,
            ids.len() + 1
        );
        ids.push(id.clone());
        id
    }

    /// The id of the last run given one.
    fn run_id(&self) -> String {
        self.ids.borrow().last().cloned().unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> Output {
        let id = self.fresh_id();
        let mut argv = vec!["--run-id", &id];
        argv.extend_from_slice(args);
        opsctl_env(&self.s.0, &argv, &[])
    }

    /// Quorum lost: etcd stopped on all masters but the first... but one.
    fn lose_quorum(&self, stop: &[usize]) {
        for &i in stop {
            self.ok(i, "monit stop -g etcd");
        }
        let health = self.lab.ssh(self.masters[0], "clearwater-etcdctl cluster-health");
        assert!(!health.status.success(), "still healthy: {health:?}");
    }

    /// Starts `recover-quorum` and kills it once the journal has step
    /// `after` done; the journal as it was left.
    fn kill_after(&self, after: usize) -> String {
        let id = self.fresh_id();
        let first = self.killed.borrow_mut().get_or_insert_with(|| id.clone()).clone();
        crate::util::kill_recover_quorum_after(&self.s.0, &id, &first, after)
    }

    fn scripts_run(&self, i: usize) -> Vec<String> {
        std::fs::read_to_string(self.lab.nodes[i].dir.join("log/clearwater-scripts"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every node but the `lost` reaches a healthy cluster of exactly
    /// `masters`, and its cluster manager runs again.
    fn assert_recovered(&self, masters: &[usize], lost: &[usize]) {
        let want: Vec<String> = masters
            .iter()
            .map(|&i| self.lab.nodes[i].ip.to_string().replace('.', "-"))
            .collect();
        for i in (0..self.names.len()).filter(|i| !lost.contains(i)) {
            let health = self.ok(i, "clearwater-etcdctl cluster-health");
            assert!(
                health.contains("cluster is healthy"),
                "{}: {health}",
                self.names[i].0
            );
            let list = self.ok(i, "clearwater-etcdctl member list");
            assert_eq!(list.lines().count(), want.len(), "{list}");
            for w in &want {
                assert!(list.contains(&format!("name={w} ")), "{w} in {list}");
            }
            assert!(
                !self.file(i, "/etc/clearwater/no_cluster_manager").exists(),
                "{}: no_cluster_manager removed",
                self.names[i].0
            );
            let summary = self.ok(i, "monit summary");
            let line = summary
                .lines()
                .find(|l| l.contains("clearwater_cluster_manager_process"))
                .unwrap_or_else(|| panic!("{summary}"));
            assert!(line.contains("OK"), "{}: {line}", self.names[i].0);
        }
    }
}

/// Four Vellum masters: vellum-4's host is gone for good, etcd stopped on
/// vellum-2 and vellum-3. The rebuild is refused until the operator names
/// vellum-4 lost, and while Cassandra still lists it down; then the three
/// that answer re-form the cluster and every node rejoins.
#[test]
fn a_site_that_lost_masters_is_rebuilt_without_the_lost_node_once_named() {
    let mut cw = CwLab::start(&["vellum", "vellum", "vellum", "vellum", "sprout"]);
    // Vellum-3's chronos file was lost: the rebuild writes it from the site's Vellum nodes.
    std::fs::remove_file(cw.file(2, "/etc/chronos/chronos_cluster.conf")).unwrap();
    let before_local = std::fs::read_to_string(cw.file(0, "/etc/clearwater/local_config")).unwrap();
    cw.lose_quorum(&[1, 2]);
    cw.lab.stop_sshd(3);
    let ips: Vec<String> = cw.lab.nodes.iter().map(|n| n.ip.to_string()).collect();
    // Not named lost: refused, nothing changed.
    let out = cw.run(&["--yes", "recover-quorum"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    for want in [
        "these nodes of site `lab` do not answer SSH: vellum-4 (",
        "help: if they are lost for good, name them: --lost vellum-4",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.dump());
    }
    assert!(!cw.file(0, "/etc/clearwater/no_cluster_manager").exists());
    // Cassandra still counts it, down: refused until it is removed there.
    let status_file = cw.lab.nodes[0].dir.join("nodetool-status");
    let status = std::fs::read_to_string(&status_file).unwrap();
    std::fs::write(
        &status_file,
        status.replace(&format!("UN  {}", ips[3]), &format!("DN  {}", ips[3])),
    )
    .unwrap();
    let out = cw.run(&["--yes", "recover-quorum", "--lost", "vellum-4"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains(&format!("{} is DN (down, normal)", ips[3]))
            && out.stderr.contains("nodetool removenode"),
        "{}",
        out.dump()
    );
    let removed: String = status
        .lines()
        .filter(|l| !l.contains(&ips[3]))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&status_file, removed).unwrap();
    let out = cw.run(&["-v", "--yes", "recover-quorum", "--lost", "vellum-4"]);
    out.success();
    for want in [
        "no node sees a cluster with quorum (4 asked): it has lost quorum",
        "vellum-4 does not answer SSH",
        "masters: vellum-1, vellum-2, vellum-3: 3 Vellum nodes answer",
        "without vellum-4 (not answering SSH): yes (--yes)",
        "the shared configuration is the same on every master (vellum-1, vellum-2, vellum-3)",
        "3 Cassandra nodes up and normal",
        "3 Sprout JSON files read, all parse",
        "/etc/chronos/chronos_cluster.conf on vellum-1 is valid (4 entries): left as it is",
        "/etc/chronos/chronos_cluster.conf on vellum-3 was missing: written listing every Vellum node of the site",
        "(left out of this run: vellum-4)",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.dump());
    }
    cw.assert_recovered(&[0, 1, 2], &[3]);
    // The data-store state was reloaded on one Vellum node, after the cluster was whole.
    assert_eq!(
        cw.scripts_run(0)
            .into_iter()
            .filter(|l| !l.starts_with("check_config_sync"))
            .collect::<Vec<_>>(),
        [
            "load_from_chronos_cluster vellum",
            "load_from_memcached_cluster vellum",
            "load_from_cassandra_cluster vellum",
            "check_cluster_state"
        ]
    );
    assert!(
        cw.scripts_run(1)
            .iter()
            .all(|l| l.starts_with("check_config_sync"))
    );
    // Written listing every Vellum node of the site, the lost one too (the
    // next steps say to remove it from the data stores).
    let written = std::fs::read_to_string(cw.file(2, "/etc/chronos/chronos_cluster.conf")).unwrap();
    for ip in &ips[..4] {
        assert!(written.contains(&format!("node = {ip}\n")), "{written}");
    }
    // Only etcd_cluster changed in local_config, kept aside first.
    let id = cw.run_id();
    let after_local = std::fs::read_to_string(cw.file(0, "/etc/clearwater/local_config")).unwrap();
    assert_eq!(
        after_local,
        before_local.replace(&format!("{},{}", ips[2], ips[3]), &ips[2]),
        "before:\n{before_local}"
    );
    assert_ne!(after_local, before_local);
    assert_eq!(
        std::fs::read_to_string(cw.file(0, &format!("/etc/clearwater/local_config.opsctl-{id}"))).unwrap(),
        before_local
    );
    let proxy_local = std::fs::read_to_string(cw.file(4, "/etc/clearwater/local_config")).unwrap();
    assert!(
        proxy_local.contains(&format!("etcd_proxy={},{},{}\n", ips[0], ips[1], ips[2]))
            && !proxy_local.contains("etcd_cluster"),
        "{proxy_local}"
    );
    // The old etcd data is kept, renamed aside.
    for i in [0, 1, 2, 4] {
        assert!(
            cw.file(i, &format!("/var/lib/clearwater-etcd.opsctl-{id}"))
                .is_dir(),
            "{}'s old etcd data is kept",
            cw.names[i].0
        );
    }
    // A second run finds quorum and refuses, changing nothing.
    let again = cw.run(&["--yes", "recover-quorum", "--lost", "vellum-4"]);
    assert_eq!(again.code, 1, "{}", again.dump());
    assert!(
        again.stderr.contains("the cluster has quorum"),
        "{}",
        again.dump()
    );
}

/// Killed at three points (etcd stopped on two nodes; a master's
/// local_config edited while the cluster re-forms; the new cluster formed),
/// each time run again from the start: the rebuild is continued where it
/// was cut, and completes.
#[test]
fn a_rebuild_killed_at_three_points_completes_when_run_again() {
    let cw = CwLab::start(&["vellum", "vellum", "vellum"]);
    cw.lose_quorum(&[1, 2]);
    let dry = cw.run(&["-n", "-o", "json", "recover-quorum"]);
    dry.success();
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let points = [
        crate::util::plan_step(&plan, "vellum-2", "stop the service"),
        crate::util::plan_step(&plan, "vellum-2", "edit /etc/clearwater/local_config"),
        crate::util::plan_step(&plan, "vellum-1", "wait: cluster-healthy"),
    ];
    assert!(points.is_sorted(), "{points:?}");
    for (i, after) in points.into_iter().enumerate() {
        let journal = cw.kill_after(after);
        if i > 0 {
            assert!(
                journal.contains("\"event\":\"resume\""),
                "run {i} continued the first:\n{journal}"
            );
        }
    }
    let out = cw.run(&["-v", "--yes", "recover-quorum"]);
    out.success();
    assert!(out.stderr.contains("Continuing run cw-"), "{}", out.dump());
    cw.assert_recovered(&cw.masters, &[]);
    let again = cw.run(&["--yes", "recover-quorum"]);
    assert_eq!(again.code, 1, "{}", again.dump());
    assert!(
        again.stderr.contains("the cluster has quorum"),
        "{}",
        again.dump()
    );
}

#[test]
fn masters_whose_shared_config_differs_are_refused_with_the_diff_then_copied_when_named() {
    let cw = CwLab::start(&["vellum", "vellum", "vellum"]);
    cw.lose_quorum(&[1, 2]);
    // Edited by hand while the cluster could not sync it (its config
    // manager, which would, stopped first).
    cw.ok(1, "monit stop -g clearwater_config_manager");
    std::fs::write(
        cw.file(1, "/etc/clearwater/shared_config"),
        SHARED.replace("lab.example\nsprout", "old.example\nsprout"),
    )
    .unwrap();
    let out = cw.run(&["--yes", "recover-quorum"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    for want in [
        "the masters' shared_config differ",
        "--- vellum-1\n+++ vellum-2\n # Deployment-wide settings\n-home_domain=lab.example\n+home_domain=old.example\n",
        "help: make them the same, or pass --shared-config-from MASTER",
        "nothing was changed",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.dump());
    }
    assert!(!cw.file(0, "/etc/clearwater/no_cluster_manager").exists());
    // Named, the first master's copy goes onto the others.
    let out = cw.run(&["--yes", "recover-quorum", "--shared-config-from", "vellum-1"]);
    out.success();
    cw.assert_recovered(&cw.masters, &[]);
    let id = cw.run_id();
    assert_eq!(
        std::fs::read_to_string(cw.file(1, "/etc/clearwater/shared_config")).unwrap(),
        SHARED
    );
    assert!(
        std::fs::read_to_string(cw.file(1, &format!("/etc/clearwater/shared_config.opsctl-{id}")))
            .unwrap()
            .contains("old.example")
    );
}

#[test]
fn a_site_with_no_vellum_node_is_rebuilt_without_the_vellum_steps() {
    let cw = CwLab::start(&["sprout", "dime", "homer"]);
    cw.lose_quorum(&[1, 2]);
    let out = cw.run(&["--yes", "recover-quorum"]);
    out.success();
    for want in [
        "masters: sprout-1, dime-1, homer-1: 0 Vellum nodes answer, fewer than 3",
        "no Vellum node takes part: the Cassandra check is skipped",
        "is skipped, as the runbook says when none is left",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.dump());
    }
    cw.assert_recovered(&cw.masters, &[]);
    for i in 0..3 {
        assert!(
            cw.scripts_run(i)
                .iter()
                .all(|l| l.starts_with("check_config_sync")),
            "no Vellum script ran on {}",
            cw.names[i].0
        );
    }
}

//! Relays run by docker (`service: {container: NAME}`) on lab nodes, whose
//! `docker` shim runs the node's services as containers of the same name.

use crate::lab::Lab;
use crate::util::Scratch;

#[test]
fn a_docker_run_relay_is_restarted_without_downtime() {
    let lab = Lab::start(2).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let mut inv = lab.inventory("relayd", "");
    let mut values = String::from("v2:\n");
    for (i, n) in lab.nodes.iter().enumerate() {
        lab.relayd(i, "restund");
        let started = lab.ssh(i, "docker start restund");
        assert!(started.status.success(), "{started:?}");
        values.push_str(&format!("  - turn:{}:3478\n", n.ip));
        inv = inv.replace(
            &format!("host: {}}}", n.ip),
            &format!(
                "host: {ip}, urls: ['turn:{ip}:3478'], stats: {{addr: '{ip}:33000'}}, service: {{container: restund}}, drain: {{poll: 1s}}}}",
                ip = n.ip
            ),
        );
    }
    let ls = String::from_utf8_lossy(&lab.ssh(0, "docker container ls").stdout).into_owned();
    assert!(
        ls.lines()
            .nth(1)
            .is_some_and(|l| l.contains("Up ") && l.ends_with("restund")),
        "{ls}"
    );
    let pid = |i| {
        String::from_utf8_lossy(&lab.systemctl(i, "show-pid restund").stdout)
            .trim()
            .to_owned()
    };
    let before = pid(0);
    let scratch = Scratch::new();
    scratch.write("values.yaml", &values);
    scratch.write(
        "inventory.yaml",
        &format!("advertise: {{backend: values-file, file: values.yaml, list: v2, apply: 'true'}}\n{inv}"),
    );
    let out = scratch.opsctl(&["restart", "--no-downtime", "node-1"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr
            .contains("`docker container inspect --format '{{.State.Status}}' restund`: running"),
        "{}",
        out.dump()
    );
    assert_ne!(pid(0), before, "restarted by `docker restart`");
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

#[test]
fn the_monit_shim_drives_the_node_s_services() {
    let lab = Lab::start(1).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    lab.service(0, "etcd", "sleep 600");
    assert!(lab.ssh(0, "monit monitor -g etcd").status.success());
    let summary = String::from_utf8_lossy(&lab.ssh(0, "monit summary").stdout).into_owned();
    assert!(summary.contains(" etcd") && summary.contains("OK"), "{summary}");
    assert!(lab.ssh(0, "monit stop -g etcd").status.success());
    let summary = String::from_utf8_lossy(&lab.ssh(0, "monit summary").stdout).into_owned();
    assert!(summary.contains("Not monitored"), "{summary}");
}

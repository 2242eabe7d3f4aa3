//! `opsctl reboot node` on lab nodes: the lab's `reboot` ends every process
//! of the node, sshd included, and boots it again with a new boot id.

use crate::lab::Lab;
use crate::util::Scratch;

fn boot_id(lab: &Lab, i: usize) -> String {
    std::fs::read_to_string(lab.nodes[i].dir.join("boot_id"))
        .unwrap()
        .trim()
        .to_owned()
}

fn relayd_pid(lab: &Lab, i: usize) -> String {
    String::from_utf8_lossy(&lab.systemctl(i, "show-pid relayd").stdout)
        .trim()
        .to_owned()
}

#[test]
fn reboot_node_drains_reboots_waits_for_the_new_boot_and_readvertises() {
    let lab = Lab::start(2).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let scratch = Scratch::new();
    let mut values = String::from("brig:\n  turnStatic:\n    v2:\n");
    let mut inv = lab.inventory("relayd", "");
    for (i, n) in lab.nodes.iter().enumerate() {
        lab.relayd(i, "relayd");
        let started = lab.systemctl(i, "start relayd");
        assert!(started.status.success(), "{started:?}");
        values.push_str(&format!("      - turn:{}:3478\n", n.ip));
        inv = inv.replace(
            &format!("host: {}}}", n.ip),
            &format!(
                "host: {ip}, urls: ['turn:{ip}:3478'], stats: {{addr: '{ip}:33000'}}, drain: {{poll: 1s}}, stun_check: true, reboot: {{command: reboot, boot_id: lab-boot-id, timeout: 1m}}}}",
                ip = n.ip
            ),
        );
    }
    scratch.write("values.yaml", &values);
    scratch.write(
        "inventory.yaml",
        &format!("advertise: {{backend: values-file, file: values.yaml, apply: 'true'}}\n{inv}"),
    );
    let (boot_before, pid_before) = (boot_id(&lab, 0), relayd_pid(&lab, 0));
    let out = scratch.opsctl(&["reboot", "node", "node-1"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_ne!(boot_id(&lab, 0), boot_before, "a new boot");
    let pid_after = relayd_pid(&lab, 0);
    assert!(
        !pid_after.is_empty() && pid_after != pid_before,
        "relayd came back as a new process"
    );
    assert_eq!(
        boot_id(&lab, 1).len(),
        boot_before.len(),
        "the peer was left alone"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
    for gate in ["wait: ssh-down", "wait: new-boot", "wait: stun-binding"] {
        assert!(out.stderr.contains(gate), "{gate}\n{}", out.dump());
    }
    assert!(
        out.stderr.contains(
            "node-1 answers SSH again with a boot id other than the one read before the reboot (boot id "
        ),
        "{}",
        out.dump()
    );
}

/// A lab of `n` relayd nodes for reboots, each rebooted by the lab's reboot
/// but for `odd` (a node's index and its own `reboot:` settings), a values
/// file that advertises them all, and a reboot-node playbook override whose
/// waits after the boot are short, as an operator may set them.
pub(crate) fn reboot_lab(n: usize, odd: Option<(usize, &str)>, service: &str) -> (Lab, Scratch, String) {
    let lab = Lab::start(n).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let scratch = Scratch::new();
    let mut values = String::from("brig:\n  turnStatic:\n    v2:\n");
    let mut inv = lab.inventory("relayd", "");
    for (i, node) in lab.nodes.iter().enumerate() {
        let unit = if service.is_empty() { "relayd" } else { "restund" };
        lab.relayd(i, unit);
        let started = if service.is_empty() {
            lab.systemctl(i, "start relayd")
        } else {
            lab.ssh(i, "docker start restund")
        };
        assert!(started.status.success(), "{started:?}");
        values.push_str(&format!("      - turn:{}:3478\n", node.ip));
        inv = inv.replace(
            &format!("host: {}}}", node.ip),
            &format!(
                "host: {ip}, urls: ['turn:{ip}:3478'], stats: {{addr: '{ip}:33000'}}, drain: {{poll: 1s}}{service}, reboot: {}}}",
                match odd {
                    Some((k, reboot)) if k == i => reboot,
                    _ => LAB_REBOOT,
                },
                ip = node.ip
            ),
        );
    }
    let playbook = include_str!("../../playbooks/reboot-node.yaml").replace(
        "  - wait: service-up\n",
        "  - wait: {gate: service-up, timeout: 4s}\n",
    );
    assert!(playbook.contains("timeout: 4s"));
    scratch.write("pb/reboot-node.yaml", &playbook);
    scratch.write("values.yaml", &values);
    scratch.write(
        "inventory.yaml",
        &format!(
            "playbooks: pb\nadvertise: {{backend: values-file, file: values.yaml, apply: 'true'}}\n{inv}"
        ),
    );
    (lab, scratch, values)
}

const LAB_REBOOT: &str = "{command: reboot, boot_id: lab-boot-id, timeout: 30s}";

#[test]
fn a_node_that_never_comes_back_stays_out_and_the_summary_says_so() {
    // The lab's reboot, with the node kept down far past the wait.
    let (lab, scratch, values) = reboot_lab(
        2,
        Some((
            0,
            "{command: [env, LAB_REBOOT_SECONDS=600, reboot], boot_id: lab-boot-id, timeout: 12s}",
        )),
        "",
    );
    let peer = (boot_id(&lab, 1), relayd_pid(&lab, 1));
    let out = scratch.opsctl(&["reboot", "node", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains("timed out after 12s waiting until node-1 answers SSH again with a boot id other than the one read before the reboot"),
        "{}",
        out.dump()
    );
    // A progress line while it waits, without a terminal.
    assert!(
        out.stderr
            .contains("node-1: waiting until node-1 answers SSH again"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("node-1: 6/10 steps, OUT of the advertised list since "),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("to put node-1 back in service: restore its lines in values.yaml"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("to continue where this run stopped: fix the cause, then run `opsctl resume test`"),
        "{}",
        out.dump()
    );
    let now = std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap();
    assert_eq!(now.replace("# - ", "- "), values, "only node-1's line changed");
    assert_ne!(now, values);
    assert_eq!(
        (boot_id(&lab, 1), relayd_pid(&lab, 1)),
        peer,
        "the peer was not touched"
    );
}

#[test]
fn a_reboot_that_does_nothing_is_not_taken_for_one() {
    let (lab, scratch, _) = reboot_lab(
        2,
        Some((0, "{command: 'true', boot_id: lab-boot-id, timeout: 4s}")),
        "",
    );
    let before = boot_id(&lab, 0);
    let out = scratch.opsctl(&["reboot", "node", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains("timed out after 4s waiting until node-1 stops answering SSH (the old boot is going down): still answers SSH with the boot id it had before the reboot: the reboot has not taken it down"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr.contains("OUT of the advertised list"),
        "{}",
        out.dump()
    );
    assert_eq!(boot_id(&lab, 0), before);
}

#[test]
fn a_relay_that_does_not_come_up_after_the_boot_stays_out() {
    // The lab's reboot, but no service is started again on boot.
    let (lab, scratch, _) = reboot_lab(
        2,
        Some((
            0,
            r#"{command: [sh, -c, 'reboot && : > "$LAB_NODE/run/on-boot"'], boot_id: lab-boot-id, timeout: 30s}"#,
        )),
        "",
    );
    let before = boot_id(&lab, 0);
    let out = scratch.opsctl(&["reboot", "node", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_ne!(boot_id(&lab, 0), before, "it did reboot");
    assert!(
        out.stderr.contains("timed out after 4s waiting until the relay service on node-1 is up: `systemctl is-active relayd` exited 3 and printed `inactive`"),
        "{}",
        out.dump()
    );
    assert!(
        !out.stderr.contains("Advertising"),
        "not put back\n{}",
        out.dump()
    );
    assert!(
        out.stderr.contains("OUT of the advertised list since "),
        "{}",
        out.dump()
    );
}

#[test]
fn a_peer_that_is_down_refuses_the_reboot_before_anything_changes() {
    for docker in [false, true] {
        let service = if docker {
            ", service: {container: restund}"
        } else {
            ""
        };
        let (lab, scratch, values) = reboot_lab(2, None, service);
        let stopped = if docker {
            lab.ssh(1, "docker stop restund")
        } else {
            lab.systemctl(1, "stop relayd")
        };
        assert!(stopped.status.success(), "{stopped:?}");
        let before = boot_id(&lab, 0);
        let out = scratch.opsctl(&["reboot", "node", "node-1"]);
        assert_eq!(out.code, 1, "{}", out.dump());
        let seen = if docker {
            "service is not up: `docker container inspect --format '{{.State.Status}}' restund` exited 0 and printed `exited`"
        } else {
            "service is not up: `systemctl is-active relayd` exited 3 and printed `inactive`"
        };
        assert!(
            out.stderr.contains(&format!(
                "refusing: safety check `peers-healthy` failed; nothing was changed: relays that stay in service are not healthy:\n  `node-2`: {seen}"
            )),
            "{}",
            out.dump()
        );
        assert_eq!(boot_id(&lab, 0), before, "nothing was rebooted");
        assert_eq!(
            std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
            values
        );
    }
}

#[test]
fn several_nodes_go_one_after_another_and_a_failure_leaves_the_rest_alone() {
    let (lab, scratch, values) = reboot_lab(
        3,
        Some((1, "{command: 'true', boot_id: lab-boot-id, timeout: 4s}")),
        "",
    );
    let boots: Vec<String> = (0..3).map(|i| boot_id(&lab, i)).collect();
    let out = scratch.opsctl(&["reboot", "node", "node-1", "node-2", "node-3"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_ne!(boot_id(&lab, 0), boots[0], "node-1 was rebooted");
    assert_eq!(boot_id(&lab, 2), boots[2], "node-3 was not");
    // node-1 was back and advertised before node-2 went out.
    let back = out
        .stderr
        .find("node-1: put node-1 back in the advertised list")
        .unwrap_or(usize::MAX);
    let next = out.stderr.find("Starting node-2").unwrap_or(0);
    assert!(back < next, "{}", out.dump());
    assert!(!out.stderr.contains("Starting node-3"), "{}", out.dump());
    let now = std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap();
    let lines: Vec<&str> = now.lines().collect();
    assert!(lines[3].starts_with("      - turn:"), "node-1 back: {now}");
    assert!(lines[4].starts_with("      # - turn:"), "node-2 out: {now}");
    assert!(lines[5].starts_with("      - turn:"), "node-3 untouched: {now}");
    assert_ne!(now, values);
}

#[test]
fn no_drain_asks_showing_the_allocations_it_drops() {
    let (lab, scratch, _) = reboot_lab(2, None, "");
    let before = boot_id(&lab, 0);
    let out = scratch.opsctl(&["reboot", "node", "--no-drain", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr
            .contains("there is no terminal to ask on\nhelp: pass `--yes` to answer yes in automation"),
        "{}",
        out.dump()
    );
    assert_eq!(boot_id(&lab, 0), before);
    let out = scratch.opsctl(&["--yes", "reboot", "node", "--no-drain", "node-1"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr
            .contains("reboot node-1 now, dropping the calls it carries (0 allocations now): yes (--yes)"),
        "{}",
        out.dump()
    );
    assert!(!out.stderr.contains("wait: drained"), "{}", out.dump());
    assert_ne!(boot_id(&lab, 0), before);
}

/// A docker-run relay: the plan checks its container's state, as the runbook
/// does, and the run waits for it to run again after the boot.
#[test]
fn a_docker_run_relay_is_checked_by_its_container_state() {
    let (lab, scratch, values) = reboot_lab(2, None, ", service: {container: restund}");
    let plan = scratch.opsctl(&["--dry-run", "reboot", "node", "node-1"]);
    plan.success();
    assert!(
        plan.stdout.contains("read by `docker container inspect --format '{{.State.Status}}' restund`, which must exit 0 and print `running`"),
        "{}",
        plan.dump()
    );
    let before = boot_id(&lab, 0);
    let out = scratch.opsctl(&["reboot", "node", "node-1"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_ne!(boot_id(&lab, 0), before);
    assert!(
        out.stderr.contains("the relay service on node-1 is up (`docker container inspect --format '{{.State.Status}}' restund`: running"),
        "{}",
        out.dump()
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

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

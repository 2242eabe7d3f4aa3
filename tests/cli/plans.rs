//! The dry-run plan of each procedure, as text and JSON, pinned as snapshots
//! (tests/snapshots/). A change to a plan shows up as a diff to review.

use crate::util::{Scratch, opsctl, snapshot};

fn plan(name: &str, args: &[&str]) {
    for (output, ext) in [("text", "txt"), ("json", "json")] {
        let mut argv = vec![
            "--inventory",
            "inventory.example.yaml",
            "--dry-run",
            "--output",
            output,
        ];
        argv.extend_from_slice(args);
        let out = opsctl(&argv);
        out.planned();
        snapshot(&format!("{name}.{ext}"), &out.stdout);
    }
}

#[test]
fn restart_no_downtime() {
    // relay-1: restund with sudo; relay-5: relayd with its own drain and a STUN check.
    plan(
        "restart-no-downtime",
        &["restart", "--no-downtime", "relay-1", "relay-5"],
    );
}

#[test]
fn restart_at_once() {
    plan("restart", &["restart", "relay-3"]);
}

#[test]
fn reboot_node() {
    // A docker-run restund on a non-default SSH port, then an rtpengine host.
    plan("reboot-node", &["reboot", "node", "relay-2", "relay-4"]);
}

#[test]
fn renew_cert() {
    let scratch = Scratch::new();
    let bundle = scratch.write("new.pem", "chain and key\n");
    let bundle = bundle.display().to_string();
    for (name, extra) in [("renew-cert", &[][..]), ("renew-cert-reload", &["--reload"][..])] {
        for (output, ext) in [("text", "txt"), ("json", "json")] {
            let mut argv = vec![
                "-i",
                "inventory.example.yaml",
                "-n",
                "-o",
                output,
                "renew-cert",
                "--bundle",
                &bundle,
            ];
            argv.extend_from_slice(extra);
            // relay-3 has coturn's two-file layout; relay-5 (relayd) can reload.
            argv.extend_from_slice(if extra.is_empty() {
                &["relay-1", "relay-3"][..]
            } else {
                &["relay-5"][..]
            });
            let out = opsctl(&argv);
            out.planned();
            snapshot(&format!("{name}.{ext}"), &out.stdout.replace(&bundle, "<bundle>"));
        }
    }
}

#[test]
fn recover_quorum_etcd() {
    plan("recover-quorum-etcd", &["recover-quorum", "--site", "dc2"]);
}

#[test]
fn recover_quorum_clearwater() {
    plan("recover-quorum-clearwater", &["recover-quorum", "--site", "dc1"]);
}

/// The plan is the object a run executes: the values-file diff is of the real
/// file, and applying both edits of a relay gives the file back byte for byte.
#[test]
fn values_file_diff_is_the_real_file_and_round_trips() {
    let scratch = Scratch::new();
    let values = "brig:\n  turnStatic:\n    v2:\n      - turn:a.example.com:3478 # a\r\n      - 'turn:a.example.com:3478?transport=tcp'\n      - turn:b.example.com:3478\n";
    scratch.write("values.yaml", values);
    scratch.write(
        "inventory.yaml",
        "advertise: {backend: values-file, file: values.yaml, apply: [helm, upgrade, x]}\n\
         defaults: {relay: {kind: relayd}}\n\
         sites:\n  - name: s\n    relays:\n\
         \x20     - {name: a, host: 127.0.0.1, urls: ['turn:a.example.com:3478', 'turn:a.example.com:3478?transport=tcp']}\n\
         \x20     - {name: b, host: 127.0.0.2, urls: ['turn:b.example.com:3478']}\n",
    );
    let out = scratch.opsctl(&["-n", "-o", "json", "restart", "--no-downtime", "a"]);
    out.success();
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let edits: Vec<&serde_json::Value> = plan["sections"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "advertise")
        .collect();
    assert_eq!(edits.len(), 2, "{}", out.stdout);
    assert_eq!(edits[0]["out"], true);
    assert_eq!(
        edits[0]["edit"]["diff"],
        "--- values.yaml\n+++ values.yaml\n@@ -1,6 +1,6 @@\n brig:\n   turnStatic:\n     v2:\n-      - turn:a.example.com:3478 # a\n-      - 'turn:a.example.com:3478?transport=tcp'\n+      # - turn:a.example.com:3478 # a\n+      # - 'turn:a.example.com:3478?transport=tcp'\n       - turn:b.example.com:3478\n"
    );
    assert_eq!(edits[0]["commands"][0]["line"], "helm upgrade x");
    assert_eq!(edits[1]["out"], false);
    // Nothing was written by a dry run.
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

/// Values from the inventory stay single arguments, quoted where a shell would
/// split them; nothing is spliced into shell text.
#[test]
fn inventory_values_are_quoted_as_whole_arguments() {
    let scratch = Scratch::new();
    scratch.write(
        "inventory.yaml",
        "defaults: {relay: {kind: restund}}\n\
         sites:\n  - name: s\n    defaults: {min_healthy_relays: 1}\n    relays:\n\
         \x20     - {name: a, host: 127.0.0.1, service: {unit: \"my relay; rm -rf /\"}}\n\
         \x20     - {name: b, host: 127.0.0.2}\n",
    );
    let out = scratch.opsctl(&["-n", "restart", "--no-downtime", "a"]);
    out.success();
    assert!(
        out.stdout
            .contains("          $ systemctl restart 'my relay; rm -rf /'\n"),
        "{}",
        out.dump()
    );
}

/// The seed runbook's values file with decoys of relay-1's URL outside the
/// list (an old `v1` entry, a comment, another chart's settings): the plan
/// edits only relay-1's three entries of `brig.turnStatic.v2`.
#[test]
fn decoys_of_the_target_outside_the_list_are_never_edited() {
    let scratch = Scratch::new();
    let example =
        std::fs::read_to_string(crate::util::root().join("examples/values/wire-server/values.yaml")).unwrap();
    let values = example.replace("    v1: []\n", "    v1:\n      - turn:turn1.example.com:3478\n")
        + "# - turn:turn1.example.com:3478\nmonitoring:\n  probes:\n    - turn:turn1.example.com:3478\n";
    scratch.write("examples/values/wire-server/values.yaml", &values);
    scratch.write(
        "inventory.yaml",
        &std::fs::read_to_string(crate::util::root().join("inventory.example.yaml")).unwrap(),
    );
    let out = scratch.opsctl(&["-n", "-o", "json", "restart", "--no-downtime", "relay-1"]);
    out.success();
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let edits: Vec<&str> = plan["sections"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "advertise")
        .map(|s| s["edit"]["diff"].as_str().unwrap())
        .collect();
    let changed: Vec<&str> = edits[0]
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    assert_eq!(
        changed,
        [
            "+      # - turn:turn1.example.com:3478 # relay-1 UDP",
            "+      # - turn:turn1.example.com:3478?transport=tcp # relay-1 TCP",
            "+      # - turns:turn1.example.com:5349?transport=tcp # relay-1 TLS",
        ]
    );
    assert!(edits[0].contains("@@ -10,9 +10,9 @@"), "{}", edits[0]);
}

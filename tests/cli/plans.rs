//! The dry-run plan of each procedure, as text and JSON, pinned as snapshots
//! (tests/snapshots/). A change to a plan shows up as a diff to review.

use crate::certs::{CURRENT, Ca, Leaf};
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
        snapshot(&format!("{name}.{ext}"), &unreached(&out.stdout));
    }
}

/// The example's hosts do not exist: why SSH to them fails is this
/// machine's network's word, not the plan's.
fn unreached(text: &str) -> String {
    const AT: &str = "does not answer SSH now (";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(AT) {
        let open = i + AT.len();
        let close = rest[open..].find("): ").map_or(rest.len(), |c| open + c);
        out.push_str(&rest[..open]);
        out.push_str("...");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
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

/// What changes from one run of the test to the next: the certificate's
/// fingerprint, the days it has left, the files' places, and why the
/// example's hosts (which do not resolve) cannot be read.
fn steady(text: &str, leaf: &Leaf, files: &[(&str, &str)]) -> String {
    let mut t = text.replace(&leaf.fingerprint(), "<sha256>");
    for (path, name) in files {
        t = t.replace(path, name);
    }
    let mut out = String::new();
    for line in t.split_inclusive('\n') {
        let line = match (line.find(" days left)"), line.find("cannot be read from here (")) {
            (Some(end), _) => {
                let start = line[..end].rfind('(').map_or(end, |s| s + 1);
                format!("{}<n>{}", &line[..start], &line[end..])
            }
            (_, Some(at)) => {
                let open = at + "cannot be read from here (".len();
                let close = line[open..].find("); ").map_or(line.len(), |c| open + c);
                format!("{}...{}", &line[..open], &line[close..])
            }
            _ => line.to_owned(),
        };
        out.push_str(&line);
    }
    out
}

#[test]
fn renew_cert() {
    let scratch = Scratch::new();
    let root = Ca::root("Example Root");
    let inter = root.intermediate("Example Issuing CA");
    let leaf = inter.leaf(&["*.example.com"], CURRENT);
    let bundle = scratch
        .write("new.pem", &leaf.bundle(&[&inter]))
        .display()
        .to_string();
    let ca = scratch.write("root.pem", &root.pem).display().to_string();
    // relay-1 (restund) takes it by a drained restart; relay-3 (coturn) by
    // SIGUSR2 into its two files; relay-5 (relayd) by SIGHUP, or with
    // `--restart` by a drained restart too.
    for (name, extra) in [
        ("renew-cert", &["relay-1", "relay-3"][..]),
        ("renew-cert-reload", &["relay-5"][..]),
        ("renew-cert-restart", &["--restart", "relay-5"][..]),
    ] {
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
                "--ca",
                &ca,
            ];
            argv.extend_from_slice(extra);
            let out = opsctl(&argv);
            out.success();
            snapshot(
                &format!("{name}.{ext}"),
                &steady(&out.stdout, &leaf, &[(&bundle, "<bundle>"), (&ca, "<ca>")]),
            );
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

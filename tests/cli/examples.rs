//! The shipped examples can never rot: every playbook file is loaded and
//! planned against inventory.example.yaml, and the inventory checks clean.

use crate::util::{Scratch, opsctl, root};

/// The command line that plans each playbook against the example inventory.
fn invocation(playbook: &str, bundle: &str, ca: &str) -> Vec<String> {
    let args: &[&str] = match playbook {
        "restart-no-downtime" => &["restart", "--no-downtime", "--all"],
        "restart" => &["restart", "--all"],
        "reboot-node" => &["reboot", "node", "--all"],
        "renew-cert" => &["renew-cert", "--bundle", bundle, "--ca", ca, "--all"],
        "recover-quorum-clearwater" => &["recover-quorum", "--site", "dc1"],
        "recover-quorum-etcd" => &["recover-quorum", "--site", "dc2"],
        other => panic!("playbooks/{other}.yaml is not planned by any procedure"),
    };
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn example_inventory_checks_clean() {
    let out = opsctl(&["--inventory", "inventory.example.yaml", "inventory", "check"]);
    out.success();
    assert!(
        out.stdout
            .starts_with("inventory.example.yaml: ok: 2 sites, 5 relays, 11 cluster members\n"),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout
            .contains("relay-3          coturn     10.1.0.13            advertised"),
        "{}",
        out.dump()
    );
}

/// Loads each file in playbooks/ from disk (as an override directory, so the
/// files themselves are read, not only the copies compiled in) and plans it,
/// as text and as JSON.
#[test]
fn every_playbook_file_plans_against_the_example_inventory() {
    let scratch = Scratch::new();
    let root_ca = crate::certs::Ca::root("Example Root");
    let leaf = root_ca.leaf(&["*.example.com"], crate::certs::CURRENT);
    let bundle = scratch.write("new.pem", &leaf.bundle(&[]));
    let ca = scratch.write("root.pem", &root_ca.pem);
    let inventory = std::fs::read_to_string(root().join("inventory.example.yaml"))
        .unwrap()
        .replace(
            "# playbooks: ./playbooks",
            &format!("playbooks: {}", root().join("playbooks").display()),
        )
        .replace(
            "file: examples/",
            &format!("file: {}/examples/", root().display()),
        );
    let inv = scratch.write("inventory.yaml", &inventory);
    let mut planned = 0;
    for entry in std::fs::read_dir(root().join("playbooks")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{}",
            path.display()
        );
        for output in ["text", "json"] {
            let mut args = vec![
                "--inventory".to_owned(),
                inv.display().to_string(),
                "--dry-run".into(),
                "--output".into(),
                output.into(),
            ];
            args.extend(invocation(
                &name,
                &bundle.display().to_string(),
                &ca.display().to_string(),
            ));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = scratch.opsctl(&argv);
            out.planned();
            if output == "json" {
                let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                assert_eq!(plan["procedure"], name.as_str());
                assert_eq!(
                    plan["playbook"]["origin"],
                    path.display().to_string(),
                    "the override file was used"
                );
                let numbers: Vec<u64> = plan["sections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| {
                        s["steps"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|st| st["number"].as_u64().unwrap())
                    })
                    .collect();
                assert!(!numbers.is_empty(), "{name}: no steps");
                assert_eq!(
                    numbers,
                    (1..=numbers.len() as u64).collect::<Vec<_>>(),
                    "{name}: steps numbered in order"
                );
            } else {
                assert!(
                    out.stdout
                        .starts_with(&format!("plan: {name} (playbook {}), run test\n", path.display())),
                    "{}",
                    out.dump()
                );
            }
        }
        planned += 1;
    }
    assert_eq!(planned, 6, "six playbooks ship");
}

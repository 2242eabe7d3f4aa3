//! `opsctl inventory init --from-values`: a first inventory from the values
//! file a Wire deployment already has, refused by `inventory check` until
//! its blanks are filled, accepted once they are.

use crate::util::{Scratch, root, snapshot};

fn with_example_values() -> Scratch {
    let scratch = Scratch::new();
    let values = std::fs::read_to_string(root().join("examples/values/wire-server/values.yaml")).unwrap();
    scratch.write("values.yaml", &values);
    scratch
}

#[test]
fn a_draft_from_the_example_values_checks_clean_once_its_blanks_are_filled() {
    let scratch = with_example_values();
    let out = scratch.opsctl(&["inventory", "init", "--from-values", "values.yaml"]);
    out.success();
    assert_eq!(
        out.stdout,
        "inventory.yaml: drafted 5 relays from `brig.turnStatic.v2` in values.yaml; fill in its 4 FILL-INs, then run\n  opsctl --inventory inventory.yaml inventory check\n"
    );
    let draft = std::fs::read_to_string(scratch.0.join("inventory.yaml")).unwrap();
    snapshot("inventory-init.yaml", &draft);

    // Each blank is named with its line and field, and nothing else is said.
    let check = scratch.opsctl(&["inventory", "check"]);
    assert_eq!(check.code, 2, "{}", check.dump());
    for (line, field) in [
        (13, "advertise.apply"),
        (19, "defaults.ssh.user"),
        (23, "defaults.relay.kind"),
        (26, "sites[0].name"),
    ] {
        assert!(
            check.stderr.contains(&format!("inventory.yaml:{line}")) && check.stderr.contains(field),
            "{field} on line {line} is not named\n{}",
            check.dump()
        );
    }
    assert_eq!(
        check.stderr.matches("is still FILL-IN").count(),
        4,
        "{}",
        check.dump()
    );

    // Never over a file that is there: the draft is left as it is.
    let again = scratch.opsctl(&["inventory", "init", "--from-values", "values.yaml"]);
    assert_eq!(again.code, 1, "{}", again.dump());
    assert!(
        again.stderr.contains("inventory.yaml already exists"),
        "{}",
        again.dump()
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("inventory.yaml")).unwrap(),
        draft
    );

    let filled = draft
        .replace("apply: FILL-IN", "apply: ./bin/prod-setup.sh")
        .replace("user: FILL-IN", "user: ops")
        .replace("kind: FILL-IN", "kind: restund")
        .replace("name: FILL-IN", "name: dc1");
    scratch.write("inventory.yaml", &filled);
    let check = scratch.opsctl(&["inventory", "check", "--output", "json"]);
    check.success();
    let doc: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    let relays = doc["sites"][0]["relays"].as_array().unwrap();
    let names: Vec<&str> = relays.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["turn1", "turn2", "turn3", "turn4", "turn5"]);
    assert!(
        relays.iter().all(|r| r["advertised"] == "advertised"),
        "{}",
        check.stdout
    );
}

#[test]
fn a_values_file_without_the_list_is_refused_with_its_line_and_writes_nothing() {
    let scratch = with_example_values();
    let out = scratch.opsctl(&[
        "inventory",
        "init",
        "--from-values",
        "values.yaml",
        "--list",
        "brig.turnStatic.v3",
    ]);
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(
        out.stderr
            .contains("values.yaml:8: `brig.turnStatic` has no key `v3`"),
        "{}",
        out.dump()
    );
    let missing = scratch.opsctl(&[
        "-i",
        "elsewhere.yaml",
        "inventory",
        "init",
        "--from-values",
        "nope.yaml",
    ]);
    assert_eq!(missing.code, 2, "{}", missing.dump());
    assert!(
        missing.stderr.contains("cannot read the values file nope.yaml"),
        "{}",
        missing.dump()
    );
    assert!(!scratch.0.join("inventory.yaml").exists() && !scratch.0.join("elsewhere.yaml").exists());
}

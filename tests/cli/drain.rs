//! A relay's own drain mode where it depends on the version running:
//! coturn's (4.6.3 and later), against Debian's real coturn 4.6.1.

use crate::lab::Lab;
use crate::util::Scratch;

/// Debian 12's coturn 4.6.1 has no drain mode (SIGUSR1 would end it): a
/// plan that asks for it is refused with that reason and the fix, for a
/// dry run as for a run, after reading the version the running coturn
/// reports and nothing else; the relays carry on untouched. A coturn that
/// is not running cannot tell its version, and is refused as well.
#[test]
fn coturn_4_6_1_s_missing_drain_mode_is_refused_before_anything_runs() {
    if !std::path::Path::new("/usr/bin/turnserver").exists() {
        panic!("Debian's coturn is missing: scripts/test.sh installs it");
    }
    let lab = Lab::start(2).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    lab.coturn(0, "lab-cli-pw");
    let started = lab.systemctl(0, "start coturn");
    assert!(started.status.success(), "{started:?}");
    lab.wait_tcp(0, 5766).unwrap();
    lab.coturn(1, "lab-cli-pw");
    let pid = |i| crate::run::pid(&lab, i);
    let before = pid(0);
    assert!(!before.is_empty());
    let scratch = Scratch::new();
    scratch.write(
        "inventory.yaml",
        &lab.coturn_inventory(&["turn:{ip}:3478"], ", drain: {relay_drain: true}"),
    );
    let help = "help: upgrade coturn on {node} to 4.6.3 or later, or set `drain.relay_drain: false` for it in inventory.yaml\n";
    let old = format!(
        "opsctl: error: relay `node-1` runs coturn 4.6.1, which has no drain mode: coturn's came in 4.6.3 (and SIGUSR1 would end coturn 4.6.1 at once, dropping its calls); nothing was run\n{}",
        help.replace("{node}", "node-1")
    );
    for args in [
        &["restart", "--no-downtime", "node-1", "--dry-run"][..],
        &["restart", "--no-downtime", "node-1"],
        &["reboot", "node", "node-1", "--dry-run"],
    ] {
        lab.commands_run(0);
        let out = crate::util::opsctl_env(&scratch.0, args, &[("LAB_CLI_PW", "lab-cli-pw")]);
        out.fails_with(1, &old);
        // The version read is all that ran, and the relay it read runs on.
        let ran = lab.commands_run(0);
        assert_eq!(ran.len(), 1, "{args:?}: {ran:?}");
        assert!(
            ran[0].contains("MainPID") && ran[0].contains("--version"),
            "{ran:?}"
        );
        assert_eq!(pid(0), before);
    }
    assert!(lab.commands_run(1).is_empty());
    // node-2's coturn is declared but not running.
    let out = crate::util::opsctl_env(
        &scratch.0,
        &["restart", "--no-downtime", "node-2", "--dry-run"],
        &[("LAB_CLI_PW", "lab-cli-pw")],
    );
    out.fails_with(
        1,
        &format!(
            "opsctl: error: relay `node-2` (coturn): cannot tell whether the coturn running there has a drain mode: its version could not be read (exit status 3: coturn is not running); nothing was run\n{}",
            "help: start coturn on node-2 if it is down (the version is read from the running process), upgrade it to 4.6.3 or later if it is older, or set `drain.relay_drain: false` for it in inventory.yaml\n"
        ),
    );
    // Left off, the same relay plans, with no drain mode in it.
    scratch.write("inventory.yaml", &lab.coturn_inventory(&["turn:{ip}:3478"], ""));
    let out = crate::util::opsctl_env(
        &scratch.0,
        &["restart", "--no-downtime", "node-1", "--dry-run"],
        &[("LAB_CLI_PW", "lab-cli-pw")],
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!out.stdout.contains("drain mode on"), "{}", out.stdout);
}

/// With a coturn that has a drain mode, a no-downtime restart takes it out
/// of the advertised list, sends it SIGUSR1 once, takes its exit (or its
/// last allocation) as the end of the drain, starts it again and puts it
/// back, dropping no call. Debian 12 ships no such coturn, so this runs
/// only when pointed at one.
#[test]
#[ignore = "needs coturn 4.6.3 or later, which Debian 12 does not ship: LAB_COTURN=/path/to/turnserver cargo test --test cli -- --ignored coturn_s_own_drain"]
fn coturn_s_own_drain_ends_in_its_exit_and_it_is_started_again() {
    use crate::run::{Simulator, coturn_lab_from, pid, run};
    let binary = std::env::var("LAB_COTURN").expect("LAB_COTURN names a turnserver of coturn 4.6.3 or later");
    let (lab, scratch, values) =
        coturn_lab_from(2, "true", ", drain: {poll: 12s, relay_drain: true}", &binary);
    let before = pid(&lab, 0);
    let sim = Simulator::start(&scratch);
    sim.counts_once_busy();
    let planned = run(&scratch, &["restart", "--no-downtime", "node-1", "--dry-run"]);
    assert_eq!(planned.code, 0, "{}", planned.dump());
    assert!(
        planned.stdout.contains("systemctl kill --signal=SIGUSR1 coturn")
            && planned
                .stdout
                .contains("or coturn has exited (the end of its drain)"),
        "{}",
        planned.stdout
    );
    let out = run(&scratch, &["restart", "--no-downtime", "node-1"]);
    let calls = sim.stop();
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(calls.dropped, 0, "calls were dropped: {:?}", calls.drops);
    let after = pid(&lab, 0);
    assert!(
        !after.is_empty() && after != before,
        "node-1 was not started again: {before} -> {after}"
    );
    // A poll slower than coturn's own check lets it exit first, mostly:
    // the gate takes either end.
    assert!(
        out.stderr
            .contains("(the relay has exited, its drain over: `systemctl is-active coturn` exited 3")
            || out.stderr.contains("(0 allocations, after"),
        "{}",
        out.dump()
    );
    let log = std::fs::read_to_string(lab.nodes[0].dir.join("log/turnserver.log")).unwrap_or_default();
    assert!(log.contains("Draining then terminating on signal"), "{log}");
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
    // The drain was sent once, by the command the plan showed.
    let sent: Vec<String> = lab
        .commands_run(0)
        .into_iter()
        .filter(|c| c.contains("SIGUSR1"))
        .collect();
    assert_eq!(sent, ["systemctl kill --signal=SIGUSR1 coturn"]);
}

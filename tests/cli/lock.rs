//! The site lock: two runs on one site at once, one proceeds and the other
//! is told who holds it; a holder killed leaves a stale lock that
//! `--break-lock` takes over.

use std::process::{Child, Command, Stdio};

use crate::run::{CLI_PW, coturn_lab};
use crate::util::{Output, Scratch};

/// opsctl as another operator would run it: its own run id, state and
/// SSH control directories (`who` names them).
pub(crate) fn operator(scratch: &Scratch, who: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_opsctl"));
    c.current_dir(&scratch.0)
        .args(args)
        .env("LAB_CLI_PW", CLI_PW)
        .env_remove("OPSCTL_RUN_ID")
        .env("OPSCTL_SSH_PERSIST", "0s")
        .env("OPSCTL_CONTROL_DIR", scratch.0.join(format!(".ssh-{who}")))
        .env("OPSCTL_STATE_DIR", scratch.0.join(format!(".state-{who}")))
        .env("NO_COLOR", "1");
    c
}

fn output(c: std::process::Output) -> Output {
    Output::of("opsctl (an operator of the lock test)", c)
}

fn spawn(scratch: &Scratch, who: &str, args: &[&str]) -> Child {
    operator(scratch, who, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lock directories left on the lab's nodes.
fn locks_left(lab: &crate::lab::Lab) -> Vec<String> {
    lab.nodes
        .iter()
        .filter(|n| n.dir.join("opsctl-lib/locks/lab").exists())
        .map(|n| n.name.clone())
        .collect()
}

#[test]
fn two_restarts_of_one_site_at_once_one_proceeds_the_other_is_told_who_holds_it() {
    let (lab, scratch, values) = coturn_lab(3, "true");
    // Calls that stay: whichever run gets the site waits in its drain.
    lab.coturn_idle_allocations(0, 2);
    lab.coturn_idle_allocations(1, 2);
    let args = |node: &'static str| ["--yes", "restart", "--no-downtime", node];
    let a = spawn(&scratch, "a", &args("node-1"));
    let b = spawn(&scratch, "b", &args("node-2"));
    // The one refused ends at once; the other drains.
    let (loser, mut winner, a_holds) = crate::util::one_ends(a, b);
    let winner_node = if a_holds { "node-1" } else { "node-2" };
    let refused = output(loser.wait_with_output().unwrap());
    assert_eq!(refused.code, 1, "{}", refused.dump());
    assert!(
        refused.stderr.contains("site `lab` is locked by run "),
        "{}",
        refused.dump()
    );
    for want in [
        format!("(restart-no-downtime on {winner_node}), by "),
        format!(" on {}, pid {}", opsctl::lock::machine(), winner.id()),
        "its process still runs on this machine; nothing was run".to_owned(),
        "help: wait for that run to end; if it is gone for good, pass --break-lock".to_owned(),
    ] {
        assert!(refused.stderr.contains(&want), "{want}\n{}", refused.dump());
    }
    assert!(winner.try_wait().unwrap().is_none(), "the holder still runs");
    // The refused run changed nothing: only the holder's relay is out.
    let now = std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap();
    let loser_node = if winner_node == "node-1" {
        "node-2"
    } else {
        "node-1"
    };
    let loser_ip = lab.nodes[if loser_node == "node-1" { 0 } else { 1 }].ip;
    assert!(!now.contains(&format!("# - turn:{loser_ip}:")), "{now}");

    // The holder killed: its lock stays, and is called stale.
    winner.kill().unwrap();
    winner.wait().unwrap();
    // The refused run's relay sheds its idle calls, so its own restart drains at once.
    let loser_i = if loser_node == "node-1" { 0 } else { 1 };
    assert!(lab.systemctl(loser_i, "restart coturn").status.success());
    lab.wait_tcp(loser_i, 5766).unwrap();
    let other = if winner_node == "node-1" { "b" } else { "a" };
    let again = output(operator(&scratch, other, &args(loser_node)).output().unwrap());
    assert_eq!(again.code, 1, "{}", again.dump());
    assert!(
        again
            .stderr
            .contains("its process is gone from this machine: the lock is stale"),
        "{}",
        again.dump()
    );
    // Taken over once confirmed: the run goes on, and gives the lock back at its end.
    let broke = output(
        operator(
            &scratch,
            other,
            &["--break-lock", "--yes", "restart", "--no-downtime", loser_node],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(broke.code, 0, "{}", broke.dump());
    for want in [
        "break the lock of site `lab`, held by run ",
        "the lock of site `lab` was broken (--break-lock)",
    ] {
        assert!(broke.stderr.contains(want), "{want}\n{}", broke.dump());
    }
    assert!(
        locks_left(&lab).is_empty(),
        "released: {:?}\n{}",
        locks_left(&lab),
        broke.dump()
    );
    // Each operator's runs, as `opsctl runs` lists them (the latest first).
    let winner_who = if other == "a" { "b" } else { "a" };
    let listed = output(operator(&scratch, winner_who, &["runs"]).output().unwrap());
    assert_eq!(listed.code, 0, "{}", listed.dump());
    let rows: Vec<&str> = listed.stdout.lines().collect();
    assert!(rows[0].starts_with("RUN "), "{}", listed.stdout);
    assert!(
        rows[1].contains(&format!("restart-no-downtime  {winner_node}  "))
            && rows[1].contains(&format!("@{}", opsctl::lock::machine()))
            && rows[1].contains("  killed  "),
        "{}",
        listed.stdout
    );
    let listed = output(
        operator(&scratch, other, &["-o", "json", "runs"])
            .output()
            .unwrap(),
    );
    let runs: serde_json::Value =
        serde_json::from_str(&listed.stdout).unwrap_or_else(|_| panic!("{}", listed.dump()));
    let states: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "refused", "refused"], "{}", listed.stdout);
    let _ = values;
}

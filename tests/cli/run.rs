//! Running plans for real against lab nodes running Debian's coturn.

use std::process::Command;

use crate::lab::Lab;
use crate::util::{Scratch, opsctl_env};

pub(crate) const CLI_PW: &str = "lab-cli-pw";

/// A lab of coturn relays, their inventory, and a values file that
/// advertises them; `apply` is the command run after each edit.
pub(crate) fn coturn_lab(n: usize, apply: &str) -> (Lab, Scratch, String) {
    coturn_lab_with(n, apply, "")
}

/// [`coturn_lab`] with more settings for every relay (`, key: value` YAML).
fn coturn_lab_with(n: usize, apply: &str, relay: &str) -> (Lab, Scratch, String) {
    coturn_lab_from(n, apply, relay, "/usr/bin/turnserver")
}

/// [`coturn_lab_with`], running the coturn at `binary`.
pub(crate) fn coturn_lab_from(n: usize, apply: &str, relay: &str, binary: &str) -> (Lab, Scratch, String) {
    let lab = Lab::start(n).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    for i in 0..n {
        lab.coturn_from(i, CLI_PW, binary);
        let started = lab.systemctl(i, "start coturn");
        assert!(started.status.success(), "{started:?}");
        lab.wait_tcp(i, 5766).unwrap();
    }
    let scratch = Scratch::new();
    let mut values = String::from("# TURN servers clients receive\nbrig:\n  turnStatic:\n    v2:\n");
    for node in &lab.nodes {
        values.push_str(&format!(
            "      - turn:{}:3478 # {}\n      - \"turn:{}:3478?transport=tcp\"\n",
            node.ip, node.name, node.ip
        ));
    }
    let drain = if relay.contains("drain:") {
        ""
    } else {
        ", drain: {poll: 1s}"
    };
    let inv = lab.coturn_inventory(
        &["turn:{ip}:3478", "turn:{ip}:3478?transport=tcp"],
        &format!("{drain}{relay}"),
    );
    let inv = format!("advertise: {{backend: values-file, file: values.yaml, apply: {apply:?}}}\n{inv}");
    scratch.write("values.yaml", &values);
    scratch.write("inventory.yaml", &inv);
    (lab, scratch, values)
}

/// The lab's call simulator, making calls on the coturn relays the values
/// file advertises; stopped (by pid, if it will not stop) when dropped.
pub(crate) struct Simulator {
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
}

impl Simulator {
    pub(crate) fn start(scratch: &Scratch) -> Simulator {
        Simulator::start_as(scratch, "alice", "secret")
    }

    /// Calls made as `user` with `password`.
    pub(crate) fn start_as(scratch: &Scratch, user: &str, password: &str) -> Simulator {
        std::fs::create_dir_all(scratch.0.join("run")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_opsctl"))
            .args(["lab", "simulate", "--dir"])
            .arg(&scratch.0)
            .args([
                "--user",
                user,
                "--password",
                password,
                "--max-runtime",
                "2m",
                "--concurrent",
                "4",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Simulator {
            child: Some(child),
            dir: scratch.0.clone(),
        }
    }

    pub(crate) fn counts(&self) -> opsctl::lab::simulator::Counts {
        opsctl::lab::simulator::read_counts(&self.dir).unwrap_or_default()
    }

    /// The counts once calls are going.
    pub(crate) fn counts_once_busy(&self) -> opsctl::lab::simulator::Counts {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let c = self.counts();
            if c.active >= 2 {
                return c;
            }
            assert!(std::time::Instant::now() < deadline, "no calls got going: {c:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Lets the running calls end, then returns the final counts.
    pub(crate) fn stop(mut self) -> opsctl::lab::simulator::Counts {
        std::fs::write(self.dir.join("run/simulator.stop"), "").unwrap();
        if let Some(mut c) = self.child.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while c.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.counts()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn pid(lab: &Lab, i: usize) -> String {
    String::from_utf8_lossy(&lab.systemctl(i, "show-pid coturn").stdout)
        .trim()
        .to_owned()
}

/// opsctl started in the background in the scratch directory, as in [`run`].
fn spawn(scratch: &Scratch, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_opsctl"))
        .current_dir(&scratch.0)
        .args(args)
        .env("LAB_CLI_PW", CLI_PW)
        .env("OPSCTL_SSH_PERSIST", "0s")
        .env("OPSCTL_CONTROL_DIR", scratch.0.join(".opsctl-ssh"))
        .env("OPSCTL_STATE_DIR", scratch.0.join(".opsctl-state"))
        .env("OPSCTL_RUN_ID", crate::util::next_run_id(&scratch.0))
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (30 s at most) until a relay's entries are commented out of the
/// values file: the run has taken it out; `what` says what did not happen.
fn until_taken_out(scratch: &Scratch, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(scratch.0.join("values.yaml"))
        .unwrap()
        .contains("# - turn:")
    {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub(crate) fn run(scratch: &Scratch, args: &[&str]) -> crate::util::Output {
    opsctl_env(&scratch.0, args, &[("LAB_CLI_PW", CLI_PW)])
}

#[test]
fn restart_no_downtime_restarts_every_relay_and_restores_the_values_file() {
    // Every relay also gets a STUN binding request from here as a health check.
    let (lab, scratch, values) = coturn_lab_with(3, "true", ", stun_check: true");
    let before: Vec<String> = (0..3).map(|i| pid(&lab, i)).collect();
    // Calls come and go through the advertised relays all along.
    let sim = Simulator::start(&scratch);
    let calls_before = sim.counts_once_busy();
    let out = run(&scratch, &["restart", "--no-downtime", "--all"]);
    let calls = sim.stop();
    assert_eq!(calls.dropped, 0, "calls were dropped: {:?}", calls.drops);
    assert!(
        calls.completed > calls_before.completed,
        "no call completed during the rollout: {calls:?}"
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let after: Vec<String> = (0..3).map(|i| pid(&lab, i)).collect();
    for i in 0..3 {
        assert!(
            !before[i].is_empty() && !after[i].is_empty() && before[i] != after[i],
            "node-{} was not restarted: {before:?} -> {after:?}",
            i + 1
        );
    }
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values,
        "the values file is back as it was"
    );
    assert!(
        scratch.0.join("values.yaml.opsctl-test").exists(),
        "a backup of the values file is kept"
    );
    assert!(
        out.stderr
            .contains("    Finished restart-no-downtime on node-1, node-2, node-3 in "),
        "{}",
        out.dump()
    );
    for n in ["node-1", "node-2", "node-3"] {
        assert!(
            out.stderr
                .contains(&format!("{n}: 8/8 steps, back in the advertised list")),
            "{}",
            out.dump()
        );
    }
}

#[test]
fn a_failing_apply_puts_the_values_file_back_and_stops() {
    let (lab, scratch, values) = coturn_lab(2, "false");
    let before = pid(&lab, 0);
    let out = run(&scratch, &["restart", "--no-downtime", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains("values.yaml was put back as it was"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("`false` failed on `local` with exit status 1"),
        "{}",
        out.dump()
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
    assert_eq!(pid(&lab, 0), before, "nothing was restarted");
}

#[test]
fn restart_at_once_needs_a_yes_without_a_terminal() {
    let (lab, scratch, _) = coturn_lab(2, "true");
    let before = pid(&lab, 1);
    let out = run(&scratch, &["restart", "node-2"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr
            .contains("there is no terminal to ask on\nhelp: pass `--yes` to answer yes in automation"),
        "{}",
        out.dump()
    );
    assert_eq!(pid(&lab, 1), before);
    let out = run(&scratch, &["restart", "node-2", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr
            .contains("restart node-2 now, dropping the calls it carries (0 allocations now): yes (--yes)"),
        "{}",
        out.dump()
    );
    assert_ne!(pid(&lab, 1), before);
}

/// A relay that crashed is brought back by `restart`: the question says it
/// is down and carries no calls. One that is up with stats that cannot be
/// read is refused: what a restart would drop is unknown.
#[test]
fn restart_brings_back_a_relay_that_is_down() {
    let (lab, scratch, _) = coturn_lab(2, "true");
    let stopped = lab.systemctl(1, "stop coturn");
    assert!(stopped.status.success(), "{stopped:?}");
    assert_eq!(pid(&lab, 1), "", "node-2's coturn is down");
    let out = run(&scratch, &["restart", "node-2", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr.contains(
            "restart node-2 now, dropping the calls it carries (it is down: `systemctl is-active coturn` exited 3 and printed `inactive`; it carries no calls): yes (--yes)"
        ),
        "{}",
        out.dump()
    );
    assert_ne!(pid(&lab, 1), "", "node-2's coturn runs again");
    // Up, but its CLI password is wrong: the count is unknown, so no restart.
    let inv = std::fs::read_to_string(scratch.0.join("inventory.yaml")).unwrap();
    let inv: Vec<String> = inv
        .lines()
        .map(|l| {
            if l.contains("name: node-2") {
                l.replace("LAB_CLI_PW", "NODE2_CLI_PW")
            } else {
                l.to_owned()
            }
        })
        .collect();
    scratch.write("inventory.yaml", &(inv.join("\n") + "\n"));
    let before = pid(&lab, 1);
    let out = opsctl_env(
        &scratch.0,
        &["restart", "node-2", "--yes"],
        &[("LAB_CLI_PW", CLI_PW), ("NODE2_CLI_PW", "wrong")],
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains(
            "but its allocations cannot be read, so what a restart drops is unknown; not restarting"
        ),
        "{}",
        out.dump()
    );
    assert_eq!(pid(&lab, 1), before, "not restarted");
}

/// Ctrl-C during the drain: the run stops at once (a wait is a safe point),
/// and the summary says where and that the relay is out of the list.
#[test]
fn ctrl_c_during_the_drain_stops_and_says_where() {
    let (lab, scratch, values) = coturn_lab(2, "true");
    // Allocations that stay until their lifetime ends: the drain cannot finish.
    lab.coturn_idle_allocations(0, 1);
    let child = spawn(&scratch, &["restart", "--no-downtime", "node-1"]);
    // Wait until the run is draining, then interrupt it.
    until_taken_out(&scratch, "the relay was never taken out");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = crate::util::interrupt(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("     Stopped restart-no-downtime after "),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped while waiting until allocations on node-1 <= 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("node-1: 2/7 steps, OUT of the advertised list"),
        "{stderr}"
    );
    assert!(stderr.contains("to put node-1 back in service: restore its lines in values.yaml as step 7 of the plan shows (`--dry-run`), then run `true`"), "{stderr}");
    // The file says the same as the summary: node-1 is out, nothing else changed.
    let now = std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap();
    assert_ne!(now, values);
    assert_eq!(now.replace("# - ", "- "), values);

    // The calls end (here: the relay restarts, dropping the idle allocations);
    // the same command again continues from where the first run stopped.
    assert!(lab.systemctl(0, "restart coturn").status.success());
    lab.wait_tcp(0, 5766).unwrap();
    let plan = run(&scratch, &["restart", "--no-downtime", "node-1", "--dry-run"]);
    assert_eq!(plan.code, 0, "{}", plan.dump());
    assert!(
        plan.stdout.contains(
            "continues: run test left node-1 out of the advertised list; this run takes it from there"
        ),
        "{}",
        plan.dump()
    );
    let again = opsctl_env(
        &scratch.0,
        &["--run-id", "again", "restart", "--no-downtime", "node-1"],
        &[("LAB_CLI_PW", CLI_PW)],
    );
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values,
        "back as it was"
    );
    // Nothing is left out any more: a third plan continues nothing.
    let third = run(&scratch, &["restart", "--no-downtime", "node-1", "--dry-run"]);
    assert!(!third.stdout.contains("continues:"), "{}", third.dump());
}

#[test]
fn a_drain_that_times_out_leaves_the_relay_out_and_says_so() {
    let (lab, scratch, values) = coturn_lab_with(2, "true", ", drain: {poll: 1s, timeout: 4s}");
    lab.coturn_idle_allocations(0, 1);
    let before = pid(&lab, 0);
    // No terminal (the output is captured, stdin is not one): a progress
    // line at least every second, though the count does not move.
    let out = opsctl_env(
        &scratch.0,
        &["restart", "--no-downtime", "node-1"],
        &[("LAB_CLI_PW", CLI_PW), ("OPSCTL_PROGRESS_EVERY", "1s")],
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    let progress = out
        .stderr
        .matches("node-1: waiting until allocations on node-1 <= 0: ")
        .count();
    assert!(progress >= 3, "{progress} progress lines:\n{}", out.dump());
    assert!(
        out.stderr
            .contains("timed out after 4s waiting until allocations on node-1 <= 0 ("),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("node-1 stays out of the advertised list and the rollout stops"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("node-1: 2/7 steps, OUT of the advertised list"),
        "{}",
        out.dump()
    );
    assert_eq!(
        pid(&lab, 0),
        before,
        "a relay with allocations is never restarted"
    );
    assert!(
        out.stderr
            .contains("to continue where this run stopped: fix the cause, then run `opsctl resume test`"),
        "{}",
        out.dump()
    );
    let now = std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap();
    assert_eq!(now.replace("# - ", "- "), values);
    assert_ne!(now, values);
}

#[test]
fn readvertise_on_timeout_puts_the_relay_back() {
    let (lab, scratch, values) = coturn_lab_with(
        2,
        "true",
        ", drain: {poll: 1s, timeout: 3s, on_timeout: readvertise}",
    );
    lab.coturn_idle_allocations(0, 1);
    let out = run(&scratch, &["restart", "--no-downtime", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr
            .contains("node-1 was put back in the advertised list and the rollout stops"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("node-1: 3/7 steps, back in the advertised list"),
        "{}",
        out.dump()
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

#[test]
fn force_restarts_after_a_timed_out_drain_once_confirmed() {
    let (lab, scratch, values) = coturn_lab_with(2, "true", ", drain: {poll: 1s, timeout: 2s}");
    lab.coturn_idle_allocations(0, 1);
    let before = pid(&lab, 0);
    let out = run(
        &scratch,
        &["restart", "--no-downtime", "--force", "--yes", "node-1"],
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr
            .contains("the drain of node-1 timed out after 2s; restart it anyway, dropping its "),
        "{}",
        out.dump()
    );
    assert_ne!(pid(&lab, 0), before);
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

/// Stats that cannot be read stop the run before anything changes.
#[test]
fn unreadable_stats_are_refused_before_anything_changes() {
    let (lab, scratch, values) = coturn_lab(2, "true");
    let before = pid(&lab, 0);
    let out = opsctl_env(
        &scratch.0,
        &["restart", "--no-downtime", "node-1"],
        &[("LAB_CLI_PW", "wrong")],
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(out.stderr.contains("refusing: safety check `stats-readable` failed; nothing was changed: the stats of `node-1` cannot be read"), "{}", out.dump());
    assert!(
        out.stderr.contains("did not accept the password"),
        "{}",
        out.dump()
    );
    assert_eq!(pid(&lab, 0), before);
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

/// kubectl drain checks its budget before every eviction: here, the relays
/// staying in service are re-checked before each relay goes out. A peer that
/// fails while relay 1 drains stops the rollout before relay 2 is taken out.
#[test]
fn a_peer_that_fails_mid_rollout_stops_it_before_the_next_relay_goes_out() {
    let (lab, scratch, values) = coturn_lab_with(3, "true", ", drain: {poll: 1s, timeout: 6s}");
    // node-1 keeps allocations: its drain runs out and `--force --yes` restarts it.
    lab.coturn_idle_allocations(0, 1);
    let node2_before = pid(&lab, 1);
    let child = spawn(
        &scratch,
        &["--yes", "restart", "--no-downtime", "--force", "--all"],
    );
    until_taken_out(&scratch, "node-1 was never taken out");
    // During node-1's drain, node-3's relay stops.
    let stopped = lab.systemctl(2, "stop coturn");
    assert!(stopped.status.success(), "{stopped:?}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("relays of site `lab` that stay in service while node-2 is out are not healthy:\n  `node-3`: service is not up"),
        "{stderr}"
    );
    assert!(stderr.contains("node-2 was not taken out of service"), "{stderr}");
    // node-1 finished and is back; node-2 was never touched; the file says so.
    assert!(
        stderr.contains("node-1: 7/7 steps, back in the advertised list"),
        "{stderr}"
    );
    assert!(!stderr.contains("Withdrawing 9. node-2"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
    assert_eq!(pid(&lab, 1), node2_before, "node-2 was not restarted");
}

/// A second Ctrl-C abandons the command running inside a step, and the step
/// still restores what it changed: an apply that hangs is stopped and the
/// values file is put back. The next run starts from a clean file.
#[test]
fn a_second_ctrl_c_during_a_hanging_apply_restores_the_values_file() {
    let (lab, scratch, values) = coturn_lab(2, "sleep 60");
    let child = spawn(&scratch, &["restart", "--no-downtime", "node-1"]);
    until_taken_out(&scratch, "the edit never happened");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let child_pid = child.id().to_string();
    for _ in 0..2 {
        let sent = Command::new("kill").args(["-INT", &child_pid]).status().unwrap();
        assert!(sent.success());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the apply was not abandoned"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("     Stopped restart-no-downtime after "),
        "{stderr}"
    );
    assert!(stderr.contains("values.yaml was put back as it was"), "{stderr}");
    assert!(stderr.contains("stopped at once by a second Ctrl-C"), "{stderr}");
    assert!(!stderr.contains("OUT of the advertised list"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
    let journal = std::fs::read_to_string(scratch.0.join(".opsctl-state/test.jsonl")).unwrap();
    assert!(journal.contains("\"outcome\":\"stopped\""), "{journal}");
    assert!(!journal.contains("\"event\":\"advertised\""), "{journal}");
    // The next run (apply fixed) goes through from the file as it is.
    let inv = std::fs::read_to_string(scratch.0.join("inventory.yaml")).unwrap();
    scratch.write(
        "inventory.yaml",
        &inv.replace("apply: \"sleep 60\"", "apply: \"true\""),
    );
    let before = pid(&lab, 0);
    let again = opsctl_env(
        &scratch.0,
        &["restart", "--no-downtime", "node-1"],
        &[("LAB_CLI_PW", CLI_PW), ("OPSCTL_RUN_ID", "test-2")],
    );
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_ne!(pid(&lab, 0), before, "node-1 was restarted");
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

/// Allocations left by clients that vanished keep a drain waiting until their
/// lifetime ends. When the count stops falling, the drain says so, with
/// coturn's own list of them: how many carry no traffic and when they expire.
#[test]
fn a_stuck_drain_lists_the_idle_allocations_it_waits_on() {
    let (lab, scratch, _) = coturn_lab_with(2, "true", ", drain: {poll: 1s, timeout: 5s, stuck_after: 2s}");
    lab.coturn_idle_allocations(0, 1);
    let out = run(
        &scratch,
        &["--output", "json", "restart", "--no-downtime", "node-1"],
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    let readings: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "reading" && e["gate"] == "drained")
        .collect();
    assert!(readings.len() >= 3, "{}", out.dump());
    let first = readings[0]["reading"].as_str().unwrap();
    assert!(!first.contains("not falling"), "{first}");
    let last = readings.last().unwrap()["reading"].as_str().unwrap();
    assert!(last.contains("not falling for "), "{last}");
    assert!(
        last.contains("of the 3 listed carry no traffic now; the last of those expires in "),
        "{last}"
    );
    assert!(
        out.stderr.contains("node-1 stays out of the advertised list"),
        "{}",
        out.dump()
    );
}

/// The relay's sshd goes away during the drain (every connection to it
/// with it) and comes back: the drain's readings fail meanwhile, then go
/// on over a new connection, and the run completes.
#[test]
fn an_sshd_lost_during_the_drain_and_back_lets_the_run_go_on() {
    let (lab, scratch, values) = coturn_lab(2, "true");
    lab.coturn_idle_allocations(0, 1);
    let child = spawn(&scratch, &["restart", "--no-downtime", "node-1"]);
    until_taken_out(&scratch, "the relay was never taken out");
    std::thread::sleep(std::time::Duration::from_secs(2));
    lab.stop_sshd_only(0);
    std::thread::sleep(std::time::Duration::from_secs(4));
    lab.start_sshd_again(0);
    // The calls end (the relay restarts under them, from the lab's side).
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(lab.systemctl(0, "restart coturn").status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("node-1: waiting until allocations on node-1 <= 0: lost the connection to `node-1`")
            && stderr
                .contains("node-1: waiting until allocations on node-1 <= 0: cannot connect to `node-1`")
            && stderr.contains("node-1: allocations on node-1 <= 0 (0 allocations, after "),
        "the lost readings are told: {stderr}"
    );
    assert!(
        stderr.contains("node-1: 7/7 steps, back in the advertised list"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

/// The relay's sshd goes away while a state-changing step runs on it: the
/// run waits until the node answers again and runs the step again (every
/// step is written to be safe to repeat), then goes on to the end.
#[test]
fn a_step_whose_connection_is_lost_runs_again_once_the_node_answers() {
    let (lab, scratch, values) = coturn_lab(2, "true");
    // A step of its own before the restart, slow enough to be cut.
    let playbook = include_str!("../../playbooks/restart-no-downtime.yaml").replace(
        "  - service: restart\n",
        "  - run: [sh, -c, 'echo begun >> /tmp/opsctl-slow-{run}; sleep 3']\n  - service: restart\n",
    );
    assert!(playbook.contains("opsctl-slow"));
    scratch.write("pb/restart-no-downtime.yaml", &playbook);
    let inv = std::fs::read_to_string(scratch.0.join("inventory.yaml")).unwrap();
    scratch.write("inventory.yaml", &format!("playbooks: pb\n{inv}"));
    let run = "lost-step";
    let marker = std::path::PathBuf::from(format!("/tmp/opsctl-slow-{run}"));
    let _ = std::fs::remove_file(&marker);
    let child = spawn(&scratch, &["--run-id", run, "restart", "--no-downtime", "node-1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the slow step never began");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    lab.stop_sshd_only(0);
    std::thread::sleep(std::time::Duration::from_secs(3));
    lab.start_sshd_again(0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let begun = std::fs::read_to_string(&marker).unwrap_or_default();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Reconnecting node-1: step 4 lost its connection (")
            && stderr.contains("node-1 answers again, after ")
            && stderr.contains("4. node-1: run (again: the connection was lost while it ran)"),
        "{stderr}"
    );
    assert_eq!(begun.lines().count(), 2, "run once, then again:\n{begun}");
    assert!(
        stderr.contains("node-1: 8/8 steps, back in the advertised list"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

//! `opsctl resume RUN`: a run killed (SIGKILL, no chance to clean up) and
//! resumed, again and again, ends as a run never interrupted would, and no
//! step that would hurt twice runs twice.

use crate::run::{CLI_PW, Simulator, coturn_lab};
use crate::util::{journal_has, kill_when, opsctl_env, plan_step};

fn coturn_pid(lab: &crate::lab::Lab, i: usize) -> String {
    String::from_utf8_lossy(&lab.systemctl(i, "show-pid coturn").stdout)
        .trim()
        .to_owned()
}

/// How many times a journal records step `n` begun.
fn begun(journal: &str, n: usize) -> usize {
    let line = format!("{{\"event\":\"step-start\",\"number\":{n},");
    journal.lines().filter(|l| l.starts_with(&line)).count()
}

#[test]
fn a_restart_killed_at_five_points_and_resumed_ends_as_if_never_interrupted() {
    // The apply takes a second: a kill can land between the edit and it.
    let (lab, scratch, values) = coturn_lab(3, "sleep 1");
    let before: Vec<String> = (0..3).map(|i| coturn_pid(&lab, i)).collect();
    let env = [("LAB_CLI_PW", CLI_PW)];
    let dry = opsctl_env(
        &scratch.0,
        &["-n", "-o", "json", "restart", "--no-downtime", "--all"],
        &env,
    );
    dry.success();
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let step = |node: &str, title: &str| plan_step(&plan, node, title);
    let total = plan["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["steps"].as_array().unwrap().len())
        .sum::<usize>();
    let run = "resumed";
    let values_path = scratch.0.join("values.yaml");
    let taken_out = || {
        std::fs::read_to_string(&values_path)
            .unwrap()
            .contains("# - turn:")
    };
    let restarts: Vec<usize> = ["node-1", "node-2", "node-3"]
        .iter()
        .map(|n| step(n, "restart the service"))
        .collect();
    let safety1 = step("node-1", "check the relays staying in service");
    let out1 = step("node-1", "take node-1 out");
    let drain2 = step("node-2", "wait: drained");
    let back3 = step("node-3", "put node-3 back");
    // Each point: what the journal (or the values file) shows when the kill lands.
    type Point<'a> = (&'a str, Box<dyn Fn(&str) -> bool + 'a>);
    let points: [Point; 5] = [
        (
            "node-1's safety check done, before its take-out",
            Box::new(|j| journal_has(j, "step", safety1)),
        ),
        (
            "node-1's entries edited out, its apply running",
            Box::new(|j| journal_has(j, "step-start", out1) && taken_out()),
        ),
        (
            "node-2 draining, with calls on it",
            Box::new(|j| journal_has(j, "step-start", drain2)),
        ),
        (
            "node-2 restarted",
            Box::new(|j| journal_has(j, "step", restarts[1])),
        ),
        (
            "node-3 restarted and checked, before its put-back",
            Box::new(|j| journal_has(j, "step", back3 - 1)),
        ),
    ];
    // Calls come and go through the advertised relays all along.
    let sim = Simulator::start(&scratch);
    sim.counts_once_busy();
    for (i, (what, when)) in points.iter().enumerate() {
        let first = ["--run-id", run, "--yes", "restart", "--no-downtime", "--all"];
        let again = ["--yes", "resume", run];
        let args: &[&str] = if i == 0 { &first } else { &again };
        // Each point is looked for in what this invocation wrote, once it
        // wrote that it resumes: the kill before may have landed a step
        // later than its point.
        let this = |j: &str| {
            let resumed = j.matches("\"event\":\"resume\"").count();
            let since = j
                .rsplit_once("\"event\":\"resume\"")
                .map_or(j, |(_, after)| after);
            resumed == i && when(since)
        };
        let journal = kill_when(&scratch.0, args, &env, run, what, this);
        assert!(
            !journal.contains("\"event\":\"end\""),
            "killed before it ended ({what}):\n{journal}"
        );
        // Killed, it is listed as such, and the lock it left names it.
        let runs = opsctl_env(&scratch.0, &["runs"], &[]);
        assert!(
            runs.stdout
                .lines()
                .any(|l| l.starts_with(run) && l.contains("killed")),
            "{}",
            runs.dump()
        );
    }
    let out = opsctl_env(&scratch.0, &["--yes", "resume", run], &env);
    let calls = sim.stop();
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr.contains("  Continuing run resumed: "),
        "{}",
        out.dump()
    );
    assert_eq!(calls.dropped, 0, "calls were dropped: {:?}", calls.drops);
    // The end state of an uninterrupted run: every relay restarted, back
    // in the list, the values file as it was.
    assert_eq!(std::fs::read_to_string(&values_path).unwrap(), values);
    let after: Vec<String> = (0..3).map(|i| coturn_pid(&lab, i)).collect();
    for i in 0..3 {
        assert!(
            !after[i].is_empty() && before[i] != after[i],
            "node-{} was not restarted: {before:?} -> {after:?}",
            i + 1
        );
    }
    // No restart ran twice: each began once, in all six invocations.
    let journal = std::fs::read_to_string(scratch.0.join(format!(".opsctl-state/{run}.jsonl"))).unwrap();
    for (i, n) in restarts.iter().enumerate() {
        assert_eq!(
            begun(&journal, *n),
            1,
            "node-{}'s restart (step {n}):\n{journal}",
            i + 1
        );
    }
    // The take-out cut short in its apply was done again: edit found made,
    // apply run.
    assert!(begun(&journal, out1) >= 2, "{journal}");
    let show = opsctl_env(&scratch.0, &["runs", "show", run], &[]);
    show.success();
    assert!(
        show.stdout
            .contains(&format!("state: done, {total} of {total} steps done"))
            && show.stdout.matches("\nresumed ").count() == 5,
        "{}",
        show.dump()
    );
    // Every take-out and restart is listed done, with what the gates read.
    assert!(
        show.stdout.contains(&format!("{drain2:>3}. done ")) && show.stdout.contains(" holds: 0 allocations"),
        "{}",
        show.dump()
    );
    // Resuming a run that finished is refused, and changes nothing.
    let again = opsctl_env(&scratch.0, &["--yes", "resume", run], &env);
    assert!(
        again.code == 1
            && again.stderr.contains(
                "run resumed (restart-no-downtime on node-1, node-2, node-3) finished: there is nothing to resume"
            ),
        "{}",
        again.dump()
    );
}

/// Killed once the reboot was asked for: the resumed run sees the new boot
/// (or the node down) and does not reboot it again.
#[test]
fn a_reboot_killed_after_it_was_asked_for_is_not_done_twice() {
    // Its reboot command lingers after asking, so the kill lands inside
    // the reboot step.
    let (lab, scratch, values) = crate::reboot::reboot_lab(
        2,
        Some((
            0,
            "{command: [sh, -c, 'reboot; sleep 5'], boot_id: lab-boot-id, timeout: 30s}",
        )),
        "",
    );
    let boots = lab.nodes[0].dir.join("boots");
    let asked = lab.nodes[0].dir.join("run/reboot");
    let run = "reboot-resumed";
    kill_when(
        &scratch.0,
        &["--run-id", run, "--yes", "reboot", "node", "node-1"],
        &[],
        run,
        "the reboot of node-1 asked for",
        |_| asked.exists(),
    );
    // The node goes down and comes back meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&boots).unwrap().lines().count() < 2 {
        assert!(std::time::Instant::now() < deadline, "node-1 did not reboot");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = scratch.opsctl(&["--yes", "resume", run]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr.contains("node-1: reboot")
            && out.stderr.contains("began in the run cut short and happened"),
        "{}",
        out.dump()
    );
    let booted = std::fs::read_to_string(&boots).unwrap();
    assert_eq!(
        booted.lines().count(),
        2,
        "booted once more, not twice:\n{booted}"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

/// A run resumed after the inventory changed in a way its plan depends on
/// is refused, showing what differs, and nothing is run; put back, it
/// resumes. A values file that lost a relay's entries is refused too.
#[test]
fn a_resume_against_a_changed_inventory_or_values_file_is_refused() {
    let (lab, scratch, values) = coturn_lab(2, "true");
    lab.coturn_idle_allocations(0, 1);
    let env = [("LAB_CLI_PW", CLI_PW)];
    let run = "changed";
    kill_when(
        &scratch.0,
        &["--run-id", run, "--yes", "restart", "--no-downtime", "--all"],
        &env,
        run,
        "node-1 draining",
        |j| journal_has(j, "step-start", 3),
    );
    let inv_path = scratch.0.join("inventory.yaml");
    let inv = std::fs::read_to_string(&inv_path).unwrap();
    let changed = inv.replace("drain: {poll: 1s}", "drain: {poll: 2s}");
    assert_ne!(changed, inv);
    std::fs::write(&inv_path, &changed).unwrap();
    let journal = scratch.0.join(format!(".opsctl-state/{run}.jsonl"));
    let before = std::fs::read_to_string(&journal).unwrap();
    let out = opsctl_env(&scratch.0, &["--yes", "resume", run], &env);
    assert!(
        out.code == 1
            && out.stderr.contains(
                "and the plan made now differs from the one it ran: the inventory (or a file the plan reads) changed since; nothing was run"
            )
            && out.stderr.contains("\"poll_secs\": 1.0,")
            && out.stderr.contains("\"poll_secs\": 2.0,"),
        "{}",
        out.dump()
    );
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        before,
        "nothing was run"
    );
    // node-2's entries gone from the values file: refused at planning.
    std::fs::write(&inv_path, &inv).unwrap();
    let now = std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap();
    let without: String = now
        .lines()
        .filter(|l| !l.contains(&lab.nodes[1].ip.to_string()))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(scratch.0.join("values.yaml"), &without).unwrap();
    let out = opsctl_env(&scratch.0, &["--yes", "resume", run], &env);
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("node-2"), "{}", out.dump());
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        before,
        "nothing was run"
    );
    // Put back, and the calls gone: it resumes to the end.
    std::fs::write(scratch.0.join("values.yaml"), &now).unwrap();
    assert!(lab.systemctl(0, "restart coturn").status.success());
    lab.wait_tcp(0, 5766).unwrap();
    let out = opsctl_env(&scratch.0, &["--yes", "resume", run], &env);
    out.success();
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
}

//! The contract of the plan: every command a real run sends is one its
//! `--dry-run` showed, verbatim, for the same host. Remote commands are read
//! back from each lab node's sshd (its ForceCommand records every command
//! line as it arrived); commands run here are read from opsctl's own log of
//! what it runs (`-v`).

use std::collections::{BTreeMap, BTreeSet};

use crate::lab::Lab;
use crate::util::{Output, Scratch, opsctl_env};

/// Every (host, line) a plan in JSON holds: each object with `on` and `line`.
fn planned(json: &str) -> BTreeSet<(String, String)> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(on), Some(serde_json::Value::String(line))) = (m.get("on"), m.get("line")) {
                    out.insert((on["node"].as_str().unwrap_or("").to_owned(), line.clone()));
                }
                m.values().for_each(|x| walk(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(&serde_json::from_str(json).expect("the plan is JSON"), &mut out);
    out
}

/// The commands opsctl ran here, from its `-v` log.
fn ran_here(out: &Output) -> Vec<String> {
    out.stderr
        .lines()
        .filter_map(|l| {
            l.split_once(" running node=local command=")
                .map(|(_, c)| c.to_owned())
        })
        .collect()
}

/// How the lab's relayd relays are set up: their own drain mode, STUN
/// checks, reboots (`{ip}` is the node's address).
pub const RELAYD: &str = "stats: {addr: '{ip}:33000'}, drain: {poll: 1s, relay_drain: true}, stun_check: true, reboot: {command: reboot, boot_id: lab-boot-id, timeout: 1m}";

/// A lab of relayd relays set up as `relay` says (see [`RELAYD`]), a values
/// file, `apply` run after each edit, and an advertise check that reads the
/// file.
pub fn relayd_lab(n: usize, relay: &str, apply: &str) -> (Lab, Scratch) {
    let lab = Lab::start(n).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let scratch = Scratch::new();
    let mut values = String::from("brig:\n  turnStatic:\n    v2:\n");
    let mut inv = lab.inventory("relayd", "");
    for (i, node) in lab.nodes.iter().enumerate() {
        lab.relayd(i, "relayd");
        let started = lab.systemctl(i, "start relayd");
        assert!(started.status.success(), "{started:?}");
        values.push_str(&format!("      - turn:{}:3478\n", node.ip));
        inv = inv.replace(
            &format!("host: {}}}", node.ip),
            &format!(
                "host: {ip}, urls: ['turn:{ip}:3478'], {}}}",
                relay.replace("{ip}", &node.ip.to_string()),
                ip = node.ip
            ),
        );
    }
    scratch.write("values.yaml", &values);
    let check = scratch.write(
        "calls-config.sh",
        "#!/bin/sh\nurls=$(grep -E '^ *- ' values.yaml | sed -E 's/^ *- ([^ ]*).*/\"\\1\"/' | paste -sd, -)\nprintf '{\"ice_servers\":[{\"urls\":[%s]}]}\\n' \"$urls\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755)).unwrap();
    scratch.write(
        "inventory.yaml",
        &format!(
            "advertise: {{backend: values-file, file: values.yaml, apply: {apply:?}, then: [[sh, -c, 'exit 0']], check: {{command: [./calls-config.sh]}}}}\n{inv}"
        ),
    );
    (lab, scratch)
}

fn run(scratch: &Scratch, args: &[&str]) -> Output {
    opsctl_env(&scratch.0, args, &[])
}

/// Runs `args` as a dry run, then for real, and checks every command sent
/// (remote and here) against the dry run's.
pub(crate) fn holds(lab: &Lab, scratch: &Scratch, args: &[&str]) -> usize {
    let mut dry = vec!["--dry-run", "--output", "json"];
    dry.extend_from_slice(args);
    let plan = run(scratch, &dry);
    plan.success();
    let shown = planned(&plan.stdout);
    for i in 0..lab.nodes.len() {
        lab.commands_run(i);
    }
    let mut real = vec!["-v"];
    real.extend_from_slice(args);
    let out = run(scratch, &real);
    out.success();
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, node) in lab.nodes.iter().enumerate() {
        sent.insert(node.name.clone(), lab.commands_run(i));
    }
    sent.insert("local".into(), ran_here(&out));
    let mut count = 0;
    for (host, lines) in &sent {
        for line in lines {
            count += 1;
            assert!(
                shown.contains(&(host.clone(), line.clone())),
                "`opsctl {}` sent a command its dry run did not show, on {host}:\n  {line}\nthe dry run showed, for {host}:\n  {}",
                args.join(" "),
                shown
                    .iter()
                    .filter(|(h, _)| h == host)
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
    }
    count
}

#[test]
fn every_command_a_run_sends_is_in_its_dry_run() {
    let (lab, scratch) = relayd_lab(3, RELAYD, "true");
    let rollout = holds(&lab, &scratch, &["restart", "--no-downtime", "--all"]);
    // Safety reads, the edits' apply commands, drains, restarts, checks: a
    // run that sent nothing would prove nothing.
    assert!(rollout > 40, "only {rollout} commands were recorded");
    let at_once = holds(&lab, &scratch, &["--yes", "restart", "node-1"]);
    assert!(at_once > 5, "only {at_once} commands were recorded");
    let reboot = holds(&lab, &scratch, &["reboot", "node", "node-2"]);
    assert!(reboot > 20, "only {reboot} commands were recorded");
}

/// A record of what was sent is the node's own: a command the plan did not
/// show is seen (the check above can fail).
#[test]
fn the_record_sees_a_command_outside_any_plan() {
    let lab = Lab::start(1).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    lab.commands_run(0);
    let out = lab.ssh(0, "echo 'not in a plan'");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lab.commands_run(0), ["echo 'not in a plan'"]);
}

/// With `--output json` a real run writes one JSON event per line on
/// stdout and nothing else: the plan first, every step and gate reading,
/// the summary last.
#[test]
fn a_run_in_json_is_one_event_per_line() {
    let (lab, scratch) = relayd_lab(2, RELAYD, "true");
    let out = run(
        &scratch,
        &["--output", "json", "restart", "--no-downtime", "node-1"],
    );
    out.success();
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", out.dump())))
        .collect();
    assert_eq!(events[0]["event"], "start");
    assert_eq!(events[0]["plan"]["schema"], 3);
    assert_eq!(events[0]["plan"]["targets"][0], "node-1");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "summary", "{}", out.dump());
    assert_eq!(last["outcome"], "done");
    assert_eq!(last["nodes"][0]["advertised"], true);
    let kinds: BTreeSet<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["start", "check", "step-start", "step-end", "reading", "summary"])
    );
    let drained = events
        .iter()
        .find(|e| e["event"] == "reading" && e["gate"] == "drained")
        .unwrap_or_else(|| panic!("{}", out.dump()));
    assert_eq!(drained["verdict"], "holds");
    assert_eq!(drained["reading"], "0 allocations");
    // The journal's first event holds the same plan.
    let journal = std::fs::read_to_string(scratch.0.join(".opsctl-state/test.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "start");
    assert_eq!(first["plan"], events[0]["plan"]);
    let steps = events.iter().filter(|e| e["event"] == "step-end").count();
    assert_eq!(steps, last["steps_total"].as_u64().unwrap() as usize);
    drop(lab);
}

/// An error with `--output json` is a JSON object on stdout (and the
/// message on stderr); a document already written is not followed by one.
#[test]
fn errors_in_json_are_json_on_stdout() {
    let scratch = Scratch::new();
    let out = scratch.opsctl(&["--output", "json", "-i", "missing.yaml", "status"]);
    assert_eq!(out.code, 2, "{}", out.dump());
    let doc: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.dump()));
    assert_eq!(doc["error"]["kind"], "usage");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read inventory missing.yaml"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .starts_with("opsctl: error: cannot read inventory missing.yaml")
    );
    // A refusal found while planning.
    scratch.write(
        "inventory.yaml",
        "defaults: {relay: {kind: relayd}}\nsites:\n  - name: s\n    defaults: {min_healthy_relays: 2}\n    relays:\n      - {name: a, host: 127.0.0.1}\n      - {name: b, host: 127.0.0.2}\n",
    );
    let out = scratch.opsctl(&["-o", "json", "restart", "--no-downtime", "a"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let doc: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.dump()));
    assert_eq!(doc["error"]["kind"], "refused");
    assert_eq!(
        doc["error"]["help"],
        "put the missing relays back in service first, or lower `min_healthy_relays` in inventory.yaml"
    );
}

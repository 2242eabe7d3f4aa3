//! Gates against relays that stop answering: a silent stats port fails each
//! read after its own reply time, and the gate ends at its timeout, not a
//! command timeout later.

use crate::contract::relayd_lab;

/// relayd stopped with SIGSTOP keeps its status port bound and answers
/// nothing: what a hung restund looks like from outside.
#[test]
fn a_silent_stats_port_times_the_drain_out_on_time_and_says_so() {
    // Read from here (UDP from opsctl itself), the path whose reads used to
    // wait the whole command timeout.
    let relay = "stats: {addr: '{ip}:33000', read_on: local}, drain: {poll: 1s, timeout: 3s}";
    let (lab, scratch) = relayd_lab(2, relay, "./silence-node-1.sh");
    // The apply after node-1 is taken out stops its relayd: from then on
    // its status port is silent.
    let ssh: Vec<String> = {
        let c = lab.ssh_command(0, "kill -STOP $(systemctl show-pid relayd)");
        std::iter::once(c.get_program().to_string_lossy().into_owned())
            .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    };
    let quoted: Vec<String> = ssh
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let script = scratch.write(
        "silence-node-1.sh",
        &format!(
            "#!/bin/sh\ngrep -q '# - turn' values.yaml && exec {}\nexit 0\n",
            quoted.join(" ")
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let started = std::time::Instant::now();
    let out = scratch.opsctl(&["restart", "--no-downtime", "node-1"]);
    let took = started.elapsed();
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr
            .contains("timed out after 3s waiting until allocations on node-1 <= 0 (turnstats on udp"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr.contains("did not answer (no reply within 1s)"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("node-1 stays out of the advertised list and the rollout stops"),
        "{}",
        out.dump()
    );
    // The checks, the edit and a 3 s gate, not a 60 s command timeout.
    assert!(
        took < std::time::Duration::from_secs(20),
        "took {took:?}\n{}",
        out.dump()
    );
}

/// A drain that times out with `on_timeout: readvertise` puts the relay back
/// only after switching its own drain mode off: a relay advertised while
/// draining would refuse every new call.
#[test]
fn readvertise_after_a_timed_out_drain_switches_the_relay_drain_off_first() {
    let relay = "stats: {addr: '{ip}:33000'}, drain: {poll: 1s, timeout: 3s, relay_drain: true, on_timeout: readvertise}";
    let (lab, scratch) = relayd_lab(2, relay, "true");
    let values = std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap();
    lab.idle_allocations(0, 1, "caller", "pw", &["-c"]);
    let out = scratch.opsctl(&["restart", "--no-downtime", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let off = out
        .stderr
        .find("node-1: switch the relay's drain mode off (allocations on node-1 <= 0: timed out)")
        .unwrap_or_else(|| panic!("{}", out.dump()));
    let back = out
        .stderr
        .find("node-1: put node-1 back in the advertised list (allocations on node-1 <= 0: timed out)")
        .unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(
        off < back,
        "the drain mode goes off before the relay is advertised\n{}",
        out.dump()
    );
    assert!(
        out.stderr
            .contains("node-1 was put back in the advertised list and the rollout stops")
    );
    assert!(!out.stderr.contains("its own drain mode is ON"), "{}", out.dump());
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("values.yaml")).unwrap(),
        values
    );
    // What status sees: node-1 advertised, its drain mode off, healthy.
    let status = scratch.opsctl(&["--output", "json", "status"]);
    let rows: serde_json::Value =
        serde_json::from_str(&status.stdout).unwrap_or_else(|_| panic!("{}", status.dump()));
    assert_eq!(rows[0]["node"], "node-1");
    assert_eq!(rows[0]["draining"], false, "{}", status.dump());
    assert_eq!(rows[0]["advertised"], "advertised", "{}", status.dump());
}

/// `status` calls a relay that is advertised while its own drain mode is on
/// unhealthy, and says why.
#[test]
fn status_calls_an_advertised_draining_relay_unhealthy() {
    let (lab, scratch) = relayd_lab(2, crate::contract::RELAYD, "true");
    let on = lab.ssh(
        0,
        &format!(
            "exec 3<>/dev/udp/{}/33000; printf drain_enable >&3; timeout 1 dd bs=64 count=1 status=none <&3",
            lab.nodes[0].ip
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&on.stdout).trim(),
        "is_draining: 1",
        "{on:?}"
    );
    let status = scratch.opsctl(&["--output", "json", "status"]);
    assert_eq!(status.code, 1, "{}", status.dump());
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(rows[0]["draining"], true);
    assert_eq!(rows[0]["healthy"], false);
    assert!(
        rows[0]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "its own drain mode is on while it is advertised: new allocations are refused"),
        "{}",
        status.dump()
    );
    assert_eq!(rows[1]["healthy"], true, "{}", status.dump());
}

/// The same for a relay with restund's `turn` listing (relayd answers it as
/// restund does): how many are listed and when the last expires.
#[test]
fn a_stuck_drain_on_a_turnstats_relay_reads_its_turn_listing() {
    let relay = "stats: {addr: '{ip}:33000'}, drain: {poll: 1s, timeout: 5s, stuck_after: 2s}";
    let (lab, scratch) = relayd_lab(2, relay, "true");
    lab.idle_allocations(0, 1, "caller", "pw", &["-c"]);
    let out = scratch.opsctl(&["--output", "json", "restart", "--no-downtime", "node-1"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let last = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|e| e["event"] == "reading" && e["gate"] == "drained")
        .unwrap_or_else(|| panic!("{}", out.dump()));
    let reading = last["reading"].as_str().unwrap();
    assert!(reading.contains("not falling for "), "{reading}");
    assert!(reading.contains("2 listed; the last expires in "), "{reading}");
}

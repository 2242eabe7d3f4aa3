//! `opsctl lab`: the demo a newcomer runs first, and that it leaves nothing behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Scratch, opsctl_env};

/// Processes whose command line names this lab directory.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", &dir.display().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_owned)
        .collect()
}

/// The lab's addresses and ports (on `net`) are free again.
fn ports_free(net: &str) -> bool {
    (1..=3).all(|i| {
        let ip = format!("{net}.{i}");
        std::net::UdpSocket::bind((ip.as_str(), 3478)).is_ok()
            && std::net::TcpListener::bind((ip.as_str(), 3478)).is_ok()
    })
}

#[test]
fn the_demo_restarts_every_relay_and_drops_no_call() {
    let scratch = Scratch::new();
    let out = opsctl_env(
        &scratch.0,
        &["lab", "demo", "--dir", "lab"],
        &[("OPSCTL_LAB_NET", "127.78.1")],
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let proof: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("proof: ")).collect();
    assert_eq!(proof.len(), 5, "{}", out.dump());
    for (i, line) in proof[..3].iter().enumerate() {
        let (old, new) = line
            .strip_prefix(&format!("proof: node-{} restarted: pid ", i + 1))
            .and_then(|rest| rest.split_once(" -> "))
            .unwrap_or_else(|| panic!("{line}\n{}", out.dump()));
        assert!(
            old.parse::<u32>().is_ok() && new.parse::<u32>().is_ok() && old != new,
            "{line}"
        );
    }
    let calls = proof[3]
        .strip_prefix("proof: calls during the rollout: ")
        .unwrap();
    let completed: u64 = calls.split(' ').next().unwrap().parse().unwrap();
    assert!(completed > 0, "{calls}");
    assert!(
        calls.contains(" completed, 0 dropped,"),
        "{calls}\n{}",
        out.dump()
    );
    assert_eq!(proof[4], "proof: values.yaml back as it was, byte for byte: yes");
    assert!(
        leftovers(&scratch.0).is_empty(),
        "left running: {:?}",
        leftovers(&scratch.0)
    );
    assert!(ports_free("127.78.1"), "a lab port is still bound");
}

#[test]
fn ctrl_c_during_the_demo_leaves_nothing_running() {
    let scratch = Scratch::new();
    let child = Command::new(env!("CARGO_BIN_EXE_opsctl"))
        .current_dir(&scratch.0)
        .args(["lab", "demo", "--dir", "lab"])
        .env("NO_COLOR", "1")
        .env("OPSCTL_LAB_NET", "127.78.2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the rollout is under way (the first relay is out).
    let values = scratch.0.join("lab/values.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&values)
        .unwrap_or_default()
        .contains("# - turn:")
    {
        assert!(Instant::now() < deadline, "the rollout never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = crate::util::interrupt(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("     Stopped restart-no-downtime after "),
        "{stderr}"
    );
    assert!(
        leftovers(&scratch.0).is_empty(),
        "left running: {:?}",
        leftovers(&scratch.0)
    );
    assert!(ports_free("127.78.2"), "a lab port is still bound");
}

/// The lab needs no root: the demo runs as `nobody`.
#[test]
fn the_demo_runs_without_root() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = scratch.0.join("opsctl");
    std::fs::copy(env!("CARGO_BIN_EXE_opsctl"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
        .arg(format!("HOME={}", scratch.0.display()))
        .args(["OPSCTL_LAB_NET=127.78.3", "NO_COLOR=1"])
        .arg(&exe)
        .args(["lab", "demo", "--dir"])
        .arg(scratch.0.join("lab"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("proof: values.yaml back as it was, byte for byte: yes"),
        "{stdout}"
    );
    assert!(
        leftovers(&scratch.0).is_empty(),
        "left running: {:?}",
        leftovers(&scratch.0)
    );
}

/// `lab up` leaves a lab to try things on; `lab status` reads it (real
/// allocations from the simulator's calls); `lab down` leaves nothing.
#[test]
fn up_status_down() {
    let scratch = Scratch::new();
    let env = [("OPSCTL_LAB_NET", "127.78.4")];
    let up = opsctl_env(&scratch.0, &["lab", "up", "--dir", "lab"], &env);
    assert_eq!(up.code, 0, "{}", up.dump());
    assert!(scratch.0.join("lab/inventory.yaml").exists());
    // Calls get going within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s = opsctl_env(&scratch.0, &["lab", "status", "--dir", "lab"], &env);
        let busy = s
            .stdout
            .lines()
            .skip(1)
            .filter(|l| {
                l.split_whitespace()
                    .nth(5)
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
            .count();
        if busy > 0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status.code, 0, "{}", status.dump());
    let rows: Vec<&str> = status.stdout.lines().collect();
    assert_eq!(rows.len(), 4, "{}", status.dump());
    for (i, row) in rows[1..].iter().enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &cells[..5],
            [format!("node-{}", i + 1).as_str(), "lab", "relayd", "yes", "up"],
            "{row}"
        );
        assert!(cells[5].parse::<u64>().is_ok(), "allocations are read: {row}");
        assert_eq!(cells[6], "advertised", "{row}");
    }
    let total: u64 = rows[1..]
        .iter()
        .filter_map(|r| r.split_whitespace().nth(5)?.parse::<u64>().ok())
        .sum();
    assert!(
        total > 0,
        "the simulator's calls show as allocations\n{}",
        status.dump()
    );
    down_leaves_nothing(&scratch, "127.78.4");
}

/// `lab down` on the lab in `scratch` (on network `net`) ends every
/// process it started and frees every port.
fn down_leaves_nothing(scratch: &Scratch, net: &str) {
    let down = opsctl_env(
        &scratch.0,
        &["lab", "down", "--dir", "lab"],
        &[("OPSCTL_LAB_NET", net)],
    );
    assert_eq!(down.code, 0, "{}", down.dump());
    assert!(
        leftovers(&scratch.0).is_empty(),
        "left running: {:?}",
        leftovers(&scratch.0)
    );
    assert!(ports_free(net), "a lab port is still bound");
}

/// `lab up --relays N` makes a lab of N relays, all in service; its
/// service control knows exactly those.
#[test]
fn a_lab_of_five_relays() {
    let scratch = Scratch::new();
    let env = [("OPSCTL_LAB_NET", "127.78.5")];
    let up = opsctl_env(
        &scratch.0,
        &["lab", "up", "--dir", "lab", "--relays", "5", "--calls", "2"],
        &env,
    );
    assert_eq!(up.code, 0, "{}", up.dump());
    assert!(
        up.stderr.contains("5 relays on 127.78.5.1 to 127.78.5.5"),
        "{}",
        up.dump()
    );
    let status = opsctl_env(&scratch.0, &["lab", "status", "--dir", "lab"], &env);
    assert_eq!(status.code, 0, "{}", status.dump());
    let rows: Vec<&str> = status.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{}", status.dump());
    assert!(
        rows[4].starts_with("node-5 ") && rows[4].contains(" up "),
        "{}",
        status.dump()
    );
    let none = opsctl_env(
        &scratch.0,
        &["lab", "service", "--dir", "lab", "node-6", "status"],
        &env,
    );
    assert_ne!(none.code, 0, "{}", none.dump());
    assert!(
        none.stderr.contains("the lab has node-1 to node-5"),
        "{}",
        none.dump()
    );
    let too_many = opsctl_env(
        &scratch.0,
        &["lab", "up", "--dir", "other", "--relays", "251"],
        &env,
    );
    assert_ne!(too_many.code, 0);
    assert!(
        too_many.stderr.contains("a lab has 1 to 250 relays, not 251"),
        "{}",
        too_many.dump()
    );
    // A running lab keeps its size: a smaller one would leave relays running unseen.
    let resize = opsctl_env(&scratch.0, &["lab", "up", "--dir", "lab", "--relays", "3"], &env);
    assert_ne!(resize.code, 0, "{}", resize.dump());
    assert!(resize.stderr.contains("is up with 5 relays"), "{}", resize.dump());
    assert!(
        !scratch.0.join("other/net").exists(),
        "a refused lab wrote nothing"
    );
    down_leaves_nothing(&scratch, "127.78.5");
}

/// One relay's metrics page, read as a scraper does.
fn scrape(ip: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((ip, 9641)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {ip}\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    page
}

/// The sum of a metric's samples whose line starts with `prefix`.
fn total(page: &str, prefix: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The lab's relayds serve metrics while its calls run, and `opsctl
/// status` reads the allocations from them with `via: prometheus`.
#[test]
fn the_lab_s_relays_serve_metrics_that_status_reads_while_calls_run() {
    let scratch = Scratch::new();
    let net = "127.78.6";
    let env = [("OPSCTL_LAB_NET", net)];
    let up = opsctl_env(&scratch.0, &["lab", "up", "--dir", "lab", "--calls", "6"], &env);
    assert_eq!(up.code, 0, "{}", up.dump());
    let ips: Vec<String> = (1..=3).map(|i| format!("{net}.{i}")).collect();

    // Calls come and go: within 20 s, some relay holds an allocation and
    // every page counts what was relayed so far, never less than before.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut relayed = 0;
    let mut held = 0;
    while Instant::now() < deadline && (held == 0 || relayed == 0) {
        let pages: Vec<String> = ips.iter().map(|ip| scrape(ip)).collect();
        held = pages.iter().map(|p| total(p, "turn_total_allocations{")).sum();
        let now: u64 = pages
            .iter()
            .map(|p| total(p, "relayd_relayed_packets_total{"))
            .sum();
        assert!(now >= relayed, "relayed packets went down: {relayed} then {now}");
        relayed = now;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        held > 0 && relayed > 0,
        "no call seen in 20 s: {held} allocations, {relayed} packets"
    );

    // The same lab read through its metrics instead of its status ports.
    let inventory = std::fs::read_to_string(scratch.0.join("lab/inventory.yaml")).unwrap();
    let mut via_prometheus = inventory.clone();
    for ip in &ips {
        via_prometheus = via_prometheus.replace(
            &format!("stats: {{addr: '{ip}:33000', read_on: local}}"),
            &format!("stats: {{via: prometheus, url: 'http://{ip}:9641/metrics'}}"),
        );
    }
    assert_eq!(
        via_prometheus.matches("via: prometheus").count(),
        3,
        "{via_prometheus}"
    );
    scratch.write("lab/prometheus.yaml", &via_prometheus);
    let status = opsctl_env(
        &scratch.0,
        &["-i", "lab/prometheus.yaml", "status", "--output", "json"],
        &env,
    );
    assert_eq!(status.code, 0, "{}", status.dump());
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let rows = doc.as_array().unwrap_or_else(|| panic!("{}", status.stdout));
    assert_eq!(rows.len(), 3, "{}", status.stdout);
    for r in rows {
        assert!(
            r["allocations"].as_u64().is_some() && r["healthy"] == true,
            "not read from the metrics: {r}"
        );
    }
    down_leaves_nothing(&scratch, net);
}

/// Runs `opsctl ARGS` in `dir` for about `secs` seconds, then interrupts
/// it as Ctrl-C would: its exit status and what it printed.
fn run_then_interrupt(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    secs: u64,
) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsctl"));
    cmd.current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(secs));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `status --watch` without a terminal: one table per interval, each relay's
/// change since the refresh before, its drain mode as it changes, and a
/// clean end on Ctrl-C.
#[test]
fn status_watch_shows_each_refresh_until_interrupted() {
    let scratch = Scratch::new();
    let net = "127.78.7";
    let env = [("OPSCTL_LAB_NET", net)];
    let up = opsctl_env(&scratch.0, &["lab", "up", "--dir", "lab", "--calls", "4"], &env);
    assert_eq!(up.code, 0, "{}", up.dump());

    // One relay's own drain mode on: the watch shows it.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"drain_enable", (format!("{net}.2").as_str(), 33000))
        .unwrap();

    let (code, text) = run_then_interrupt(
        &scratch.0,
        &["-i", "lab/inventory.yaml", "status", "--watch", "1s"],
        &env,
        4,
    );
    assert_eq!(code, 0, "Ctrl-C ends a watch cleanly\n{text}");
    let tables: Vec<&str> = text.split("opsctl status, every 1s: read at ").skip(1).collect();
    assert!(tables.len() >= 3, "one table per second\n{text}");
    for t in &tables {
        assert!(t.contains("(Ctrl-C to stop)\nNODE "), "{t}");
        assert!(t.contains("DRAIN"), "{t}");
        let node2 = t
            .lines()
            .find(|l| l.starts_with("node-2 "))
            .unwrap_or_else(|| panic!("{t}"));
        assert!(
            node2.split_whitespace().any(|w| w == "yes"),
            "node-2 drains: {node2}"
        );
    }

    // As JSON lines: every refresh's change is the difference from the one before.
    let (code, text) = run_then_interrupt(
        &scratch.0,
        &[
            "-i",
            "lab/inventory.yaml",
            "status",
            "--watch",
            "1s",
            "--output",
            "json",
        ],
        &env,
        4,
    );
    assert_eq!(code, 0, "{text}");
    let refreshes: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(refreshes.len() >= 3, "{text}");
    assert!(
        refreshes[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("change").is_none())
    );
    for pair in refreshes.windows(2) {
        assert!(pair[1]["at"].as_u64() >= pair[0]["at"].as_u64(), "{pair:?}");
        for (then, now) in pair[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .zip(pair[1]["rows"].as_array().unwrap())
        {
            if let (Some(a), Some(b)) = (then["allocations"].as_i64(), now["allocations"].as_i64()) {
                assert_eq!(now["change"].as_i64(), Some(b - a), "{now}");
            }
        }
    }
    socket
        .send_to(b"drain_disable", (format!("{net}.2").as_str(), 33000))
        .unwrap();
    down_leaves_nothing(&scratch, net);
}

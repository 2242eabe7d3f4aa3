//! The lab's relays: relayd processes on loopback addresses, started and
//! stopped by pid, each in a process group of its own so a Ctrl-C in the
//! terminal reaches only what the lab decides to stop.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How many relays a lab runs unless `lab up --relays` says otherwise.
pub const RELAYS: usize = 3;
/// The most: each relay has an address of its own in the lab's /24.
pub const MAX_RELAYS: usize = 250;
/// The TURN port of every lab relay (each has an address of its own).
pub const TURN_PORT: u16 = 3478;
/// restund's default status port, on each relay's own address.
pub const STATUS_PORT: u16 = 33000;
/// relayd's Prometheus endpoint on each relay's own address (coturn's
/// default port, which opsctl's `via: prometheus` reader assumes).
pub const METRICS_PORT: u16 = 9641;
/// The simulator's credentials on every lab relay.
pub const USER: &str = "caller";
pub const PASSWORD: &str = "lab-only-password";

/// How many relays the lab in `dir` has (written when it comes up).
pub fn count(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("relays"))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .filter(|n| (1..=MAX_RELAYS).contains(n))
        .unwrap_or(RELAYS)
}

/// Records how many relays the lab has (see [`count`]).
pub fn choose_count(dir: &Path, n: usize) -> anyhow::Result<()> {
    if !(1..=MAX_RELAYS).contains(&n) {
        bail!("a lab has 1 to {MAX_RELAYS} relays, not {n}");
    }
    std::fs::write(dir.join("relays"), format!("{n}\n"))?;
    Ok(())
}

/// `node-1` .. `node-N`.
pub fn name(i: usize) -> String {
    format!("node-{}", i + 1)
}

/// Each relay's own loopback address: nothing outside this machine, and no
/// clash with a relay the machine may already run on 127.0.0.1. The first
/// three octets are the lab's network, chosen when it comes up (127.78.0 by
/// default, `OPSCTL_LAB_NET` to run two labs at once) and kept in its directory.
pub fn ip(dir: &Path, i: usize) -> Ipv4Addr {
    let net = std::fs::read_to_string(dir.join("net")).unwrap_or_default();
    let octets: Vec<u8> = net.trim().split('.').filter_map(|o| o.parse().ok()).collect();
    let [a, b, c] = octets[..] else {
        return Ipv4Addr::new(127, 78, 0, u8::try_from(i + 1).unwrap_or(1));
    };
    Ipv4Addr::new(a, b, c, u8::try_from(i + 1).unwrap_or(1))
}

/// Records the lab's network in its directory (see [`ip`]).
pub fn choose_net(dir: &Path) -> anyhow::Result<()> {
    let net = std::env::var("OPSCTL_LAB_NET").unwrap_or_else(|_| "127.78.0".into());
    let octets: Vec<u8> = net.split('.').filter_map(|o| o.parse().ok()).collect();
    if octets.len() != 3 || octets[0] != 127 {
        bail!("OPSCTL_LAB_NET `{net}` must be three octets of a loopback address, like 127.78.0");
    }
    std::fs::write(dir.join("net"), format!("{net}\n"))?;
    Ok(())
}

pub fn index(dir: &Path, node: &str) -> anyhow::Result<usize> {
    let n = count(dir);
    node.strip_prefix("node-")
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| (1..=n).contains(i))
        .map(|i| i - 1)
        .with_context(|| format!("no lab relay `{node}`; the lab has node-1 to node-{n}"))
}

fn pid_file(dir: &Path, i: usize) -> PathBuf {
    dir.join("run").join(format!("{}.pid", name(i)))
}

/// The pid of a running process recorded in `file`, if it still runs.
pub fn running(file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

pub fn alive(pid: u32) -> bool {
    // Signal 0 checks without touching the process; a zombie has no /proc/PID/stat state R/S.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("");
    !stat.is_empty() && state != "Z"
}

/// The pid of relay `i`, if it runs.
pub fn pid(dir: &Path, i: usize) -> Option<u32> {
    running(&pid_file(dir, i))
}

/// Starts relay `i` (a no-op if it runs) and waits until its status port answers.
pub fn start(dir: &Path, i: usize) -> anyhow::Result<u32> {
    if let Some(p) = pid(dir, i) {
        return Ok(p);
    }
    std::fs::create_dir_all(dir.join("run"))?;
    std::fs::create_dir_all(dir.join("log"))?;
    let exe = std::env::current_exe().context("cannot find the opsctl executable")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log").join(format!("{}.log", name(i))))?;
    let ip = ip(dir, i);
    let child = Command::new(exe)
        .args(["lab", "relayd", "--"])
        .args([
            "--listen-udp",
            &format!("{ip}:{TURN_PORT}"),
            "--listen-tcp",
            &format!("{ip}:{TURN_PORT}"),
        ])
        .args([
            "--relay-ip",
            &ip.to_string(),
            "--realm",
            "lab",
            "--allow-loopback-peers",
        ])
        .args(["--status", &format!("{ip}:{STATUS_PORT}")])
        .args(["--metrics", &format!("{ip}:{METRICS_PORT}")])
        .env("RELAYD_USERS", format!("{USER}={PASSWORD}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", name(i)))?;
    let pid = child.id();
    std::fs::write(pid_file(dir, i), format!("{pid}\n"))?;
    // Reaped by whoever waits: the lab does not keep the Child, the kernel
    // re-parents it when this process ends.
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !alive(pid) {
            bail!(
                "{} exited at once; see {}",
                name(i),
                dir.join("log").join(format!("{}.log", name(i))).display()
            );
        }
        if status_answers(ip) {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not answer on its status port within 10s", name(i))
}

fn status_answers(ip: Ipv4Addr) -> bool {
    let Ok(sock) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    if sock.send_to(b"drain_state", (ip, STATUS_PORT)).is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    sock.recv(&mut buf).is_ok()
}

/// Stops relay `i` by pid: SIGTERM, then SIGKILL if it lingers.
pub fn stop(dir: &Path, i: usize) -> anyhow::Result<()> {
    let file = pid_file(dir, i);
    if let Some(pid) = running(&file) {
        terminate(pid)?;
    }
    let _ = std::fs::remove_file(file);
    Ok(())
}

/// SIGTERM, a grace of five seconds, then SIGKILL.
pub fn terminate(pid: u32) -> anyhow::Result<()> {
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .stderr(Stdio::null())
            .status()
    };
    signal("-TERM").context("cannot run kill")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        signal("-KILL").context("cannot run kill")?;
    }
    Ok(())
}

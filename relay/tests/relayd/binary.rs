//! The `relayd` binary itself: config file plus flags, the addresses it
//! logs, serving, and a graceful exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use relay::client::Client;

/// A `relayd` child process; killed if the test fails before it stops it.
/// The interop tests start theirs with it too.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub(crate) fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_relayd"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first logged line containing `what`, waiting up to 10 s.
    pub(crate) fn wait_for(&mut self, what: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(what)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            if line.contains(what) {
                return line;
            }
        }
        panic!(
            "relayd never logged {what:?}; it logged:\n{}",
            self.seen.join("\n")
        );
    }

    /// The `addr=` of the line announcing `what`.
    pub(crate) fn addr(&mut self, what: &str) -> SocketAddr {
        let line = self.wait_for(what);
        let addr = line
            .split("addr=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next());
        addr.and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// Waits (bounded) for the process to exit on its own.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "relayd did not exit within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn serves_from_a_config_file_and_exits_cleanly_on_sigterm() {
    let config = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("relayd-binary-test.yaml");
    std::fs::write(
        &config,
        "realm: lab.example\nrelay: [{bind: 127.0.0.1}]\nusers: {alice: alice-pw}\nallow_loopback_peers: true\n",
    )
    .unwrap();
    let mut relayd = Running::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen-udp=127.0.0.1:0",
        "--listen-tcp=127.0.0.1:0",
        "--status=127.0.0.1:0",
    ]);
    let udp = relayd.addr("serving TURN over UDP");
    let tcp = relayd.addr("serving TURN over TCP");
    let status = relayd.addr("serving the status port");

    let mut client = Client::udp_from(crate::harness::loopback(), udp).await.unwrap();
    let allocation = client.allocate("alice", "alice-pw", None).await.unwrap();
    assert!(allocation.relayed.ip().is_loopback());
    let mut over_tcp = Client::tcp(tcp).await.unwrap();
    over_tcp.binding().await.unwrap();

    let socket = tokio::net::UdpSocket::bind(crate::harness::loopback())
        .await
        .unwrap();
    socket.send_to(b"turnstats", status).await.unwrap();
    let mut buf = [0; 1024];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let stats = relay::stats::parse_turnstats(
        std::str::from_utf8(&buf[..n]).unwrap(),
        std::time::SystemTime::now(),
    );
    assert_eq!(stats.unwrap().allocations, 1);

    let pid = relayd.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    relayd.wait_for("SIGHUP");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(relayd.wait().success());
    relayd.wait_for("shut down");
}

#[test]
fn refuses_to_start_without_a_realm_with_exit_status_2() {
    let mut relayd = Running::start(&["--relay-ip=127.0.0.1", "--status=off", "--listen-udp=127.0.0.1:0"]);
    assert_eq!(relayd.wait().code(), Some(2));
    let line = relayd.wait_for("error");
    assert_eq!(
        line,
        "relayd: error: no realm: set `realm` in the config file or pass --realm"
    );
}

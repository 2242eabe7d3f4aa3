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

    /// Sends the process a signal (`-HUP`, `-TERM`) with kill(1).
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid}: {sent}");
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

    relayd.signal("-HUP");
    relayd.wait_for("SIGHUP");
    relayd.signal("-TERM");
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

#[tokio::test]
async fn sighup_reloads_the_certificate_and_logs_a_refusal_with_its_reason() {
    use crate::certs::{CURRENT, Ca, SERVER_NAME, install};
    use crate::harness::fresh_dir;
    let ca = Ca::new("Lab CA");
    let first = ca.leaf(CURRENT);
    let bundle = fresh_dir("binary-sighup").join("relayd.pem");
    install(&bundle, &first.bundle(&ca));
    let mut relayd = Running::start(&[
        "--realm=lab.example",
        "--relay-ip=127.0.0.1",
        "--user=alice=alice-pw",
        "--listen-udp=127.0.0.1:0",
        "--listen-tls=127.0.0.1:0",
        "--status=off",
        "--cert",
        bundle.to_str().unwrap(),
    ]);
    relayd.wait_for("serving certificate CN=turn.lab.example, issued by CN=Lab CA");
    let tls = relayd.addr("serving TURN over TLS");
    let connect = async || {
        let name = rustls_pki_types::ServerName::try_from(SERVER_NAME).unwrap();
        Client::tls(tls, name, ca.client_config()).await.unwrap()
    };
    let served = async || relay::pem::fingerprint(connect().await.server_certificate().unwrap());
    assert_eq!(served().await, first.fingerprint());
    let mut allocated = connect().await;
    allocated.allocate("alice", "alice-pw", None).await.unwrap();

    let second = ca.leaf(CURRENT);
    install(&bundle, &second.bundle(&ca));
    relayd.signal("-HUP");
    let line = relayd.wait_for("certificate reloaded");
    assert!(line.contains(&second.fingerprint()), "{line}");
    assert_eq!(served().await, second.fingerprint());

    install(&bundle, &format!("{}{}", ca.leaf(CURRENT).pem, ca.pem));
    relayd.signal("-HUP");
    let line = relayd.wait_for("certificate not reloaded");
    assert!(
        line.contains("holds no private key")
            && line.contains("still serving CN=turn.lab.example")
            && line.contains(&second.fingerprint()),
        "{line}"
    );
    assert_eq!(served().await, second.fingerprint());
    // The allocation made before both reloads is still there.
    allocated.refresh(600).await.unwrap();
}

#[test]
fn refuses_to_start_with_a_bad_certificate_naming_the_file() {
    use crate::certs::{Ca, EXPIRED};
    use crate::harness::fresh_dir;
    let ca = Ca::new("Lab CA");
    let bundle = fresh_dir("binary-expired").join("relayd.pem");
    std::fs::write(&bundle, ca.leaf(EXPIRED).bundle(&ca)).unwrap();
    let mut relayd = Running::start(&[
        "--realm=lab.example",
        "--relay-ip=127.0.0.1",
        "--listen-tls=127.0.0.1:0",
        "--status=off",
        "--cert",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(relayd.wait().code(), Some(2));
    let line = relayd.wait_for("error");
    assert_eq!(
        line,
        format!(
            "relayd: error: cannot serve TLS: {}: the certificate (CN=turn.lab.example) expired on Jan  1 00:00:00 2020 +00:00",
            bundle.display()
        )
    );
    let mut relayd = Running::start(&[
        "--realm=lab.example",
        "--relay-ip=127.0.0.1",
        "--listen-tls=127.0.0.1:0",
        "--status=off",
    ]);
    assert_eq!(relayd.wait().code(), Some(2));
    assert_eq!(
        relayd.wait_for("error"),
        "relayd: error: TLS listeners are given but no certificate: set `tls.cert` in the config file or pass --cert"
    );
}

#[test]
fn with_tls_name_it_refuses_to_start_with_a_certificate_for_another_name() {
    use crate::certs::{CURRENT, Ca};
    use crate::harness::fresh_dir;
    let ca = Ca::new("Lab CA");
    let dir = fresh_dir("binary-tls-name");
    let bundle = dir.join("relayd.pem");
    std::fs::write(&bundle, ca.leaf(CURRENT).bundle(&ca)).unwrap();
    let root = dir.join("ca.pem");
    std::fs::write(&root, &ca.pem).unwrap();
    let mut relayd = Running::start(&[
        "--realm=lab.example",
        "--relay-ip=127.0.0.1",
        "--listen-tls=127.0.0.1:0",
        "--status=off",
        "--tls-name=turn.other.example",
        "--tls-ca",
        root.to_str().unwrap(),
        "--cert",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(relayd.wait().code(), Some(2));
    assert_eq!(
        relayd.wait_for("error"),
        format!(
            "relayd: error: cannot serve TLS: {}: clients connecting to turn.other.example would refuse the certificate (CN=turn.lab.example): name mismatch; \
             fix the certificate (its names, or the intermediates after it), or the names given with --tls-name",
            bundle.display()
        )
    );
}

/// `relayd --check-config` with these arguments: exit status, stdout, stderr.
fn check_config(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relayd"))
        .arg("--check-config")
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_shipped_example_config_checks_clean_and_says_what_it_would_serve() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/relayd.yaml");
    let (code, stdout, stderr) = check_config(&["-c", example]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "relayd: {example}: ok
  realm: turn.example.org
  listen: udp 192.0.2.10:3478; tcp 192.0.2.10:3478; tls -
  relay: 192.0.2.10 (advertised as 203.0.113.10)
  status: 127.0.0.1:33000
  metrics: http://127.0.0.1:9641/metrics
  credentials: 1 static users, 2 shared secrets
  quota: 10 per user, 10000 in all; lifetime 600 s by default, 3600 s at most
  buffers: listening 4194304 bytes, relayed 1048576 bytes
"
        )
    );
    // Flags beside the file are checked with it.
    let (code, stdout, _) = check_config(&["-c", example, "--status=off", "--drain"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("  status: off\n")
            && stdout.ends_with("  starts draining: new allocations refused\n"),
        "{stdout}"
    );
}

#[test]
fn a_bad_config_is_refused_with_its_file_line_and_reason() {
    let dir = crate::harness::fresh_dir("check-config");
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let refused = |path: &str| {
        let (code, stdout, stderr) = check_config(&["-c", path]);
        assert_eq!(code, Some(2), "{stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        stderr
    };
    let base = "realm: r\nrelay: [{bind: 192.0.2.1}]\nusers: {a: b}\n";

    let wildcard = file(
        "wildcard.yaml",
        "realm: r\nusers: {a: b}\nrelay:\n  - bind: 192.0.2.1\n  - bind: 0.0.0.0\n",
    );
    assert_eq!(
        refused(&wildcard),
        format!(
            "relayd: error: {wildcard}:5: relay address `0.0.0.0` is a wildcard; give the specific address relayed sockets bind to\n"
        )
    );
    let status = file("status.yaml", &format!("{base}status: localhost:33000\n"));
    assert_eq!(
        refused(&status),
        format!(
            "relayd: error: {status}:4: status address `localhost:33000` is not IP:PORT or `off`: invalid socket address syntax\n"
        )
    );
    let buffers = file("buffers.yaml", &format!("{base}buffers:\n  listen: 4 MB\n"));
    assert!(
        refused(&buffers).starts_with(&format!(
            "relayd: error: {buffers}:5: `buffers.listen`: `4 MB`: the unit `MB`"
        )),
        "{}",
        refused(&buffers)
    );
    let typo = file("typo.yaml", &format!("{base}quota: {{users: 3}}\n"));
    let why = refused(&typo);
    assert!(
        why.contains(&typo) && why.contains("users") && why.contains("line 4"),
        "{why}"
    );
    let tls = file(
        "tls.yaml",
        &format!("{base}listen: {{tls: ['127.0.0.1:5349']}}\ntls:\n  cert: /nonexistent.pem\n"),
    );
    assert_eq!(
        refused(&tls),
        format!(
            "relayd: error: {tls}:6: cannot serve TLS: cannot read /nonexistent.pem: No such file or directory (os error 2)\n"
        )
    );
    let no_realm = file("no-realm.yaml", "relay: [{bind: 192.0.2.1}]\nusers: {a: b}\n");
    assert_eq!(
        refused(&no_realm),
        format!("relayd: error: {no_realm}: no realm: set `realm` in the config file or pass --realm\n")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One `GET` of `path` from relayd's metrics endpoint: status line and body.
async fn scrape(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("relayd answers a scrape within 5 s")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .expect("a Content-Length");
    assert_eq!(length, body.len(), "{response}");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample `line` (name and labels) on a metrics page.
fn sample(page: &str, line: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(line).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{line}` in\n{page}"))
}

#[tokio::test]
async fn metrics_count_what_clients_did_and_opsctl_s_reader_reads_them() {
    use crate::harness::Peer;
    let mut relayd = Running::start(&[
        "--realm=lab.example",
        "--relay-ip=127.0.0.1",
        "--user=alice=alice-pw",
        "--allow-loopback-peers",
        "--listen-udp=127.0.0.1:0",
        "--status=off",
        "--metrics=127.0.0.1:0",
    ]);
    let udp = relayd.addr("serving TURN over UDP");
    let metrics = relayd.addr("serving metrics");
    let (status, before) = scrape(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(sample(&before, "turn_total_allocations{type=\"UDP\"}"), 0);

    let mut client = Client::udp_from(crate::harness::loopback(), udp).await.unwrap();
    client.binding().await.unwrap();
    let relayed = client.allocate("alice", "alice-pw", None).await.unwrap().relayed;
    let mut stranger = Client::udp_from(crate::harness::loopback(), udp).await.unwrap();
    let refused = stranger.allocate("alice", "wrong-pw", None).await;
    assert!(refused.is_err());
    let peer = Peer::new().await;
    client.create_permission(&[peer.addr]).await.unwrap();
    client.send(peer.addr, &[7; 40]).await.unwrap();
    assert_eq!(peer.recv().await.1, relayed);

    let (_, page) = scrape(metrics, "/metrics?from=test").await;
    assert_eq!(sample(&page, "turn_total_allocations{type=\"UDP\"}"), 1);
    assert_eq!(sample(&page, "relayd_allocations_made_total"), 1);
    assert_eq!(sample(&page, "relayd_stun_bindings_total"), 1);
    assert_eq!(
        sample(&page, "relayd_relayed_bytes_total{direction=\"to_peer\"}"),
        40
    );
    assert_eq!(
        sample(&page, "relayd_relayed_packets_total{direction=\"to_peer\"}"),
        1
    );
    assert_eq!(sample(&page, "relayd_draining"), 0);
    // Each client's first Allocate is challenged; the stranger's signed one is refused too.
    assert_eq!(
        sample(
            &page,
            "relayd_allocations_refused_total{code=\"401\",reason=\"Unauthorized\"}"
        ),
        3
    );
    let read = relay::stats::parse_prometheus(&page, std::time::SystemTime::now()).unwrap();
    assert_eq!(read.allocations, 1);

    assert_eq!(scrape(metrics, "/").await.0, "HTTP/1.1 404 Not Found");
    relayd.signal("-TERM");
    assert!(relayd.wait().success());
}

/// `relayd --man` is relayd(1): every flag `--help` lists, then the files,
/// signals and exit statuses a deployment needs.
#[test]
fn the_manual_page_documents_every_flag_and_the_deployment() {
    let run = |flag: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_relayd"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let (page, help) = (run("--man"), run("--help"));
    assert!(page.contains("\n.TH relayd 1 "), "{page}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "FILES",
        "SIGNALS",
        "\"EXIT STATUS\"",
        "\"SEE ALSO\"",
    ] {
        assert!(
            page.contains(&format!("\n.SH {section}\n")),
            "no {section}:\n{page}"
        );
    }
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches([',', '.', ')']))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    assert!(flags.len() > 20, "{help}");
    for flag in flags {
        // roff escapes each dash of a flag.
        assert!(
            page.contains(&format!("\\-\\-{}", flag.replace('-', "\\-"))),
            "--{flag} is not in the page"
        );
    }
    for needed in ["/etc/relayd/relayd.yaml", "SIGHUP", "low\\-ports.conf"] {
        assert!(page.contains(needed), "no {needed}:\n{page}");
    }
}

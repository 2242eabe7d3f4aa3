//! coturn's own test tools against the real `relayd` binary:
//! `turnutils_stunclient` gets a binding answer, and `turnutils_uclient`
//! allocates, binds channels and relays its messages client to client over
//! UDP, TCP and TLS, with static and with time-limited (`-W`) credentials.
//!
//! uclient runs with `-c` (no RTCP allocations, EVEN-PORT with R=0 on
//! about half of its Allocates), and once without: then each client asks
//! for an RTP and RTCP pair, an even port with the next one reserved
//! (EVEN-PORT with R=1) and claimed by a second Allocate with the
//! RESERVATION-TOKEN the first got.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::binary::Running;
use crate::harness::fresh_dir;

const UCLIENT: &str = "/usr/bin/turnutils_uclient";
const STUNCLIENT: &str = "/usr/bin/turnutils_stunclient";
/// uclient's message size (`-l`).
const MESSAGE_LEN: u64 = 120;

/// relayd from a config file: user alice, two shared secrets, TLS with a
/// lab CA's certificate.
struct Relayd {
    process: Running,
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
    status: SocketAddr,
    _dir: Dir,
}

/// Removes the directory when dropped.
struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn relayd() -> Relayd {
    let dir = Dir(fresh_dir("relayd-turnutils"));
    let config = dir.0.join("relayd.yaml");
    std::fs::write(
        &config,
        "realm: lab.example\nrelay: [{bind: 127.0.0.1}]\nusers: {alice: alice-pw}\n\
         auth_secrets: [{key: 0, secret: old-secret}, {key: 1, secret: new-secret}]\n\
         allow_loopback_peers: true\n",
    )
    .unwrap();
    let ca = crate::certs::Ca::new("Lab CA");
    let bundle = dir.0.join("relayd.pem");
    std::fs::write(&bundle, ca.leaf(crate::certs::CURRENT).bundle(&ca)).unwrap();
    let mut process = Running::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen-udp=127.0.0.1:0",
        "--listen-tcp=127.0.0.1:0",
        "--listen-tls=127.0.0.1:0",
        "--cert",
        bundle.to_str().unwrap(),
        "--status=127.0.0.1:0",
    ]);
    Relayd {
        udp: process.addr("serving TURN over UDP"),
        tcp: process.addr("serving TURN over TCP"),
        tls: process.addr("serving TURN over TLS"),
        status: process.addr("serving the status port"),
        process,
        _dir: dir,
    }
}

impl Relayd {
    /// `turnstats`, parsed as opsctl parses restund's.
    fn turnstats(&self) -> relay::Stats {
        let socket = std::net::UdpSocket::bind(crate::harness::loopback()).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        socket.send_to(b"turnstats", self.status).unwrap();
        let mut buf = [0; 1024];
        let n = socket.recv(&mut buf).expect("turnstats answers within 2 s");
        relay::stats::parse_turnstats(std::str::from_utf8(&buf[..n]).unwrap(), SystemTime::now()).unwrap()
    }
}

impl Relayd {
    /// relayd's own counters agree with what uclient saw: at least
    /// `allocations` made and `messages` of uclient's size relayed.
    fn relayed_at_least(&self, allocations: u64, messages: u64) {
        let stats = self.turnstats();
        assert!(stats.total.is_some_and(|t| t >= allocations), "{stats:?}");
        let bytes = messages * MESSAGE_LEN;
        assert!(stats.bytes_tx.is_some_and(|b| b >= bytes), "{stats:?}");
    }
}

/// What a tool printed and how it ended.
struct Ran {
    status: ExitStatus,
    output: String,
}

/// Kills the tool if the test fails while it runs.
struct Tool(Child);

impl Drop for Tool {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs a coturn tool for at most `limit`; stdout and stderr together.
fn run(program: &str, args: &[&str], limit: Duration) -> Ran {
    assert!(
        std::path::Path::new(program).exists(),
        "{program} is missing: run `apt-get install coturn` (scripts/test.sh installs it)"
    );
    let mut tool = Tool(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(tool.0.stdout.take().unwrap()));
    let stderr = drain(Box::new(tool.0.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = tool.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = tool.0.kill();
            let _ = tool.0.wait();
            let output = stdout.join().unwrap() + &stderr.join().unwrap();
            panic!("{program} {args:?} ran longer than {limit:?}; it printed:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = stdout.join().unwrap() + &stderr.join().unwrap();
    Ran { status, output }
}

/// uclient's closing `tot_send_msgs=N, tot_recv_msgs=M` line.
fn totals(output: &str) -> Option<(u64, u64)> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.contains("start_mclient: tot_send_msgs="))?;
    let field = |name: &str| -> Option<u64> {
        let rest = line.split(name).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    Some((field("tot_send_msgs=")?, field("tot_recv_msgs=")?))
}

/// Runs uclient client-to-client (`-y`), `clients` sessions of `messages`
/// each, without RTCP allocations (`-c`), and checks it ran clean: exit 0,
/// no error, its messages relayed.
fn uclient(server: SocketAddr, extra: &[&str], clients: u64, messages: u64) -> (u64, u64) {
    uclient_with(server, &[&["-c"], extra].concat(), clients, messages)
}

/// [`uclient`] with only the flags given (`-c` or not).
fn uclient_with(server: SocketAddr, extra: &[&str], clients: u64, messages: u64) -> (u64, u64) {
    let port = server.port().to_string();
    let (m, n) = (clients.to_string(), messages.to_string());
    let len = MESSAGE_LEN.to_string();
    let mut args = vec!["-y", "-p", &port, "-m", &m, "-n", &n, "-l", &len];
    args.extend_from_slice(extra);
    args.push("127.0.0.1");
    let ran = run(UCLIENT, &args, Duration::from_secs(60));
    let output = &ran.output;
    assert!(ran.status.success(), "uclient {args:?}: {}\n{output}", ran.status);
    // A 437 is uclient meeting its own earlier allocation on a reused port:
    // it opens another socket and tries again. Over TLS, uclient draws each
    // connection's method at random: its TLS 1.0 and 1.1 methods (ctx 1 and
    // 2) are refused, since relayd speaks TLS 1.2 and 1.3 only, and uclient
    // draws again. Anything else is an error.
    let old_tls = |l: &str| {
        args.contains(&"-S")
            && (l.contains("tls_connect: cannot connect: rc=-1, ctx=1")
                || l.contains("tls_connect: cannot connect: rc=-1, ctx=2")
                || l.ends_with("SSL routines::sslv3 alert handshake failure (1)"))
    };
    let errors = output.lines().filter(|l| {
        (l.to_ascii_lowercase().contains("error") || l.contains("cannot connect"))
            && !l.contains("error 437")
            && !old_tls(l)
    });
    assert_eq!(errors.count(), 0, "uclient {args:?} reported an error:\n{output}");
    let (sent, received) = totals(output).unwrap_or_else(|| panic!("no totals from uclient:\n{output}"));
    // Clients pair up and each sends `messages` (a lone client gets a partner).
    assert!(sent >= clients * messages, "{output}");
    // Loopback loses nothing unless a socket buffer overflows; allow a little.
    assert!(received > 0 && received * 10 >= sent * 9, "{output}");
    (sent, received)
}

#[test]
fn stunclient_gets_a_binding_answer() {
    let relayd = relayd();
    let port = relayd.udp.port().to_string();
    let ran = run(STUNCLIENT, &["-p", &port, "127.0.0.1"], Duration::from_secs(20));
    assert!(ran.status.success(), "{}\n{}", ran.status, ran.output);
    assert!(
        ran.output.contains("UDP reflexive addr: 127.0.0.1:"),
        "{}",
        ran.output
    );
    drop(relayd.process);
}

#[test]
fn uclient_relays_over_udp_with_a_static_user() {
    let relayd = relayd();
    let (_, received) = uclient(relayd.udp, &["-u", "alice", "-w", "alice-pw"], 4, 20);
    relayd.relayed_at_least(4, received);
}

/// Without `-c` each client allocates an RTP and RTCP pair: EVEN-PORT with
/// the R bit, then RESERVATION-TOKEN. No 508: relayd reserves the port.
#[test]
fn uclient_relays_over_rtp_and_rtcp_pairs_on_reserved_ports() {
    let relayd = relayd();
    let (_, received) = uclient_with(relayd.udp, &["-u", "alice", "-w", "alice-pw"], 4, 20);
    // uclient counts an RTP and an RTCP allocation as two of its sessions;
    // each pair is one Allocate with EVEN-PORT (R) and one with the token,
    // and a 508 would have been an error it printed.
    relayd.relayed_at_least(4, received);
}

#[test]
fn uclient_relays_over_tcp_with_a_static_user() {
    let relayd = relayd();
    let (_, received) = uclient(relayd.tcp, &["-t", "-u", "alice", "-w", "alice-pw"], 4, 20);
    relayd.relayed_at_least(4, received);
}

#[test]
fn uclient_relays_over_tls_with_a_static_user() {
    let relayd = relayd();
    // `-S` is TLS over TCP (uclient does not check the certificate).
    let (_, received) = uclient(relayd.tls, &["-t", "-S", "-u", "alice", "-w", "alice-pw"], 4, 20);
    relayd.relayed_at_least(4, received);
}

#[test]
fn uclient_relays_with_time_limited_credentials() {
    let relayd = relayd();
    // `-W` makes coturn REST API usernames (`<expiry>:carol`) from the secret.
    uclient(relayd.udp, &["-u", "carol", "-W", "old-secret"], 2, 10);
    uclient(relayd.tcp, &["-t", "-u", "carol", "-W", "new-secret"], 2, 10);
}

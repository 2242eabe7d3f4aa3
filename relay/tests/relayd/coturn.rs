//! A real coturn (Debian's `turnserver`) for interop tests: its own config,
//! database, pid file and log in a fresh directory, on free loopback ports,
//! killed and cleaned up when dropped; its admin CLI read with opsctl's own
//! `ps` parser.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use relay::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{LOCALHOST, REALM, fresh_dir, loopback};

const TURNSERVER: &str = "/usr/bin/turnserver";
const CLI_PASSWORD: &str = "cli-test-pw";
/// Relayed ports come from above Linux's ephemeral range (32768–60999), so
/// sockets bound to `:0` elsewhere in the tests never land in it.
const RELAY_PORTS: std::ops::Range<u16> = 61_000..65_000;
const RELAY_PORT_COUNT: u16 = 64;

/// How coturn checks credentials.
pub enum Auth<'a> {
    /// `lt-cred-mech` with static `user=NAME:PASSWORD` lines.
    Users(&'a [(&'a str, &'a str)]),
    /// `use-auth-secret` with these `static-auth-secret`s (coturn tries each).
    Secrets(&'a [&'a str]),
}

pub struct Coturn {
    child: Child,
    dir: PathBuf,
    /// The TURN listener, UDP and TCP on the same port.
    pub addr: SocketAddr,
    cli: SocketAddr,
}

impl Coturn {
    /// Starts coturn and waits (bounded) until it answers a binding request.
    pub async fn start(auth: Auth<'_>) -> Coturn {
        assert!(
            Path::new(TURNSERVER).exists(),
            "{TURNSERVER} is missing: run `apt-get install coturn` (scripts/test.sh installs it)"
        );
        let dir = fresh_dir("coturn");
        let port = free_port();
        let cli_port = free_port();
        let min_port = free_range();
        let mut conf = format!(
            "listening-ip=127.0.0.1\nlistening-port={port}\nrelay-ip=127.0.0.1\n\
             min-port={min_port}\nmax-port={max_port}\nrealm={REALM}\nallow-loopback-peers\n\
             no-tls\nno-dtls\nno-rfc5780\nuserdb={d}/turndb\n\
             cli-ip=127.0.0.1\ncli-port={cli_port}\ncli-password={CLI_PASSWORD}\n\
             pidfile={d}/turnserver.pid\nlog-file={d}/turnserver.log\nsimple-log\nno-stdout-log\n",
            max_port = min_port + RELAY_PORT_COUNT - 1,
            d = dir.display(),
        );
        match auth {
            Auth::Users(users) => {
                conf.push_str("lt-cred-mech\n");
                for (name, password) in users {
                    conf.push_str(&format!("user={name}:{password}\n"));
                }
            }
            Auth::Secrets(secrets) => {
                conf.push_str("use-auth-secret\n");
                for secret in secrets {
                    conf.push_str(&format!("static-auth-secret={secret}\n"));
                }
            }
        }
        let config = dir.join("turnserver.conf");
        std::fs::write(&config, conf).unwrap();
        // Its stderr only says the kernel has no SCTP; the log file has the rest.
        let child = Command::new(TURNSERVER)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut coturn = Coturn {
            child,
            dir,
            addr: SocketAddr::from((LOCALHOST, port)),
            cli: SocketAddr::from((LOCALHOST, cli_port)),
        };
        coturn.wait_ready().await;
        coturn
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("coturn exited with {status}; its log:\n{}", self.log());
            }
            let client = Client::udp_from(loopback(), self.addr).await.unwrap();
            if client
                .with_timeout(Duration::from_millis(300))
                .binding()
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "coturn did not answer within 10 s; its log:\n{}",
                self.log()
            );
        }
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
    }

    /// Logs into the admin CLI, runs `command`, returns its reply (prompt included).
    pub async fn cli(&self, command: &str) -> String {
        let talk = async {
            let mut stream = TcpStream::connect(self.cli).await.unwrap();
            let mut buf = Vec::new();
            read_until(&mut stream, &mut buf, b"password: ").await;
            stream
                .write_all(format!("{CLI_PASSWORD}\r\n").as_bytes())
                .await
                .unwrap();
            read_until(&mut stream, &mut buf, b"> ").await;
            stream
                .write_all(format!("{command}\r\n").as_bytes())
                .await
                .unwrap();
            let reply = read_until(&mut stream, &mut buf, b"\r\n> ").await;
            let _ = stream.write_all(b"quit\r\n").await;
            reply
        };
        tokio::time::timeout(Duration::from_secs(5), talk)
            .await
            .expect("coturn's CLI answers within 5 s")
    }

    /// `Total sessions` from `ps`, read as opsctl reads it.
    pub async fn sessions(&self) -> u64 {
        let ps = self.cli("ps").await;
        relay::stats::parse_coturn_ps(&ps, SystemTime::now())
            .unwrap_or_else(|e| panic!("{e}; the reply was:\n{ps}"))
            .allocations
    }

    /// Waits (up to 5 s) until coturn counts `n` sessions.
    pub async fn wait_sessions(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.sessions().await;
            if now == n {
                return;
            }
            assert!(Instant::now() < deadline, "coturn counts {now} sessions, not {n}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads into `buf` until it holds `end`; returns and removes what came up to it.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) -> String {
    loop {
        if let Some(at) = buf.windows(end.len()).position(|w| w == end) {
            let taken: Vec<u8> = buf.drain(..at + end.len()).collect();
            return String::from_utf8_lossy(&taken).into_owned();
        }
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "coturn's CLI closed; it sent {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A loopback port free for both TCP and UDP just now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind(loopback())
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if UdpSocket::bind(SocketAddr::from((LOCALHOST, port))).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both TCP and UDP in 100 tries");
}

/// The first of `RELAY_PORT_COUNT` consecutive UDP ports free just now.
fn free_range() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(RELAY_PORTS.end - RELAY_PORTS.start - RELAY_PORT_COUNT);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..50 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let offset = seed.wrapping_add(n.wrapping_mul(u32::from(RELAY_PORT_COUNT) + 13)) % span;
        let first = RELAY_PORTS.start + u16::try_from(offset).unwrap();
        let all_free = (first..first + RELAY_PORT_COUNT)
            .all(|p| UdpSocket::bind(SocketAddr::from((LOCALHOST, p))).is_ok());
        if all_free {
            return first;
        }
    }
    panic!("no {RELAY_PORT_COUNT} free UDP ports in {RELAY_PORTS:?} after 50 tries");
}

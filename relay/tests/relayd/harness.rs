//! An in-process relayd on loopback ports from `:0`, stopped when dropped,
//! and the small helpers every test needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relay::client::Client;
use relay::server::{self, Listeners, RelayAddress};
use relay::stats::Collector;
use relay::stun::Key;
use relay::turn::{self, Credentials};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const REALM: &str = "lab.example";
pub const LOCALHOST: [u8; 4] = [127, 0, 0, 1];

/// How long a status reply may pause before it is taken as complete.
const QUIET: Duration = Duration::from_millis(150);

pub struct Relayd {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub status: SocketAddr,
    /// Set when the tweak gave the server a certificate.
    pub tls: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::Error>>>,
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from((LOCALHOST, 0))
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl Relayd {
    /// A relay with users `alice`/`bob`, shared secrets 0 and 1, loopback
    /// peers allowed (every peer here is on loopback); `tweak` adjusts it.
    pub async fn start(tweak: impl FnOnce(&mut server::Config)) -> Relayd {
        let mut turn = turn::Config::new(REALM, Key::from_bytes(b"test nonce key"));
        turn.allow_loopback_peers = true;
        let mut creds = Credentials::new();
        creds.add_user("alice", "alice-pw");
        creds.add_user("bob", "bob-pw");
        creds.add_secret(0, "old-secret");
        creds.add_secret(1, "new-secret");
        let mut config = server::Config::new(turn, creds, vec![RelayAddress::new(LOCALHOST.into())]);
        tweak(&mut config);

        let udp = UdpSocket::bind(loopback()).await.unwrap();
        let tcp = TcpListener::bind(loopback()).await.unwrap();
        let status = UdpSocket::bind(loopback()).await.unwrap();
        let addrs = (
            udp.local_addr().unwrap(),
            tcp.local_addr().unwrap(),
            status.local_addr().unwrap(),
        );
        let mut listeners = Listeners {
            udp: vec![udp],
            tcp: vec![tcp],
            tls: Vec::new(),
            status: Some(status),
            metrics: None,
        };
        let mut tls = None;
        if config.tls.is_some() {
            let listener = TcpListener::bind(loopback()).await.unwrap();
            tls = Some(listener.local_addr().unwrap());
            listeners.tls.push(listener);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(config, listeners, async move {
            let _ = stopped.await;
        }));
        Relayd {
            udp: addrs.0,
            tcp: addrs.1,
            status: addrs.2,
            tls,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits (bounded) for `run` to return.
    pub async fn stop(mut self) -> Result<(), server::Error> {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic")
    }

    /// A UDP client on loopback with a short timeout.
    pub async fn client(&self) -> Client {
        Client::udp_from(loopback(), self.udp)
            .await
            .unwrap()
            .with_timeout(Duration::from_secs(2))
    }

    /// Sends a status command; the reply datagrams joined.
    pub async fn status(&self, command: &str) -> String {
        let datagrams = self.status_datagrams(command.as_bytes()).await;
        let mut c = Collector::new();
        for d in &datagrams {
            c.push(d).unwrap();
        }
        c.text().unwrap().to_owned()
    }

    /// Sends a status datagram; the reply datagrams until a quiet gap.
    pub async fn status_datagrams(&self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let socket = UdpSocket::bind(loopback()).await.unwrap();
        socket.send_to(datagram, self.status).await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0; 2048];
        // The first datagram may take a moment; later ones follow at once.
        let mut wait = Duration::from_secs(2);
        while let Ok(Ok((n, _))) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            out.push(buf[..n].to_vec());
            wait = QUIET;
        }
        assert!(!out.is_empty(), "no status reply");
        out
    }
}

impl Drop for Relayd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A plain UDP socket standing in for a peer that does not speak TURN.
pub struct Peer {
    pub socket: UdpSocket,
    pub addr: SocketAddr,
}

impl Peer {
    pub async fn new() -> Peer {
        Peer::on(LOCALHOST).await
    }

    /// A peer on another loopback address (all of 127/8 is loopback).
    pub async fn on(ip: [u8; 4]) -> Peer {
        let socket = UdpSocket::bind(SocketAddr::from((ip, 0))).await.unwrap();
        let addr = socket.local_addr().unwrap();
        Peer { socket, addr }
    }

    pub async fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), self.socket.recv_from(&mut buf))
            .await
            .expect("peer receives within 2 s")
            .unwrap();
        (buf[..n].to_vec(), from)
    }
}

/// A new directory under the target's temp dir, unique to this process and call.
pub fn fresh_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

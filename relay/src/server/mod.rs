//! The tokio I/O layer around [`crate::turn::Server`]: TURN listeners (UDP,
//! TCP and TLS), one relayed UDP socket per allocation, the status port, the
//! timer that drives expiry, and graceful shutdown.
//!
//! The caller binds every listening socket and hands them in with a
//! shutdown signal (`server::run(config, listeners, shutdown)`, as in
//! mini-redis), so tests run it on `127.0.0.1:0` and a binary decides the
//! addresses. The TURN core and the sockets it sends from sit behind one
//! lock; each reader task hands the core what it reads right there, a
//! batch of datagrams per system call and per take of the lock, and makes
//! the sends the core asks for, a socket's batch per call, so a packet is
//! relayed without crossing to another task. A timer task drives expiry.
//! Nothing waits while holding the lock: UDP sends that would block are
//! dropped (UDP may lose them anyway) and each TCP connection has its own
//! write queue.

mod buffers;
mod driver;
mod metrics;
mod mmsg;
mod tasks;
mod tls;

pub use buffers::{Buffers, Granted, size as size_buffers};
pub use tls::{Expect, Tls};

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::turn::{self, Credentials};

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A handed-in socket could not say what it is bound to.
    #[error("cannot read the local address of a {what} socket")]
    LocalAddr {
        /// Which socket (`turn udp`, `turn tcp`, `turn tls`, `status`, `metrics`).
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// No address to bind relayed sockets on.
    #[error("no relay address is configured; set one for IPv4 or IPv6")]
    NoRelayAddress,
    /// TLS listeners without a certificate to serve.
    #[error("TLS listeners are given but no certificate")]
    NoCertificate,
}

/// An address relayed sockets are bound on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddress {
    /// The local address to bind (a specific address, not a wildcard).
    pub bind: IpAddr,
    /// The address clients are told, when the host is behind a 1:1 NAT
    /// (restund's `turn_public_addr`); `None` tells them `bind`.
    pub advertise: Option<IpAddr>,
}

impl RelayAddress {
    /// Binds and advertises `ip`.
    #[must_use]
    pub fn new(ip: IpAddr) -> RelayAddress {
        RelayAddress {
            bind: ip,
            advertise: None,
        }
    }
}

/// What the I/O layer needs besides sockets.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The TURN core's settings.
    pub turn: turn::Config,
    /// Users and shared secrets.
    pub credentials: Credentials,
    /// Where relayed sockets are bound; at most one per family is used.
    pub relay: Vec<RelayAddress>,
    /// Most TCP connections at once; more wait to be accepted.
    pub max_connections: usize,
    /// Start in drain mode.
    pub draining: bool,
    /// The certificate TLS listeners serve.
    pub tls: Option<Arc<Tls>>,
    /// The socket buffers asked for.
    pub buffers: Buffers,
}

impl Config {
    /// A configuration relaying on `relay`.
    #[must_use]
    pub fn new(turn: turn::Config, credentials: Credentials, relay: Vec<RelayAddress>) -> Config {
        Config {
            turn,
            credentials,
            relay,
            max_connections: 4096,
            draining: false,
            tls: None,
            buffers: Buffers::default(),
        }
    }
}

/// The bound sockets the server serves.
#[derive(Debug, Default)]
pub struct Listeners {
    /// TURN over UDP.
    pub udp: Vec<UdpSocket>,
    /// TURN over TCP.
    pub tcp: Vec<TcpListener>,
    /// TURN over TLS (`turns:`); needs [`Config::tls`].
    pub tls: Vec<TcpListener>,
    /// The restund-compatible status port (usually 127.0.0.1:33000).
    pub status: Option<UdpSocket>,
    /// The Prometheus endpoint (`GET /metrics`).
    pub metrics: Option<TcpListener>,
}

/// What every task holds: the stop signal, the core they hand what they
/// read to, and a token whose drop tells `run` the task has finished.
#[derive(Debug)]
struct Ctx {
    shutdown: broadcast::Receiver<()>,
    shared: Arc<driver::Shared>,
    _done: mpsc::Sender<()>,
}

impl Ctx {
    fn clone_for_task(&self) -> Ctx {
        Ctx {
            shutdown: self.shutdown.resubscribe(),
            shared: self.shared.clone(),
            _done: self._done.clone(),
        }
    }
}

/// Serves TURN on `listeners` until `shutdown` completes, then stops
/// accepting, closes every connection and relayed socket, and returns once
/// every task has finished.
///
/// # Errors
///
/// [`Error::LocalAddr`] if a handed-in socket cannot tell its address,
/// [`Error::NoRelayAddress`] if `config.relay` is empty,
/// [`Error::NoCertificate`] if there are TLS listeners and no certificate.
pub async fn run(config: Config, listeners: Listeners, shutdown: impl Future) -> Result<(), Error> {
    if config.relay.is_empty() {
        return Err(Error::NoRelayAddress);
    }
    let acceptor = match (&config.tls, listeners.tls.is_empty()) {
        (_, true) => None,
        (Some(tls), false) => Some(tls.acceptor()),
        (None, false) => return Err(Error::NoCertificate),
    };
    let local =
        |what: &'static str, r: io::Result<SocketAddr>| r.map_err(|source| Error::LocalAddr { what, source });
    let mut udp = Vec::new();
    for socket in listeners.udp {
        let addr = local("turn udp", socket.local_addr())?;
        buffers::size_listening(&socket, config.buffers.listen, addr);
        udp.push((addr, Arc::new(socket)));
    }
    let mut streams = Vec::new();
    for listener in listeners.tcp {
        streams.push((local("turn tcp", listener.local_addr())?, listener, None));
    }
    for listener in listeners.tls {
        streams.push((
            local("turn tls", listener.local_addr())?,
            listener,
            acceptor.clone(),
        ));
    }
    let status = match listeners.status {
        Some(socket) => Some((local("status", socket.local_addr())?, Arc::new(socket))),
        None => None,
    };
    let metrics = match listeners.metrics {
        Some(listener) => Some((local("metrics", listener.local_addr())?, listener)),
        None => None,
    };

    let (notify, shutdown_rx) = broadcast::channel::<()>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let max_packet = config.turn.max_packet;
    let max_connections = config.max_connections;
    let core = driver::Driver::new(
        config,
        &udp,
        status.as_ref().map(|(_, s)| s.clone()),
        tasks::spawn_relay,
    );
    let ctx = Ctx {
        shutdown: shutdown_rx,
        shared: Arc::new(driver::Shared::new(core)),
        _done: done_tx,
    };

    for (addr, socket) in udp {
        tracing::info!(%addr, "serving TURN over UDP");
        tokio::spawn(tasks::udp_listener(
            socket,
            addr,
            max_packet,
            ctx.clone_for_task(),
        ));
    }
    let connections = Arc::new(Semaphore::new(max_connections));
    for (addr, listener, acceptor) in streams {
        tracing::info!(%addr, "serving TURN over {}", if acceptor.is_some() { "TLS" } else { "TCP" });
        let task = tasks::tcp_listener(
            listener,
            addr,
            acceptor,
            connections.clone(),
            max_packet,
            ctx.clone_for_task(),
        );
        tokio::spawn(task);
    }
    if let Some((addr, socket)) = status {
        tracing::info!(%addr, "serving the status port");
        tokio::spawn(tasks::status_listener(socket, ctx.clone_for_task()));
    }
    if let Some((addr, listener)) = metrics {
        tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
        tokio::spawn(metrics::listener(listener, addr, ctx.clone_for_task()));
    }

    driver::run_timer(&ctx, shutdown).await;
    tracing::info!("shutting down");
    // Closing the signal stops every task; closing the core's sockets and
    // connection queues ends the tasks that wait on them.
    drop(notify);
    ctx.shared.close();
    drop(ctx);
    let _ = done_rx.recv().await;
    tracing::info!("shut down");
    Ok(())
}

//! The TURN core behind its lock: readers hand it what they read through
//! [`Ctx::drive`], which then carries out what the core asks (bind or close
//! relayed sockets, send datagrams and frames), and [`run_timer`] wakes it
//! when its next deadline is due.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::{Config, Ctx, RelayAddress, Tls, mmsg};
use crate::status::{self, StatusPort};
use crate::turn::{BindFailure, Event, Family, FiveTuple, Port, Server, Transmit, Transport};

/// How many ports to draw before an EVEN-PORT allocation gives up.
const EVEN_PORT_TRIES: usize = 32;

/// A relayed socket and the task reading it.
#[derive(Debug)]
struct Relay {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

/// The core and its sockets, shared by every task.
#[derive(Debug)]
pub(super) struct Shared {
    driver: Mutex<Driver>,
    /// Tells the timer task that the core's next deadline moved earlier.
    rearm: Notify,
}

impl Shared {
    pub(super) fn new(driver: Driver) -> Shared {
        Shared {
            driver: Mutex::new(driver),
            rearm: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Driver> {
        self.driver.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every relayed socket and connection queue, at shutdown.
    pub(super) fn close(&self) {
        let mut driver = self.lock();
        for (_, relay) in driver.relays.drain() {
            relay.reader.abort();
        }
        driver.tcp.clear();
    }
}

impl Ctx {
    /// Runs `f` on the core (with the time now), then makes the sends and
    /// socket changes it asked for, and tells the timer task if the core's
    /// next deadline moved earlier. Never waits while holding the lock.
    pub(super) fn drive<R>(&self, f: impl FnOnce(&mut Driver, Instant) -> R) -> R {
        let mut driver = self.shared.lock();
        let now = tokio::time::Instant::now().into_std();
        let out = f(&mut driver, now);
        driver.flush(self);
        if let Some(wake) = driver.core.poll_timeout()
            && driver.armed.is_none_or(|armed| wake < armed)
        {
            driver.armed = Some(wake);
            self.shared.rearm.notify_one();
        }
        out
    }
}

/// Wakes the core at its deadlines until `shutdown` completes.
pub(super) async fn run_timer(ctx: &Ctx, shutdown: impl Future) {
    tokio::pin!(shutdown);
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let wake = {
            let mut driver = ctx.shared.lock();
            driver.armed = driver.core.poll_timeout();
            driver.armed
        };
        if let Some(at) = wake {
            timer.as_mut().reset(tokio::time::Instant::from_std(at));
        }
        tokio::select! {
            () = &mut timer, if wake.is_some() => ctx.drive(|driver, now| {
                driver.core.set_wall_clock(now, unix_now());
                driver.core.handle_timeout(now);
            }),
            () = ctx.shared.rearm.notified() => {}
            _ = &mut shutdown => return,
        }
    }
}

/// Starts the task that reads a relayed socket (the server's tasks module
/// gives it; the driver does not reach up to it).
pub(super) type SpawnRelay = fn(Arc<UdpSocket>, SocketAddr, usize, Ctx) -> JoinHandle<()>;

#[derive(Debug)]
pub(super) struct Driver {
    pub(super) core: Server,
    relay_addrs: Vec<RelayAddress>,
    /// What each relayed socket asks for as buffers.
    relay_buffer: usize,
    max_packet: usize,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    pub(super) tcp: HashMap<FiveTuple, mpsc::Sender<Vec<u8>>>,
    /// Keyed by the advertised relayed address, the core's name for it.
    relays: HashMap<SocketAddr, Relay>,
    /// Ports bound for a later Allocate (EVEN-PORT with the R bit), by
    /// token, with their advertised address; nothing reads them until claimed.
    reserved: HashMap<[u8; 8], (UdpSocket, SocketAddr)>,
    status: Option<(Arc<UdpSocket>, StatusPort)>,
    /// What the flush under way sends; empty between flushes.
    outbox: Outbox,
    tls: Option<Arc<Tls>>,
    /// The deadline the timer task waits for.
    armed: Option<Instant>,
    spawn_relay: SpawnRelay,
}

impl Driver {
    pub(super) fn new(
        config: Config,
        udp: &[(SocketAddr, Arc<UdpSocket>)],
        status: Option<Arc<UdpSocket>>,
        spawn_relay: SpawnRelay,
    ) -> Driver {
        let now = tokio::time::Instant::now().into_std();
        let max_packet = config.turn.max_packet;
        let mut core = Server::new(config.turn, config.credentials, now, unix_now());
        core.set_draining(config.draining);
        Driver {
            core,
            relay_addrs: config.relay,
            relay_buffer: config.buffers.relayed,
            max_packet,
            udp: udp.iter().cloned().collect(),
            tcp: HashMap::new(),
            relays: HashMap::new(),
            reserved: HashMap::new(),
            status: status.map(|s| (s, StatusPort::new())),
            outbox: Outbox::default(),
            tls: config.tls,
            armed: None,
            spawn_relay,
        }
    }

    pub(super) fn status(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Some((socket, port)) = &mut self.status else {
            return;
        };
        let cert = self.tls.as_deref().map(|tls| tls as &dyn status::Certificate);
        let replies = port.handle(now, bytes, &mut self.core, cert);
        let socket = socket.clone();
        // A long `turn` listing may not fit the socket buffer at once; waiting
        // for it here would stall the relay.
        tokio::spawn(async move {
            for reply in replies {
                if let Err(e) = socket.send_to(&reply, from).await {
                    tracing::debug!(%from, error = %e, "status reply not sent");
                    return;
                }
            }
        });
    }

    /// What a Prometheus scrape reports now.
    pub(super) fn metrics(&self) -> String {
        crate::metrics::render(&crate::metrics::Snapshot {
            counters: self.core.counters(),
            allocations: self.core.allocations_by_transport(),
            refused: self.core.refused_allocations().collect(),
            draining: self.core.is_draining(),
            certificate_expiry: self.tls.as_ref().map(|t| t.summary().not_after),
        })
    }

    /// Carries out the core's socket chores, then sends what it queued.
    fn flush(&mut self, ctx: &Ctx) {
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::BindRelay { id, family, port } => {
                    let now = tokio::time::Instant::now().into_std();
                    let result = self.bind_relay(family, port, ctx);
                    self.core.relay_bound(now, id, result);
                }
                Event::Unreserve { token } => {
                    self.reserved.remove(&token);
                }
                Event::Released { relayed, .. } => {
                    if let Some(relay) = self.relays.remove(&relayed) {
                        relay.reader.abort();
                    }
                }
            }
        }
        let outbox = &mut self.outbox;
        while let Some(transmit) = self.core.poll_transmit() {
            match transmit {
                Transmit::ToClient { tuple, bytes } => match tuple.transport {
                    Transport::Udp => {
                        if let Some(socket) = self.udp.get(&tuple.server) {
                            outbox.push(socket, tuple.client, bytes);
                        }
                    }
                    Transport::Tcp | Transport::Tls => {
                        // A full queue means the client reads slower than it is
                        // sent to; dropping a whole frame keeps the stream in sync.
                        if let Some(writer) = self.tcp.get(&tuple) {
                            let _ = writer.try_send(bytes);
                        }
                    }
                },
                Transmit::ToPeer { relayed, peer, bytes } => {
                    if let Some(relay) = self.relays.get(&relayed) {
                        outbox.push(&relay.socket, peer, bytes);
                    }
                }
            }
        }
        outbox.send();
    }

    fn bind_relay(&mut self, family: Family, port: Port, ctx: &Ctx) -> Result<SocketAddr, BindFailure> {
        let Some(addr) = self
            .relay_addrs
            .iter()
            .find(|a| Family::of(SocketAddr::new(a.bind, 0)) == family)
            .copied()
        else {
            return Err(BindFailure::FamilyUnsupported);
        };
        let advertised =
            |local: SocketAddr| SocketAddr::new(addr.advertise.unwrap_or(addr.bind), local.port());
        let (socket, relayed) = match port {
            Port::Reserved { token } => self.reserved.remove(&token).ok_or(BindFailure::NoCapacity)?,
            Port::Any | Port::Even | Port::EvenReserving { .. } => {
                let (socket, next) = self.bind_port(addr, port)?;
                let local = socket.local_addr().map_err(|_| BindFailure::NoCapacity)?;
                if let (Port::EvenReserving { token }, Some(next)) = (port, next) {
                    let reserved = next.local_addr().map_err(|_| BindFailure::NoCapacity)?;
                    self.reserved.insert(token, (next, advertised(reserved)));
                }
                (socket, advertised(local))
            }
        };
        let socket = Arc::new(socket);
        let reader = (self.spawn_relay)(socket.clone(), relayed, self.max_packet, ctx.clone_for_task());
        self.relays.insert(relayed, Relay { socket, reader });
        Ok(relayed)
    }
}

impl Driver {
    /// Binds a relayed port: any, or an even one; for an RTP and RTCP
    /// pair, an even one whose next port is bound too (returned second).
    /// The kernel picks the port; ports that do not fit are held, so they
    /// are not drawn again, and closed once one fits, as restund does (32
    /// tries: for parity alone, 2^-32 to fail by chance).
    fn bind_port(
        &self,
        addr: RelayAddress,
        port: Port,
    ) -> Result<(UdpSocket, Option<UdpSocket>), BindFailure> {
        let bind = |at: SocketAddr| {
            bind_udp(at, self.relay_buffer).map_err(|e| {
                tracing::warn!(bind = %at, error = %e, "cannot bind a relayed socket");
                BindFailure::NoCapacity
            })
        };
        let mut held = Vec::new();
        loop {
            let socket = bind(SocketAddr::new(addr.bind, 0))?;
            let local = socket.local_addr().map_err(|_| BindFailure::NoCapacity)?;
            let even = local.port() % 2 == 0;
            match port {
                Port::Any => return Ok((socket, None)),
                Port::Even if even => return Ok((socket, None)),
                Port::EvenReserving { .. } if even && local.port() < u16::MAX => {
                    // The next port may be taken: then this one does not fit either.
                    if let Ok(next) =
                        bind_udp(SocketAddr::new(addr.bind, local.port() + 1), self.relay_buffer)
                    {
                        return Ok((socket, Some(next)));
                    }
                }
                _ => {}
            }
            held.push(socket);
            if held.len() == EVEN_PORT_TRIES {
                tracing::warn!(bind = %addr.bind, ?port, "no relayed port fits in {EVEN_PORT_TRIES} tries");
                return Err(BindFailure::NoCapacity);
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for relay in self.relays.values() {
            relay.reader.abort();
        }
    }
}

fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    super::buffers::size_relayed(&socket, buffer);
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// The datagrams one flush sends, by the socket they go from, each
/// socket's in the order the core queued them.
#[derive(Debug, Default)]
struct Outbox {
    sockets: Vec<(Arc<UdpSocket>, Vec<mmsg::Datagram>)>,
}

impl Outbox {
    fn push(&mut self, socket: &Arc<UdpSocket>, to: SocketAddr, bytes: Vec<u8>) {
        // A flush sends from a few sockets at most: a scan finds one.
        match self.sockets.iter_mut().find(|(s, _)| Arc::ptr_eq(s, socket)) {
            Some((_, queued)) => queued.push((to, bytes)),
            None => self.sockets.push((socket.clone(), vec![(to, bytes)])),
        }
    }

    /// Sends each socket's datagrams, as many per system call as it takes
    /// now; the rest are dropped rather than waited for. Empties the outbox
    /// (and lets go of its sockets) but keeps its room.
    fn send(&mut self) {
        for (socket, datagrams) in self.sockets.drain(..) {
            mmsg::send(&socket, &datagrams);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! A small async STUN/TURN client over UDP, TCP or TLS: Binding, Allocate with
//! long-term credentials (answering 401 and 438 challenges), Refresh,
//! CreatePermission, ChannelBind, sending and receiving relayed data, and
//! release. opsctl's health checks and the lab's call simulator use it.
//!
//! One client is one 5-tuple, so at most one allocation. Requests over UDP
//! are retransmitted (RFC 8489 §6.2.1: RTO doubling from 500 ms) until the
//! client's timeout; data that arrives while a request waits is kept for
//! [`Client::recv`].

mod error;
mod proto;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

pub use error::Error;
pub use proto::Received;
use proto::{Auth, Incoming};

use crate::stun::{
    self, Attribute, ChannelData, Class, Message, Method, TRANSPORT_UDP, TransactionId, frame_len,
};

/// First retransmission timeout over UDP (RFC 8489's recommended RTO).
const RTO: Duration = Duration::from_millis(500);
/// How long a request waits for its answer unless told otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a successful Allocate returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The relayed address peers send to.
    pub relayed: SocketAddr,
    /// The client's address as the server sees it.
    pub mapped: SocketAddr,
    /// How long the allocation lives unless refreshed.
    pub lifetime: Duration,
}

/// A byte stream to the server: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> Stream for T {}

#[derive(Debug)]
enum Conn {
    Udp {
        socket: UdpSocket,
        buf: Vec<u8>,
    },
    Stream {
        stream: Box<dyn Stream>,
        local: SocketAddr,
        buf: Vec<u8>,
    },
}

/// A STUN/TURN client bound to one server.
#[derive(Debug)]
pub struct Client {
    conn: Conn,
    server: SocketAddr,
    timeout: Duration,
    auth: Option<Auth>,
    allocation: Option<Allocation>,
    channels: HashMap<u16, SocketAddr>,
    received: VecDeque<Received>,
    server_certificate: Option<CertificateDer<'static>>,
}

impl Client {
    /// A client on a fresh UDP port of the wildcard address.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if no socket can be bound.
    pub async fn udp(server: SocketAddr) -> Result<Client, Error> {
        let any = match server.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Client::udp_from(SocketAddr::new(any, 0), server).await
    }

    /// A client on the UDP address `local`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `local` cannot be bound.
    pub async fn udp_from(local: SocketAddr, server: SocketAddr) -> Result<Client, Error> {
        let socket = UdpSocket::bind(local)
            .await
            .map_err(io_error("bind a socket for", server))?;
        Ok(Client::with(
            Conn::Udp {
                socket,
                buf: vec![0; 65_536],
            },
            server,
        ))
    }

    /// A client connected over TCP.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the connection fails, [`Error::Unanswered`] if it
    /// takes longer than the default timeout.
    pub async fn tcp(server: SocketAddr) -> Result<Client, Error> {
        let (stream, local) = connect(server).await?;
        Ok(Client::stream(Box::new(stream), local, server))
    }

    /// A client connected over TLS (`turns:`), checking the server's
    /// certificate for `name` against `config`'s roots. The certificate the
    /// server presented is kept ([`Client::server_certificate`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the connection or the handshake fails (an untrusted
    /// certificate included), [`Error::Unanswered`] if either takes longer
    /// than the default timeout.
    pub async fn tls(
        server: SocketAddr,
        name: ServerName<'static>,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Client, Error> {
        let (stream, local) = connect(server).await?;
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, stream);
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, handshake)
            .await
            .map_err(|_| unanswered("finish a TLS handshake with", server))?
            .map_err(io_error("finish a TLS handshake with", server))?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        let mut client = Client::stream(Box::new(stream), local, server);
        client.server_certificate = leaf;
        Ok(client)
    }

    fn stream(stream: Box<dyn Stream>, local: SocketAddr, server: SocketAddr) -> Client {
        let conn = Conn::Stream {
            stream,
            local,
            buf: Vec::new(),
        };
        Client::with(conn, server)
    }

    fn with(conn: Conn, server: SocketAddr) -> Client {
        Client {
            conn,
            server,
            timeout: DEFAULT_TIMEOUT,
            auth: None,
            allocation: None,
            channels: HashMap::new(),
            received: VecDeque::new(),
            server_certificate: None,
        }
    }

    /// Over TLS, the certificate the server presented (its own, not the
    /// rest of the chain).
    #[must_use]
    pub fn server_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.server_certificate.as_ref()
    }

    /// Sets how long a request (with its retransmissions) or
    /// [`Client::recv`] waits.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The client's local address.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.conn {
            Conn::Udp { socket, .. } => socket.local_addr(),
            Conn::Stream { local, .. } => Ok(*local),
        }
    }

    /// The server this client talks to.
    #[must_use]
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The current allocation, if any.
    #[must_use]
    pub fn allocation(&self) -> Option<Allocation> {
        self.allocation
    }

    /// Sends a Binding request: the client's address as the server sees it
    /// (XOR-MAPPED-ADDRESS). Needs no credentials.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], [`Error::Rejected`], [`Error::MissingAttribute`]
    /// or [`Error::Io`].
    pub async fn binding(&mut self) -> Result<SocketAddr, Error> {
        let response = self.transact(Method::BINDING, &[]).await?;
        response.xor_mapped_address().ok_or(Error::MissingAttribute {
            method: Method::BINDING,
            server: self.server,
            attribute: "XOR-MAPPED-ADDRESS",
        })
    }

    /// Allocates a UDP relay with long-term credentials, answering the
    /// server's 401 challenge. `lifetime` in seconds, or the server's default.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with the server's code (401 for wrong
    /// credentials, 437 if this 5-tuple has an allocation, 300 or 486 from a
    /// draining relay), or the errors of [`Client::binding`].
    pub async fn allocate(
        &mut self,
        username: &str,
        password: &str,
        lifetime: Option<u32>,
    ) -> Result<Allocation, Error> {
        self.auth = Some(Auth::new(username, password));
        let mut attrs = vec![Attribute::RequestedTransport(TRANSPORT_UDP)];
        attrs.extend(lifetime.map(Attribute::Lifetime));
        let response = self.transact(Method::ALLOCATE, &attrs).await?;
        let missing = |attribute| Error::MissingAttribute {
            method: Method::ALLOCATE,
            server: self.server,
            attribute,
        };
        let relayed = response
            .xor_relayed_address()
            .ok_or_else(|| missing("XOR-RELAYED-ADDRESS"))?;
        let allocation = Allocation {
            relayed,
            mapped: response
                .xor_mapped_address()
                .ok_or_else(|| missing("XOR-MAPPED-ADDRESS"))?,
            lifetime: Duration::from_secs(u64::from(response.lifetime().ok_or_else(|| missing("LIFETIME"))?)),
        };
        self.allocation = Some(allocation);
        self.channels.clear();
        Ok(allocation)
    }

    /// Refreshes the allocation for `lifetime` seconds; the lifetime granted.
    ///
    /// # Errors
    ///
    /// [`Error::NoAllocation`] before [`Client::allocate`]; otherwise as
    /// [`Client::allocate`] (437 once the allocation has expired).
    pub async fn refresh(&mut self, lifetime: u32) -> Result<Duration, Error> {
        self.need_allocation("refresh")?;
        let response = self
            .transact(Method::REFRESH, &[Attribute::Lifetime(lifetime)])
            .await?;
        let granted = Duration::from_secs(u64::from(response.lifetime().unwrap_or(lifetime)));
        if let Some(a) = &mut self.allocation {
            a.lifetime = granted;
        }
        Ok(granted)
    }

    /// Installs or refreshes permissions for the peers' IP addresses.
    ///
    /// # Errors
    ///
    /// As [`Client::refresh`]; 403 for a peer the relay refuses.
    pub async fn create_permission(&mut self, peers: &[SocketAddr]) -> Result<(), Error> {
        self.need_allocation("create_permission")?;
        let attrs: Vec<Attribute> = peers.iter().map(|&p| Attribute::XorPeerAddress(p)).collect();
        self.transact(Method::CREATE_PERMISSION, &attrs).await.map(|_| ())
    }

    /// Binds `channel` (0x4000–0x7FFF) to `peer`, or refreshes the binding;
    /// [`Client::send`] then uses ChannelData for that peer.
    ///
    /// # Errors
    ///
    /// As [`Client::create_permission`]; 400 for a channel bound elsewhere.
    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), Error> {
        self.need_allocation("channel_bind")?;
        let attrs = [Attribute::ChannelNumber(channel), Attribute::XorPeerAddress(peer)];
        self.transact(Method::CHANNEL_BIND, &attrs).await?;
        self.channels.retain(|_, p| *p != peer);
        self.channels.insert(channel, peer);
        Ok(())
    }

    /// Sends data to `peer` through the relay: over the peer's channel if
    /// one is bound, else in a Send indication. Nothing confirms delivery.
    ///
    /// # Errors
    ///
    /// [`Error::NoAllocation`], [`Error::Io`], or [`Error::Encode`] for
    /// data over 64 KiB.
    pub async fn send(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), Error> {
        self.need_allocation("send")?;
        let channel = self.channels.iter().find(|(_, p)| **p == peer).map(|(c, _)| *c);
        let bytes = match channel {
            Some(channel) => ChannelData { channel, data }
                .encode(matches!(self.conn, Conn::Stream { .. }))
                .map_err(Error::Encode)?,
            None => proto::send_indication(random_tid()?, peer, data).map_err(Error::Encode)?,
        };
        self.write(&bytes).await
    }

    /// Sends data to `peer` in a Send indication even if a channel is bound.
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    pub async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), Error> {
        self.need_allocation("send_indication")?;
        let bytes = proto::send_indication(random_tid()?, peer, data).map_err(Error::Encode)?;
        self.write(&bytes).await
    }

    /// The next data relayed from a peer.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if none arrives within the client's timeout,
    /// [`Error::Io`] or [`Error::Closed`].
    pub async fn recv(&mut self) -> Result<Received, Error> {
        if let Some(r) = self.received.pop_front() {
            return Ok(r);
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let (server, after) = (self.server, self.timeout);
            let timeout = move |_| Error::Timeout {
                method: Method::DATA,
                server,
                after,
            };
            match timeout_at(deadline, self.read()).await.map_err(timeout)?? {
                Incoming::Data(r) => return Ok(r),
                Incoming::Response(_) | Incoming::Junk => {}
            }
        }
    }

    /// Releases the allocation (Refresh with lifetime 0).
    ///
    /// # Errors
    ///
    /// As [`Client::refresh`].
    pub async fn release(&mut self) -> Result<(), Error> {
        self.refresh(0).await?;
        self.allocation = None;
        self.channels.clear();
        Ok(())
    }

    fn need_allocation(&self, what: &'static str) -> Result<(), Error> {
        match self.allocation {
            Some(_) => Ok(()),
            None => Err(Error::NoAllocation { what }),
        }
    }

    /// Sends a request until it is answered, answering challenges; the
    /// success response.
    async fn transact(&mut self, method: Method, attrs: &[Attribute]) -> Result<Message, Error> {
        // An unsigned first try, the signed retry, and one stale nonce.
        for _ in 0..3 {
            let tid = random_tid()?;
            let (bytes, signed) =
                proto::request(method, tid, attrs, self.auth.as_ref()).map_err(Error::Encode)?;
            let response = self.exchange(method, tid, &bytes).await?;
            if response.class == Class::Success {
                if let Some(key) = self.auth.as_ref().and_then(Auth::key)
                    && response.has_integrity()
                    && response.verify_integrity(key).is_err()
                {
                    return Err(Error::BadIntegrity {
                        method,
                        server: self.server,
                    });
                }
                return Ok(response);
            }
            if let Some(auth) = &mut self.auth
                && auth.challenged(&response, signed)
            {
                continue;
            }
            return Err(self.rejected(method, &response));
        }
        Err(Error::Rejected {
            method,
            server: self.server,
            code: 401,
            reason: "challenged again and again".into(),
            alternate: None,
        })
    }

    fn rejected(&self, method: Method, response: &Message) -> Error {
        let (code, reason) = response
            .error_code()
            .map_or((0, "error response without ERROR-CODE".to_owned()), |e| {
                (e.code, e.reason.clone())
            });
        let alternate = response.get(stun::kind::ALTERNATE_SERVER).and_then(|a| match a {
            Attribute::AlternateServer(s) => Some(*s),
            _ => None,
        });
        Error::Rejected {
            method,
            server: self.server,
            code,
            reason,
            alternate,
        }
    }

    /// Sends `bytes` and waits for the response to `tid`, retransmitting
    /// over UDP; data arriving meanwhile is kept.
    async fn exchange(&mut self, method: Method, tid: TransactionId, bytes: &[u8]) -> Result<Message, Error> {
        let deadline = Instant::now() + self.timeout;
        let mut rto = RTO;
        self.write(bytes).await?;
        let mut resend = Instant::now() + rto;
        loop {
            let wait = match self.conn {
                Conn::Udp { .. } => resend.min(deadline),
                Conn::Stream { .. } => deadline,
            };
            match timeout_at(wait, self.read()).await {
                Ok(incoming) => match incoming? {
                    Incoming::Response(msg) if msg.transaction_id == tid && msg.method == method => {
                        return Ok(msg);
                    }
                    Incoming::Data(r) => self.received.push_back(r),
                    Incoming::Response(_) | Incoming::Junk => {}
                },
                Err(_) if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        method,
                        server: self.server,
                        after: self.timeout,
                    });
                }
                Err(_) => {
                    self.write(bytes).await?;
                    rto *= 2;
                    resend = Instant::now() + rto;
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let server = self.server;
        match &mut self.conn {
            Conn::Udp { socket, .. } => socket.send_to(bytes, server).await.map(|_| ()),
            Conn::Stream { stream, .. } => stream.write_all(bytes).await,
        }
        .map_err(io_error("send to", server))
    }

    /// Reads the next datagram or frame from the server. Cancel-safe: a
    /// partial TCP frame stays buffered.
    async fn read(&mut self) -> Result<Incoming, Error> {
        let server = self.server;
        match &mut self.conn {
            Conn::Udp { socket, buf } => {
                loop {
                    let (len, from) = socket
                        .recv_from(buf)
                        .await
                        .map_err(io_error("receive from", server))?;
                    // Only the server speaks on this port; anyone else is noise.
                    if from == server {
                        return Ok(proto::incoming(&buf[..len], &self.channels));
                    }
                }
            }
            Conn::Stream { stream, buf, .. } => loop {
                match frame_len(buf) {
                    Ok(Some(len)) if len <= buf.len() => {
                        let frame: Vec<u8> = buf.drain(..len).collect();
                        return Ok(proto::incoming(&frame, &self.channels));
                    }
                    Ok(_) => {}
                    Err(_) => return Err(Error::Closed { server }),
                }
                let mut chunk = [0; 4096];
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(io_error("receive from", server))?;
                if n == 0 {
                    return Err(Error::Closed { server });
                }
                buf.extend_from_slice(&chunk[..n]);
            },
        }
    }
}

fn random_tid() -> Result<TransactionId, Error> {
    let mut tid = [0; 12];
    crate::random::fill(&mut tid).map_err(|source| Error::Io {
        what: "draw a transaction id for",
        server: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    Ok(TransactionId(tid))
}

/// Opens a TCP connection within the default timeout.
async fn connect(server: SocketAddr) -> Result<(TcpStream, SocketAddr), Error> {
    let stream = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| unanswered("connect to", server))?
        .map_err(io_error("connect to", server))?;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().map_err(io_error("connect to", server))?;
    Ok((stream, local))
}

fn unanswered(what: &'static str, server: SocketAddr) -> Error {
    Error::Unanswered {
        what,
        server,
        after: DEFAULT_TIMEOUT,
    }
}

fn io_error(what: &'static str, server: SocketAddr) -> impl Fn(io::Error) -> Error {
    move |source| Error::Io { what, server, source }
}

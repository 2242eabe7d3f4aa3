//! The TURN core driven directly, with virtual time and no sockets: a test
//! client builds requests with the STUN codec, the harness plays the I/O
//! layer (binding relayed "sockets" on demand) and collects what the server
//! sends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::stun::{
    Attribute, Builder, ChannelData, Class, Key, Message, Method, TRANSPORT_UDP, TransactionId,
};

pub(super) const REALM: &str = "example.org";
/// The wall clock at the harness's start.
pub(super) const UNIX0: u64 = 1_700_000_000;
pub(super) const SERVER: &str = "192.0.2.1:3478";

pub(super) fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, n], 9000 + u16::from(n)))
}

pub(super) fn udp(port: u16) -> FiveTuple {
    FiveTuple {
        client: SocketAddr::from(([203, 0, 113, 7], port)),
        server: SERVER.parse().unwrap(),
        transport: Transport::Udp,
    }
}

pub(super) fn config() -> Config {
    Config::new(REALM, Key::from_bytes(b"nonce key"))
}

pub(super) struct Harness {
    pub(super) server: Server,
    pub(super) now: Instant,
    pub(super) next_relay: u16,
    pub(super) released: Vec<SocketAddr>,
    /// What the I/O layer answers to the next `BindRelay`.
    pub(super) bind_result: Option<BindFailure>,
    /// Whether each `BindRelay` asked for an even port.
    pub(super) even_ports: Vec<bool>,
    /// Ports reserved by the I/O layer, by token.
    pub(super) reserved: std::collections::HashMap<[u8; 8], SocketAddr>,
    /// Reservations the core let go (`Unreserve`).
    pub(super) unreserved: Vec<[u8; 8]>,
}

impl Harness {
    pub(super) fn new(config: Config) -> Harness {
        let mut creds = Credentials::new();
        creds.add_user("alice", "alice-pw");
        creds.add_user("bob", "bob-pw");
        creds.add_secret(0, "old-secret");
        creds.add_secret(1, "new-secret");
        let now = Instant::now();
        Harness {
            server: Server::new(config, creds, now, UNIX0),
            now,
            next_relay: 50_000,
            released: Vec::new(),
            bind_result: None,
            even_ports: Vec::new(),
            reserved: std::collections::HashMap::new(),
            unreserved: Vec::new(),
        }
    }

    pub(super) fn unix(&self) -> u64 {
        self.server.unix_now(self.now)
    }

    pub(super) fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        self.events();
    }

    /// Plays the I/O layer's part for socket chores.
    pub(super) fn events(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match event {
                Event::BindRelay { id, port, .. } => {
                    self.even_ports.push(port != Port::Any);
                    let at = |p: u16| SocketAddr::from(([192, 0, 2, 1], p));
                    let result = match (self.bind_result, port) {
                        (Some(failure), _) => Err(failure),
                        (None, Port::Reserved { token }) => {
                            self.reserved.remove(&token).ok_or(BindFailure::NoCapacity)
                        }
                        (None, Port::EvenReserving { token }) => {
                            // The next even port, and the one above it kept.
                            self.next_relay += 2 - self.next_relay % 2;
                            self.reserved.insert(token, at(self.next_relay + 1));
                            let even = self.next_relay;
                            self.next_relay += 1;
                            Ok(at(even))
                        }
                        (None, _) => {
                            self.next_relay += 1;
                            Ok(at(self.next_relay))
                        }
                    };
                    self.server.relay_bound(self.now, id, result);
                }
                Event::Released { relayed, .. } => self.released.push(relayed),
                Event::Unreserve { token } => {
                    self.reserved.remove(&token);
                    self.unreserved.push(token);
                }
            }
        }
    }

    pub(super) fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.server.poll_transmit()).collect()
    }

    /// Sends bytes from a client; returns the STUN responses to that client.
    pub(super) fn client(&mut self, tuple: FiveTuple, bytes: &[u8]) -> Vec<Message> {
        self.server.handle_client(self.now, tuple, bytes);
        self.events();
        let out = self.transmits();
        out.into_iter()
            .map(|t| match t {
                Transmit::ToClient { tuple: to, bytes } if to == tuple => {
                    crate::stun::decode(&bytes).unwrap()
                }
                other => panic!("unexpected transmit {other:?}"),
            })
            .collect()
    }

    pub(super) fn one(&mut self, tuple: FiveTuple, bytes: &[u8]) -> Message {
        let mut replies = self.client(tuple, bytes);
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies.remove(0)
    }

    /// What a peer's datagram to `relayed` turns into.
    pub(super) fn peer_sends(&mut self, relayed: SocketAddr, peer: SocketAddr, data: &[u8]) -> Vec<Transmit> {
        self.server.handle_peer(self.now, relayed, peer, data);
        self.transmits()
    }
}

/// A client with long-term credentials that remembers the last nonce.
pub(super) struct Client {
    pub(super) tuple: FiveTuple,
    pub(super) username: String,
    pub(super) password: String,
    pub(super) nonce: Option<String>,
    pub(super) tid: u8,
}

impl Client {
    pub(super) fn new(tuple: FiveTuple, username: &str, password: &str) -> Client {
        Client {
            tuple,
            username: username.into(),
            password: password.into(),
            nonce: None,
            tid: 0,
        }
    }

    pub(super) fn key(&self) -> Key {
        Key::long_term(&self.username, REALM, &self.password)
    }

    pub(super) fn next_tid(&mut self) -> TransactionId {
        self.tid += 1;
        TransactionId([self.tid; 12])
    }

    /// A request signed with the credentials and last nonce (unsigned
    /// before the first challenge).
    pub(super) fn request(&mut self, method: Method, attrs: &[Attribute]) -> Vec<u8> {
        let tid = self.next_tid();
        self.request_with(method, tid, attrs)
    }

    pub(super) fn request_with(&self, method: Method, tid: TransactionId, attrs: &[Attribute]) -> Vec<u8> {
        let mut b = Builder::new(method, Class::Request, tid);
        for a in attrs {
            b.add(a).unwrap();
        }
        if let Some(nonce) = &self.nonce {
            b.add(&Attribute::Username(self.username.clone())).unwrap();
            b.add(&Attribute::Realm(REALM.into())).unwrap();
            b.add(&Attribute::Nonce(nonce.clone())).unwrap();
            b.message_integrity(&self.key()).unwrap();
        }
        b.fingerprint().unwrap()
    }

    /// Sends a request, answering 401/438 challenges like a real client.
    pub(super) fn call(&mut self, h: &mut Harness, method: Method, attrs: &[Attribute]) -> Message {
        for _ in 0..3 {
            let bytes = self.request(method, attrs);
            let reply = h.one(self.tuple, &bytes);
            let code = reply.error_code().map(|e| e.code);
            if matches!(code, Some(401 | 438))
                && reply.nonce().is_some()
                && reply.nonce() != self.nonce.as_deref()
            {
                self.nonce = reply.nonce().map(str::to_owned);
                continue;
            }
            if reply.has_integrity() {
                reply
                    .verify_integrity(&self.key())
                    .expect("response signed with the client's key");
            }
            return reply;
        }
        panic!("challenged three times");
    }

    pub(super) fn allocate(&mut self, h: &mut Harness) -> Message {
        self.call(
            h,
            Method::ALLOCATE,
            &[Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
    }

    pub(super) fn relayed(&mut self, h: &mut Harness) -> SocketAddr {
        let reply = self.allocate(h);
        assert_eq!(reply.class, Class::Success, "{reply:?}");
        relayed_of(&reply)
    }
}

pub(super) fn relayed_of(reply: &Message) -> SocketAddr {
    reply.xor_relayed_address().expect("XOR-RELAYED-ADDRESS")
}

pub(super) fn code(reply: &Message) -> Option<u16> {
    reply.error_code().map(|e| e.code)
}

pub(super) fn send_indication(peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut b = Builder::new(Method::SEND, Class::Indication, TransactionId([9; 12]));
    b.add(&Attribute::XorPeerAddress(peer)).unwrap();
    b.add(&Attribute::Data(data.to_vec())).unwrap();
    b.finish()
}

mod auth;
mod lifecycle;
mod relaying;

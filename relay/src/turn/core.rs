//! The server state machine: what it holds, its entry points, the data
//! paths between clients and peers, and the timers. Request handling lives
//! in `request`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::allocation::Allocation;
use super::auth::Credentials;
use super::config::Config;
use super::counters::Counters;
use super::nonce::Nonces;
use super::{AllocationId, Event, FiveTuple, Transmit, Transport};
use crate::stun::{
    Attribute, Builder, ChannelData, Class, Datagram, Key, Message, Method, TransactionId, classify,
};

/// Stale wake-ups tolerated beyond twice the live ones before the heap is compacted.
const STALE_TIMERS: usize = 64;

/// Where and how to answer a request, kept apart from the request so an
/// Allocate can be answered after its relayed socket is bound.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplyTo {
    pub(super) tuple: FiveTuple,
    pub(super) method: Method,
    pub(super) tid: TransactionId,
    /// Answer with FINGERPRINT when the request had one (RFC 8489 §7.3).
    pub(super) fingerprint: bool,
}

/// An Allocate that passed every check and waits for the I/O layer to bind
/// its relayed socket.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) to: ReplyTo,
    pub(super) username: String,
    pub(super) key: Key,
    pub(super) lifetime: Duration,
    /// The RESERVATION-TOKEN to answer with, when it reserves the next port.
    pub(super) reserving: Option<[u8; 8]>,
}

/// How long a reserved port waits for the Allocate that claims it (RFC
/// 8656 §7.2: about 30 seconds).
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// One allocation as the status port shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationInfo {
    /// Its 5-tuple.
    pub tuple: FiveTuple,
    /// Its relayed address.
    pub relayed: SocketAddr,
    /// The username that made it.
    pub username: String,
    /// Time left before it expires unless refreshed.
    pub expires_in: Duration,
    /// Permissions installed.
    pub permissions: usize,
    /// Channels bound.
    pub channels: usize,
}

/// The TURN server core. See the [module docs](super).
#[derive(Debug)]
pub struct Server {
    pub(super) config: Config,
    pub(super) credentials: Credentials,
    pub(super) nonces: Nonces,
    /// `(instant, unix seconds)` read together: time-limited credentials
    /// expire by the wall clock, everything else by `Instant`s.
    wall: (Instant, u64),
    pub(super) allocations: HashMap<AllocationId, Allocation>,
    pub(super) by_tuple: HashMap<FiveTuple, AllocationId>,
    by_relay: HashMap<SocketAddr, AllocationId>,
    pub(super) pending: HashMap<AllocationId, Pending>,
    pub(super) pending_by_tuple: HashMap<FiveTuple, AllocationId>,
    pub(super) per_user: HashMap<String, usize>,
    /// Ports reserved by EVEN-PORT with the R bit, by token, until when.
    pub(super) reservations: HashMap<[u8; 8], Instant>,
    /// The same, in the order they lapse (each lives as long as the next).
    pub(super) reservation_order: VecDeque<([u8; 8], Instant)>,
    timers: BinaryHeap<Reverse<(Instant, AllocationId)>>,
    transmits: VecDeque<Transmit>,
    pub(super) events: VecDeque<Event>,
    pub(super) counters: Counters,
    /// Allocate requests answered with an error, by code: its reason
    /// phrase and how many. A 401 is most often the first round of a
    /// client's authentication, not a refusal it sees as one.
    pub(super) refused: std::collections::BTreeMap<u16, (&'static str, u64)>,
    pub(super) draining: bool,
    next_id: u64,
    indications: u64,
}

impl Server {
    /// A server with no allocations. `now` and `unix_secs` are the same
    /// moment on the monotonic and the wall clock.
    #[must_use]
    pub fn new(config: Config, credentials: Credentials, now: Instant, unix_secs: u64) -> Server {
        let nonces = Nonces::new(config.nonce_key.clone(), config.nonce_lifetime, now);
        Server {
            config,
            credentials,
            nonces,
            wall: (now, unix_secs),
            allocations: HashMap::new(),
            by_tuple: HashMap::new(),
            by_relay: HashMap::new(),
            pending: HashMap::new(),
            pending_by_tuple: HashMap::new(),
            per_user: HashMap::new(),
            reservations: HashMap::new(),
            reservation_order: VecDeque::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            refused: std::collections::BTreeMap::new(),
            draining: false,
            next_id: 0,
            indications: 0,
        }
    }

    /// Re-reads the wall clock, so a stepped system clock is followed.
    pub fn set_wall_clock(&mut self, now: Instant, unix_secs: u64) {
        self.wall = (now, unix_secs);
    }

    /// Replaces the users and secrets; existing allocations keep working
    /// until they next authenticate.
    pub fn set_credentials(&mut self, credentials: Credentials) {
        self.credentials = credentials;
    }

    /// The settings the server runs with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Turns drain mode on or off. While draining, new Allocate requests are
    /// refused (300 with ALTERNATE-SERVER if one is configured, else 486);
    /// existing allocations keep refreshing and relaying.
    pub fn set_draining(&mut self, draining: bool) {
        if draining != self.draining {
            tracing::info!(draining, "drain mode changed");
        }
        self.draining = draining;
    }

    /// Whether drain mode is on.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Allocations now by the client's transport: UDP, TCP, TLS.
    #[must_use]
    pub fn allocations_by_transport(&self) -> [u64; 3] {
        let mut n = [0; 3];
        for a in self.allocations.values() {
            n[match a.tuple.transport {
                Transport::Udp => 0,
                Transport::Tcp => 1,
                Transport::Tls => 2,
            }] += 1;
        }
        n
    }

    /// Allocate requests answered with an error so far: code, reason
    /// phrase, how many.
    pub fn refused_allocations(&self) -> impl Iterator<Item = (u16, &'static str, u64)> + '_ {
        self.refused.iter().map(|(&code, &(reason, n))| (code, reason, n))
    }

    /// The counters now.
    #[must_use]
    pub fn counters(&self) -> Counters {
        let channels: usize = self.allocations.values().map(Allocation::channel_count).sum();
        Counters {
            allocs_cur: self.allocations.len() as u64,
            chan_cur: channels as u64,
            ..self.counters
        }
    }

    /// Every allocation, ordered by relayed address.
    #[must_use]
    pub fn allocations(&self, now: Instant) -> Vec<AllocationInfo> {
        let mut all: Vec<AllocationInfo> = self
            .allocations
            .values()
            .map(|a| AllocationInfo {
                tuple: a.tuple,
                relayed: a.relayed,
                username: a.username.clone(),
                expires_in: a.expires.saturating_duration_since(now),
                permissions: a.permission_count(),
                channels: a.channel_count(),
            })
            .collect();
        all.sort_by_key(|a| a.relayed);
        all
    }

    /// Handles one datagram (UDP) or one frame (TCP, cut with
    /// [`crate::stun::frame_len`]) from a client.
    pub fn handle_client(&mut self, now: Instant, tuple: FiveTuple, bytes: &[u8]) {
        if bytes.len() > self.config.max_packet {
            self.counters.oversized += 1;
            return;
        }
        match classify(bytes) {
            Datagram::Stun => match Message::decode(bytes) {
                Ok(msg) => self.handle_message(now, tuple, &msg),
                Err(e) => {
                    tracing::trace!(%tuple, error = %e, "dropped malformed STUN message");
                    self.counters.malformed += 1;
                }
            },
            Datagram::ChannelData => match ChannelData::decode(bytes) {
                Ok(cd) => self.channel_from_client(now, tuple, cd),
                Err(_) => self.counters.malformed += 1,
            },
            Datagram::Other => self.counters.malformed += 1,
        }
    }

    /// Handles a datagram a peer sent to an allocation's relayed address.
    pub fn handle_peer(&mut self, now: Instant, relayed: SocketAddr, peer: SocketAddr, bytes: &[u8]) {
        if bytes.len() > self.config.max_packet {
            self.counters.oversized += 1;
            return;
        }
        let Some(alloc) = self
            .by_relay
            .get(&relayed)
            .and_then(|id| self.allocations.get(id))
        else {
            self.counters.unroutable += 1;
            return;
        };
        if !alloc.is_permitted(peer.ip(), now) {
            self.counters.forbidden += 1;
            return;
        }
        let tuple = alloc.tuple;
        let encoded = match alloc.peer_channel(peer, now) {
            Some(channel) => ChannelData { channel, data: bytes }.encode(tuple.transport.is_stream()),
            None => {
                self.indications += 1;
                let mut tid = [0; 12];
                tid[4..].copy_from_slice(&self.indications.to_be_bytes());
                let mut b = Builder::new(Method::DATA, Class::Indication, TransactionId(tid));
                let added = b.add(&Attribute::XorPeerAddress(peer)).map(|_| ());
                added
                    .and_then(|()| b.add(&Attribute::Data(bytes.to_vec())).map(|_| ()))
                    .map(|()| b.finish())
            }
        };
        match encoded {
            Ok(out) => {
                self.counters.bytes_rx += bytes.len() as u64;
                self.counters.packets_rx += 1;
                self.transmits.push_back(Transmit::ToClient { tuple, bytes: out });
            }
            // Only a payload too long to wrap gets here.
            Err(_) => self.counters.oversized += 1,
        }
    }

    /// The TCP connection of `tuple` closed: its allocation goes with it
    /// (RFC 8656 §3.1).
    pub fn connection_closed(&mut self, tuple: FiveTuple) {
        if let Some(id) = self.by_tuple.get(&tuple).copied() {
            self.remove(id, "connection closed");
        }
        if let Some(id) = self.pending_by_tuple.remove(&tuple)
            && let Some(p) = self.pending.remove(&id)
        {
            self.release_user(&p.username);
            // Its bind is still queued: the port it reserves is let go after it.
            if let Some(token) = p.reserving {
                self.events.push_back(Event::Unreserve { token });
            }
        }
    }

    /// When [`Server::handle_timeout`] next has work, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let reservation = self.reservation_order.front().map(|(_, at)| *at);
        match (timer, reservation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires allocations, permissions, channels and reserved ports due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(token, at)) = self.reservation_order.front() {
            if at > now {
                break;
            }
            self.reservation_order.pop_front();
            // One claimed since is gone from the map and was handed over already.
            if self.reservations.get(&token) == Some(&at) {
                self.reservations.remove(&token);
                self.events.push_back(Event::Unreserve { token });
            }
        }
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(alloc) = self.allocations.get_mut(&id) else {
                continue;
            };
            // A later wake-up superseded by an earlier one that already ran.
            if alloc.scheduled != Some(at) {
                continue;
            }
            alloc.scheduled = None;
            if alloc.expires <= now {
                self.remove(id, "expired");
                continue;
            }
            alloc.expire(now);
            let next = alloc.next_deadline();
            self.schedule(id, next);
        }
    }

    /// The next datagram or frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next socket chore for the I/O layer.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(super) fn unix_now(&self, now: Instant) -> u64 {
        let (at, unix) = self.wall;
        unix.saturating_add(now.saturating_duration_since(at).as_secs())
    }

    pub(super) fn next_id(&mut self) -> AllocationId {
        self.next_id += 1;
        AllocationId(self.next_id)
    }

    pub(super) fn queue(&mut self, transmit: Transmit) {
        self.transmits.push_back(transmit);
    }

    /// Makes sure the allocation is woken no later than `at`.
    pub(super) fn schedule(&mut self, id: AllocationId, at: Instant) {
        if let Some(alloc) = self.allocations.get_mut(&id)
            && alloc.scheduled.is_none_or(|s| at < s)
        {
            alloc.scheduled = Some(at);
            self.timers.push(Reverse((at, id)));
            self.compact_timers();
        }
    }

    /// Drops wake-ups that no longer wake anything (their allocation was
    /// released, or an earlier one superseded them) once they outnumber the
    /// live ones, so the heap follows the allocations held rather than all
    /// those made over the last lifetime. Amortized O(1) per wake-up.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.allocations.len() + STALE_TIMERS {
            return;
        }
        let allocations = &self.allocations;
        self.timers
            .retain(|Reverse((at, id))| allocations.get(id).is_some_and(|a| a.scheduled == Some(*at)));
        self.timers.shrink_to(2 * self.timers.len() + STALE_TIMERS);
    }

    /// How many wake-ups are queued, live and stale (for tests).
    #[cfg(test)]
    pub(super) fn queued_timers(&self) -> usize {
        self.timers.len()
    }

    pub(super) fn insert(&mut self, alloc: Allocation) {
        let (id, expires) = (alloc.id, alloc.expires);
        self.by_tuple.insert(alloc.tuple, id);
        self.by_relay.insert(alloc.relayed, id);
        self.allocations.insert(id, alloc);
        self.counters.allocs_tot += 1;
        self.schedule(id, expires);
    }

    /// Deletes an allocation and tells the I/O layer to close its socket.
    pub(super) fn remove(&mut self, id: AllocationId, why: &'static str) {
        let Some(alloc) = self.allocations.remove(&id) else {
            return;
        };
        self.by_tuple.remove(&alloc.tuple);
        self.by_relay.remove(&alloc.relayed);
        self.release_user(&alloc.username);
        tracing::debug!(tuple = %alloc.tuple, relayed = %alloc.relayed, why, "allocation deleted");
        self.events.push_back(Event::Released {
            id,
            relayed: alloc.relayed,
        });
    }

    pub(super) fn release_user(&mut self, username: &str) {
        if let Some(n) = self.per_user.get_mut(username) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(username);
            }
        }
    }

    fn handle_message(&mut self, now: Instant, tuple: FiveTuple, msg: &Message) {
        match (msg.class, msg.method) {
            (Class::Request, _) => self.handle_request(now, tuple, msg),
            (Class::Indication, Method::SEND) => self.send_indication(now, tuple, msg),
            // Responses and other indications mean nothing to a server.
            _ => self.counters.unroutable += 1,
        }
    }

    fn send_indication(&mut self, now: Instant, tuple: FiveTuple, msg: &Message) {
        let Some(alloc) = self.by_tuple.get(&tuple).and_then(|id| self.allocations.get(id)) else {
            self.counters.unroutable += 1;
            return;
        };
        let peer = msg.xor_peer_addresses().first().copied();
        let data = msg.attributes.iter().find_map(|a| match a {
            Attribute::Data(d) => Some(d),
            _ => None,
        });
        let (Some(peer), Some(data)) = (peer, data) else {
            self.counters.malformed += 1;
            return;
        };
        if !alloc.is_permitted(peer.ip(), now) {
            self.counters.forbidden += 1;
            return;
        }
        let relayed = alloc.relayed;
        self.relay_to_peer(relayed, peer, data.clone());
    }

    fn channel_from_client(&mut self, now: Instant, tuple: FiveTuple, cd: ChannelData<'_>) {
        let alloc = self.by_tuple.get(&tuple).and_then(|id| self.allocations.get(id));
        let Some((alloc, peer)) = alloc.and_then(|a| Some((a, a.channel_peer(cd.channel, now)?))) else {
            self.counters.unroutable += 1;
            return;
        };
        if !alloc.is_permitted(peer.ip(), now) {
            self.counters.forbidden += 1;
            return;
        }
        let relayed = alloc.relayed;
        self.relay_to_peer(relayed, peer, cd.data.to_vec());
    }

    fn relay_to_peer(&mut self, relayed: SocketAddr, peer: SocketAddr, bytes: Vec<u8>) {
        self.counters.bytes_tx += bytes.len() as u64;
        self.counters.packets_tx += 1;
        self.transmits
            .push_back(Transmit::ToPeer { relayed, peer, bytes });
    }
}

//! Requests: Binding, and the four TURN requests behind long-term
//! authentication (Allocate, Refresh, CreatePermission, ChannelBind).
//!
//! The order of checks follows restund and RFC 8656: authenticate, then
//! unknown comprehension-required attributes (420), then the allocation of
//! the 5-tuple (437, 441), then the method's own rules.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::allocation::{Allocation, BindConflict};
use super::config::Config;
use super::core::RESERVATION_LIFETIME;
use super::core::{Pending, ReplyTo, Server};
use super::{AllocationId, BindFailure, Event, Family, FiveTuple, Port, REQUESTED_ADDRESS_FAMILY, Transmit};
use crate::stun::{
    Attribute, Builder, CHANNEL_MAX, CHANNEL_MIN, Class, ErrorCode, Key, Message, Method, TRANSPORT_UDP, kind,
};

/// 440: the relay has no address of the requested family (RFC 8656).
const ADDRESS_FAMILY_NOT_SUPPORTED: u16 = 440;
/// 443: the peer's family differs from the relayed address's (RFC 8656).
const PEER_ADDRESS_FAMILY_MISMATCH: u16 = 443;

impl ReplyTo {
    fn of(tuple: FiveTuple, req: &Message) -> ReplyTo {
        ReplyTo {
            tuple,
            method: req.method,
            tid: req.transaction_id,
            fingerprint: req.has_fingerprint(),
        }
    }
}

/// An error answer: code and reason phrase.
type Refusal = (u16, &'static str);

const BAD_REQUEST: Refusal = (ErrorCode::BAD_REQUEST, "Bad Request");
/// Answers a request whose allocation vanished under it: a bug, not the client's fault.
const SERVER_ERROR: Refusal = (ErrorCode::SERVER_ERROR, "Server Error");

impl Server {
    pub(super) fn handle_request(&mut self, now: Instant, tuple: FiveTuple, req: &Message) {
        let to = ReplyTo::of(tuple, req);
        match req.method {
            Method::BINDING => self.binding(to, req),
            Method::ALLOCATE | Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND => {
                self.turn_request(now, to, req);
            }
            _ => self.error(to, BAD_REQUEST, vec![], None),
        }
    }

    fn binding(&mut self, to: ReplyTo, req: &Message) {
        if self.refused_unknown(to, req, None) {
            return;
        }
        self.counters.bindings += 1;
        self.success(to, vec![Attribute::XorMappedAddress(to.tuple.client)], None);
    }

    /// Answers 420 listing the comprehension-required attributes the request
    /// carries that this server does not understand; whether it did.
    fn refused_unknown(&mut self, to: ReplyTo, req: &Message, key: Option<&Key>) -> bool {
        let unknown = unknown_attributes(req);
        if unknown.is_empty() {
            return false;
        }
        let unknown = vec![Attribute::UnknownAttributes(unknown)];
        self.error(
            to,
            (ErrorCode::UNKNOWN_ATTRIBUTE, "Unknown Attribute"),
            unknown,
            key,
        );
        true
    }

    fn turn_request(&mut self, now: Instant, to: ReplyTo, req: &Message) {
        let Some((username, key)) = self.authenticate(now, to, req) else {
            return;
        };
        if self.refused_unknown(to, req, Some(&key)) {
            return;
        }
        if req.method == Method::ALLOCATE {
            return self.allocate(now, to, req, username, key);
        }
        let alloc = self
            .by_tuple
            .get(&to.tuple)
            .and_then(|id| self.allocations.get(id));
        let Some(alloc) = alloc else {
            let refusal = (ErrorCode::ALLOCATION_MISMATCH, "Allocation Mismatch");
            return self.error(to, refusal, vec![], Some(&key));
        };
        if alloc.username != username {
            let refusal = (ErrorCode::WRONG_CREDENTIALS, "Wrong Credentials");
            return self.error(to, refusal, vec![], Some(&key));
        }
        let id = alloc.id;
        let result = match req.method {
            Method::REFRESH => Ok(self.refresh(now, id, req)),
            Method::CREATE_PERMISSION => self.create_permission(now, id, req),
            _ => self.channel_bind(now, id, req),
        };
        match result {
            Ok(attrs) => self.success(to, attrs, Some(&key)),
            Err(refusal) => self.error(to, refusal, vec![], Some(&key)),
        }
    }

    /// The long-term credential check (RFC 8489 §9.2.4): the username and
    /// the key its MESSAGE-INTEGRITY verified under, or `None` once the
    /// refusal is queued. The nonce is checked last, so only a client that
    /// holds the key learns that its nonce went stale.
    fn authenticate(&mut self, now: Instant, to: ReplyTo, req: &Message) -> Option<(String, Key)> {
        let unauthorized = (ErrorCode::UNAUTHORIZED, "Unauthorized");
        if !req.has_integrity() {
            self.challenge(now, to, unauthorized);
            return None;
        }
        let (Some(username), Some(realm), Some(nonce)) = (req.username(), req.realm(), req.nonce()) else {
            self.error(to, BAD_REQUEST, vec![], None);
            return None;
        };
        if realm != self.config.realm {
            self.challenge(now, to, unauthorized);
            return None;
        }
        let key = match self.credentials.keys(username, realm, self.unix_now(now)) {
            Ok(keys) => keys.into_iter().find(|k| req.verify_integrity(k).is_ok()),
            Err(e) => {
                tracing::debug!(tuple = %to.tuple, username, error = %e, "credentials refused");
                None
            }
        };
        let Some(key) = key else {
            tracing::debug!(tuple = %to.tuple, username, "authentication failed");
            self.challenge(now, to, unauthorized);
            return None;
        };
        if !self.nonces.is_fresh(nonce, now, to.tuple.client) {
            self.challenge(now, to, (ErrorCode::STALE_NONCE, "Stale Nonce"));
            return None;
        }
        Some((username.to_owned(), key))
    }

    /// 401 or 438 with the realm and a fresh nonce.
    fn challenge(&mut self, now: Instant, to: ReplyTo, refusal: Refusal) {
        let nonce = self.nonces.issue(now, to.tuple.client);
        let attrs = vec![
            Attribute::Realm(self.config.realm.clone()),
            Attribute::Nonce(nonce),
        ];
        self.error(to, refusal, attrs, None);
    }

    fn allocate(&mut self, now: Instant, to: ReplyTo, req: &Message, username: String, key: Key) {
        let key_ref = Some(&key);
        if let Some(alloc) = self
            .by_tuple
            .get(&to.tuple)
            .and_then(|id| self.allocations.get(id))
        {
            if alloc.allocate_tid == to.tid && alloc.username == username {
                let attrs = allocated(alloc, now);
                return self.success(to, attrs, key_ref);
            }
            return self.error(
                to,
                (ErrorCode::ALLOCATION_MISMATCH, "Allocation Mismatch"),
                vec![],
                key_ref,
            );
        }
        if let Some(pending) = self
            .pending_by_tuple
            .get(&to.tuple)
            .and_then(|id| self.pending.get(id))
        {
            // A retransmission is answered when the relayed socket is bound.
            if pending.to.tid != to.tid {
                let refusal = (ErrorCode::ALLOCATION_MISMATCH, "Allocation Mismatch");
                self.error(to, refusal, vec![], key_ref);
            }
            return;
        }
        let (family, port) = match self.allocate_checks(req, &username) {
            Ok(checked) => checked,
            Err((refusal, attrs)) => return self.error(to, refusal, attrs, key_ref),
        };
        if let Port::Reserved { token } = port {
            // Claimed now: no second Allocate can claim it meanwhile.
            self.reservations.remove(&token);
        }
        let id = self.next_id();
        // LIFETIME 0 makes no sense in an Allocate: treat it as absent.
        let lifetime = self.config.grant(req.lifetime().filter(|&s| s > 0));
        *self.per_user.entry(username.clone()).or_default() += 1;
        self.pending_by_tuple.insert(to.tuple, id);
        self.pending.insert(
            id,
            Pending {
                to,
                username,
                key,
                lifetime,
                reserving: match port {
                    Port::EvenReserving { token } => Some(token),
                    _ => None,
                },
            },
        );
        self.events.push_back(Event::BindRelay { id, family, port });
    }

    /// Transport, port parity, family, drain and quotas; the family to
    /// relay on and which port.
    fn allocate_checks(
        &self,
        req: &Message,
        username: &str,
    ) -> Result<(Family, Port), (Refusal, Vec<Attribute>)> {
        match req.get(kind::REQUESTED_TRANSPORT) {
            Some(Attribute::RequestedTransport(TRANSPORT_UDP)) => {}
            Some(_) => {
                let refusal = (ErrorCode::UNSUPPORTED_TRANSPORT, "Unsupported Transport Protocol");
                return Err((refusal, vec![]));
            }
            None => return Err((BAD_REQUEST, vec![])),
        }
        // EVEN-PORT and RESERVATION-TOKEN (RFC 8656 §7.2), the RTP and
        // RTCP pair coturn's turnutils_uclient and SIP clients ask for: with
        // the R bit the next port is bound too and kept under a token for
        // 30 seconds; an Allocate with that token gets it. Both at once, or
        // a token with a family, is malformed; a token that is unknown,
        // lapsed or already claimed cannot be met (508).
        let no_reservation = (ErrorCode::INSUFFICIENT_CAPACITY, "Insufficient Capacity");
        let port = match (req.get(kind::EVEN_PORT), req.get(kind::RESERVATION_TOKEN)) {
            (Some(_), Some(_)) => return Err((BAD_REQUEST, vec![])),
            (None, Some(_)) if req.get(REQUESTED_ADDRESS_FAMILY).is_some() => {
                return Err((BAD_REQUEST, vec![]));
            }
            (None, Some(Attribute::ReservationToken(token))) => {
                if !self.reservations.contains_key(token) {
                    return Err((no_reservation, vec![]));
                }
                Port::Reserved { token: *token }
            }
            (Some(Attribute::EvenPort { reserve: true }), None) => {
                let mut token = [0u8; 8];
                if crate::random::fill(&mut token).is_err() {
                    return Err((no_reservation, vec![]));
                }
                Port::EvenReserving { token }
            }
            (None, None) => Port::Any,
            _ => Port::Even,
        };
        let family = match req.get(REQUESTED_ADDRESS_FAMILY) {
            None => Family::V4,
            Some(Attribute::Other { value, .. }) if value.len() == 4 && value[0] == 1 => Family::V4,
            Some(Attribute::Other { value, .. }) if value.len() == 4 && value[0] == 2 => Family::V6,
            Some(_) => {
                let refusal = (ADDRESS_FAMILY_NOT_SUPPORTED, "Address Family not Supported");
                return Err((refusal, vec![]));
            }
        };
        let quota = (ErrorCode::ALLOCATION_QUOTA_REACHED, "Allocation Quota Reached");
        if self.draining {
            return Err(match self.config.alternate_server {
                Some(alt) => (
                    (ErrorCode::TRY_ALTERNATE, "Try Alternate"),
                    vec![Attribute::AlternateServer(alt)],
                ),
                None => (quota, vec![]),
            });
        }
        let held = self.per_user.get(username).copied().unwrap_or(0);
        if self.config.user_quota.is_some_and(|q| held >= q) {
            return Err((quota, vec![]));
        }
        let total = self.allocations.len() + self.pending.len();
        if self.config.total_quota.is_some_and(|q| total >= q) {
            return Err((quota, vec![]));
        }
        Ok((family, port))
    }

    /// The I/O layer's answer to [`Event::BindRelay`]: the allocation is
    /// made and the client answered. If the allocation was abandoned in the
    /// meantime (its connection closed), a bound socket is handed straight
    /// back with [`Event::Released`].
    pub fn relay_bound(&mut self, now: Instant, id: AllocationId, result: Result<SocketAddr, BindFailure>) {
        let Some(p) = self.pending.remove(&id) else {
            if let Ok(relayed) = result {
                self.events.push_back(Event::Released { id, relayed });
            }
            return;
        };
        self.pending_by_tuple.remove(&p.to.tuple);
        let relayed = match result {
            Ok(relayed) => relayed,
            Err(failure) => {
                self.release_user(&p.username);
                let refusal = match failure {
                    BindFailure::FamilyUnsupported => {
                        (ADDRESS_FAMILY_NOT_SUPPORTED, "Address Family not Supported")
                    }
                    BindFailure::NoCapacity => (ErrorCode::INSUFFICIENT_CAPACITY, "Insufficient Capacity"),
                };
                return self.error(p.to, refusal, vec![], Some(&p.key));
            }
        };
        let alloc = Allocation::new(id, p.to.tuple, relayed, p.username, now + p.lifetime, p.to.tid);
        let mut attrs = allocated(&alloc, now);
        if let Some(token) = p.reserving {
            let until = now + RESERVATION_LIFETIME;
            self.reservations.insert(token, until);
            self.reservation_order.push_back((token, until));
            attrs.push(Attribute::ReservationToken(token));
        }
        tracing::debug!(tuple = %alloc.tuple, %relayed, username = alloc.username, "allocation made");
        self.insert(alloc);
        self.success(p.to, attrs, Some(&p.key));
    }

    fn refresh(&mut self, now: Instant, id: AllocationId, req: &Message) -> Vec<Attribute> {
        if req.lifetime() == Some(0) {
            self.remove(id, "released");
            return vec![Attribute::Lifetime(0)];
        }
        let lifetime = self.config.grant(req.lifetime());
        let expires = now + lifetime;
        if let Some(alloc) = self.allocations.get_mut(&id) {
            alloc.expires = expires;
        }
        self.schedule(id, expires);
        vec![Attribute::Lifetime(secs(lifetime))]
    }

    fn create_permission(
        &mut self,
        now: Instant,
        id: AllocationId,
        req: &Message,
    ) -> Result<Vec<Attribute>, Refusal> {
        let peers = req.xor_peer_addresses();
        if peers.is_empty() {
            return Err(BAD_REQUEST);
        }
        let until = now + self.config.permission_lifetime;
        let alloc = self.allocations.get_mut(&id).ok_or(SERVER_ERROR)?;
        for &peer in &peers {
            check_peer(&self.config, alloc.relayed, peer)?;
        }
        for peer in peers {
            alloc.permit(peer.ip(), until);
        }
        self.schedule(id, until);
        Ok(vec![])
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        id: AllocationId,
        req: &Message,
    ) -> Result<Vec<Attribute>, Refusal> {
        let peers = req.xor_peer_addresses();
        let (Some(Attribute::ChannelNumber(channel)), [peer]) = (req.get(kind::CHANNEL_NUMBER), &peers[..])
        else {
            return Err(BAD_REQUEST);
        };
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(channel) {
            return Err(BAD_REQUEST);
        }
        let bound_until = now + self.config.channel_lifetime;
        let permitted_until = now + self.config.permission_lifetime;
        let alloc = self.allocations.get_mut(&id).ok_or(SERVER_ERROR)?;
        check_peer(&self.config, alloc.relayed, *peer)?;
        alloc.bind(*channel, *peer, bound_until).map_err(|conflict| {
            tracing::debug!(?conflict, channel, %peer, "channel bind refused");
            match conflict {
                BindConflict::ChannelTaken | BindConflict::PeerTaken => BAD_REQUEST,
            }
        })?;
        alloc.permit(peer.ip(), permitted_until);
        self.schedule(id, bound_until.min(permitted_until));
        Ok(vec![])
    }

    fn success(&mut self, to: ReplyTo, attrs: Vec<Attribute>, key: Option<&Key>) {
        self.reply(to, Class::Success, attrs, key);
    }

    fn error(&mut self, to: ReplyTo, (code, reason): Refusal, attrs: Vec<Attribute>, key: Option<&Key>) {
        if to.method == Method::ALLOCATE {
            self.refused.entry(code).or_insert((reason, 0)).1 += 1;
        }
        let mut all = vec![Attribute::ErrorCode(ErrorCode::new(code, reason))];
        all.extend(attrs);
        self.reply(to, Class::Error, all, key);
    }

    fn reply(&mut self, to: ReplyTo, class: Class, attrs: Vec<Attribute>, key: Option<&Key>) {
        let mut b = Builder::new(to.method, class, to.tid);
        let software = self.config.software.clone().map(Attribute::Software);
        let built = attrs
            .iter()
            .chain(software.as_ref())
            .try_for_each(|a| b.add(a).map(|_| ()))
            .and_then(|()| match key {
                Some(key) => b.message_integrity(key).map(|_| ()),
                None => Ok(()),
            })
            .and_then(|()| {
                if to.fingerprint {
                    b.fingerprint()
                } else {
                    Ok(b.finish())
                }
            });
        match built {
            Ok(bytes) => self.queue(Transmit::ToClient {
                tuple: to.tuple,
                bytes,
            }),
            // Only an over-long configured SOFTWARE or REALM gets here.
            Err(e) => tracing::warn!(error = %e, "cannot encode a response"),
        }
    }
}

/// Whether the relay may send to `peer` from `relayed`.
fn check_peer(config: &Config, relayed: SocketAddr, peer: SocketAddr) -> Result<(), Refusal> {
    if Family::of(relayed) != Family::of(peer) {
        return Err((PEER_ADDRESS_FAMILY_MISMATCH, "Peer Address Family Mismatch"));
    }
    let ip = peer.ip();
    let never = ip.is_unspecified()
        || ip.is_multicast()
        || peer.port() == 0
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if never || (ip.is_loopback() && !config.allow_loopback_peers) {
        return Err((ErrorCode::FORBIDDEN, "Forbidden"));
    }
    Ok(())
}

/// The success attributes of an Allocate.
fn allocated(alloc: &Allocation, now: Instant) -> Vec<Attribute> {
    vec![
        Attribute::XorRelayedAddress(alloc.relayed),
        Attribute::Lifetime(secs(alloc.expires.saturating_duration_since(now))),
        Attribute::XorMappedAddress(alloc.tuple.client),
    ]
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Comprehension-required attributes this server does not handle.
fn unknown_attributes(req: &Message) -> Vec<u16> {
    let mut unknown = req.unknown_comprehension_required();
    unknown.retain(|&k| k != REQUESTED_ADDRESS_FAMILY);
    unknown
}

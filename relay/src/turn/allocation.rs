//! One allocation: its relayed address, lifetime, permissions and channels.
//!
//! Every expiry is an `Instant` compared with the caller's `now`, so a
//! permission that ran out between two timer runs is already refused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{AllocationId, FiveTuple};
use crate::stun::TransactionId;

/// Why a ChannelBind cannot bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindConflict {
    /// The channel is bound to another peer.
    ChannelTaken,
    /// The peer is bound to another channel.
    PeerTaken,
}

#[derive(Debug, Clone)]
struct Channel {
    peer: SocketAddr,
    expires: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Allocation {
    pub(crate) id: AllocationId,
    pub(crate) tuple: FiveTuple,
    pub(crate) relayed: SocketAddr,
    pub(crate) username: String,
    pub(crate) expires: Instant,
    /// The Allocate that made it, so a retransmission gets the same answer
    /// instead of 437 (RFC 8656 §7.2).
    pub(crate) allocate_tid: TransactionId,
    /// The earliest wake-up queued for this allocation, if any.
    pub(crate) scheduled: Option<Instant>,
    /// Permissions are per IP address; the peer's port is ignored (RFC 8656 §9).
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, Channel>,
    by_peer: HashMap<SocketAddr, u16>,
}

impl Allocation {
    pub(crate) fn new(
        id: AllocationId,
        tuple: FiveTuple,
        relayed: SocketAddr,
        username: String,
        expires: Instant,
        allocate_tid: TransactionId,
    ) -> Allocation {
        Allocation {
            id,
            tuple,
            relayed,
            username,
            expires,
            allocate_tid,
            scheduled: None,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            by_peer: HashMap::new(),
        }
    }

    /// Installs or refreshes the permission for `ip`.
    pub(crate) fn permit(&mut self, ip: IpAddr, until: Instant) {
        self.permissions.insert(ip, until);
    }

    pub(crate) fn is_permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|&until| until > now)
    }

    /// Binds or refreshes `channel` to `peer`.
    pub(crate) fn bind(
        &mut self,
        channel: u16,
        peer: SocketAddr,
        until: Instant,
    ) -> Result<(), BindConflict> {
        if let Some(c) = self.channels.get(&channel)
            && c.peer != peer
        {
            return Err(BindConflict::ChannelTaken);
        }
        if let Some(&c) = self.by_peer.get(&peer)
            && c != channel
        {
            return Err(BindConflict::PeerTaken);
        }
        self.channels.insert(channel, Channel { peer, expires: until });
        self.by_peer.insert(peer, channel);
        Ok(())
    }

    /// The peer bound to `channel`, if the binding is live.
    pub(crate) fn channel_peer(&self, channel: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .get(&channel)
            .filter(|c| c.expires > now)
            .map(|c| c.peer)
    }

    /// The live channel bound to `peer`, if any.
    pub(crate) fn peer_channel(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let channel = *self.by_peer.get(&peer)?;
        self.channel_peer(channel, now).map(|_| channel)
    }

    pub(crate) fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub(crate) fn permission_count(&self) -> usize {
        self.permissions.len()
    }

    /// Forgets permissions and channels that have expired at `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.permissions.retain(|_, until| *until > now);
        let by_peer = &mut self.by_peer;
        self.channels.retain(|_, c| {
            let live = c.expires > now;
            if !live {
                by_peer.remove(&c.peer);
            }
            live
        });
    }

    /// When something in this allocation next expires.
    pub(crate) fn next_deadline(&self) -> Instant {
        let perms = self.permissions.values().copied();
        let chans = self.channels.values().map(|c| c.expires);
        perms.chain(chans).fold(self.expires, Instant::min)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::turn::Transport;

    fn alloc(t0: Instant) -> Allocation {
        let tuple = FiveTuple {
            client: "192.0.2.1:1".parse().unwrap(),
            server: "192.0.2.2:3478".parse().unwrap(),
            transport: Transport::Udp,
        };
        let relayed = "192.0.2.2:50000".parse().unwrap();
        let expires = t0 + Duration::from_secs(600);
        Allocation::new(
            AllocationId(1),
            tuple,
            relayed,
            "u".into(),
            expires,
            TransactionId([0; 12]),
        )
    }

    #[test]
    fn channels_bind_one_to_one() {
        let t0 = Instant::now();
        let mut a = alloc(t0);
        let p1: SocketAddr = "198.51.100.1:9".parse().unwrap();
        let p2: SocketAddr = "198.51.100.2:9".parse().unwrap();
        let later = t0 + Duration::from_secs(10);
        assert_eq!(a.bind(0x4000, p1, later), Ok(()));
        assert_eq!(a.bind(0x4000, p1, later), Ok(()));
        assert_eq!(a.bind(0x4000, p2, later), Err(BindConflict::ChannelTaken));
        assert_eq!(a.bind(0x4001, p1, later), Err(BindConflict::PeerTaken));
        assert_eq!(a.peer_channel(p1, t0), Some(0x4000));
        assert_eq!(a.channel_peer(0x4000, later), None);
        a.expire(later);
        assert_eq!(a.channel_count(), 0);
        assert_eq!(a.bind(0x4001, p1, later), Ok(()));
    }

    #[test]
    fn deadlines_and_permissions() {
        let t0 = Instant::now();
        let mut a = alloc(t0);
        assert_eq!(a.next_deadline(), t0 + Duration::from_secs(600));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        a.permit(ip, t0 + Duration::from_secs(300));
        assert_eq!(a.next_deadline(), t0 + Duration::from_secs(300));
        assert!(a.is_permitted(ip, t0));
        assert!(!a.is_permitted(ip, t0 + Duration::from_secs(300)));
        a.expire(t0 + Duration::from_secs(300));
        assert_eq!(a.permission_count(), 0);
    }
}

//! What the status port reports: restund's `turnstats` counters, and what
//! the relay dropped and why.

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Allocations open now.
    pub allocs_cur: u64,
    /// Allocations made since the server started.
    pub allocs_tot: u64,
    /// Application bytes relayed from clients to peers (restund's meaning).
    pub bytes_tx: u64,
    /// Application bytes relayed from peers to clients.
    pub bytes_rx: u64,
    /// Channels bound now.
    pub chan_cur: u64,
    /// Packets dropped because they did not decode (or were not STUN or
    /// ChannelData at all).
    pub malformed: u64,
    /// Packets dropped for being longer than the configured maximum.
    pub oversized: u64,
    /// Packets dropped because no allocation or channel matched them.
    pub unroutable: u64,
    /// Packets dropped because the peer had no permission.
    pub forbidden: u64,
    /// Datagrams and frames relayed from clients to peers.
    pub packets_tx: u64,
    /// Datagrams relayed from peers to clients.
    pub packets_rx: u64,
    /// STUN Binding requests answered.
    pub bindings: u64,
}

impl Counters {
    /// Bytes relayed both ways.
    #[must_use]
    pub fn bytes_tot(&self) -> u64 {
        self.bytes_tx.saturating_add(self.bytes_rx)
    }
}

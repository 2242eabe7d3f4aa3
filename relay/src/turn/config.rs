//! What the TURN core is told when it starts: realm, lifetimes, quotas, the
//! drain redirect and which peers it relays to.

use std::net::SocketAddr;
use std::time::Duration;

use crate::stun::Key;

/// An allocation's lifetime when the client asks for none (RFC 8656 §7.2).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The longest lifetime granted, whatever the client asks (restund's
/// `turn_max_lifetime` default).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// A permission's lifetime; fixed by RFC 8656 §9.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// A channel binding's lifetime; fixed by RFC 8656 §12.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// How long a nonce stays fresh (restund's `auth_nonce_expiry` default).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(3600);

/// The TURN core's settings. Build with [`Config::new`], then set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The REALM every long-term credential belongs to.
    pub realm: String,
    /// SOFTWARE sent in responses, if any.
    pub software: Option<String>,
    /// Allocation lifetime when the request carries no LIFETIME.
    pub default_lifetime: Duration,
    /// The longest allocation lifetime granted.
    pub max_lifetime: Duration,
    /// Permission lifetime; the RFC fixes 300 s, tests shorten it.
    pub permission_lifetime: Duration,
    /// Channel binding lifetime; the RFC fixes 600 s, tests shorten it.
    pub channel_lifetime: Duration,
    /// How long a nonce is accepted before 438 Stale Nonce.
    pub nonce_lifetime: Duration,
    /// Signs nonces so they need no state; random per process.
    pub nonce_key: Key,
    /// Most allocations one username may hold at once (486 beyond).
    pub user_quota: Option<usize>,
    /// Most allocations the server holds at once (486 beyond).
    pub total_quota: Option<usize>,
    /// Where a draining server sends new allocations (300 Try Alternate);
    /// without one they get 486.
    pub alternate_server: Option<SocketAddr>,
    /// Whether peers on loopback addresses may be relayed to. Off in
    /// production: a relay on loopback reaches the host's own services.
    pub allow_loopback_peers: bool,
    /// Longest packet accepted from a client or peer; longer ones are
    /// dropped and counted as oversized.
    pub max_packet: usize,
}

impl Config {
    /// Defaults from the RFCs and restund for `realm`, nonces signed with
    /// `nonce_key` (draw it from a random source per process).
    #[must_use]
    pub fn new(realm: impl Into<String>, nonce_key: Key) -> Config {
        Config {
            realm: realm.into(),
            software: Some(concat!("relayd ", env!("CARGO_PKG_VERSION")).to_owned()),
            default_lifetime: DEFAULT_LIFETIME,
            max_lifetime: MAX_LIFETIME,
            permission_lifetime: PERMISSION_LIFETIME,
            channel_lifetime: CHANNEL_LIFETIME,
            nonce_lifetime: NONCE_LIFETIME,
            nonce_key,
            user_quota: None,
            total_quota: None,
            alternate_server: None,
            allow_loopback_peers: false,
            max_packet: crate::stun::MAX_MESSAGE_LEN,
        }
    }

    /// [`Config::new`] with a nonce key drawn from the operating system.
    ///
    /// # Errors
    ///
    /// The operating system's error if it has no randomness to give.
    pub fn with_random_key(realm: impl Into<String>) -> std::io::Result<Config> {
        let mut key = [0; 32];
        crate::random::fill(&mut key)?;
        Ok(Config::new(realm, Key::from_bytes(&key)))
    }

    /// The lifetime granted for a requested one (`None`: not asked):
    /// the request capped at the maximum (RFC 5766 §7.2).
    #[must_use]
    pub fn grant(&self, requested: Option<u32>) -> Duration {
        let asked = requested.map_or(self.default_lifetime, |s| Duration::from_secs(u64::from(s)));
        // LIFETIME is 32 bits; capping there also keeps `now + lifetime`
        // from overflowing whatever the configuration says.
        asked
            .min(self.max_lifetime)
            .min(Duration::from_secs(u64::from(u32::MAX)))
    }
}

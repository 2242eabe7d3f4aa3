//! Settings as written at one level (global `defaults`, a site's `defaults`, a
//! node), before they are merged. Every field is optional; [`Layer::over`] lets
//! the nearer level win field by field.
//!
//! Groups whose fields only make sense together (`stats`, `cert`, the service
//! manager) are replaced whole: a node that says `cert: {cert: .., key: ..}` must
//! not inherit a site-wide `bundle` as well.

use std::path::PathBuf;
use std::time::Duration;

use relay::Kind;

use super::model::{KnownHosts, OnTimeout, ReadOn, SecretRef, Transport};
use crate::yaml::Pos;

macro_rules! layer {
    ($(#[$m:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, Clone)]
        pub struct $name { $(pub $field: Option<$ty>),* }

        impl $name {
            /// `self` (the nearer level) wins wherever it says something.
            pub fn over(&self, lower: &Self) -> Self {
                Self { $($field: self.$field.clone().or_else(|| lower.$field.clone())),* }
            }
        }
    };
}

layer!(SshLayer {
    user: String,
    port: u16,
    identity_file: PathBuf,
    known_hosts: KnownHosts,
    known_hosts_file: PathBuf,
    connect_timeout: Duration,
    command_timeout: Duration,
    jump_host: String,
    sudo: bool,
});

layer!(
    /// Everything a relay node may say besides its name, host and URLs.
    RelayLayer {
        // `Some(None)`: written but not a known kind (already reported).
        kind: Option<Kind>,
        stun_check: bool,
        stats: StatsLayer,
        manager: (Manager, Pos),
        stop: Vec<String>,
        start: Vec<String>,
        restart: Vec<String>,
        status: Vec<String>,
        status_expect: String,
        reload: Vec<String>,
        cert: (CertLayer, Pos),
        drain_timeout: Duration,
        drain_poll: Duration,
        drain_threshold: u64,
        drain_stuck_after: Duration,
        drain_on_timeout: OnTimeout,
        relay_drain: bool,
        reboot_command: Vec<String>,
        boot_id: Vec<String>,
        reboot_timeout: Duration,
    }
);

/// The defaults block, as found at the top of the file or in a site.
#[derive(Debug, Default, Clone)]
pub struct Defaults {
    pub transport: Option<Transport>,
    pub ssh: SshLayer,
    pub relay: RelayLayer,
    pub min_healthy_relays: Option<usize>,
}

impl Defaults {
    pub fn over(&self, lower: &Defaults) -> Defaults {
        Defaults {
            transport: self.transport.or(lower.transport),
            ssh: self.ssh.over(&lower.ssh),
            relay: self.relay.over(&lower.relay),
            min_healthy_relays: self.min_healthy_relays.or(lower.min_healthy_relays),
        }
    }
}

/// Which service manager runs the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    Systemd(String),
    Docker(String),
}

/// A `stats:` block as written.
#[derive(Debug, Clone, Default)]
pub struct StatsLayer {
    pub pos: Pos,
    pub via: Option<String>,
    pub addr: Option<String>,
    pub url: Option<String>,
    pub command: Option<Vec<String>>,
    pub password: Option<SecretRef>,
    pub read_on: Option<ReadOn>,
}

/// A `cert:` block as written.
#[derive(Debug, Clone, Default)]
pub struct CertLayer {
    pub bundle: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

//! The resolved inventory: every default merged in, every value checked.
//!
//! Nothing here is optional "because the file did not say": by the time a value
//! reaches these types, the global, site and node levels and the relay kind's
//! own defaults have been applied.

use std::path::PathBuf;
use std::time::Duration;

use relay::{CertLayout, Kind, StatsSource};

use crate::template::Template;

pub use crate::command::{Access, KnownHosts, SecretRef, Ssh, Transport};

/// Where on the nodes a run's site locks live unless `lock.dir` says.
pub const DEFAULT_LOCK_DIR: &str = "/var/lib/opsctl/locks";

#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file as the user named it (for messages).
    pub file: String,
    /// Directory relative paths in the inventory are resolved against.
    pub dir: PathBuf,
    pub playbooks_dir: Option<PathBuf>,
    /// `cert.ca`: a file of roots clients trust besides the system's.
    pub cert_ca: Option<PathBuf>,
    /// `lock.dir`: where on the nodes a run's site locks live
    /// ([`DEFAULT_LOCK_DIR`] unless set).
    pub lock_dir: String,
    /// Relay procedures on a site with an etcd cluster lock in it (an
    /// etcd lease), unless `lock: {backend: nodes}`.
    pub lock_etcd: bool,
    /// `lock: {lease: DURATION}`: an etcd lock's lease TTL.
    pub lock_lease: std::time::Duration,
    pub advertise: Advertise,
    pub sites: Vec<Site>,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub min_healthy_relays: usize,
    pub relays: Vec<Relay>,
    pub cluster: Option<Cluster>,
}

#[derive(Debug, Clone)]
pub struct Relay {
    pub name: String,
    pub site: String,
    pub access: Access,
    pub kind: Kind,
    /// The ICE URLs clients receive for this relay, as written in the advertised list.
    pub urls: Vec<String>,
    pub stats: Stats,
    pub service: Service,
    pub cert: Option<CertLayout>,
    pub drain: Drain,
    /// Send a STUN binding request from where opsctl runs as a health check.
    pub stun_check: bool,
    pub reboot: Reboot,
    /// An rtpengine's control addresses and Redis redundancy (`rtpengine:`).
    pub rtpengine: Option<Rtpengine>,
}

/// How opsctl reaches an rtpengine and how it shares calls through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpengine {
    /// Its CLI (`listen-cli`), `host:port`, reached with `rtpengine-ctl` on the node.
    pub cli: (String, u16),
    /// Its ng control socket (`listen-ng`, UDP), `host:port`: pinged from
    /// here after a restart when set.
    pub ng: Option<String>,
    /// Where it writes its own calls (`redis=`); `None`: no redundancy.
    pub redis: Option<Redis>,
    /// The keyspaces (peers' databases) it is set to follow (`subscribe-keyspace`).
    pub subscribe: Vec<u32>,
    /// Its `interface=` list, `name/address`: the first binds its own calls,
    /// the others carry the calls of the peers whose first they name.
    pub interfaces: Vec<(String, String)>,
    /// The Redis password's source; never the value, never a command line.
    pub redis_password: Option<SecretRef>,
}

impl Default for Rtpengine {
    /// rtpengine's own default CLI, nothing else known.
    fn default() -> Rtpengine {
        Rtpengine {
            cli: ("127.0.0.1".into(), 9900),
            ng: None,
            redis: None,
            subscribe: Vec::new(),
            interfaces: Vec::new(),
            redis_password: None,
        }
    }
}

impl Rtpengine {
    /// `rtpengine-ctl` reaching this instance's CLI, with `args`.
    pub fn ctl(&self, args: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = [
            "rtpengine-ctl",
            "-ip",
            &self.cli.0,
            "-port",
            &self.cli.1.to_string(),
        ]
        .map(String::from)
        .to_vec();
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv
    }

    /// The name of its first interface: the one its own calls bind, and
    /// the name its peers give the interface they hold them on.
    pub fn own_interface(&self) -> Option<&str> {
        self.interfaces.first().map(|(n, _)| n.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    /// `host:port`.
    pub addr: String,
    pub db: u32,
}

impl Relay {
    /// The `host:port` of the relay's first `turns:` URL: where its
    /// certificate is served, and the host clients check it against.
    pub fn turns_target(&self) -> Option<String> {
        let hostport = self
            .urls
            .iter()
            .find_map(|u| u.strip_prefix("turns:"))
            .map(|u| u.split('?').next().unwrap_or(u))?;
        // RFC 7065: `turns:` without a port is 5349.
        Some(with_port(hostport, 5349))
    }

    /// A UDP STUN/TURN address of the relay: `turn:host:port` without
    /// `transport=tcp`, where a STUN binding request can be sent.
    pub fn stun_target(&self) -> Option<String> {
        self.urls.iter().find_map(|u| {
            let rest = u.strip_prefix("turn:").or_else(|| u.strip_prefix("stun:"))?;
            let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
            if query == "transport=tcp" {
                return None;
            }
            Some(with_port(hostport, 3478))
        })
    }
}

/// `host:port` as written, or with `port` when it names none (an IPv6
/// address's own colons, `[::1]`, are not a port).
fn with_port(hostport: &str, port: u16) -> String {
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
    if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:{port}")
    }
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub source: StatsSource,
    /// Query the stats interface on the node (through SSH) or directly from here.
    pub read_on: ReadOn,
    /// Where the stats password comes from; the value itself is never stored here.
    pub password: Option<SecretRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOn {
    Node,
    Local,
}

/// Commands that control a service. Each is an argument vector run on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub stop: Vec<String>,
    pub start: Vec<String>,
    pub restart: Vec<String>,
    pub status: Vec<String>,
    /// What `status` prints (trimmed) when the service is up; `None`: exit 0 is enough.
    pub status_expect: Option<String>,
    /// Signal-free reload, where the relay supports one.
    pub reload: Option<Vec<String>>,
    /// Prints the version of the relay running now (not of the binary on
    /// disk, which an upgrade may have replaced): coturn's, whose drain
    /// mode depends on it.
    pub version: Option<Vec<String>>,
    /// Starts the relay's own drain where a signal does it (coturn's SIGUSR1).
    pub drain: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// Stop the rollout and leave the relay un-advertised (say so, with the fix).
    Stop,
    /// Put the relay back in the advertised list, then stop the rollout.
    Readvertise,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    pub timeout: Duration,
    pub poll: Duration,
    /// The rollout proceeds once allocations are at or below this.
    pub threshold: u64,
    /// A count that has not fallen for this long is called out, with the
    /// relay's own listing of what is left where it has one.
    pub stuck_after: Duration,
    pub on_timeout: OnTimeout,
    /// Also switch on the relay's own drain mode while waiting.
    pub relay_drain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reboot {
    pub command: Vec<String>,
    pub boot_id: Vec<String>,
    pub timeout: Duration,
}

/// How relays are taken out of and put back into the list clients receive.
#[derive(Debug, Clone)]
pub struct Advertise {
    pub backend: Backend,
    /// How to confirm from the clients' side which relays are listed.
    pub check: Option<AdvertiseCheck>,
}

#[derive(Debug, Clone)]
pub enum Backend {
    None,
    ValuesFile {
        /// The values file, resolved against the inventory's directory.
        file: PathBuf,
        /// The keys, joined by dots, down to the list in the file
        /// (`brig.turnStatic.v2`); no entry elsewhere is ever edited.
        list: String,
        /// Run after each edit, in `workdir`.
        apply: Vec<String>,
        then: Vec<Vec<String>>,
        workdir: PathBuf,
    },
    Command {
        /// Placeholders: {node}, {host}, {site}; each stays one argument.
        remove: Vec<Template>,
        restore: Vec<Template>,
        then: Vec<Vec<String>>,
        workdir: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub enum AdvertiseCheck {
    /// `GET` this URL; the body is brig's `/calls/config/v2` JSON.
    Url(String),
    /// Run this locally; it prints that JSON.
    Command(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub site: String,
    pub flavor: Flavor,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone)]
pub enum Flavor {
    Clearwater(Clearwater),
    Etcd(Etcd),
}

impl Flavor {
    pub fn name(&self) -> &'static str {
        match self {
            Flavor::Clearwater(_) => "clearwater",
            Flavor::Etcd(_) => "etcd",
        }
    }
}

/// Project Clearwater's etcd layout and the members chosen to re-form the cluster.
#[derive(Debug, Clone)]
pub struct Clearwater {
    pub local_config: String,
    pub shared_config: String,
    pub data_dir: String,
    /// Members that re-form the cluster; the rest rejoin one at a time as
    /// proxies. Unless `masters_chosen`, Clearwater's rule picked them from
    /// every member ([`masters_of`]); a plan picks again from the members
    /// that answer.
    pub masters: Vec<String>,
    /// The inventory names them (`masters:`).
    pub masters_chosen: bool,
}

/// Clearwater's rule for the masters: every Vellum node when there are three
/// or more, else every node.
pub fn masters_of<'a>(members: impl IntoIterator<Item = &'a Member>) -> Vec<String> {
    let all: Vec<&Member> = members.into_iter().collect();
    let vellum: Vec<String> = all
        .iter()
        .filter(|m| {
            matches!(
                m.role,
                MemberRole::Clearwater {
                    role: ClearwaterRole::Vellum,
                    ..
                }
            )
        })
        .map(|m| m.name.clone())
        .collect();
    if vellum.len() >= 3 {
        vellum
    } else {
        all.iter().map(|m| m.name.clone()).collect()
    }
}

/// A plain etcd 3.x cluster.
#[derive(Debug, Clone)]
pub struct Etcd {
    pub token: String,
    /// The member whose data the rebuilt cluster starts from.
    pub seed: String,
    pub etcdctl: String,
    /// etcd 3.5 and later restore (and read) snapshots with it.
    pub etcdutl: String,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub access: Access,
    pub role: MemberRole,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per cluster; boxing buys nothing
pub enum MemberRole {
    Clearwater {
        role: ClearwaterRole,
        management_ip: String,
        /// Its signalling address (local_config's `local_ip`), on which
        /// Clearwater clusters Chronos and Memcached.
        local_ip: String,
    },
    Etcd {
        client_url: String,
        peer_url: String,
        data_dir: String,
        env_file: String,
        service: Service,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearwaterRole {
    Bono,
    Sprout,
    Dime,
    Homer,
    Vellum,
    Ellis,
}

impl ClearwaterRole {
    pub const ALL: [(&'static str, ClearwaterRole); 6] = [
        ("bono", ClearwaterRole::Bono),
        ("sprout", ClearwaterRole::Sprout),
        ("dime", ClearwaterRole::Dime),
        ("homer", ClearwaterRole::Homer),
        ("vellum", ClearwaterRole::Vellum),
        ("ellis", ClearwaterRole::Ellis),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

//! The config file's model, and the one place where it and the flags are
//! resolved into what the server runs with.
//!
//! ```yaml
//! realm: turn.example.org
//! listen: {udp: ["0.0.0.0:3478"], tcp: ["0.0.0.0:3478"], tls: ["0.0.0.0:5349"]}
//! tls: {cert: /etc/relayd/relayd.pem}  # chain then key; or add `key: FILE`
//! relay: [{bind: 10.0.0.5, advertise: 203.0.113.5}]
//! status: 127.0.0.1:33000          # or `off`
//! metrics: 127.0.0.1:9641          # Prometheus, http://ADDR/metrics; off unless set
//! users: {alice: secret}
//! auth_secrets: [{key: 0, secret: old}, {key: 1, secret: new}]
//! quota: {user: 10, total: 10000}
//! lifetime: {default: 600, max: 3600}   # seconds
//! alternate_server: 198.51.100.7:3478
//! buffers: {listen: 4MiB, relayed: 1MiB}   # socket buffers asked of the kernel
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::pem;
use crate::server::{self, RelayAddress};
use crate::turn::{self, Credentials};
use anyhow::{Context, bail};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::args::{Args, parse_size};

/// restund's default status address.
const DEFAULT_STATUS: &str = "127.0.0.1:33000";
/// The TURN port (RFC 8656).
const DEFAULT_LISTEN: &str = "0.0.0.0:3478";

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct File {
    /// Where it was read from, to name with a line in what is wrong.
    #[serde(skip)]
    path: Option<PathBuf>,
    realm: Option<String>,
    listen: Listen,
    relay: Vec<Spanned<Relay>>,
    status: Option<Spanned<String>>,
    metrics: Option<SocketAddr>,
    users: BTreeMap<String, String>,
    auth_secrets: Vec<Secret>,
    quota: Quota,
    lifetime: Lifetime,
    alternate_server: Option<SocketAddr>,
    allow_loopback_peers: bool,
    draining: bool,
    tls: Option<Spanned<TlsFiles>>,
    buffers: BufferSizes,
}

/// Socket buffer sizes: bytes, or a number with `KiB` or `MiB`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BufferSizes {
    listen: Option<Spanned<SizeValue>>,
    relayed: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    /// The size in bytes; what is wrong with it starts with `at` (`FILE:LINE: `).
    fn bytes(&self, at: &str, field: &str) -> anyhow::Result<usize> {
        match self {
            SizeValue::Bytes(n) => parse_size(&n.to_string()),
            SizeValue::Text(t) => parse_size(t),
        }
        .map_err(|why| anyhow::anyhow!("{at}`{field}`: {why}"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFiles {
    cert: PathBuf,
    key: Option<PathBuf>,
    /// The names clients connect to (`turns:` hosts): the certificate must
    /// be one they accept for each, or it is not served.
    #[serde(default)]
    names: Vec<String>,
    /// Roots clients trust besides the system's.
    ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Listen {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Relay {
    bind: IpAddr,
    advertise: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Secret {
    key: u32,
    secret: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Quota {
    user: Option<usize>,
    total: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Lifetime {
    default: Option<u64>,
    max: Option<u64>,
}

impl File {
    /// Reads a config file.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or is not a valid config (the message names
    /// the line).
    pub fn load(path: &std::path::Path) -> anyhow::Result<File> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut file =
            File::parse(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        file.path = Some(path.to_owned());
        Ok(file)
    }

    fn parse(text: &str) -> anyhow::Result<File> {
        if text.trim().is_empty() {
            return Ok(File::default());
        }
        Ok(serde_saphyr::from_str(text)?)
    }
}

/// What relayd runs with.
#[derive(Debug)]
pub struct Settings {
    pub server: server::Config,
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub status: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Merges the file (if any) and the flags; flags win, lists given as flags
/// replace the file's.
///
/// # Errors
///
/// A missing realm or relay address, a wildcard relay address, a
/// malformed `NAME=PASSWORD` / `INDEX=SECRET` flag (the secret is not
/// shown), TLS listeners without a certificate or the reverse, or a
/// certificate that fails its checks.
pub fn resolve(file: File, args: &Args) -> anyhow::Result<Settings> {
    // `FILE:LINE: ` before what is wrong with a value the file gave.
    let path = file.path.clone();
    let at = |loc: &Location| match &path {
        Some(p) => format!("{}:{}: ", p.display(), loc.line()),
        None => format!("line {}: ", loc.line()),
    };
    let realm = args.realm.clone().or(file.realm).with_context(|| {
        let file = path
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        format!("{file}no realm: set `realm` in the config file or pass --realm")
    })?;
    let mut turn = turn::Config::with_random_key(realm).context("cannot draw a nonce key")?;
    if let Some(s) = file.lifetime.default {
        turn.default_lifetime = Duration::from_secs(s);
    }
    if let Some(s) = file.lifetime.max {
        turn.max_lifetime = Duration::from_secs(s);
    }
    turn.user_quota = args.user_quota.or(file.quota.user);
    turn.total_quota = args.total_quota.or(file.quota.total);
    turn.alternate_server = args.alternate_server.or(file.alternate_server);
    turn.allow_loopback_peers = args.allow_loopback_peers || file.allow_loopback_peers;

    let mut credentials = Credentials::new();
    for (name, password) in file.users {
        credentials.add_user(name, password);
    }
    for s in file.auth_secrets {
        credentials.add_secret(s.key, s.secret);
    }
    for user in &args.users {
        // Without an `=` the whole value may be a password: quote none of it.
        let (name, password) = split_pair(user).context("a `--user` value is not NAME=PASSWORD")?;
        credentials.add_user(name, password);
    }
    for secret in &args.auth_secrets {
        let (index, secret) =
            split_pair(secret).context("`--auth-secret`: expected INDEX=SECRET, e.g. `0=…`")?;
        let index: u32 = index
            .parse()
            .with_context(|| format!("`--auth-secret {index}=…`: the index must be a number"))?;
        credentials.add_secret(index, secret);
    }
    if credentials.is_empty() {
        tracing::warn!("no users and no auth secrets: every allocation will be refused");
    }

    let relay: Vec<RelayAddress> = if args.relay_ip.is_empty() {
        if let Some(r) = file.relay.iter().find(|r| r.value.bind.is_unspecified()) {
            bail!(
                "{}relay address `{}` is a wildcard; give the specific address relayed sockets bind to",
                at(&r.referenced),
                r.value.bind
            );
        }
        file.relay
            .iter()
            .map(|r| RelayAddress {
                bind: r.value.bind,
                advertise: r.value.advertise,
            })
            .collect()
    } else {
        if args.advertise_ip.len() > args.relay_ip.len() {
            bail!(
                "more --advertise-ip than --relay-ip: each advertised address belongs to one relay address"
            );
        }
        let advertise = args
            .advertise_ip
            .iter()
            .map(|&a| Some(a))
            .chain(std::iter::repeat(None));
        args.relay_ip
            .iter()
            .zip(advertise)
            .map(|(&bind, advertise)| RelayAddress { bind, advertise })
            .collect()
    };
    if relay.is_empty() {
        bail!(
            "no relay address: set `relay` in the config file or pass --relay-ip (the host's address peers reach)"
        );
    }
    if let Some(r) = relay.iter().find(|r| r.bind.is_unspecified()) {
        bail!(
            "relay address `{}` is a wildcard; give the specific address relayed sockets bind to",
            r.bind
        );
    }

    let pick =
        |flags: &[SocketAddr], file: Vec<SocketAddr>| if flags.is_empty() { file } else { flags.to_vec() };
    let mut udp = pick(&args.listen_udp, file.listen.udp);
    let mut tcp = pick(&args.listen_tcp, file.listen.tcp);
    let tls = pick(&args.listen_tls, file.listen.tls);
    let (file_names, file_ca) = file
        .tls
        .as_ref()
        .map(|t| (t.value.names.clone(), t.value.ca.clone()))
        .unwrap_or_default();
    // Where the file named the certificate, for what is wrong with it.
    let tls_at = file.tls.as_ref().map(|t| at(&t.referenced)).unwrap_or_default();
    let names = if args.tls_name.is_empty() {
        file_names
    } else {
        args.tls_name.clone()
    };
    let ca: Vec<PathBuf> = args.tls_ca.clone().or(file_ca).into_iter().collect();
    let cert = match (&args.cert, file.tls) {
        (Some(cert), _) => Some((cert.clone(), args.key.clone())),
        (None, Some(files)) => Some((files.value.cert, files.value.key)),
        (None, None) => None,
    };
    let tls_cert = match (cert, tls.is_empty()) {
        (None, true) => None,
        (None, false) => bail!(
            "TLS listeners are given but no certificate: set `tls.cert` in the config file or pass --cert"
        ),
        (Some(_), true) => bail!(
            "a certificate is given but nothing listens for TLS: add `listen.tls` in the config file or pass --listen-tls (TURN over TLS is usually port 5349)"
        ),
        (Some((cert, key)), false) => {
            let source = match key {
                Some(key) => pem::Source::Pair { chain: cert, key },
                None => pem::Source::Bundle(cert),
            };
            let expect = if names.is_empty() {
                None
            } else {
                Some(server::Expect {
                    names: names.clone(),
                    trust: std::sync::Arc::new(crate::trust::Trust::load(&ca)?),
                })
            };
            let from_file = args.cert.is_none();
            let tls = server::Tls::load(source, expect);
            Some(tls.with_context(|| {
                format!("{}cannot serve TLS", if from_file { tls_at.as_str() } else { "" })
            })?)
        }
    };
    if udp.is_empty() && tcp.is_empty() && tls.is_empty() {
        let default: SocketAddr = DEFAULT_LISTEN.parse()?;
        (udp, tcp) = (vec![default], vec![default]);
    }
    let (status, status_at) = match (&args.status, &file.status) {
        (Some(flag), _) => (flag.as_str(), String::new()),
        (None, Some(s)) => (s.value.as_str(), at(&s.referenced)),
        (None, None) => (DEFAULT_STATUS, String::new()),
    };
    let status = match status {
        "off" => None,
        addr => Some(
            addr.parse()
                .with_context(|| format!("{status_at}status address `{addr}` is not IP:PORT or `off`"))?,
        ),
    };

    let mut server = server::Config::new(turn, credentials, relay);
    server.draining = args.drain || file.draining;
    server.tls = tls_cert;
    if let Some(b) = args.listen_buffer {
        server.buffers.listen = b;
    } else if let Some(v) = &file.buffers.listen {
        server.buffers.listen = v.value.bytes(&at(&v.referenced), "buffers.listen")?;
    }
    if let Some(b) = args.relay_buffer {
        server.buffers.relayed = b;
    } else if let Some(v) = &file.buffers.relayed {
        server.buffers.relayed = v.value.bytes(&at(&v.referenced), "buffers.relayed")?;
    }
    Ok(Settings {
        server,
        udp,
        tcp,
        tls,
        status,
        metrics: args.metrics.or(file.metrics),
    })
}

impl Settings {
    /// What relayd would serve, a line each, for `--check-config`.
    #[must_use]
    pub fn describe(&self) -> String {
        let list = |addrs: &[SocketAddr]| {
            if addrs.is_empty() {
                "-".to_owned()
            } else {
                addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let turn = &self.server.turn;
        let mut out = format!("  realm: {}\n", turn.realm);
        out += &format!(
            "  listen: udp {}; tcp {}; tls {}\n",
            list(&self.udp),
            list(&self.tcp),
            list(&self.tls)
        );
        for r in &self.server.relay {
            match r.advertise {
                Some(a) => out += &format!("  relay: {} (advertised as {a})\n", r.bind),
                None => out += &format!("  relay: {}\n", r.bind),
            }
        }
        out += &format!(
            "  status: {}\n",
            self.status.map_or_else(|| "off".to_owned(), |s| s.to_string())
        );
        if let Some(m) = self.metrics {
            out += &format!("  metrics: http://{m}/metrics\n");
        }
        let credentials = &self.server.credentials;
        out += &format!(
            "  credentials: {} static users, {} shared secrets{}\n",
            credentials.users(),
            credentials.secrets(),
            if credentials.is_empty() {
                " (every allocation will be refused)"
            } else {
                ""
            }
        );
        let quota = |q: Option<usize>| q.map_or_else(|| "none".to_owned(), |n| n.to_string());
        out += &format!(
            "  quota: {} per user, {} in all; lifetime {} s by default, {} s at most\n",
            quota(turn.user_quota),
            quota(turn.total_quota),
            turn.default_lifetime.as_secs(),
            turn.max_lifetime.as_secs()
        );
        if let Some(tls) = &self.server.tls {
            out += &format!("  certificate: {}\n", tls.summary());
        }
        let size = |b: usize| {
            if b == 0 {
                "the kernel's default".to_owned()
            } else {
                format!("{b} bytes")
            }
        };
        out += &format!(
            "  buffers: listening {}, relayed {}\n",
            size(self.server.buffers.listen),
            size(self.server.buffers.relayed)
        );
        if self.server.draining {
            out += "  starts draining: new allocations refused\n";
        }
        out
    }
}

fn split_pair(s: &str) -> Option<(&str, &str)> {
    s.split_once('=').filter(|(a, b)| !a.is_empty() && !b.is_empty())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("relayd").chain(argv.iter().copied())).unwrap()
    }

    const EXAMPLE: &str = "
realm: turn.example.org
listen: {udp: ['192.0.2.1:3478'], tcp: ['192.0.2.1:3478']}
relay: [{bind: 192.0.2.1, advertise: 203.0.113.5}]
status: 127.0.0.1:33001
users: {alice: pw}
auth_secrets: [{key: 0, secret: old}, {key: 1, secret: new}]
quota: {user: 10, total: 100}
lifetime: {default: 300, max: 900}
alternate_server: 198.51.100.7:3478
draining: true
";

    #[test]
    fn buffer_sizes_are_bytes_or_binary_units_and_the_flags_win() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("4 MB").unwrap_err().contains("the unit `MB`"));
        assert!(parse_size("3GiB").unwrap_err().contains("`3GiB`"));
        assert!(
            parse_size("4096MiB")
                .unwrap_err()
                .contains("more than the kernel takes")
        );
        let base = "realm: r\nrelay: [{bind: 192.0.2.1}]\n";
        let s = resolve(File::parse(base).unwrap(), &args(&[])).unwrap();
        assert_eq!(s.server.buffers, server::Buffers::default());
        let file = format!("{base}buffers: {{listen: 8MiB, relayed: 262144}}\n");
        let s = resolve(File::parse(&file).unwrap(), &args(&[])).unwrap();
        assert_eq!(
            (s.server.buffers.listen, s.server.buffers.relayed),
            (8 << 20, 262_144)
        );
        let s = resolve(File::parse(&file).unwrap(), &args(&["--listen-buffer", "2MiB"])).unwrap();
        assert_eq!(
            (s.server.buffers.listen, s.server.buffers.relayed),
            (2 << 20, 262_144)
        );
        let bad = format!("{base}buffers: {{listen: 4 MB}}\n");
        let e = resolve(File::parse(&bad).unwrap(), &args(&[])).unwrap_err();
        assert!(format!("{e:#}").contains("`buffers.listen`: `4 MB`"), "{e:#}");
    }

    #[test]
    fn the_file_is_read_whole() {
        let s = resolve(File::parse(EXAMPLE).unwrap(), &args(&[])).unwrap();
        assert_eq!(s.server.turn.realm, "turn.example.org");
        assert_eq!(
            s.server.relay,
            vec![RelayAddress {
                bind: "192.0.2.1".parse().unwrap(),
                advertise: Some("203.0.113.5".parse().unwrap())
            }]
        );
        assert_eq!(s.status, Some("127.0.0.1:33001".parse().unwrap()));
        assert_eq!(
            (s.server.turn.user_quota, s.server.turn.total_quota),
            (Some(10), Some(100))
        );
        assert_eq!(s.server.turn.max_lifetime, Duration::from_secs(900));
        assert!(s.server.draining);
        assert!(s.server.credentials.keys("alice", "r", 0).is_ok());
        assert!(s.server.credentials.keys("d=9.v=1.k=1.t=s.r=x", "r", 0).is_ok());
        assert_eq!(s.udp, vec!["192.0.2.1:3478".parse().unwrap()]);
    }

    #[test]
    fn flags_override_the_file() {
        let a = args(&[
            "--realm=lab",
            "--relay-ip=127.0.0.1",
            "--listen-udp=127.0.0.1:0",
            "--status=off",
            "--user=bob=pw2",
            "--auth-secret=7=s",
            "--user-quota=1",
        ]);
        let s = resolve(File::parse(EXAMPLE).unwrap(), &a).unwrap();
        assert_eq!(s.server.turn.realm, "lab");
        assert_eq!(
            s.server.relay,
            vec![RelayAddress::new("127.0.0.1".parse().unwrap())]
        );
        assert_eq!((s.udp.len(), s.tcp.len(), s.status), (1, 1, None));
        assert_eq!(s.server.turn.user_quota, Some(1));
        assert!(s.server.credentials.keys("bob", "r", 0).is_ok());
        assert!(s.server.credentials.keys("d=9.v=1.k=7.t=s.r=x", "r", 0).is_ok());
    }

    #[test]
    fn defaults_and_mistakes() {
        let s = resolve(File::default(), &args(&["--realm=r", "--relay-ip=192.0.2.1"])).unwrap();
        assert_eq!(s.udp, vec![DEFAULT_LISTEN.parse().unwrap()]);
        assert_eq!(s.status, Some(DEFAULT_STATUS.parse().unwrap()));
        let err = |argv: &[&str]| format!("{:#}", resolve(File::default(), &args(argv)).unwrap_err());
        assert_eq!(
            err(&["--relay-ip=192.0.2.1"]),
            "no realm: set `realm` in the config file or pass --realm"
        );
        assert!(err(&["--realm=r"]).starts_with("no relay address"));
        assert!(err(&["--realm=r", "--relay-ip=0.0.0.0"]).contains("is a wildcard"));
        let bad_user = err(&["--realm=r", "--relay-ip=192.0.2.1", "--user=alice:hunter2"]);
        assert!(
            bad_user.contains("not NAME=PASSWORD") && !bad_user.contains("hunter2"),
            "{bad_user}"
        );
        let bad_secret = err(&["--realm=r", "--relay-ip=192.0.2.1", "--auth-secret=hunter2"]);
        assert!(!bad_secret.contains("hunter2"), "{bad_secret}");
        assert!(
            err(&["--realm=r", "--relay-ip=192.0.2.1", "--cert=/nonexistent.pem"])
                .starts_with("a certificate is given but nothing listens for TLS")
        );
        assert_eq!(
            err(&[
                "--realm=r",
                "--relay-ip=192.0.2.1",
                "--listen-tls=127.0.0.1:0",
                "--cert=/nonexistent.pem"
            ]),
            "cannot serve TLS: cannot read /nonexistent.pem: No such file or directory (os error 2)"
        );
        let typo = File::parse("realm: r\nrelays: []\n").unwrap_err();
        assert!(format!("{typo:#}").contains("relays"), "{typo:#}");
    }
}

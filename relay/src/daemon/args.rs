//! The command line as typed: clap types only. Flags override the config
//! file; `settings` resolves both into the server's configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

/// A STUN/TURN relay (RFC 5389/5766) with long-term and time-limited
/// credentials, a restund-compatible status port and a drain mode that
/// keeps existing allocations working.
///
/// Secrets given as flags show in the process list: prefer the config file
/// (mode 0600) or the environment variables.
#[derive(Debug, Parser)]
#[command(name = "relayd", version)]
pub struct Args {
    /// YAML config file; flags given as well override its values.
    #[arg(short, long, env = "RELAYD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Serve TURN over UDP on this address (repeatable).
    #[arg(long = "listen-udp", value_name = "ADDR")]
    pub listen_udp: Vec<SocketAddr>,

    /// Serve TURN over TCP on this address (repeatable).
    #[arg(long = "listen-tcp", value_name = "ADDR")]
    pub listen_tcp: Vec<SocketAddr>,

    /// Serve TURN over TLS (`turns:`) on this address (repeatable); needs --cert.
    #[arg(long = "listen-tls", value_name = "ADDR")]
    pub listen_tls: Vec<SocketAddr>,

    /// PEM certificate for TLS: the whole chain, server certificate first,
    /// then the private key unless --key names another file. SIGHUP or the
    /// status command `reload_cert` reads it again.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// The private key, when it is not at the end of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// A name clients connect to (the `turns:` host; repeatable): the
    /// certificate is served only if clients would accept it for each,
    /// verified against the system's trust store and --tls-ca.
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_name: Vec<String>,

    /// A file of root certificates clients trust besides the system's.
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Bind relayed sockets on this address, one per family (repeatable).
    #[arg(long = "relay-ip", value_name = "IP")]
    pub relay_ip: Vec<IpAddr>,

    /// Tell clients this relayed address instead (1:1 NAT), same order as --relay-ip.
    #[arg(long = "advertise-ip", value_name = "IP")]
    pub advertise_ip: Vec<IpAddr>,

    /// The long-term credential realm.
    #[arg(long, env = "RELAYD_REALM")]
    pub realm: Option<String>,

    /// A static user as NAME=PASSWORD (repeatable).
    #[arg(
        long = "user",
        value_name = "NAME=PASSWORD",
        env = "RELAYD_USERS",
        value_delimiter = ','
    )]
    pub users: Vec<String>,

    /// A shared secret for time-limited credentials as INDEX=SECRET; INDEX
    /// is the `k=` of Wire usernames, coturn usernames try every secret.
    #[arg(
        long = "auth-secret",
        value_name = "INDEX=SECRET",
        env = "RELAYD_AUTH_SECRETS",
        value_delimiter = ','
    )]
    pub auth_secrets: Vec<String>,

    /// Most allocations one username may hold.
    #[arg(long, value_name = "N")]
    pub user_quota: Option<usize>,

    /// Most allocations the relay holds.
    #[arg(long, value_name = "N")]
    pub total_quota: Option<usize>,

    /// The status port (restund's `turnstats`, drain commands), or `off`.
    #[arg(long, value_name = "ADDR|off")]
    pub status: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics (allocations now as
    /// `turn_total_allocations`, as coturn names it, and relayd's own).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Where a draining relay sends new allocations (300 Try Alternate).
    #[arg(long, value_name = "ADDR")]
    pub alternate_server: Option<SocketAddr>,

    /// Relay to peers on loopback addresses (labs only).
    #[arg(long)]
    pub allow_loopback_peers: bool,

    /// Start in drain mode.
    #[arg(long)]
    pub drain: bool,

    /// Receive and send buffer of each TURN listening socket, in bytes or
    /// with KiB/MiB (default 4MiB; 0: the kernel's default). Every client's
    /// datagrams queue there; a kernel ceiling below it is logged.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub listen_buffer: Option<usize>,

    /// Receive and send buffer of each relayed socket (default 1MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub relay_buffer: Option<usize>,

    /// Check the configuration (the file, with any flags given beside it:
    /// its fields, addresses and certificate) and exit without serving:
    /// 0 and what it would serve, or 2 and the file, line and reason.
    #[arg(long)]
    pub check_config: bool,

    /// Print relayd's manual page (roff) and exit: `relayd --man | man -l -`.
    #[arg(long, exclusive = true)]
    pub man: bool,

    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// A socket buffer size: bytes, or with a `K`/`KiB` or `M`/`MiB` suffix
/// (powers of 1024); 0 leaves the kernel's default. At most 2 GiB - 1,
/// what the kernel takes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        other => return Err(format!("`{text}`: the unit `{other}` is not B, KiB or MiB")),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (bytes, or a number with KiB or MiB)"))?;
    let bytes = n.checked_mul(scale).filter(|b| *b <= i32::MAX as u64);
    bytes
        .map(|b| b as usize)
        .ok_or_else(|| format!("`{text}` is more than the kernel takes (2 GiB - 1)"))
}

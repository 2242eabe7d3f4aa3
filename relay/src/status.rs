//! The restund-compatible status port, as a pure function of datagrams.
//!
//! restund's status module reads the first line of each datagram as a
//! command (cut at 32 bytes; a datagram with no line repeats the previous
//! command) and answers with the command's text in raw slices of at most
//! 1024 bytes, with no end marker. relayd answers restund's `turnstats`
//! (plus an `is_draining:` line), `turn` (one line per allocation), Wire's
//! drain commands `drain_enable`, `drain_disable` and `drain_state` (with
//! `drain` and `undrain` as short aliases), `status`, a summary for
//! people, and `reload_cert` (or `reload`), which reloads the TLS
//! certificate through the [`Certificate`] the server hands in. So [`crate::stats::parse_turnstats`] and
//! [`crate::stats::parse_drain_reply`] read relayd and restund alike.
//!
//! The socket that carries the datagrams lives in `server`.

use std::fmt::Write as _;
use std::time::Instant;

use crate::turn::Server;

/// Longest command restund reads; longer first lines are cut.
pub const MAX_COMMAND: usize = 32;
/// Longest reply datagram; longer replies are sliced, even mid-line.
pub const MAX_DATAGRAM: usize = 1024;

/// A status command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `turnstats`: restund's counters, then `is_draining: 0|1`.
    Turnstats,
    /// `turn`: one line per allocation, with its expiry.
    Turn,
    /// `drain_enable` or `drain`: refuse new allocations.
    DrainEnable,
    /// `drain_disable` or `undrain`: accept new allocations again.
    DrainDisable,
    /// `drain_state`: whether drain mode is on.
    DrainState,
    /// `status`: a summary for people.
    Status,
    /// `reload_cert` or `reload`: read the TLS certificate again.
    ReloadCert,
    /// Anything else, as received.
    Unknown(String),
}

impl Command {
    /// The command named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Command {
        match name {
            "turnstats" => Command::Turnstats,
            "turn" => Command::Turn,
            "drain_enable" | "drain" => Command::DrainEnable,
            "drain_disable" | "undrain" => Command::DrainDisable,
            "drain_state" => Command::DrainState,
            "status" => Command::Status,
            "reload_cert" | "reload" => Command::ReloadCert,
            other => Command::Unknown(other.to_owned()),
        }
    }
}

/// The TLS certificate a server serves, as the status port reloads and
/// shows it.
pub trait Certificate {
    /// Reads the certificate again: what now serves, or why the new one was
    /// refused (and what still serves).
    ///
    /// # Errors
    ///
    /// Why the new certificate was refused, with what still serves.
    fn reload(&self) -> Result<String, String>;
    /// What serves now.
    fn describe(&self) -> String;
}

/// One status socket's memory: the previous command, which a datagram
/// without a line repeats (restund keeps it per socket, not per sender).
#[derive(Debug, Clone, Default)]
pub struct StatusPort {
    last: Vec<u8>,
}

impl StatusPort {
    /// A port that has heard no command yet.
    #[must_use]
    pub fn new() -> StatusPort {
        StatusPort::default()
    }

    /// The command `datagram` asks for: its first non-empty line, cut at
    /// [`MAX_COMMAND`] bytes, or the previous command if it has none.
    pub fn command(&mut self, datagram: &[u8]) -> Command {
        let start = datagram.iter().position(|&b| b != b'\n');
        if let Some(start) = start {
            let line = &datagram[start..];
            let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
            let mut line = &line[..end.min(MAX_COMMAND)];
            // Lenient where restund is not: `nc -C` and telnet-ish tools send CRLF.
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            self.last = line.to_vec();
        }
        Command::parse(&String::from_utf8_lossy(&self.last))
    }

    /// Answers one datagram: runs its command against `server` (drain
    /// commands change it) and `cert`, if the server serves TLS, and returns
    /// the reply datagrams to send back.
    pub fn handle(
        &mut self,
        now: Instant,
        datagram: &[u8],
        server: &mut Server,
        cert: Option<&dyn Certificate>,
    ) -> Vec<Vec<u8>> {
        let command = self.command(datagram);
        let text = reply(&command, now, server, cert);
        slices(text.as_bytes()).map(<[u8]>::to_vec).collect()
    }
}

/// The reply text to `command`, changing `server`'s drain mode or
/// reloading `cert` if asked.
#[must_use]
pub fn reply(command: &Command, now: Instant, server: &mut Server, cert: Option<&dyn Certificate>) -> String {
    let draining = |s: &Server| format!("is_draining: {}\n", u8::from(s.is_draining()));
    match command {
        Command::Turnstats => {
            let c = server.counters();
            let mut out = String::new();
            for (name, value) in [
                ("allocs_cur", c.allocs_cur),
                ("allocs_tot", c.allocs_tot),
                ("bytes_tx", c.bytes_tx),
                ("bytes_rx", c.bytes_rx),
                ("bytes_tot", c.bytes_tot()),
                ("chan_cur", c.chan_cur),
            ] {
                let _ = writeln!(out, "{name} {value}");
            }
            out.push_str(&draining(server));
            out
        }
        Command::DrainEnable => {
            server.set_draining(true);
            draining(server)
        }
        Command::DrainDisable => {
            server.set_draining(false);
            draining(server)
        }
        Command::DrainState => draining(server),
        Command::Turn => turn(now, server),
        Command::Status => {
            let mut out = summary(server);
            if let Some(cert) = cert {
                let _ = writeln!(out, "certificate: {}", cert.describe());
            }
            out
        }
        Command::ReloadCert => match cert.map(Certificate::reload) {
            None => "reload_cert: no TLS listener, no certificate to reload\n".to_owned(),
            Some(Ok(serving)) => format!("reload_cert: ok, serving {serving}\n"),
            Some(Err(why)) => format!("reload_cert: refused: {why}\n"),
        },
        Command::Unknown(name) => format!("{name}: command not found\n"),
    }
}

/// Splits a reply into datagrams of at most [`MAX_DATAGRAM`] bytes; an
/// empty reply is still one (empty) datagram, as restund sends it.
pub fn slices(reply: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty: &[u8] = &[];
    let first = reply.is_empty().then_some(empty);
    first.into_iter().chain(reply.chunks(MAX_DATAGRAM))
}

/// restund's `turn` listing, one allocation a line.
fn turn(now: Instant, server: &Server) -> String {
    let list = server.allocations(now);
    let mut out = format!("TURN allocations: {}\n", list.len());
    for a in list {
        let _ = writeln!(
            out,
            "- {} - {} \"{}\" {}s (perms {}, chans {})",
            a.tuple,
            a.relayed,
            a.username,
            a.expires_in.as_secs(),
            a.permissions,
            a.channels
        );
    }
    out
}

fn summary(server: &Server) -> String {
    let c = server.counters();
    let software = server.config().software.as_deref().unwrap_or("relayd");
    let mut out = format!("{software}\n");
    let draining = if server.is_draining() { "yes" } else { "no" };
    let _ = writeln!(out, "realm: {}", server.config().realm);
    let _ = writeln!(out, "draining: {draining}");
    let _ = writeln!(
        out,
        "allocations: {} now, {} since start",
        c.allocs_cur, c.allocs_tot
    );
    let _ = writeln!(out, "channels: {}", c.chan_cur);
    let _ = writeln!(
        out,
        "bytes relayed: {} to peers, {} from peers",
        c.bytes_tx, c.bytes_rx
    );
    let _ = writeln!(
        out,
        "dropped: {} malformed, {} oversized, {} unroutable, {} without permission",
        c.malformed, c.oversized, c.unroutable, c.forbidden
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;
    use crate::stats::{Collector, parse_drain_reply, parse_turnstats};
    use crate::stun::Key;
    use crate::turn::{Config, Credentials};

    fn server() -> Server {
        let config = Config::new("example.org", Key::from_bytes(b"k"));
        Server::new(config, Credentials::new(), Instant::now(), 0)
    }

    fn ask(port: &mut StatusPort, server: &mut Server, datagram: &[u8]) -> String {
        let out = port.handle(Instant::now(), datagram, server, None);
        String::from_utf8(out.concat()).unwrap()
    }

    #[test]
    fn turnstats_in_restunds_format_plus_the_drain_line() {
        let (mut port, mut s) = (StatusPort::new(), server());
        let text = ask(&mut port, &mut s, b"turnstats\n");
        assert_eq!(
            text,
            "allocs_cur 0\nallocs_tot 0\nbytes_tx 0\nbytes_rx 0\nbytes_tot 0\nchan_cur 0\nis_draining: 0\n"
        );
        let stats = parse_turnstats(&text, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            (stats.allocations, stats.channels, stats.draining),
            (0, Some(0), Some(false))
        );
    }

    #[test]
    fn drain_commands_switch_and_report() {
        let (mut port, mut s) = (StatusPort::new(), server());
        let reply = |port: &mut StatusPort, s: &mut Server, cmd: &str| {
            parse_drain_reply(&ask(port, s, cmd.as_bytes())).unwrap()
        };
        assert!(!reply(&mut port, &mut s, "drain_state"));
        assert!(reply(&mut port, &mut s, "drain_enable"));
        assert!(s.is_draining());
        assert!(reply(&mut port, &mut s, "drain_state\n"));
        assert!(!reply(&mut port, &mut s, "drain_disable"));
        assert!(reply(&mut port, &mut s, "drain"));
        assert!(!reply(&mut port, &mut s, "undrain\r\n"));
        let stats = parse_turnstats(&ask(&mut port, &mut s, b"turnstats"), SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(stats.draining, Some(false));
    }

    #[test]
    fn first_line_cut_at_32_bytes_and_empty_repeats() {
        let mut port = StatusPort::new();
        assert_eq!(port.command(b""), Command::Unknown(String::new()));
        assert_eq!(port.command(b"\n\nturnstats\nignored"), Command::Turnstats);
        assert_eq!(port.command(b""), Command::Turnstats);
        assert_eq!(port.command(b"\n"), Command::Turnstats);
        let long = "x".repeat(40);
        assert_eq!(port.command(long.as_bytes()), Command::Unknown("x".repeat(32)));
        // Cut inside a multi-byte character: the unknown name is shown lossily.
        let mut odd = vec![b'a'; 31];
        odd.extend("é".as_bytes());
        assert_eq!(
            port.command(&odd),
            Command::Unknown(format!("{}\u{fffd}", "a".repeat(31)))
        );
    }

    #[test]
    fn unknown_commands_say_so() {
        let (mut port, mut s) = (StatusPort::new(), server());
        assert_eq!(ask(&mut port, &mut s, b"stats\n"), "stats: command not found\n");
        assert_eq!(ask(&mut port, &mut s, b""), "stats: command not found\n");
        assert!(matches!(
            parse_turnstats(&ask(&mut port, &mut s, b"nope"), SystemTime::UNIX_EPOCH),
            Err(crate::StatsParseError::CommandNotFound { .. })
        ));
    }

    #[test]
    fn long_replies_are_sliced_at_1024_bytes_and_rejoin() {
        let text = "allocs_cur 1\n".repeat(200);
        let parts: Vec<&[u8]> = slices(text.as_bytes()).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            (parts[0].len(), parts[1].len(), parts[2].len()),
            (1024, 1024, 2600 - 2048)
        );
        let mut c = Collector::new();
        for p in &parts {
            c.push(p).unwrap();
        }
        assert_eq!(c.text().unwrap(), text);
        assert_eq!(slices(b"").count(), 1);
        assert_eq!(slices(&[b'x'; 1024]).count(), 1);
    }

    #[test]
    fn status_and_turn_are_for_people() {
        let (mut port, mut s) = (StatusPort::new(), server());
        let text = ask(&mut port, &mut s, b"status");
        assert!(text.starts_with("relayd "), "{text}");
        assert!(
            text.contains("draining: no\nallocations: 0 now, 0 since start\n"),
            "{text}"
        );
        assert_eq!(ask(&mut port, &mut s, b"turn"), "TURN allocations: 0\n");
    }
}

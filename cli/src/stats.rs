//! Reading a relay's live counters, on the node through SSH or directly.
//!
//! The query is the I/O half; parsing the reply is the relay crate's pure
//! half. A stats port that stays silent is an error, never "0 allocations":
//! the drain gate fails closed.
//!
//! On a node, restund's UDP status port and coturn's telnet CLI are reached
//! with bash's `/dev/udp` and `/dev/tcp`, so nothing (no netcat) needs
//! installing there. Arguments go in as positional parameters, never spliced
//! into the script, and coturn's CLI password goes in on stdin.

use std::time::Duration;

use anyhow::{Context, bail};
use relay::StatsSource;
use serde::{Deserialize, Serialize};

use crate::command::{Command, SecretRef};
use crate::inventory::{ReadOn, Relay, Transport};
use crate::remote::{Node, Output, Remote};

/// restund slices a reply into datagrams of at most this many bytes, so a
/// shorter one is the last: the reader stops there instead of waiting out a
/// quiet gap.
const SLICE: usize = 1024;

/// The bash that sends `$3` to udp `$1`:`$2` and prints the reply: one `dd`
/// read per datagram (whole, unlike bash's `read`) until a short one; `$4`
/// seconds without one ends it (exit 124 with nothing printed: no answer).
const UDP_PROBE: &str = r#"export LC_ALL=C; exec 3<>"/dev/udp/$1/$2" || exit 70; printf '%s' "$3" >&3
while :; do d=$(timeout "$4" dd bs=2048 count=1 status=none <&3; s=$?; echo x; exit $s) || exit $?; d=${d%x}; printf '%s' "$d"; [ ${#d} -lt 1024 ] && exit 0; done"#;

/// The bash that logs into coturn's CLI and prints the reply to `ps`. It
/// waits for each prompt before it types (coturn reads the password from
/// what arrives first), and gets the password on stdin.
const TCP_CLI_PROBE: &str = r#"IFS= read -r pw; exec 3<>"/dev/tcp/$1/$2" || exit 70
upto() { local buf= c; while IFS= read -r -d '' -n 1 -t "$2" c <&3; do buf+=$c; case "$buf" in *"$1") printf '%s' "$buf"; return 0;; esac; done; printf '%s' "$buf" >&2; return 1; }
upto 'password: ' "$3" >/dev/null || exit 71
printf '%s\r\n' "$pw" >&3
upto '> ' "$3" >/dev/null || exit 72
printf 'ps\r\n' >&3
upto '> ' "$3" || exit 73
printf 'quit\r\n' >&3"#;

fn split_addr(addr: &str) -> anyhow::Result<(String, String)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("`{addr}` is not host:port"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port.to_owned()))
}

/// How a relay's stats (or one of its status-port commands) are read: what
/// the plan shows and the executor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRead {
    pub relay: String,
    pub source: StatsSource,
    /// In words, for plans and messages: "turnstats on udp 127.0.0.1:33000 (on relay-1, through SSH)".
    pub described: String,
    /// How long the port may stay silent before the read fails.
    #[serde(with = "crate::command::secs")]
    pub reply_within: Duration,
    #[serde(flatten)]
    pub how: How,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum How {
    /// opsctl sends `message` to the UDP status port `addr` itself.
    Here { addr: String, message: String },
    /// A command prints the reply; with `stdin`, that secret is fed to it,
    /// never put on its command line.
    Command {
        command: Command,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdin: Option<SecretRef>,
    },
}

/// How long a status port or CLI gets to answer.
const REPLY_WITHIN: Duration = Duration::from_secs(1);

fn described(r: &Relay) -> String {
    let on = if reads_here(r) {
        "from here".to_owned()
    } else {
        format!("on {}, through SSH", r.name)
    };
    let pw = r
        .stats
        .password
        .as_ref()
        .map(|p| format!(", password from {p}"))
        .unwrap_or_default();
    format!("{} ({on}{pw})", r.stats.source)
}

fn reads_here(r: &Relay) -> bool {
    r.stats.read_on == ReadOn::Local || r.access.transport == Transport::Local
}

/// How the relay's stats are read.
pub fn plan(r: &Relay) -> anyhow::Result<StatsRead> {
    let command = |argv: &[&str]| Command::remote_str(&r.name, &r.access, argv);
    let mut reply_within = REPLY_WITHIN;
    let how = match &r.stats.source {
        StatsSource::Turnstats { .. } => return status_port(r, "turnstats"),
        StatsSource::CoturnCli { addr } => {
            let (host, port) = split_addr(addr)?;
            // coturn takes its time to print each prompt.
            reply_within = Duration::from_secs(2);
            let secs = reply_within.as_secs().to_string();
            How::Command {
                command: command(&["bash", "-c", TCP_CLI_PROBE, "opsctl-stats", &host, &port, &secs]),
                stdin: Some(
                    r.stats
                        .password
                        .clone()
                        .context("the coturn CLI needs a password")?,
                ),
            }
        }
        StatsSource::RtpengineCtl { command: c } => How::Command {
            command: Command::remote(&r.name, &r.access, c.clone()),
            stdin: None,
        },
        StatsSource::Prometheus { url } => How::Command {
            command: command(&["curl", "-fsS", "--max-time", "5", url.as_str()]),
            stdin: None,
        },
        other => bail!("reading stats via {} is not supported", other.via()),
    };
    Ok(StatsRead {
        relay: r.name.clone(),
        source: r.stats.source.clone(),
        described: described(r),
        reply_within,
        how,
    })
}

/// How `message` (`turnstats`, `drain_enable`, `drain_state`, ...) is sent to
/// the relay's UDP status port.
pub fn status_port(r: &Relay, message: &str) -> anyhow::Result<StatsRead> {
    let StatsSource::Turnstats { addr } = &r.stats.source else {
        bail!("{} has no status port to send `{message}` to", r.name);
    };
    let how = if reads_here(r) {
        How::Here {
            addr: addr.clone(),
            message: message.to_owned(),
        }
    } else {
        let (host, port) = split_addr(addr)?;
        let name = if message == "turnstats" {
            "opsctl-stats"
        } else {
            "opsctl-status"
        };
        let listen = REPLY_WITHIN.as_secs_f64().to_string();
        How::Command {
            command: Command::remote_str(
                &r.name,
                &r.access,
                &["bash", "-c", UDP_PROBE, name, &host, &port, message, &listen],
            ),
            stdin: None,
        }
    };
    Ok(StatsRead {
        relay: r.name.clone(),
        source: r.stats.source.clone(),
        described: described(r),
        reply_within: REPLY_WITHIN,
        how,
    })
}

/// How the relay lists its allocations one by one, where it can: restund's
/// `turn` status command, coturn's `ps` (the very read of its count).
pub fn listing(r: &Relay) -> anyhow::Result<Option<StatsRead>> {
    Ok(match &r.stats.source {
        StatsSource::Turnstats { .. } => Some(status_port(r, "turn")?),
        StatsSource::CoturnCli { .. } => Some(plan(r)?),
        _ => None,
    })
}

impl StatsRead {
    /// The command this read runs (none when opsctl asks the port itself).
    pub fn command(&self) -> Option<&Command> {
        match &self.how {
            How::Command { command, .. } => Some(command),
            How::Here { .. } => None,
        }
    }
}

/// Reads the relay's stats once. `node` is where the read's command runs.
pub async fn read(remote: &Remote, node: &Node, s: &StatsRead) -> anyhow::Result<relay::Stats> {
    parse(s, &send(remote, node, s).await?)
}

/// The counters in a reply `s` got.
pub fn parse(s: &StatsRead, text: &str) -> anyhow::Result<relay::Stats> {
    relay::stats::parse(&s.source, text).with_context(|| format!("{}", s.source))
}

/// Sends what `s` says and returns the reply text; a silent port is an error.
pub async fn send(remote: &Remote, node: &Node, s: &StatsRead) -> anyhow::Result<String> {
    match &s.how {
        How::Here { addr, message } => answered(s, query_udp(addr, message, s.reply_within).await?),
        How::Command { command, .. } => {
            let stdin = stdin(s)?;
            let out = remote
                .probe(node, command, timeout(s, node), stdin.as_deref())
                .await?;
            answer(s, out)
        }
    }
}

/// What a read by command is fed on stdin: the password, never on its command line.
pub fn stdin(s: &StatsRead) -> anyhow::Result<Option<Vec<u8>>> {
    match &s.how {
        How::Command {
            stdin: Some(secret), ..
        } => Ok(Some(
            format!("{}\n", secret.read("the stats password", "password_file")?).into_bytes(),
        )),
        _ => Ok(None),
    }
}

/// How long a read by command may take on `node`: the probe's own
/// listening bounds the wait for the relay; this bounds the connection too,
/// a few seconds past it.
pub fn timeout(s: &StatsRead, node: &Node) -> Duration {
    (s.reply_within * 2 + Duration::from_secs(10)).min(node.access.ssh.command_timeout)
}

/// The reply text out of what the read's command printed and how it ended.
pub fn answer(s: &StatsRead, out: Output) -> anyhow::Result<String> {
    let text = exited(s, out)?;
    answered(s, text)
}

fn answered(s: &StatsRead, text: String) -> anyhow::Result<String> {
    if text.trim().is_empty() {
        bail!(
            "{} did not answer (no reply within {})",
            s.described,
            crate::duration::format(s.reply_within)
        );
    }
    Ok(text)
}

/// Sends `command` to a restund-style UDP status port from here and collects
/// the reply: datagrams of at most 1024 bytes that may split a line, with no
/// terminator, so the reply ends at a short quiet gap.
pub async fn query_udp(addr: &str, command: &str, reply_within: Duration) -> anyhow::Result<String> {
    const QUIET: Duration = Duration::from_millis(200);
    let target = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(target).await?;
    sock.send(command.as_bytes()).await?;
    let mut collector = relay::stats::Collector::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + reply_within;
    loop {
        let wait = if collector.datagrams() == 0 {
            deadline
        } else {
            tokio::time::Instant::now() + QUIET
        };
        match tokio::time::timeout_at(wait.min(deadline), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                collector.push(&buf[..n])?;
                if n < SLICE {
                    break;
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                bail!("nothing listens on udp {addr}")
            }
            Ok(Err(e)) => return Err(e).with_context(|| format!("reading udp {addr}")),
            Err(_) => break,
        }
    }
    Ok(collector.text()?.to_owned())
}

fn exited(s: &StatsRead, out: Output) -> anyhow::Result<String> {
    let (source, relay) = (&s.source, &s.relay);
    match out.code {
        0 => Ok(out.stdout),
        70 => bail!(
            "{source} cannot be reached on {relay}: {}",
            crate::remote::trim_output(&out.stderr)
        ),
        71 => bail!("{source} on {relay} sent no password prompt"),
        124 => bail!(
            "{source} on {relay} did not answer within {}",
            crate::duration::format(s.reply_within)
        ),
        72 => bail!(
            "{source} on {relay} did not accept the password (check `cli-password` and {})",
            match &s.how {
                How::Command { stdin: Some(p), .. } => p.to_string(),
                _ => String::new(),
            }
        ),
        73 => bail!("{source} on {relay} did not answer `ps`"),
        code => bail!(
            "{source} on {relay} failed (exit status {code}): {}",
            crate::remote::trim_output(&out.stderr)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the probe printed for Debian's coturn 4.6.1 with ten allocations
    /// made by turnutils_uclient.
    const PS: &str = include_str!("../tests-fixtures/coturn-4.6.1-ps.txt");

    #[test]
    fn a_real_coturn_ps_reply_parses() {
        let stats = relay::stats::parse(&StatsSource::CoturnCli { addr: "x:1".into() }, PS).unwrap();
        assert_eq!(stats.allocations, 10);
    }
}

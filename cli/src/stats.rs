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

use crate::command::Command;
use crate::inventory::{ReadOn, Relay, Transport};
use crate::remote::{Node, Remote};

/// How long the node-side probe listens for the status port's datagrams.
const LISTEN: &str = "0.5";

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

/// Reads the relay's stats once.
pub async fn read(remote: &Remote, r: &Relay, timeout: Duration) -> anyhow::Result<relay::Stats> {
    let local = r.stats.read_on == ReadOn::Local || r.access.transport == Transport::Local;
    let text = match &r.stats.source {
        StatsSource::Turnstats { addr } if local => query_udp(addr, "turnstats", timeout).await?,
        StatsSource::Turnstats { addr } => {
            let (host, port) = split_addr(addr)?;
            let argv = [
                "bash",
                "-c",
                UDP_PROBE,
                "opsctl-stats",
                &host,
                &port,
                "turnstats",
                LISTEN,
            ];
            run(remote, r, argv.map(String::from).to_vec(), None, timeout).await?
        }
        StatsSource::CoturnCli { addr } => {
            let password = r
                .stats
                .password
                .as_ref()
                .map(|p| p.read("the stats password"))
                .transpose()?
                .context("the coturn CLI needs a password")?;
            let (host, port) = split_addr(addr)?;
            let argv = ["bash", "-c", TCP_CLI_PROBE, "opsctl-stats", &host, &port, "2"];
            let stdin = Some(format!("{password}\n").into_bytes());
            run(remote, r, argv.map(String::from).to_vec(), stdin, timeout).await?
        }
        StatsSource::RtpengineCtl { command } => run(remote, r, command.clone(), None, timeout).await?,
        StatsSource::Prometheus { url } => {
            let argv = ["curl", "-fsS", "--max-time", "5", url.as_str()];
            run(remote, r, argv.map(String::from).to_vec(), None, timeout).await?
        }
        other => bail!("reading stats via {} is not supported", other.via()),
    };
    if text.trim().is_empty() {
        bail!("{} did not answer (no reply within {LISTEN}s)", r.stats.source);
    }
    relay::stats::parse(&r.stats.source, &text).with_context(|| format!("{}", r.stats.source))
}

/// Sends `command` to a restund-style UDP status port from here and collects
/// the reply: datagrams of at most 1024 bytes that may split a line, with no
/// terminator, so the reply ends at a short quiet gap.
pub async fn query_udp(addr: &str, command: &str, timeout: Duration) -> anyhow::Result<String> {
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
    let deadline = tokio::time::Instant::now() + timeout;
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

/// Sends a status-port command (restund's `drain_enable`, ...) to the relay
/// and returns its reply text.
pub async fn status_command(
    remote: &Remote,
    r: &Relay,
    command: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let StatsSource::Turnstats { addr } = &r.stats.source else {
        bail!("{} has no status port to send `{command}` to", r.name);
    };
    let local = r.stats.read_on == ReadOn::Local || r.access.transport == Transport::Local;
    let text = if local {
        query_udp(addr, command, timeout).await?
    } else {
        let (host, port) = split_addr(addr)?;
        let argv = [
            "bash",
            "-c",
            UDP_PROBE,
            "opsctl-status",
            &host,
            &port,
            command,
            LISTEN,
        ];
        run(remote, r, argv.map(String::from).to_vec(), None, timeout).await?
    };
    if text.trim().is_empty() {
        bail!("{} did not answer `{command}`", r.stats.source);
    }
    Ok(text)
}

async fn run(
    remote: &Remote,
    r: &Relay,
    argv: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let node = Node {
        name: r.name.clone(),
        access: r.access.clone(),
    };
    let cmd = Command::remote(&r.name, &r.access, argv);
    let out = remote.probe(&node, &cmd, timeout, stdin.as_deref()).await?;
    match out.code {
        0 => Ok(out.stdout),
        70 => bail!(
            "{} cannot be reached on {}: {}",
            r.stats.source,
            r.name,
            crate::remote::trim_output(&out.stderr)
        ),
        71 => bail!("{} on {} sent no password prompt", r.stats.source, r.name),
        124 => bail!("{} on {} did not answer within {LISTEN}s", r.stats.source, r.name),
        72 => bail!(
            "{} on {} did not accept the password (check `cli-password` and {})",
            r.stats.source,
            r.name,
            r.stats
                .password
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        73 => bail!("{} on {} did not answer `ps`", r.stats.source, r.name),
        code => bail!(
            "{} on {} failed (exit status {code}): {}",
            r.stats.source,
            r.name,
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

//! What "a healthy relay" means, once, for every part of opsctl that asks:
//! the safety checks before a run, the re-check before each relay is taken
//! out of service, and `opsctl status`.
//!
//! A relay is healthy when it answers SSH, its service reports up, its stats
//! answer, it answers a STUN binding from here (with `stun_check`), and its
//! own drain mode is off while it is advertised (a draining restund answers
//! every new Allocate with `508 Draining`). Whether it is advertised is read
//! from the advertised list by the caller; this module reads the node.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::inventory::Relay;
use crate::remote::{Node, Output, Part, Remote};
use crate::stats::{self, StatsRead};

/// Everything read to judge one relay's health: the exact commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub relay: String,
    pub site: String,
    pub service: ServiceProbe,
    pub stats: StatsRead,
    /// `drain_state` on the status port, where the relay has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_state: Option<StatsRead>,
    /// `host:port` a STUN binding request is sent to from here (`stun_check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun: Option<String>,
    /// The URLs clients receive for it: what "advertised" is checked against.
    pub urls: Vec<String>,
}

/// The service status command and what it must print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProbe {
    pub command: Command,
    /// Exit 0 is needed; and when set, this exact (trimmed) output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

impl ServiceProbe {
    pub fn of(r: &Relay) -> ServiceProbe {
        ServiceProbe {
            command: Command::remote(&r.name, &r.access, r.service.status.clone()),
            expect: r.service.status_expect.clone(),
        }
    }

    /// Whether the service is up, and what was seen.
    pub async fn read(&self, remote: &Remote, node: &Node) -> anyhow::Result<(bool, String)> {
        let out = remote
            .probe(node, &self.command, node.access.ssh.command_timeout, None)
            .await?;
        Ok(self.judge(&out))
    }

    /// Whether what the status command printed and its exit status say "up", and what was seen.
    pub fn judge(&self, out: &Output) -> (bool, String) {
        let printed = out.stdout.trim().to_owned();
        let up = out.code == 0 && self.expect.as_deref().is_none_or(|want| printed == want);
        let seen = if up {
            format!("`{}`: {printed}", self.command.line)
        } else {
            format!(
                "`{}` exited {} and printed `{printed}`",
                self.command.line, out.code
            )
        };
        (up, seen)
    }

    /// The words of the fact, for plans.
    pub fn describe(&self) -> String {
        match &self.expect {
            Some(e) => format!("`{}`, which must exit 0 and print `{e}`", self.command.line),
            None => format!("`{}`, which must exit 0", self.command.line),
        }
    }
}

impl Probe {
    pub fn of(r: &Relay) -> anyhow::Result<Probe> {
        Ok(Probe {
            relay: r.name.clone(),
            site: r.site.clone(),
            service: ServiceProbe::of(r),
            stats: stats::plan(r)?,
            drain_state: match r.kind.relay_drain() {
                // coturn's drain has no state to read: it ends with the process.
                relay::RelayDrain::Unsupported | relay::RelayDrain::EndsInExit => None,
                _ => stats::status_port(r, "drain_state").ok(),
            },
            stun: if r.stun_check { r.stun_target() } else { None },
            urls: r.urls.clone(),
        })
    }

    /// Every command the probe runs, in the order it runs them.
    pub fn commands(&self) -> Vec<&Command> {
        std::iter::once(&self.service.command)
            .chain(self.stats.command())
            .chain(self.drain_state.as_ref().and_then(StatsRead::command))
            .collect()
    }

    /// One line for plans: what is read and how.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("service {}", self.service.describe()),
            format!("stats by {}", self.stats.described),
        ];
        if self.drain_state.is_some() {
            parts.push("drain mode off (`drain_state`)".into());
        }
        if let Some(t) = &self.stun {
            parts.push(format!("a STUN binding to {t} (udp) from here"));
        }
        format!("{}: {}", self.relay, parts.join("; "))
    }
}

/// Why a relay in its own drain mode must not be advertised.
pub const DRAINING_WHILE_ADVERTISED: &str =
    "its own drain mode is on while it is advertised: new allocations are refused";

/// What one read of a relay found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    pub reachable: bool,
    pub service_up: Option<bool>,
    pub allocations: Option<u64>,
    /// rtpengine: its own and its peers' calls.
    pub sessions: Option<relay::stats::Sessions>,
    /// The relay's own drain mode; `None` where it has none or it could not be read.
    pub draining: Option<bool>,
    pub stun: Option<bool>,
    /// What went wrong, for each thing that is not as it should be.
    pub problems: Vec<String>,
}

impl Health {
    /// Healthy to carry calls; `advertised` says whether clients are sent to it.
    pub fn healthy(&self, advertised: bool) -> bool {
        self.reachable
            && self.service_up == Some(true)
            && self.allocations.is_some()
            && self.stun != Some(false)
            && !(advertised && self.draining == Some(true))
    }

    /// Why it is not healthy, in one line.
    pub fn why(&self, advertised: bool) -> String {
        let mut why = self.problems.clone();
        if advertised && self.draining == Some(true) {
            why.push(DRAINING_WHILE_ADVERTISED.into());
        }
        why.join("; ")
    }
}

/// Reads the relay: connect, then service, stats and drain state together
/// over the one connection, then the STUN binding.
pub async fn read(remote: &Remote, node: &Node, p: &Probe) -> Health {
    let mut h = Health::default();
    if let Err(e) = remote.reachable(node).await {
        h.problems.push(e.to_string());
        return h;
    }
    h.reachable = true;
    let drain = async {
        match &p.drain_state {
            Some(d) => Some(stats::send(remote, node, d).await),
            None => None,
        }
    };
    let (service, reading, drain) = tokio::join!(
        p.service.read(remote, node),
        stats::read(remote, node, &p.stats),
        drain
    );
    judge(&mut h, p, service, reading, drain).await;
    h
}

/// [`read`] for a survey (`opsctl status`): every command the probe runs,
/// and `extra`'s after them, go to the node as one command line (one round
/// trip); reads that opsctl makes itself (a status port read from here) go
/// alongside. What `extra` printed comes back in its order, or why the
/// batch failed.
pub async fn read_at_once(
    remote: &Remote,
    node: &Node,
    p: &Probe,
    extra: &[Part<'_>],
) -> (Health, Result<Vec<Output>, String>) {
    let mut h = Health::default();
    if let Err(e) = remote.reachable(node).await {
        h.problems.push(e.to_string());
        return (h, Err(e.to_string()));
    }
    h.reachable = true;
    let (stats_in, drain_in) = (stats::stdin(&p.stats), p.drain_state.as_ref().map(stats::stdin));
    let timeout = node.access.ssh.command_timeout;
    let mut parts = vec![Part {
        command: &p.service.command,
        stdin: None,
        timeout,
    }];
    let stats_at = push_read(&mut parts, &p.stats, &stats_in, node);
    let drain_at = match (&p.drain_state, &drain_in) {
        (Some(d), Some(fed)) => push_read(&mut parts, d, fed, node),
        _ => None,
    };
    let extra_at = parts.len();
    parts.extend_from_slice(extra);
    let (batch, stats_here, drain_here) = tokio::join!(
        remote.batch(node, &parts),
        read_here(remote, node, Some(&p.stats)),
        read_here(remote, node, p.drain_state.as_ref())
    );
    let outs = match batch {
        Ok(outs) => outs,
        Err(e) => {
            // The connection broke or the node did not answer in time:
            // nothing it runs is known, and that is said once.
            h.problems.push(e.to_string());
            return (h, Err(e.to_string()));
        }
    };
    let take = |at: Option<usize>| at.map(|i| outs[i].clone());
    let service = Ok(p.service.judge(&outs[0]));
    let reading = match (stats_here, take(stats_at), stats_in) {
        (Some(text), _, _) => text,
        (None, Some(out), _) => stats::answer(&p.stats, out),
        (None, None, fed) => Err(fed
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("the stats were not read"))),
    }
    .and_then(|text| stats::parse(&p.stats, &text));
    let drain = match (drain_here, take(drain_at), &p.drain_state) {
        (Some(text), _, _) => Some(text),
        (None, Some(out), Some(d)) => Some(stats::answer(d, out)),
        _ => None,
    };
    judge(&mut h, p, service, reading, drain).await;
    (h, Ok(outs[extra_at..].to_vec()))
}

/// Adds a read made by a command to a batch (one whose stdin could not be
/// had is left out: its error is the read's); where it is in the batch.
fn push_read<'a>(
    parts: &mut Vec<Part<'a>>,
    read: &'a StatsRead,
    fed: &'a anyhow::Result<Option<Vec<u8>>>,
    node: &Node,
) -> Option<usize> {
    let (command, Ok(fed)) = (read.command()?, fed) else {
        return None;
    };
    parts.push(Part {
        command,
        stdin: fed.as_deref(),
        timeout: stats::timeout(read, node),
    });
    Some(parts.len() - 1)
}

/// A read opsctl makes itself (a status port from here); `None` for one made by a command.
async fn read_here(remote: &Remote, node: &Node, read: Option<&StatsRead>) -> Option<anyhow::Result<String>> {
    let read = read?;
    match &read.how {
        stats::How::Here { .. } => Some(stats::send(remote, node, read).await),
        stats::How::Command { .. } => None,
    }
}

/// What the reads say, into `h`; then the STUN binding from here.
async fn judge(
    h: &mut Health,
    p: &Probe,
    service: anyhow::Result<(bool, String)>,
    reading: anyhow::Result<relay::Stats>,
    drain: Option<anyhow::Result<String>>,
) {
    match service {
        Ok((up, seen)) => {
            h.service_up = Some(up);
            if !up {
                h.problems.push(format!("service is not up: {seen}"));
            }
        }
        Err(e) => h.problems.push(e.to_string()),
    }
    match reading {
        Ok(s) => (h.allocations, h.sessions) = (Some(s.allocations), s.sessions),
        Err(e) => h.problems.push(format!("stats: {e:#}")),
    }
    // A restund without the drain module answers `command not found`: its
    // drain state is unknown, not "off".
    if let Some(Ok(reply)) = drain {
        h.draining = relay::stats::parse_drain_reply(&reply).ok();
    }
    if let Some(target) = &p.stun {
        match stun_binding(target).await {
            Ok(_) => h.stun = Some(true),
            Err(e) => {
                h.stun = Some(false);
                h.problems.push(format!("STUN binding: {e:#}"));
            }
        }
    }
}

/// A STUN binding request from here to `target` (`host:port`, udp); the
/// mapped address it answered with.
pub async fn stun_binding(target: &str) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context;
    let addr = tokio::net::lookup_host(target)
        .await
        .with_context(|| format!("cannot resolve {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to nothing"))?;
    let mut client = relay::client::Client::udp(addr)
        .await?
        .with_timeout(Duration::from_secs(2));
    client.binding().await.with_context(|| target.to_owned())
}

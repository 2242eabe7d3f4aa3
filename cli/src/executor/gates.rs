//! Waiting on facts read from nodes. A gate polls until its fact holds, its
//! timeout passes, or Ctrl-C asks the run to stop. A fact that cannot be read
//! is not satisfied: the gate keeps trying and shows why, and if the timeout
//! comes first the last reason is the error.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Executor, Stopped};
use crate::inventory::{AdvertiseCheck, Relay};
use crate::plan::{Action, Step};
use crate::remote::Node;

/// The gates this version can wait on.
pub const SUPPORTED: &[&str] = &[
    "drained",
    "service-up",
    "stats-answer",
    "stun-binding",
    "unadvertised",
    "advertised",
    "ssh-down",
    "new-boot",
];

/// What one poll found.
enum Poll {
    Holds(String),
    NotYet(String),
}

pub async fn wait(ex: &mut Executor<'_>, step: &Step) -> anyhow::Result<()> {
    let Action::Gate {
        gate,
        fact,
        threshold,
        poll_secs,
        timeout_secs,
        on_timeout,
        ..
    } = &step.action
    else {
        unreachable!("gates::wait is called for gates")
    };
    let poll = Duration::from_secs_f64(*poll_secs);
    let timeout = Duration::from_secs_f64(*timeout_secs);
    let relay = ex.relay(&step.node).ok().cloned();
    let node = ex.node(&step.node)?;
    let bar = ex.out.wait(&format!("{}: waiting until {fact}", step.node));
    let started = Instant::now();
    let mut first: Option<u64> = None;
    let mut last_reason;
    loop {
        let found = match *gate {
            "drained" => drained(ex, relay.as_ref(), threshold.unwrap_or(0), &mut first, started).await,
            "service-up" => service_up(ex, &node, relay.as_ref()).await,
            "stats-answer" => match relay.as_ref() {
                Some(r) => match crate::stats::read(&ex.remote, r, r.access.ssh.command_timeout).await {
                    Ok(s) => Ok(Poll::Holds(format!("{} allocations", s.allocations))),
                    Err(e) => Ok(Poll::NotYet(format!("{e:#}"))),
                },
                None => bail!("`{}` has no stats to read", step.node),
            },
            "unadvertised" | "advertised" => listed(ex, relay.as_ref(), *gate == "advertised").await,
            "stun-binding" => match relay.as_ref() {
                Some(r) => stun_binding(r).await,
                None => bail!("`{}` is not a relay", step.node),
            },
            "ssh-down" => ssh_down(ex, &node).await,
            "new-boot" => new_boot(ex, &node).await,
            other => bail!("the `{other}` gate is not built yet"),
        };
        match found {
            Ok(Poll::Holds(what)) => {
                bar.finish_and_clear();
                ex.out.note(&format!(
                    "{}: {fact} ({what}, after {})",
                    step.node,
                    elapsed(started)
                ));
                return Ok(());
            }
            Ok(Poll::NotYet(why)) => last_reason = why,
            Err(e) => last_reason = format!("{e:#}"),
        }
        bar.set_message(format!(
            "{}: waiting until {fact}: {last_reason} [{} of {}]",
            step.node,
            elapsed(started),
            crate::duration::format(timeout)
        ));
        if started.elapsed() >= timeout {
            bar.finish_and_clear();
            if *gate == "drained" {
                return drain_timed_out(ex, step, fact, &last_reason, timeout).await;
            }
            bail!(
                "timed out after {} waiting until {fact}: {last_reason}\non timeout: {on_timeout}",
                crate::duration::format(timeout)
            );
        }
        // Sleep in short slices so Ctrl-C is honoured within a second.
        let until = Instant::now() + poll.min(timeout.saturating_sub(started.elapsed()));
        while Instant::now() < until {
            if ex.interrupt.requested() {
                bar.finish_and_clear();
                return Err(anyhow::Error::new(Stopped).context(format!(
                    "stopped while waiting until {fact} (last read: {last_reason})"
                )));
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
        }
    }
}

fn elapsed(since: Instant) -> String {
    crate::duration::format(Duration::from_secs(since.elapsed().as_secs()))
}

/// What a drain that timed out ends in: a confirmed restart with `--force`,
/// else the inventory's `on_timeout` (put the relay back, or leave it out),
/// and the rollout stops.
async fn drain_timed_out(
    ex: &mut Executor<'_>,
    step: &Step,
    fact: &str,
    last: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let r = ex.relay(&step.node)?.clone();
    let waited = crate::duration::format(timeout);
    if ex.plan.force {
        let n = crate::stats::read(&ex.remote, &r, r.access.ssh.command_timeout)
            .await
            .map(|s| s.allocations);
        let question = match n {
            Ok(n) => format!(
                "the drain of {} timed out after {waited}; restart it anyway, dropping its {n} allocations",
                r.name
            ),
            Err(e) => bail!(
                "the drain of {} timed out and its allocations cannot be read ({e:#}): not restarting",
                r.name
            ),
        };
        if super::steps::ask(ex, &question).await.is_ok() {
            return Ok(());
        }
    }
    if r.drain.on_timeout == crate::inventory::OnTimeout::Readvertise {
        let plan = ex.plan;
        let back = plan.steps().find(|s| {
            s.node == r.name
                && s.number > step.number
                && matches!(s.action, Action::Advertise { out: false, .. })
        });
        if let Some(back) = back {
            ex.out.status(
                "Advertising",
                &format!(
                    "{}. {}: {} (the drain timed out)",
                    back.number, back.node, back.title
                ),
            );
            // Boxed: performing a step may wait on a gate, which is where this came from.
            Box::pin(super::steps::perform(ex, back)).await?;
            ex.done(back)?;
            bail!(
                "timed out after {waited} waiting until {fact} ({last}); {} was put back in the advertised list and the rollout stops",
                r.name
            );
        }
    }
    bail!(
        "timed out after {waited} waiting until {fact} ({last}); {} stays out of the advertised list and the rollout stops",
        r.name
    )
}

/// One STUN binding request from here, for the health checks.
pub async fn stun_answers(r: &Relay) -> anyhow::Result<()> {
    match stun_binding(r).await? {
        Poll::Holds(_) => Ok(()),
        Poll::NotYet(why) => bail!("{why}"),
    }
}

/// A STUN binding request from here to the relay's UDP address gets an answer.
async fn stun_binding(r: &Relay) -> anyhow::Result<Poll> {
    let target =
        crate::plan::stun_target(r).with_context(|| format!("{} has no UDP turn: or stun: URL", r.name))?;
    let addr = tokio::net::lookup_host(&target)
        .await
        .with_context(|| format!("cannot resolve {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to nothing"))?;
    let mut client = relay::client::Client::udp(addr)
        .await?
        .with_timeout(Duration::from_secs(2));
    Ok(match client.binding().await {
        Ok(mapped) => Poll::Holds(format!("{target} answered, mapped address {mapped}")),
        Err(e) => Poll::NotYet(format!("{target}: {e}")),
    })
}

/// Allocations at or below the threshold, with the rate they fall at and an
/// estimate of the time left.
async fn drained(
    ex: &Executor<'_>,
    r: Option<&Relay>,
    threshold: u64,
    first: &mut Option<u64>,
    started: Instant,
) -> anyhow::Result<Poll> {
    let r = r.context("the drained gate reads a relay")?;
    let now = crate::stats::read(&ex.remote, r, r.access.ssh.command_timeout)
        .await?
        .allocations;
    if now <= threshold {
        return Ok(Poll::Holds(format!("{now} allocations")));
    }
    let start = *first.get_or_insert(now);
    let mins = started.elapsed().as_secs_f64() / 60.0;
    let fallen = start.saturating_sub(now) as f64;
    let rate = if mins > 0.0 { fallen / mins } else { 0.0 };
    let eta = if rate > 0.0 {
        let left = Duration::from_secs_f64((now - threshold) as f64 / rate * 60.0);
        format!(
            ", about {} left",
            crate::duration::format(Duration::from_secs(left.as_secs().max(1)))
        )
    } else {
        String::new()
    };
    Ok(Poll::NotYet(format!(
        "{now} allocations (from {start}, -{rate:.1}/min{eta})"
    )))
}

async fn service_up(ex: &Executor<'_>, node: &Node, r: Option<&Relay>) -> anyhow::Result<Poll> {
    let r = r.context("the service-up gate reads a relay's service")?;
    let status = crate::command::Command::remote(&node.name, &node.access, r.service.status.clone());
    let out = ex
        .remote
        .probe(node, &status, node.access.ssh.command_timeout, None)
        .await?;
    let printed = out.stdout.trim();
    let up = out.code == 0
        && r.service
            .status_expect
            .as_deref()
            .is_none_or(|want| printed == want);
    Ok(if up {
        Poll::Holds(format!("`{}`: {printed}", status.line))
    } else {
        Poll::NotYet(format!(
            "`{}` exited {} and printed `{printed}`",
            status.line, out.code
        ))
    })
}

/// Whether the list clients receive (brig's `/calls/config/v2` JSON) holds the
/// relay's URLs: all of them (`present`) or none.
async fn listed(ex: &Executor<'_>, r: Option<&Relay>, present: bool) -> anyhow::Result<Poll> {
    let r = r.context("the advertised gates read a relay's URLs")?;
    let argv = match &ex.inv.advertise.check {
        Some(AdvertiseCheck::Command(c)) => c.clone(),
        Some(AdvertiseCheck::Url(u)) => vec![
            "curl".into(),
            "-fsS".into(),
            "--max-time".into(),
            "10".into(),
            u.clone(),
        ],
        None => bail!("no `advertise.check` in the inventory"),
    };
    let cmd = crate::command::Command::local(argv, &ex.inv.dir);
    let here = Node::here();
    let out = ex.remote.run(&here, &cmd, Duration::from_secs(30)).await?;
    let urls = ice_urls(&out.stdout)
        .with_context(|| format!("`{}` did not print the calls config JSON", cmd.line))?;
    let listed: Vec<&String> = r.urls.iter().filter(|u| urls.contains(u)).collect();
    let holds = if present {
        listed.len() == r.urls.len()
    } else {
        listed.is_empty()
    };
    let what = format!("{} of its {} URLs listed", listed.len(), r.urls.len());
    Ok(if holds {
        Poll::Holds(what)
    } else {
        Poll::NotYet(what)
    })
}

/// Every URL in `{"ice_servers": [{"urls": [...] | "..."}]}`.
pub fn ice_urls(json: &str) -> anyhow::Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let servers = v
        .get("ice_servers")
        .and_then(|s| s.as_array())
        .context("no `ice_servers` list")?;
    let mut out = Vec::new();
    for s in servers {
        match s.get("urls") {
            Some(serde_json::Value::String(u)) => out.push(u.clone()),
            Some(serde_json::Value::Array(list)) => {
                out.extend(list.iter().filter_map(|u| u.as_str().map(str::to_owned)))
            }
            _ => bail!("an ice server without `urls`"),
        }
    }
    Ok(out)
}

/// The old boot going down: a fresh connection is refused or times out.
async fn ssh_down(ex: &Executor<'_>, node: &Node) -> anyhow::Result<Poll> {
    ex.remote.forget_node(&node.name).await;
    Ok(match ex.remote.reachable(node).await {
        Ok(()) => Poll::NotYet("still answers SSH".into()),
        Err(e) => Poll::Holds(format!("{e}").lines().next().unwrap_or("").to_owned()),
    })
}

/// The node answers again, with a boot id other than the one recorded.
async fn new_boot(ex: &Executor<'_>, node: &Node) -> anyhow::Result<Poll> {
    let before = ex
        .records
        .get(&(node.name.clone(), "boot_id".to_owned()))
        .context("no boot id was read before the reboot")?
        .clone();
    ex.remote.forget_node(&node.name).await;
    if let Err(e) = ex.remote.reachable(node).await {
        return Ok(Poll::NotYet(
            format!("{e}").lines().next().unwrap_or("").to_owned(),
        ));
    }
    let r = ex.relay(&node.name)?;
    let cmd = crate::command::Command::remote(&node.name, &node.access, r.reboot.boot_id.clone());
    let now = ex
        .remote
        .run(node, &cmd, node.access.ssh.command_timeout)
        .await?
        .stdout
        .trim()
        .to_owned();
    Ok(if now != before {
        Poll::Holds(format!("boot id {now}"))
    } else {
        Poll::NotYet("answers, with the same boot id".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_brig_s_calls_config() {
        let json = r#"{"ice_servers":[{"urls":["turn:a:3478","turn:a:3478?transport=tcp"],"username":"u","credential":"c"},{"urls":"turns:b:5349?transport=tcp"}],"ttl":3600}"#;
        assert_eq!(
            ice_urls(json).unwrap(),
            [
                "turn:a:3478",
                "turn:a:3478?transport=tcp",
                "turns:b:5349?transport=tcp"
            ]
        );
        assert!(ice_urls("{}").is_err());
        assert!(ice_urls("not json").is_err());
    }
}

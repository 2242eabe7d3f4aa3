//! Reading the rtpengine gates: its peers hold its calls, it restored
//! them after its restart, the group agrees, media flows, ng answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use relay::rtpengine::Reading;

use super::core::{Executor, Poll};
use crate::plan::{Action, Gate, Step};
use crate::rtpengine::{self as rtp, Report};

/// Reads every instance of the group, each result in its place.
async fn read_group(ex: &Executor<'_>, group: &[Report]) -> Vec<Result<Reading, String>> {
    let nodes: Vec<_> = group.iter().filter_map(|g| ex.node(&g.relay).ok()).collect();
    rtp::read_all(&ex.remote, &nodes, group).await
}

fn joined<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Keeps, before a restart, the ids of the calls the rtpengine owns, and of
/// those carrying media (their packets grew over 2 s on some instance).
pub(super) async fn record_calls(ex: &mut Executor<'_>, step: &Step) -> anyhow::Result<()> {
    let Action::RecordCalls {
        own,
        record,
        media,
        media_record,
    } = &step.action
    else {
        unreachable!("record_calls is called for record-calls steps")
    };
    let owned = ex.run(own).await?;
    // Kept only if it is a listing: `calls-restored` compares with it.
    rtp::own_ids(&owned)?;
    let first = packets(ex, media).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = packets(ex, media).await?;
    let flowing: Vec<&str> = second
        .iter()
        .filter(|(id, n)| first.get(*id).is_some_and(|m| *n > m))
        .map(|(id, _)| id.as_str())
        .collect();
    ex.out.note(&format!(
        "{}: of the {} call(s) checked, {} carried media",
        step.node,
        second.len(),
        flowing.len()
    ));
    ex.keep(&step.node, record, owned.trim().to_owned())?;
    ex.keep(&step.node, media_record, flowing.join("\n"))?;
    Ok(())
}

/// The packets each sampled call carried, summed over the instances that
/// list it; the owner's read (the first) names the calls.
async fn packets(ex: &Executor<'_>, reads: &[crate::plan::Command]) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut sum = BTreeMap::new();
    for (i, c) in reads.iter().enumerate() {
        for (id, n) in rtp::packets(&ex.run(c).await?)? {
            if i == 0 {
                sum.insert(id, n);
            } else if let Some(s) = sum.get_mut(&id) {
                *s += n;
            }
        }
    }
    Ok(sum)
}

pub(super) async fn read(ex: &Executor<'_>, step: &Step, gate: &Gate) -> anyhow::Result<Poll> {
    Ok(match gate {
        Gate::CallsHeld { of, group } => {
            let readings = read_group(ex, group).await;
            let checked = rtp::check(group, &readings);
            let own = group
                .iter()
                .zip(&readings)
                .find(|(g, _)| g.relay == *of)
                .and_then(|(_, r)| r.as_ref().ok())
                .map_or(0, |r| r.own.len());
            match checked.of(of) {
                Err(why) => Poll::NotYet(why),
                Ok(holes) if holes.is_empty() => Poll::Holds(format!(
                    "{own} call(s), each held by {}",
                    group
                        .iter()
                        .filter(|g| g.relay != *of)
                        .map(|g| g.relay.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                )),
                Ok(holes) => Poll::NotYet(joined(&holes)),
            }
        }
        Gate::CallsRestored { of, record, group } => {
            let kept = ex
                .records
                .get(&(step.node.clone(), record.clone()))
                .with_context(|| format!("no `{record}` was kept before the restart"))?;
            let before: BTreeSet<String> = rtp::own_ids(kept)?.into_iter().collect();
            let readings = read_group(ex, group).await;
            let mut now = None;
            let mut held = BTreeSet::new();
            let keyspace = group.iter().find(|g| g.relay == *of).and_then(|g| g.keyspace);
            for (g, r) in group.iter().zip(&readings) {
                match (r, g.relay == *of) {
                    (Ok(r), true) => {
                        now = Some(
                            r.own_ids()
                                .into_iter()
                                .map(str::to_owned)
                                .collect::<BTreeSet<_>>(),
                        )
                    }
                    (Ok(r), false) => {
                        if let Some(k) = keyspace {
                            held.extend(r.foreign_from(k).into_iter().map(str::to_owned));
                        }
                    }
                    (Err(why), true) => return Ok(Poll::NotYet(why.clone())),
                    // A peer that cannot be read may hold a call that is not back.
                    (Err(why), false) => return Ok(Poll::NotYet(format!("{}: {why}", g.relay))),
                }
            }
            let now = now.unwrap_or_default();
            let missing: Vec<String> = before.difference(&now).cloned().collect();
            let (waiting, ended): (Vec<String>, Vec<String>) =
                missing.into_iter().partition(|id| held.contains(id));
            if waiting.is_empty() {
                let back = before.len() - ended.len();
                let mut what = format!(
                    "{back} of the {} call(s) it owned are its own again",
                    before.len()
                );
                if !ended.is_empty() {
                    what.push_str(&format!(
                        "; {} ended meanwhile (no peer holds them any more): {}",
                        ended.len(),
                        relay::rtpengine::shortlist(&ended)
                    ));
                }
                Poll::Holds(what)
            } else {
                Poll::NotYet(format!(
                    "{} of the {} call(s) it owned are not its own again, though a peer still holds them: {}",
                    waiting.len(),
                    before.len(),
                    relay::rtpengine::shortlist(&waiting)
                ))
            }
        }
        Gate::CallsConsistent { group } => {
            let readings = read_group(ex, group).await;
            let checked = rtp::check(group, &readings);
            let mut why: Vec<String> = checked
                .unread
                .iter()
                .map(|(n, w)| format!("{n} cannot be read: {w}"))
                .collect();
            why.extend(checked.holes.iter().map(ToString::to_string));
            why.extend(checked.stale.iter().map(ToString::to_string));
            if why.is_empty() {
                let counts: Vec<String> = group
                    .iter()
                    .zip(&readings)
                    .filter_map(|(g, r)| {
                        let r = r.as_ref().ok()?;
                        Some(format!(
                            "{} {} own, {} foreign",
                            g.relay,
                            r.own.len(),
                            r.foreign.len()
                        ))
                    })
                    .collect();
                Poll::Holds(counts.join("; "))
            } else {
                Poll::NotYet(why.join("; "))
            }
        }
        Gate::MediaFlows { reads, record, .. } => {
            let kept = ex
                .records
                .get(&(step.node.clone(), record.clone()))
                .with_context(|| format!("no `{record}` was kept before the restart"))?;
            let before: BTreeSet<&str> = kept.lines().filter(|l| !l.is_empty()).collect();
            if before.is_empty() {
                return Ok(Poll::Holds(
                    "none of its calls carried media before the restart: there is nothing to compare".into(),
                ));
            }
            let first = packets(ex, reads).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let second = packets(ex, reads).await?;
            // A call that ended meanwhile is listed no more.
            let present: Vec<&str> = before
                .iter()
                .copied()
                .filter(|id| second.contains_key(*id))
                .collect();
            if present.is_empty() {
                return Ok(Poll::Holds(format!(
                    "the {} call(s) that carried media before the restart have ended",
                    before.len()
                )));
            }
            let grew = present
                .iter()
                .filter(|id| first.get(**id).is_some_and(|m| second[**id] > *m))
                .count();
            if grew > 0 {
                Poll::Holds(format!(
                    "{grew} of the {} call(s) that carried media before the restart carry it again",
                    present.len()
                ))
            } else {
                Poll::NotYet(format!(
                    "none of the {} call(s) that carried media before the restart carried a packet within 2 s",
                    present.len()
                ))
            }
        }
        Gate::NgPing { target } => {
            let target = target.clone();
            let pinged = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                use std::net::ToSocketAddrs;
                let addr = target
                    .to_socket_addrs()
                    .with_context(|| format!("cannot resolve {target}"))?
                    .next()
                    .with_context(|| format!("{target} resolves to nothing"))?;
                let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let mut c = relay::ng::Client::new(addr, bind.parse()?, Duration::from_secs(2))?;
                c.command("ping", Vec::new())?;
                Ok(())
            })
            .await?;
            match pinged {
                Ok(()) => Poll::Holds("pong".into()),
                Err(e) => Poll::NotYet(format!("{e:#}")),
            }
        }
        _ => unreachable!("rtpengine::read is called for rtpengine gates"),
    })
}

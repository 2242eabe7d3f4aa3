//! The safety checks a plan lists, run for real before the first change.
//! They only read, so they read many relays at once (`--forks`).

use std::future::Future;
use std::sync::Arc;

use anyhow::bail;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Executor;
use crate::advertise::{self, State, ValuesFile};
use crate::inventory::Relay;
use crate::remote::{Node, Remote};

/// The checks this version can run.
pub const SUPPORTED: &[&str] = &[
    "reachable",
    "stats-readable",
    "peers-healthy",
    "min-healthy",
    "advertised",
];

pub async fn check(ex: &mut Executor<'_>, name: &str) -> anyhow::Result<()> {
    let targets: Vec<Relay> = ex
        .plan
        .targets
        .iter()
        .map(|t| ex.relay(t).cloned())
        .collect::<anyhow::Result<_>>()?;
    match name {
        "reachable" => {
            let down = failures(
                each(ex, &targets, |remote, r| async move {
                    let node = Node {
                        name: r.name.clone(),
                        access: r.access.clone(),
                    };
                    remote.reachable(&node).await.map_err(|e| e.to_string())
                })
                .await,
            );
            if !down.is_empty() {
                bail!("{}", down.join("\n"));
            }
        }
        "stats-readable" => {
            let silent = failures(
                each(ex, &targets, |remote, r| async move {
                    crate::stats::read(&remote, &r, r.access.ssh.command_timeout)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("the stats of `{}` cannot be read: {e:#}", r.name))
                })
                .await,
            );
            if !silent.is_empty() {
                bail!("{}", silent.join("\n"));
            }
        }
        "peers-healthy" => {
            let peers = peers(ex, &targets);
            let sick: Vec<String> = each(ex, &peers, health)
                .await
                .into_iter()
                .filter_map(|(name, r)| r.err().map(|why| format!("`{name}`: {why}")))
                .collect();
            if !sick.is_empty() {
                bail!(
                    "relays that stay in service are not healthy:\n  {}",
                    sick.join("\n  ")
                );
            }
        }
        "min-healthy" => {
            let values = ValuesFile::load(ex.inv)?;
            let sites: Vec<_> = ex
                .inv
                .sites
                .iter()
                .filter(|s| targets.iter().any(|t| t.site == s.name))
                .collect();
            for site in sites {
                // Relays go out one at a time: while any one is out, every other
                // relay of the site (targets waiting their turn included)
                // carries the calls.
                let healthy = each(ex, &site.relays, health).await;
                let mut ok = Vec::new();
                let mut missing = Vec::new();
                for (r, health) in site.relays.iter().zip(healthy) {
                    let listed = match &values {
                        Some(v) => v
                            .relay_entries(ex.inv, std::iter::once(r))?
                            .get(&r.name)
                            .is_some_and(|e| advertise::state(e) == State::Advertised),
                        None => true,
                    };
                    match (listed, health.1) {
                        (true, Ok(())) => ok.push(r.name.clone()),
                        (false, _) => missing.push(format!("{} (not advertised)", r.name)),
                        (true, Err(why)) => missing.push(format!("{} ({why})", r.name)),
                    }
                }
                let left = targets
                    .iter()
                    .filter(|t| t.site == site.name)
                    .map(|t| ok.iter().filter(|n| **n != t.name).count())
                    .min()
                    .unwrap_or(ok.len());
                if left < site.min_healthy_relays {
                    bail!(
                        "taking a relay out of site `{}` would leave {left} healthy advertised relay{} (of {}), below its minimum of {}{}",
                        site.name,
                        if left == 1 { "" } else { "s" },
                        if ok.is_empty() {
                            "none".into()
                        } else {
                            ok.join(", ")
                        },
                        site.min_healthy_relays,
                        if missing.is_empty() {
                            String::new()
                        } else {
                            format!("; not counted: {}", missing.join(", "))
                        }
                    );
                }
            }
        }
        "advertised" => {
            if let Some(v) = ValuesFile::load(ex.inv)? {
                let entries = v.relay_entries(ex.inv, targets.iter())?;
                for r in &targets {
                    // A relay an earlier run left out is where this run takes over.
                    let continued = ex.plan.continues.contains_key(&r.name);
                    if !continued
                        && entries
                            .get(&r.name)
                            .is_none_or(|e| advertise::state(e) != State::Advertised)
                    {
                        bail!(
                            "relay `{}` is not fully in the advertised list in {}",
                            r.name,
                            v.label
                        );
                    }
                }
            }
        }
        other => bail!("the safety check `{other}` is not built yet"),
    }
    Ok(())
}

/// Runs `read` for every relay, at most `--forks` at once; results in the
/// relays' order, each with the relay's name.
async fn each<F, Fut>(ex: &Executor<'_>, relays: &[Relay], read: F) -> Vec<(String, Result<(), String>)>
where
    F: Fn(Arc<Remote>, Relay) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(ex.opts.forks.max(1)));
    let mut tasks = JoinSet::new();
    for (i, r) in relays.iter().enumerate() {
        let (limit, name, fut) = (limit.clone(), r.name.clone(), read(ex.remote.clone(), r.clone()));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, name, fut.await)
        });
    }
    let mut out = Vec::with_capacity(relays.len());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(r) => out.push(r),
            Err(e) => out.push((usize::MAX, "?".into(), Err(format!("a check failed to run: {e}")))),
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, n, r)| (n, r)).collect()
}

fn failures(results: Vec<(String, Result<(), String>)>) -> Vec<String> {
    results.into_iter().filter_map(|(_, r)| r.err()).collect()
}

/// The other relays of the targets' sites: the ones that carry the calls.
fn peers(ex: &Executor<'_>, targets: &[Relay]) -> Vec<Relay> {
    ex.inv
        .relays()
        .filter(|r| targets.iter().any(|t| t.site == r.site) && !targets.iter().any(|t| t.name == r.name))
        .cloned()
        .collect()
}

/// Reachable, service up, stats answering, and a STUN binding with `stun_check`.
async fn health(remote: Arc<Remote>, r: Relay) -> Result<(), String> {
    let node = Node {
        name: r.name.clone(),
        access: r.access.clone(),
    };
    remote.reachable(&node).await.map_err(|e| e.to_string())?;
    let status = crate::command::Command::remote(&r.name, &r.access, r.service.status.clone());
    let out = remote
        .probe(&node, &status, r.access.ssh.command_timeout, None)
        .await
        .map_err(|e| e.to_string())?;
    let up = out.code == 0
        && r.service
            .status_expect
            .as_deref()
            .is_none_or(|w| out.stdout.trim() == w);
    if !up {
        return Err(format!("service not up (`{}` exited {})", status.line, out.code));
    }
    crate::stats::read(&remote, &r, r.access.ssh.command_timeout)
        .await
        .map_err(|e| format!("stats: {e:#}"))?;
    if r.stun_check {
        super::gates::stun_answers(&r)
            .await
            .map_err(|e| format!("STUN binding: {e:#}"))?;
    }
    Ok(())
}

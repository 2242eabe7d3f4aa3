//! The safety checks a plan lists, run for real before the first change.

use anyhow::{Context, bail};

use super::Executor;
use crate::advertise::{self, State, ValuesFile};
use crate::inventory::Relay;
use crate::remote::Node;

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
            let mut down = Vec::new();
            for r in &targets {
                if let Err(e) = ex
                    .remote
                    .reachable(&Node {
                        name: r.name.clone(),
                        access: r.access.clone(),
                    })
                    .await
                {
                    down.push(e.to_string());
                }
            }
            if !down.is_empty() {
                bail!("{}", down.join("\n"));
            }
        }
        "stats-readable" => {
            for r in &targets {
                crate::stats::read(&ex.remote, r, r.access.ssh.command_timeout)
                    .await
                    .with_context(|| format!("the stats of `{}` cannot be read", r.name))?;
            }
        }
        "peers-healthy" => {
            let mut sick = Vec::new();
            for r in peers(ex, &targets) {
                if let Err(why) = health(ex, &r).await {
                    sick.push(format!("`{}`: {why}", r.name));
                }
            }
            if !sick.is_empty() {
                bail!(
                    "relays that stay in service are not healthy:\n  {}",
                    sick.join("\n  ")
                );
            }
        }
        "min-healthy" => {
            let values = ValuesFile::load(ex.inv)?;
            for site in ex
                .inv
                .sites
                .iter()
                .filter(|s| targets.iter().any(|t| t.site == s.name))
            {
                // Relays go out one at a time: while any one is out, every other relay
                // of the site (targets waiting their turn included) carries the calls.
                let mut ok = Vec::new();
                let mut missing = Vec::new();
                for r in &site.relays {
                    let listed = match &values {
                        Some(v) => v
                            .relay_entries(ex.inv, std::iter::once(r))?
                            .get(&r.name)
                            .is_some_and(|e| advertise::state(e) == State::Advertised),
                        None => true,
                    };
                    match (listed, health(ex, r).await) {
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

/// The other relays of the targets' sites: the ones that carry the calls.
fn peers(ex: &Executor<'_>, targets: &[Relay]) -> Vec<Relay> {
    ex.inv
        .relays()
        .filter(|r| targets.iter().any(|t| t.site == r.site) && !targets.iter().any(|t| t.name == r.name))
        .cloned()
        .collect()
}

/// Reachable, service up, stats answering.
async fn health(ex: &Executor<'_>, r: &Relay) -> Result<(), String> {
    let node = Node {
        name: r.name.clone(),
        access: r.access.clone(),
    };
    ex.remote.reachable(&node).await.map_err(|e| e.to_string())?;
    let status = crate::plan::remote_command(&r.name, &r.access, r.service.status.clone());
    let out = ex
        .remote
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
    crate::stats::read(&ex.remote, r, r.access.ssh.command_timeout)
        .await
        .map_err(|e| format!("stats: {e:#}"))?;
    if r.stun_check {
        super::gates::stun_answers(r)
            .await
            .map_err(|e| format!("STUN binding: {e:#}"))?;
    }
    Ok(())
}

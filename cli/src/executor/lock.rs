//! Taking and releasing the plan's site locks ([`crate::lock`]): before the
//! safety checks, so two runs never both pass them; released whatever the
//! run's end, unless it is killed (then the next run finds it and says so).

use std::time::{Duration, Instant};

use super::core::Executor;
use crate::lock::{Backend, HELD, Holder, SiteLock};
use crate::printer::Tone;

/// What taking one site's lock came to.
enum Taken {
    Yes,
    /// Another run holds it, as recorded on `node` (`None`: no readable record).
    Held {
        node: String,
        holder: Option<Holder>,
    },
    /// Fewer than a majority could be taken.
    TooFew {
        held: usize,
        failed: Vec<String>,
    },
}

/// Takes every site lock of the plan, or none (what it took it gives back).
pub(super) async fn take(ex: &mut Executor<'_>) -> anyhow::Result<()> {
    let me = Holder::here(&ex.plan.run, &ex.plan.procedure, &ex.plan.targets);
    let record = serde_json::to_vec(&me)?;
    let plan = ex.plan;
    for (i, lock) in plan.locks.iter().enumerate() {
        let mut broken = false;
        loop {
            match take_site(ex, i, lock, &record).await? {
                Taken::Yes if lock.backend == Backend::Etcd => {
                    let through = ex
                        .locks_held
                        .iter()
                        .find(|(l, _)| *l == i)
                        .map(|(_, j)| lock.on[*j].node.as_str());
                    ex.out.note(&format!(
                        "locked site `{}` in its etcd cluster, through {}, under lease {}",
                        lock.site,
                        through.unwrap_or("?"),
                        ex.leases.get(&i).map(String::as_str).unwrap_or("?")
                    ));
                    break;
                }
                Taken::Yes => {
                    ex.out.note(&format!(
                        "locked site `{}` ({} of its {} nodes hold the lock)",
                        lock.site,
                        ex.locks_held.iter().filter(|(l, _)| *l == i).count(),
                        lock.on.len()
                    ));
                    break;
                }
                Taken::TooFew { failed, .. } if lock.backend == Backend::Etcd => {
                    release(ex).await;
                    return Err(crate::error::refused(format!(
                        "site `{}` is locked in its etcd cluster (key {}), and no member took the lock; nothing was run\n  {}\nhelp: bring the cluster back (`opsctl recover-quorum` if it lost quorum), or set `lock: {{backend: nodes}}` in the inventory to lock on the relays instead (every operator must then do the same)",
                        lock.site,
                        lock.path,
                        failed.join("\n  ")
                    )));
                }
                Taken::TooFew { held, failed } => {
                    release(ex).await;
                    return Err(crate::error::refused(format!(
                        "site `{}` cannot be locked: {held} of its {} nodes took the lock, a majority ({}) is needed; nothing was run\n  {}\nhelp: the lock lives in {} on each node; bring the nodes back, or set `lock.dir` in the inventory to a directory the SSH user may write",
                        lock.site,
                        lock.on.len(),
                        lock.need,
                        failed.join("\n  "),
                        lock.path
                    )));
                }
                Taken::Held { node, holder } => {
                    release(ex).await;
                    let who = match &holder {
                        Some(h) => h.describe(),
                        None => {
                            "a run whose record is missing or unreadable (one killed while it took the lock)"
                                .to_owned()
                        }
                    };
                    let stale = match &holder {
                        Some(h) if h.gone() && lock.backend == Backend::Etcd => format!(
                            "; its process is gone from this machine: the lock frees itself once its lease runs out (within {}s)",
                            lock.lease_secs.unwrap_or(0)
                        ),
                        Some(h) if h.gone() => {
                            "; its process is gone from this machine: the lock is stale".to_owned()
                        }
                        Some(h) if h.machine == crate::lock::machine() => {
                            "; its process still runs on this machine".to_owned()
                        }
                        Some(_) => String::new(),
                        None => "; the lock is stale".to_owned(),
                    };
                    if !ex.opts.break_lock || broken {
                        return Err(crate::error::refused(format!(
                            "site `{}` is locked by {who} (as {} on {node} says){stale}; nothing was run\nhelp: wait for that run to end; if it is gone for good, pass --break-lock to take the lock over",
                            lock.site, lock.path
                        )));
                    }
                    ex.ask(&format!(
                        "break the lock of site `{}`, held by {who}{stale}",
                        lock.site
                    ))
                    .await?;
                    break_site(ex, lock, holder.as_ref().map(|h| h.run.as_str()).unwrap_or("")).await?;
                    ex.out.note(&format!(
                        "the lock of site `{}` was broken (--break-lock)",
                        lock.site
                    ));
                    broken = true;
                }
            }
        }
    }
    Ok(())
}

/// Takes `lock` node by node, in order, stopping at one held by another run.
async fn take_site(ex: &mut Executor<'_>, i: usize, lock: &SiteLock, record: &[u8]) -> anyhow::Result<Taken> {
    let mut held = 0;
    let mut failed = Vec::new();
    for (j, on) in lock.on.iter().enumerate() {
        let node = ex.plan.node(&on.take.on)?;
        let t = node.access.ssh.command_timeout;
        match ex.remote.probe(&node, &on.take, t, Some(record)).await {
            Ok(out) if out.code == 0 => {
                held += 1;
                ex.locks_held.push((i, j));
                if lock.backend == Backend::Etcd {
                    // Held in the cluster through this member's lease, kept
                    // alive while the run lasts.
                    let lease = out.stdout.trim().to_owned();
                    keep_alive(ex, i, j, &lease)?;
                    ex.leases.insert(i, lease);
                    return Ok(Taken::Yes);
                }
            }
            Ok(out) if out.code == HELD => {
                return Ok(Taken::Held {
                    node: on.node.clone(),
                    holder: serde_json::from_str(out.stdout.trim()).ok(),
                });
            }
            Ok(out) => failed.push(format!(
                "{}: exit {}: {}",
                on.node,
                out.code,
                crate::remote::trim_output(&out.stderr)
            )),
            Err(e) => failed.push(format!(
                "{}: {}",
                on.node,
                e.to_string().lines().next().unwrap_or("")
            )),
        }
    }
    Ok(if held >= lock.need {
        Taken::Yes
    } else {
        Taken::TooFew { held, failed }
    })
}

/// Renews the lease of site lock `i` (taken on its member `j`) six times
/// per TTL until released. A lease that lapses (not renewed
/// for its TTL, or found gone) stops the run at the next safe point: the
/// site is no longer its own.
fn keep_alive(ex: &mut Executor<'_>, i: usize, j: usize, lease: &str) -> anyhow::Result<()> {
    let lock = &ex.plan.locks[i];
    let Some(keep) = lock.on[j].keep.clone() else {
        return Ok(());
    };
    let node = ex.plan.node(&keep.on)?;
    let (remote, out, stop) = (ex.remote.clone(), ex.out.clone(), ex.stop.clone());
    let (site, stdin) = (lock.site.clone(), format!("{lease}\n"));
    let every = Duration::from_secs(lock.renew_secs());
    let ttl = Duration::from_secs(lock.lease_secs.unwrap_or(0));
    ex.keepers.push(tokio::spawn(async move {
        let t = node.access.ssh.command_timeout.min(every);
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let why = match remote.probe(&node, &keep, t, Some(stdin.as_bytes())).await {
                Ok(o) if o.code == 0 => {
                    renewed = Instant::now();
                    continue;
                }
                Ok(o) if o.stderr.contains("lease not found") => {
                    "its lease is gone (expired or revoked)".to_owned()
                }
                Ok(o) => crate::remote::trim_output(&o.stderr),
                Err(e) => e.to_string().lines().next().unwrap_or("").to_owned(),
            };
            let gone = why.starts_with("its lease is gone");
            if gone || renewed.elapsed() + every >= ttl {
                out.line(
                    "Lock lost",
                    &format!(
                        "the lock of site `{site}` could not be renewed ({why}): another run may take the site now; stopping at the next safe point"
                    ),
                    Tone::Bad,
                );
                stop.press();
                return;
            }
            // Forget a connection that may be dead, for the next renewal.
            remote.forget_node(&node.name).await;
        }
    }));
    Ok(())
}

/// Removes the lock `holder` holds on every node of `lock` that answers.
async fn break_site(ex: &Executor<'_>, lock: &SiteLock, holder: &str) -> anyhow::Result<()> {
    let stdin = format!("{holder}\n");
    for on in &lock.on {
        let node = ex.plan.node(&on.break_.on)?;
        let t = node.access.ssh.command_timeout;
        match ex
            .remote
            .probe(&node, &on.break_, t, Some(stdin.as_bytes()))
            .await
        {
            Ok(out) if out.code == 0 => {}
            Ok(out) => ex.out.note(&format!(
                "the lock on {} could not be broken: exit {}: {}",
                on.node,
                out.code,
                crate::remote::trim_output(&out.stderr)
            )),
            Err(e) => ex
                .out
                .note(&format!("the lock on {} could not be broken: {e}", on.node)),
        }
    }
    Ok(())
}

/// Gives back every lock this run took; one that cannot be released is
/// said, and left for the next run to find (it names this run).
pub(super) async fn release(ex: &mut Executor<'_>) {
    for k in std::mem::take(&mut ex.keepers) {
        k.abort();
    }
    let held = std::mem::take(&mut ex.locks_held);
    for (i, j) in held {
        let on = &ex.plan.locks[i].on[j];
        let Ok(node) = ex.plan.node(&on.release.on) else {
            continue;
        };
        let t = node.access.ssh.command_timeout;
        // An etcd lock is released by revoking its lease (its id on stdin).
        let stdin = ex.leases.remove(&i).map(|l| format!("{l}\n"));
        let release = async |ex: &Executor<'_>| match ex
            .remote
            .probe(&node, &on.release, t, stdin.as_deref().map(str::as_bytes))
            .await
        {
            Ok(o) if o.code == 0 => Ok(()),
            Ok(o) => Err(anyhow::anyhow!(
                "exit {}: {}",
                o.code,
                crate::remote::trim_output(&o.stderr)
            )),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        let mut released = release(ex).await;
        if released.is_err() {
            // A connection idle through a long drain may be gone: a new one.
            ex.remote.forget_node(&node.name).await;
            released = release(ex).await;
        }
        if let Err(e) = released {
            ex.out.note(&format!(
                "the lock of site `{}` on {} could not be released ({e}): the next run will find it held by run {}",
                ex.plan.locks[i].site, on.node, ex.plan.run
            ));
        }
    }
}

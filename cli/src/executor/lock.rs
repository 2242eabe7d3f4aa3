//! Taking and releasing the plan's site locks ([`crate::lock`]): before the
//! safety checks, so two runs never both pass them; released whatever the
//! run's end, unless it is killed (then the next run finds it and says so).

use super::core::Executor;
use crate::lock::{HELD, Holder, SiteLock};

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
                Taken::Yes => {
                    ex.out.note(&format!(
                        "locked site `{}` ({} of its {} nodes hold the lock)",
                        lock.site,
                        ex.locks_held.iter().filter(|(l, _)| *l == i).count(),
                        lock.on.len()
                    ));
                    break;
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
    let held = std::mem::take(&mut ex.locks_held);
    for (i, j) in held {
        let on = &ex.plan.locks[i].on[j];
        let Ok(node) = ex.plan.node(&on.release.on) else {
            continue;
        };
        let t = node.access.ssh.command_timeout;
        let mut released = ex.remote.run(&node, &on.release, t).await;
        if released.is_err() {
            // A connection idle through a long drain may be gone: a new one.
            ex.remote.forget_node(&node.name).await;
            released = ex.remote.run(&node, &on.release, t).await;
        }
        if let Err(e) = released {
            ex.out.note(&format!(
                "the lock of site `{}` on {} could not be released ({e}): the next run will find it held by run {}",
                ex.plan.locks[i].site, on.node, ex.plan.run
            ));
        }
    }
}

//! restart, reboot node, renew-cert, recover-quorum: build the plan, then
//! print it (`--dry-run`) or run it.

use crate::args::Output;
use crate::config::Config;
use crate::error::{self, Kind};
use crate::executor;
use crate::plan::{self, Request};

pub fn run(cfg: &Config, req: &Request) -> anyhow::Result<()> {
    // What the plan cannot be built from is a mistake in the input, unless
    // the deployment's state refused it.
    let inv = cfg.inventory()?;
    let mut req = req.clone();
    if let plan::Procedure::RenewCert { served, .. } = &mut req.procedure {
        // What each target serves now, for the plan to show and compare.
        let relays: Vec<_> = inv.relays().filter(|r| req.targets.contains(&r.name)).collect();
        *served = plan::read_served_now(&relays);
    }
    if let plan::Procedure::RecoverQuorum(q) = &mut req.procedure {
        // Which members' hosts answer now: a rebuild goes on without a host
        // that is down, if enough answer. And which etcd the seed runs: its
        // restore command depends on it.
        let (down, version) = probe_members(cfg, inv, &req.targets)?;
        q.unreachable = down;
        (q.seed_version, q.seed_version_unread) = match version {
            Ok(v) => (Some(v), None),
            Err(why) => (None, Some(why)),
        };
    }
    let mut plan = plan::build(inv, &req).map_err(|e| error::mark(Kind::Usage, e))?;
    let mut resume = None;
    if matches!(req.procedure, plan::Procedure::RecoverQuorum { .. })
        && let Some(prev) =
            crate::journal::unfinished(&cfg.state_dir, &cfg.inventory_id, &plan.procedure, &plan.targets)
    {
        // A rebuild cut short is finished, not started again: the nodes are
        // mid-change and most checks it passed before its first change no
        // longer hold. It goes on only if its plan is still the one made
        // now (same inventory), under its own run id.
        // Planned again from the same readings and choices: what differs
        // is the inventory.
        let again = Request {
            run: prev.run.clone(),
            procedure: match &prev.plan.quorum {
                Some(q) => plan::Procedure::RecoverQuorum(q.clone()),
                None => req.procedure.clone(),
            },
            ..req.clone()
        };
        let now = plan::build(inv, &again).map_err(|e| error::mark(Kind::Usage, e))?;
        let same = |p: &plan::Plan| serde_json::to_value((&p.sections, &p.nodes)).ok();
        if same(&now) != same(&prev.plan) {
            return Err(error::refused(format!(
                "run {} of {} on {} did not finish ({} of its steps done), and the plan made now differs from the one it ran: the inventory changed since; nothing was run\nhelp: put the inventory back as it was for run {}, or finish by hand from its journal in {}",
                prev.run,
                prev.procedure,
                prev.targets.join(", "),
                prev.done.len(),
                prev.run,
                cfg.state_dir.display()
            )));
        }
        plan = prev.plan.clone();
        let done: Vec<String> = prev.done.iter().map(usize::to_string).collect();
        plan.notes.insert(
            0,
            format!(
                "this continues run {} ({}), which did not finish: steps {} are done and are not run again (a question is asked again); of its safety checks only reachable and quorum-lost, on the members it has not stopped, are read again",
                prev.run,
                prev.outcome.as_deref().unwrap_or("killed"),
                done.join(", ")
            ),
        );
        resume = Some(executor::Resume {
            done: prev.done,
            records: prev.records,
        });
    }
    if cfg.dry_run {
        match cfg.output {
            Output::Text => cfg.printer.text(&plan::text(&plan)),
            Output::Json => cfg.printer.document(&plan)?,
        }
        return Ok(());
    }
    let opts = executor::Options {
        forks: cfg.forks,
        state_dir: cfg.state_dir.clone(),
        inventory_id: cfg.inventory_id.clone(),
        yes: cfg.yes,
        printer: cfg.printer.clone(),
        control_dir: cfg.control_dir.clone(),
        ssh_persist: cfg.ssh_persist,
        resume,
        break_lock: cfg.break_lock,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = executor::Stop::default();
        stop.on_ctrl_c(cfg.printer.clone());
        executor::run(&plan, opts, stop).await
    })
}

/// The members of the targets' clusters whose host does not answer SSH now,
/// with why (all are asked at once), and for plain etcd, the version the
/// seed's etcd reports (or why it cannot be read).
fn probe_members(
    cfg: &Config,
    inv: &crate::inventory::Inventory,
    sites: &[String],
) -> anyhow::Result<(std::collections::BTreeMap<String, String>, Result<String, String>)> {
    let clusters: Vec<&crate::inventory::Cluster> = inv
        .sites
        .iter()
        .filter(|s| sites.contains(&s.name))
        .filter_map(|s| s.cluster.as_ref())
        .collect();
    let members: Vec<crate::remote::Node> = clusters
        .iter()
        .flat_map(|c| c.members.iter())
        .map(|m| crate::remote::Node {
            name: m.name.clone(),
            access: m.access.clone(),
        })
        .collect();
    // `endpoint status` answers without quorum (a serializable read).
    let seed_read = clusters.iter().find_map(|c| match &c.flavor {
        crate::inventory::Flavor::Etcd(e) => {
            let seed = c.members.iter().find(|m| m.name == e.seed)?;
            let crate::inventory::MemberRole::Etcd { client_url, .. } = &seed.role else {
                return None;
            };
            let argv = [
                e.etcdctl.as_str(),
                &format!("--endpoints={client_url}"),
                "--command-timeout=3s",
                "endpoint",
                "status",
                "-w",
                "json",
            ];
            Some((
                crate::remote::Node {
                    name: seed.name.clone(),
                    access: seed.access.clone(),
                },
                crate::command::Command::remote_str(&seed.name, &seed.access, &argv),
            ))
        }
        crate::inventory::Flavor::Clearwater(_) => None,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let remote = std::sync::Arc::new(crate::remote::Remote::with_persist(
            cfg.control_dir.clone(),
            cfg.ssh_persist,
        )?);
        let mut tasks = tokio::task::JoinSet::new();
        for node in members {
            let remote = remote.clone();
            tasks.spawn(async move {
                let r = remote.reachable(&node).await;
                (node.name, r.err().map(|e| e.to_string()))
            });
        }
        let mut down = std::collections::BTreeMap::new();
        while let Some(done) = tasks.join_next().await {
            if let (name, Some(why)) = done? {
                down.insert(name, why.lines().next().unwrap_or("").to_owned());
            }
        }
        let version = match seed_read {
            None => Err("not an etcd cluster".to_owned()),
            Some((node, _)) if down.contains_key(&node.name) => {
                Err("its host does not answer SSH".to_owned())
            }
            Some((node, cmd)) => {
                let t = node.access.ssh.command_timeout;
                match remote.run(&node, &cmd, t).await {
                    Err(e) => Err(e.to_string().lines().last().unwrap_or("").to_owned()),
                    Ok(out) => crate::etcd::statuses(&out.stdout)
                        .map_err(|e| format!("{e:#}"))
                        .and_then(|s| {
                            s.into_iter()
                                .next()
                                .map(|(_, s)| s.version)
                                .ok_or_else(|| "no status in the reply".to_owned())
                        }),
                }
            }
        };
        if let Ok(remote) = std::sync::Arc::try_unwrap(remote) {
            remote.close().await;
        }
        Ok((down, version))
    })
}

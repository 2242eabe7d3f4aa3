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
    if matches!(req.procedure, plan::Procedure::RestartNoDowntime) {
        // Whether each rtpengine's peers hold its calls: the path its
        // restart takes.
        (req.handover, req.handover_reads) = read_handover(cfg, inv, &req.targets)?;
    }
    if matches!(
        req.procedure,
        plan::Procedure::RestartNoDowntime
            | plan::Procedure::RebootNode { drain: true }
            | plan::Procedure::RenewCert { .. }
    ) {
        // Which coturn each runs whose own drain is asked for: only 4.6.3
        // and later have one.
        req.versions = read_versions(cfg, inv, &req.targets)?;
    }
    let mut plan = plan::build(inv, &req).map_err(|e| error::mark(Kind::Usage, e))?;
    let mut resume = None;
    if matches!(req.procedure, plan::Procedure::RecoverQuorum { .. })
        && let Some(prev) =
            crate::journal::unfinished(&cfg.state_dir, &cfg.inventory_id, &plan.procedure, &plan.targets)
    {
        // A rebuild cut short is finished, not started again: the nodes are
        // mid-change and most checks it passed before its first change no
        // longer hold. One still running is not continued beside itself.
        if prev.state() == "running" {
            return Err(error::refused(format!(
                "run {} of {} on {} is running now (process {} on this machine); nothing was run\nhelp: wait for it, or stop it first (Ctrl-C where it runs, or `kill -INT {}`)",
                prev.run,
                prev.procedure,
                prev.targets.join(", "),
                prev.pid,
                prev.pid
            )));
        }
        let again = prev.plan.request.clone().unwrap_or_else(|| Request {
            run: prev.run.clone(),
            ..req.clone()
        });
        let (p, r) = continued(inv, &prev, again, cfg)?;
        (plan, resume) = (p, Some(r));
    }
    execute(cfg, plan, resume)
}

/// `opsctl resume RUN`: the run its journal tells of, from its first step
/// not done.
pub fn resume(cfg: &Config, prev: &crate::journal::Previous) -> anyhow::Result<()> {
    let what = format!(
        "run {} ({} on {})",
        prev.run,
        prev.procedure,
        prev.targets.join(", ")
    );
    match prev.state().as_str() {
        "done" => {
            return Err(error::refused(format!(
                "{what} finished: there is nothing to resume"
            )));
        }
        "running" => {
            return Err(error::refused(format!(
                "{what} is running now (process {} on this machine): it cannot be resumed beside itself\nhelp: stop it first (Ctrl-C where it runs, or `kill -INT {}`), then resume it",
                prev.pid, prev.pid
            )));
        }
        "refused" if prev.done.is_empty() => {
            return Err(error::refused(format!(
                "{what} was refused before any change ({} step done), so there is nothing to continue\nhelp: run the procedure again: it plans for the deployment as it is now",
                prev.done.len()
            )));
        }
        _ => {}
    }
    let Some(req) = prev.plan.request.clone() else {
        return Err(error::refused(format!(
            "{what} was planned by an opsctl that did not keep what its plan was made from, so its plan cannot be checked against the inventory now\nhelp: finish it by hand from its journal {}",
            cfg.state_dir.join(format!("{}.jsonl", prev.run)).display()
        )));
    };
    let inv = cfg.inventory()?;
    let (plan, resume) = continued(inv, prev, req, cfg)?;
    execute(cfg, plan, Some(resume))
}

/// The plan of an unfinished run, to continue: made again from what it was
/// made from (its request) against the inventory now, it must come out the
/// same, or the inventory (or a file it reads, such as the values file)
/// changed in a way the stored plan does not know.
fn continued(
    inv: &crate::inventory::Inventory,
    prev: &crate::journal::Previous,
    mut req: Request,
    cfg: &Config,
) -> anyhow::Result<(plan::Plan, executor::Resume)> {
    // The relays this very run left out of the advertised list are out by
    // its own doing: planned again, they are taken over, not refused.
    // So are those whose take-out began: cut short between its edit and
    // the apply, it left no word in the journal.
    for (relay, run) in crate::journal::left_out(&cfg.state_dir, &cfg.inventory_id) {
        if run == prev.run {
            req.left_out.insert(relay, run);
        }
    }
    for s in prev.plan.steps() {
        if matches!(s.action, plan::Action::Advertise { out: true, .. }) && prev.begun.contains(&s.number) {
            req.left_out
                .entry(s.node.clone())
                .or_insert_with(|| prev.run.clone());
        }
    }
    let now = plan::build(inv, &req).map_err(|e| error::mark(Kind::Usage, e))?;
    // A values file edit's diff shows the file as it was read then: the
    // run's own edits change it. What is edited (the list, the URLs) must
    // be the same; the executor checks the file itself at each edit.
    let same = |p: &plan::Plan| {
        let mut p = p.clone();
        for s in p.sections.iter_mut().flat_map(|s| s.steps.iter_mut()) {
            if let plan::Action::Advertise { edit: Some(e), .. } = &mut s.action {
                e.diff.clear();
            }
        }
        let checks: Vec<&plan::CheckKind> = p.preflight.iter().map(|c| &c.kind).collect();
        serde_json::to_value((&p.sections, &p.nodes, checks)).ok()
    };
    if same(&now) != same(&prev.plan) {
        // What was compared, as JSON: the lines that differ are the change.
        let pretty = |p: &plan::Plan| {
            same(p)
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_default()
        };
        let diff = crate::advertise::diff(
            &format!("plan of run {} -> planned now", prev.run),
            &pretty(&prev.plan),
            &pretty(&now),
        );
        let shown: Vec<String> = diff
            .lines()
            .take(40)
            .map(|l| match l.char_indices().nth(160) {
                Some((cut, _)) => format!("{}...", &l[..cut]),
                None => l.to_owned(),
            })
            .collect();
        return Err(error::refused(format!(
            "run {} of {} on {} did not finish ({} of its steps done), and the plan made now differs from the one it ran: the inventory (or a file the plan reads) changed since; nothing was run\n{}{}\nhelp: put the inventory back as it was for run {}, or finish by hand from its journal in {}",
            prev.run,
            prev.procedure,
            prev.targets.join(", "),
            prev.done.len(),
            shown.join("\n"),
            if diff.lines().count() > shown.len() {
                "\n..."
            } else {
                ""
            },
            prev.run,
            cfg.state_dir.display()
        )));
    }
    let mut plan = prev.plan.clone();
    // The relays out by this run's own doing, as planned now: the checks
    // take them as out.
    plan.continues = now.continues;
    let done: Vec<String> = prev.done.iter().map(usize::to_string).collect();
    plan.notes.insert(
        0,
        format!(
            "this continues run {} ({}), which did not finish: {} done and not run again (a question is asked again){}; the safety checks that still mean something mid-change are read again",
            prev.run,
            prev.state(),
            match done.as_slice() {
                [] => "no step is".to_owned(),
                [one] => format!("step {one} is"),
                many => format!("steps {} are", many.join(", ")),
            },
            match prev.interrupted() {
                Some(n) => format!("; step {n} began and did not finish: it is checked, then done or skipped"),
                None => String::new(),
            }
        ),
    );
    Ok((
        plan,
        executor::Resume {
            done: prev.done.clone(),
            records: prev.records.clone(),
            interrupted: prev.interrupted(),
        },
    ))
}

/// Prints the plan (`--dry-run`) or runs it.
fn execute(cfg: &Config, mut plan: plan::Plan, resume: Option<executor::Resume>) -> anyhow::Result<()> {
    // The hook runs on this machine, like an apply command: the plan says so.
    if let Some(hook) = &cfg.notify {
        plan.notes.push(format!(
            "--notify: `sh -c {}` runs here at each step's end and at the run's end, with that event as one JSON line on its stdin (10 s at most each)",
            crate::shell::join(std::slice::from_ref(hook))
        ));
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
        notify: cfg.notify.clone(),
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

/// For each rtpengine target: whether its peers hold its calls now (its
/// site's group read at once), the path its restart takes.
fn read_handover(
    cfg: &Config,
    inv: &crate::inventory::Inventory,
    targets: &[String],
) -> anyhow::Result<(
    std::collections::BTreeMap<String, crate::rtpengine::Handover>,
    Vec<crate::rtpengine::Report>,
)> {
    let rtpengines: Vec<&crate::inventory::Relay> = inv
        .relays()
        .filter(|r| targets.contains(&r.name) && r.kind == relay::Kind::Rtpengine)
        .collect();
    let (mut out, mut reads) = (std::collections::BTreeMap::new(), Vec::new());
    if rtpengines.is_empty() {
        return Ok((out, reads));
    }
    with_remote(cfg, async |remote| {
        for site in &inv.sites {
            let mine: Vec<_> = rtpengines.iter().filter(|r| r.site == site.name).collect();
            if mine.is_empty() {
                continue;
            }
            let group = crate::rtpengine::group(site);
            let readings = if group.len() > 1 {
                let nodes: Vec<crate::remote::Node> = site
                    .relays
                    .iter()
                    .map(|r| crate::remote::Node {
                        name: r.name.clone(),
                        access: r.access.clone(),
                    })
                    .collect();
                let r = crate::rtpengine::read_all(&remote, &nodes, &group).await;
                reads.extend(group.iter().cloned());
                r
            } else {
                Vec::new()
            };
            for r in mine {
                out.insert(r.name.clone(), crate::rtpengine::handover(r, &group, &readings));
            }
        }
        Ok((out, reads))
    })
}

/// For each coturn target with `relay_drain` on: the version its running
/// process reports (all read at once), or why it cannot be read.
fn read_versions(
    cfg: &Config,
    inv: &crate::inventory::Inventory,
    targets: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, plan::VersionRead>> {
    let reads: Vec<(crate::remote::Node, plan::Command)> = inv
        .relays()
        .filter(|r| targets.contains(&r.name) && r.drain.relay_drain)
        .filter_map(|r| {
            let argv = r.service.version.clone()?;
            Some((
                crate::remote::Node {
                    name: r.name.clone(),
                    access: r.access.clone(),
                },
                plan::Command::remote(&r.name, &r.access, argv),
            ))
        })
        .collect();
    let mut out = std::collections::BTreeMap::new();
    if reads.is_empty() {
        return Ok(out);
    }
    with_remote(cfg, async |remote| {
        let mut tasks = tokio::task::JoinSet::new();
        for (node, command) in reads {
            let remote = remote.clone();
            tasks.spawn(async move {
                let t = node.access.ssh.command_timeout;
                // The plan names the command: why, without it.
                let read = match remote.run(&node, &command, t).await {
                    Ok(o) => Ok(o.stdout.trim().to_owned()),
                    Err(crate::remote::ExecError::Failed { code, stderr, .. }) => Err(format!(
                        "exit status {code}{}",
                        stderr
                            .lines()
                            .last()
                            .map(|l| format!(": {}", l.trim()))
                            .unwrap_or_default()
                    )),
                    Err(e) => Err(e.to_string().lines().next().unwrap_or("").to_owned()),
                };
                (node.name, plan::VersionRead { command, read })
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (name, read) = done?;
            out.insert(name, read);
        }
        Ok(out)
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
    with_remote(cfg, async |remote| {
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
        Ok((down, version))
    })
}

/// Runs `work` on a runtime of its own with a remote of the command line's
/// SSH settings, whose connections are closed after it.
fn with_remote<T>(
    cfg: &Config,
    work: impl AsyncFnOnce(std::sync::Arc<crate::remote::Remote>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let remote = std::sync::Arc::new(crate::remote::Remote::with_persist(
            cfg.control_dir.clone(),
            cfg.ssh_persist,
        )?);
        let out = work(remote.clone()).await;
        if let Ok(remote) = std::sync::Arc::try_unwrap(remote) {
            remote.close().await;
        }
        out
    })
}

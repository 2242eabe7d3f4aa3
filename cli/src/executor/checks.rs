//! The safety checks a plan lists, run before the first change, and the
//! re-check before each relay goes out of service. They only read, so they
//! read many relays at once (`--forks`). "Healthy" is [`crate::health`]'s.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::core::Executor;
use crate::advertise::{self, State};
use crate::health::{self, Health, Probe};
use crate::plan::{CheckKind, Safety, ValuesRef};
use crate::remote::{Node, Remote};

pub async fn preflight(ex: &mut Executor<'_>, check: &CheckKind) -> anyhow::Result<()> {
    match check {
        CheckKind::Reachable { nodes } => {
            let nodes: Vec<Node> = nodes
                .iter()
                .map(|h| ex.plan.node(h))
                .collect::<anyhow::Result<_>>()?;
            let down = failures(
                each(ex, nodes, |remote, node| async move {
                    remote.reachable(&node).await.map_err(|e| e.to_string())
                })
                .await,
            );
            if !down.is_empty() {
                bail!("{}", down.join("\n"));
            }
        }
        CheckKind::StatsReadable { reads } => {
            let work: Vec<(Node, crate::stats::StatsRead)> = reads
                .iter()
                .map(|r| Ok((ex.node(&r.relay)?, r.clone())))
                .collect::<anyhow::Result<_>>()?;
            let silent = failures(
                each(ex, work, |remote, (node, read)| async move {
                    crate::stats::read(&remote, &node, &read)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("the stats of `{}` cannot be read: {e:#}", read.relay))
                })
                .await,
            );
            if !silent.is_empty() {
                bail!("{}", silent.join("\n"));
            }
        }
        CheckKind::PeersHealthy { peers, values } => {
            let listed = advertised(values.as_ref(), peers)?;
            let seen = read_health(ex, peers.iter().filter(|p| listed[&p.relay])).await?;
            let sick: Vec<String> = seen
                .iter()
                .filter(|(_, h)| !h.healthy(true))
                .map(|(name, h)| format!("`{name}`: {}", h.why(true)))
                .collect();
            if !sick.is_empty() {
                bail!(
                    "relays that stay in service are not healthy:\n  {}",
                    sick.join("\n  ")
                );
            }
        }
        CheckKind::MinHealthy { each } => {
            // Every relay of the sites is read once, then each target's
            // turn is judged against those readings.
            let mut probes: BTreeMap<&str, &Probe> = BTreeMap::new();
            for s in each {
                for p in &s.others {
                    probes.insert(&p.relay, p);
                }
            }
            let probes: Vec<&Probe> = probes.into_values().collect();
            let values = each.first().and_then(|s| s.values.as_ref());
            let listed = advertised(values, probes.iter().copied())?;
            let seen = read_health(ex, probes.iter().copied().filter(|p| listed[&p.relay])).await?;
            for s in each {
                judge(s, &listed, &seen).map_err(anyhow::Error::msg)?;
            }
        }
        CheckKind::Advertised { values, relays } => {
            let Some(values) = values else { return Ok(()) };
            let listing = listing(values)?;
            for (relay, urls) in relays {
                // A relay an earlier run left out is where this run takes over.
                if ex.plan.continues.contains_key(relay) {
                    continue;
                }
                let ok = listing
                    .entries(urls)
                    .is_ok_and(|e| advertise::state(&e) == State::Advertised);
                if !ok {
                    bail!(
                        "relay `{relay}` is not fully in the advertised list in {}",
                        values.path
                    );
                }
            }
        }
        CheckKind::BundleValid {
            bundle,
            key,
            ca,
            hosts,
            leaf,
            ..
        } => {
            // Read once: what was checked is what is written, however long
            // the rollout takes and whatever happens to the file meanwhile.
            let files = crate::cert::Files::read(Path::new(bundle), key.as_deref().map(Path::new))?;
            let trust = ex.trust(ca)?;
            let b = crate::cert::check_bundle(&files, &trust, hosts, crate::cert::now())?;
            if b.info.fingerprint != leaf.fingerprint {
                bail!(
                    "{bundle} changed since the plan was made: it now holds {} (sha256 {}), the plan is for sha256 {}\nhelp: run the command again to plan for the file as it is now",
                    b.info.subject,
                    b.info.fingerprint,
                    leaf.fingerprint
                );
            }
            ex.files = BTreeMap::from_iter(
                std::iter::once(files.bundle)
                    .chain(files.key)
                    .map(|(p, b)| (p.display().to_string(), b)),
            );
            ex.out.note(&format!(
                "{}: {}, sha256 {}, valid until {}",
                bundle,
                b.info.subject,
                b.info.fingerprint,
                crate::cert::date(b.info.not_after)
            ));
        }
        CheckKind::QuorumLost { health, force } => {
            let answers = member_reads(ex, health).await?;
            let healthy: Vec<&str> = answers
                .iter()
                .filter(|(_, a)| a.is_ok())
                .map(|(m, _)| m.as_str())
                .collect();
            if healthy.is_empty() {
                ex.out
                    .note("no member answers as healthy: the cluster has lost quorum");
            } else if *force {
                ex.out.note(&format!(
                    "--force: the cluster has quorum ({} healthy), and is rebuilt anyway",
                    healthy.join(", ")
                ));
            } else {
                return Err(crate::error::refused(format!(
                    "the cluster has quorum: {} answer{} as healthy, so there is nothing to recover and it is not rebuilt\nhelp: pass --force to rebuild a healthy cluster from the seed anyway",
                    healthy.join(", "),
                    if healthy.len() == 1 { "s" } else { "" }
                )));
            }
        }
        CheckKind::SeedLatest {
            seed,
            status,
            etcdutl,
            tool,
        } => {
            if let Some(t) = tool {
                ex.run(t).await.with_context(|| {
                    format!(
                        "{seed} has no working etcdutl, which restores its snapshot on etcd 3.5 and later"
                    )
                })?;
            }
            let answers: Vec<(String, Result<crate::etcd::Status, String>)> = member_reads(ex, status)
                .await?
                .into_iter()
                .map(|(m, a)| {
                    let s = a.and_then(|out| {
                        crate::etcd::statuses(&out)
                            .map_err(|e| format!("{e:#}"))?
                            .into_iter()
                            .next()
                            .map(|(_, s)| s)
                            .ok_or_else(|| "no status in the reply".to_owned())
                    });
                    (m, s)
                })
                .collect();
            ex.out.note(&crate::etcd::judge_seed(seed, &answers, *etcdutl)?);
        }
        CheckKind::KeysCounted {
            seed,
            command,
            record,
        } => {
            let keys = crate::etcd::keys(&ex.run(command).await?)?;
            ex.out.note(&format!(
                "{seed} holds {} keys at revision {}",
                keys.count, keys.revision
            ));
            ex.keep("", record, keys.record())?;
        }
        CheckKind::ClearwaterQuorumLost { health, force } => {
            use crate::clearwater::Verdict;
            // A node whose etcd is down or unreachable sees no quorum: its
            // command fails, and that is an answer, not an error.
            let answers = member_reads_any(ex, health).await?;
            let mut with_quorum = Vec::new();
            let mut unread = Vec::new();
            for (m, out) in &answers {
                match out.as_ref().map(|o| crate::clearwater::health(o).verdict) {
                    Ok(Verdict::Healthy) => with_quorum.push(format!("{m} (healthy)")),
                    Ok(Verdict::Degraded) => with_quorum.push(format!("{m} (degraded)")),
                    Ok(Verdict::Unavailable | Verdict::NoMembers) => {}
                    // Fail closed: a reply that says nothing about quorum is no proof it is lost.
                    Ok(Verdict::Unknown) => unread.push(format!(
                        "{m}: `clearwater-etcdctl cluster-health` printed `{}`",
                        out.as_deref().unwrap_or("").trim().lines().last().unwrap_or("")
                    )),
                    Err(e) => unread.push(format!("{m}: {e}")),
                }
            }
            if !unread.is_empty() && with_quorum.is_empty() {
                bail!(
                    "whether the cluster has quorum cannot be read on every node, so it is not rebuilt:\n  {}\nhelp: check that clearwater-etcdctl runs on these nodes, or name a node lost for good with --lost",
                    unread.join("\n  ")
                );
            }
            if with_quorum.is_empty() {
                ex.out.note(&format!(
                    "no node sees a cluster with quorum ({} asked): it has lost quorum",
                    answers.len()
                ));
            } else if *force {
                ex.out.note(&format!(
                    "--force: the cluster has quorum as {} see{} it, and is rebuilt anyway",
                    with_quorum.join(", "),
                    if with_quorum.len() == 1 { "s" } else { "" }
                ));
            } else {
                return Err(crate::error::refused(format!(
                    "the cluster has quorum: `clearwater-etcdctl cluster-health` on {} says so, so this procedure is not for it\nhelp: with failed masters but quorum, remove each failed node from the cluster as \"Dealing with Failed Nodes\" says; pass --force to rebuild it anyway",
                    with_quorum.join(", ")
                )));
            }
        }
        CheckKind::ConfigPresent {
            local,
            ips,
            shared,
            from,
        } => {
            let mut problems = Vec::new();
            for (m, out) in member_reads(ex, local).await? {
                match out {
                    Err(e) => problems.push(format!("{m}: its local_config cannot be read: {e}")),
                    Ok(text) => {
                        let Some(want) = ips.get(&m) else { continue };
                        // etcd is named and reached by the management IP; the
                        // data-store files list the signalling one.
                        let seen = [
                            (
                                "management IP",
                                "management_ip",
                                crate::clearwater::management_ip(&text),
                                &want.management,
                            ),
                            (
                                "signalling IP (local_ip)",
                                "local_ip",
                                crate::clearwater::signaling_ip(&text),
                                &want.local,
                            ),
                        ];
                        for (what, field, got, want) in seen {
                            match got {
                                Some(ip) if ip == *want => {}
                                Some(ip) => problems.push(format!(
                                    "{m}: its local_config says its {what} is {ip}, the inventory {want}\nhelp: set `{field}: {ip}` for {m} in the inventory, or correct the node's local_config"
                                )),
                                None => problems.push(format!(
                                    "{m}: its local_config sets no {what} (`local_ip`, `management_local_ip`)"
                                )),
                            }
                        }
                    }
                }
            }
            let copies: Vec<(String, Result<String, String>)> = member_reads(ex, shared).await?;
            for (m, out) in &copies {
                if let Err(e) = out {
                    problems.push(format!("{m}: its shared_config cannot be read: {e}"));
                }
            }
            if !problems.is_empty() {
                bail!("{}", problems.join("\n"));
            }
            let copies: Vec<(&str, &str)> = copies
                .iter()
                .filter_map(|(m, o)| o.as_ref().ok().map(|t| (m.as_str(), t.as_str())))
                .collect();
            let (base, text) = match from {
                Some(src) => copies
                    .iter()
                    .find(|(m, _)| m == src)
                    .copied()
                    .with_context(|| format!("{src}'s shared_config was not read"))?,
                None => copies
                    .first()
                    .copied()
                    .context("no master's shared_config was read")?,
            };
            let diffs: Vec<String> = copies
                .iter()
                .filter(|(m, _)| *m != base)
                .map(|(m, t)| crate::clearwater::diff(base, m, text, t))
                .filter(|d| !d.is_empty())
                .collect();
            match (diffs.is_empty(), from) {
                (true, _) => ex.out.note(&format!(
                    "the shared configuration is the same on every master ({})",
                    copies.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
                )),
                (false, Some(src)) => ex.out.note(&format!(
                    "--shared-config-from {src}: the other masters get its shared_config; what changes on them:\n{}",
                    diffs.join("")
                )),
                (false, None) => {
                    return Err(crate::error::refused(format!(
                        "the masters' shared_config differ: the new cluster would take whichever is uploaded first\n{}help: make them the same, or pass --shared-config-from MASTER to copy the correct one onto the others",
                        diffs.join("")
                    )));
                }
            }
        }
        CheckKind::CassandraHealthy { read } => {
            let out = ex.run(&read.command).await?;
            match crate::clearwater::judge_cassandra(&out) {
                Ok(what) => ex.out.note(&format!("{}: {what}", read.member)),
                Err(why) => {
                    return Err(crate::error::refused(format!(
                        "Cassandra is not healthy, as `nodetool status` on {} reads: {why}\nhelp: fix the Cassandra cluster and remove failed nodes (`nodetool removenode HOST_ID`) before recovering etcd, as the runbook requires",
                        read.member
                    )));
                }
            }
        }
        CheckKind::SproutConfig { reads } => {
            let mut bad = Vec::new();
            let commands: Vec<crate::plan::MemberRead> = reads
                .iter()
                .map(|r| crate::plan::MemberRead {
                    member: r.member.clone(),
                    command: r.command.clone(),
                })
                .collect();
            let answers = member_probes(ex, &commands).await?;
            for (r, answer) in reads.iter().zip(answers) {
                match answer {
                    Ok((3, _)) => ex.out.note(&format!("{}: {} is not there", r.member, r.path)),
                    Ok((0, text)) => {
                        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                            bad.push(format!(
                                "{}: {}:{}:{}: {e}",
                                r.member,
                                r.path,
                                e.line(),
                                e.column()
                            ));
                        }
                    }
                    Ok((code, _)) => {
                        bad.push(format!("{}: {} cannot be read (exit {code})", r.member, r.path))
                    }
                    Err(e) => bad.push(format!("{}: {} cannot be read: {e}", r.member, r.path)),
                }
            }
            if !bad.is_empty() {
                return Err(crate::error::refused(format!(
                    "Sprout's JSON configuration does not parse:\n  {}\nhelp: fix the files (the runbook has them correct before the rebuild), then run again",
                    bad.join("\n  ")
                )));
            }
            ex.out
                .note(&format!("{} Sprout JSON files read, all parse", reads.len()));
        }
    }
    Ok(())
}

/// The re-check before `safety.out` goes out of service; what was seen when
/// it passes.
pub async fn safety(ex: &Executor<'_>, s: &Safety) -> anyhow::Result<String> {
    let listed = advertised(s.values.as_ref(), &s.others)?;
    let seen = read_health(ex, s.others.iter().filter(|p| listed[&p.relay])).await?;
    judge(s, &listed, &seen).map_err(|why| anyhow::anyhow!("{why}; {} was not taken out of service", s.out))
}

/// The pure half of the safety re-check: every advertised relay staying in
/// service is healthy, and at least `min` of them are.
pub fn judge(
    s: &Safety,
    listed: &BTreeMap<String, bool>,
    seen: &BTreeMap<String, Health>,
) -> Result<String, String> {
    let mut ok = Vec::new();
    let mut sick = Vec::new();
    let mut out_of_list = Vec::new();
    for p in &s.others {
        if p.relay == s.out {
            continue;
        }
        if !listed.get(&p.relay).copied().unwrap_or(false) {
            out_of_list.push(p.relay.clone());
            continue;
        }
        match seen.get(&p.relay) {
            Some(h) if h.healthy(true) => ok.push(p.relay.clone()),
            Some(h) => sick.push(format!("`{}`: {}", p.relay, h.why(true))),
            None => sick.push(format!("`{}`: not read", p.relay)),
        }
    }
    if !sick.is_empty() {
        return Err(format!(
            "relays of site `{}` that stay in service while {} is out are not healthy:\n  {}",
            s.site,
            s.out,
            sick.join("\n  ")
        ));
    }
    if ok.len() < s.min {
        return Err(format!(
            "taking {} out of site `{}` would leave {} healthy advertised relay{} ({}), below its minimum of {}{}",
            s.out,
            s.site,
            ok.len(),
            if ok.len() == 1 { "" } else { "s" },
            if ok.is_empty() {
                "none".to_owned()
            } else {
                ok.join(", ")
            },
            s.min,
            if out_of_list.is_empty() {
                String::new()
            } else {
                format!("; not advertised: {}", out_of_list.join(", "))
            }
        ));
    }
    Ok(format!(
        "{} healthy advertised relay{} in service while {} is out ({}; minimum {})",
        ok.len(),
        if ok.len() == 1 { " stays" } else { "s stay" },
        s.out,
        ok.join(", "),
        s.min
    ))
}

/// The values file's list as it is now.
fn listing(v: &ValuesRef) -> anyhow::Result<advertise::Listing> {
    let text = crate::reader::read_text(std::path::Path::new(&v.path))
        .map_err(|e| anyhow::anyhow!("cannot read the values file {}: {e}", v.path))?;
    advertise::Listing::parse(&text, &v.list).map_err(|e| e.located(&v.path))
}

/// Whether each relay is in the advertised list now: by the values file, or
/// always without one (the other backends cannot be read back).
fn advertised<'a>(
    values: Option<&ValuesRef>,
    probes: impl IntoIterator<Item = &'a Probe>,
) -> anyhow::Result<BTreeMap<String, bool>> {
    let listing = match values {
        Some(v) => Some(listing(v)?),
        None => None,
    };
    Ok(probes
        .into_iter()
        .map(|p| {
            let listed = listing.as_ref().is_none_or(|l| {
                l.entries(&p.urls)
                    .is_ok_and(|e| advertise::state(&e) == State::Advertised)
            });
            (p.relay.clone(), listed)
        })
        .collect())
}

async fn read_health<'a>(
    ex: &Executor<'_>,
    probes: impl Iterator<Item = &'a Probe>,
) -> anyhow::Result<BTreeMap<String, Health>> {
    let work: Vec<(Node, Probe)> = probes
        .map(|p| Ok((ex.node(&p.relay)?, p.clone())))
        .collect::<anyhow::Result<_>>()?;
    let names: Vec<String> = work.iter().map(|(_, p)| p.relay.clone()).collect();
    let results = each(ex, work, |remote, (node, probe)| async move {
        Ok::<Health, String>(health::read(&remote, &node, &probe).await)
    })
    .await;
    Ok(names
        .into_iter()
        .zip(results)
        .map(|(n, r)| {
            let h = r.unwrap_or_else(|why| Health {
                problems: vec![why],
                ..Health::default()
            });
            (n, h)
        })
        .collect())
}

/// Runs `read` for every item, at most `--forks` at once; results in the
/// items' order.
async fn each<T, R, F, Fut>(ex: &Executor<'_>, items: Vec<T>, read: F) -> Vec<Result<R, String>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Arc<Remote>, T) -> Fut,
    Fut: Future<Output = Result<R, String>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(ex.opts.forks.max(1)));
    let mut tasks = JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let (limit, fut) = (limit.clone(), read(ex.remote.clone(), item));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<Result<R, String>>> = (0..n).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, r)) = done {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("a check failed to run".into())))
        .collect()
}

/// Each member's command, all at once: its output, or why it failed.
async fn member_reads(
    ex: &Executor<'_>,
    reads: &[crate::plan::MemberRead],
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let work: Vec<(Node, crate::plan::Command)> = reads
        .iter()
        .map(|r| Ok((ex.plan.node(&r.command.on)?, r.command.clone())))
        .collect::<anyhow::Result<_>>()?;
    let results = each(ex, work, |remote, (node, cmd)| async move {
        let t = node.access.ssh.command_timeout;
        remote
            .run(&node, &cmd, t)
            .await
            .map(|o| o.stdout)
            .map_err(|e| e.to_string())
    })
    .await;
    Ok(reads.iter().map(|r| r.member.clone()).zip(results).collect())
}

/// Each member's command, all at once: its output whatever its exit status,
/// or why it could not run.
async fn member_reads_any(
    ex: &Executor<'_>,
    reads: &[crate::plan::MemberRead],
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    Ok(member_probes(ex, reads)
        .await?
        .into_iter()
        .zip(reads)
        .map(|(r, m)| (m.member.clone(), r.map(|(_, out)| out)))
        .collect())
}

/// Each member's command, all at once: its exit status and output, or why
/// it could not run.
async fn member_probes(
    ex: &Executor<'_>,
    reads: &[crate::plan::MemberRead],
) -> anyhow::Result<Vec<Result<(i32, String), String>>> {
    let work: Vec<(Node, crate::plan::Command)> = reads
        .iter()
        .map(|r| Ok((ex.plan.node(&r.command.on)?, r.command.clone())))
        .collect::<anyhow::Result<_>>()?;
    Ok(each(ex, work, |remote, (node, cmd)| async move {
        let t = node.access.ssh.command_timeout;
        remote
            .probe(&node, &cmd, t, None)
            .await
            .map(|o| (o.code, o.stdout))
            .map_err(|e| e.to_string())
    })
    .await)
}

fn failures<R>(results: Vec<Result<R, String>>) -> Vec<String> {
    results.into_iter().filter_map(Result::err).collect()
}

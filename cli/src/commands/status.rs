//! `opsctl status`: every node's state, read in parallel over SSH.
//!
//! Read-only: it connects, asks, and prints one table. An unreachable node is
//! shown as such and the others still answer; the exit status is 1 when any
//! node is unhealthy.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::advertise::{self, State, ValuesFile};
use crate::args::Output;
use crate::command::{Command, Host};
use crate::config::Config;
use crate::error::{self, Kind};
use crate::health::{self, Health, Probe};
use crate::inventory::{Access, Flavor, Inventory, MemberRole, Relay};
use crate::remote::{Node, Remote};

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub node: String,
    pub site: String,
    /// The relay kind, or `etcd` / `clearwater:<role>` for cluster members.
    pub kind: String,
    pub address: String,
    pub reachable: bool,
    /// Whether the relay service reports up; `null` when it could not be asked.
    pub service_up: Option<bool>,
    /// Current allocations (or sessions); `null` when they could not be read.
    pub allocations: Option<u64>,
    /// rtpengine: `own` calls and `foreign` ones it holds for its peers
    /// (through Redis); `null` for other kinds.
    pub sessions: Option<relay::stats::Sessions>,
    /// `advertised`, `unadvertised`, `partial`; `null` without a values file.
    pub advertised: Option<&'static str>,
    /// Days until the certificate served on the relay's `turns:` port expires.
    pub cert_days_left: Option<i64>,
    /// What a client makes of the served chain, verified for the `turns:`
    /// host against the system's trust store and `cert.ca`: `trusted`,
    /// `name mismatch`, `chain incomplete`, `expired`, `untrusted`, ...
    pub cert: Option<String>,
    /// The relay's own drain mode: `true` while it refuses new allocations;
    /// `null` where it has none or it could not be read.
    pub draining: Option<bool>,
    /// `status --watch`: how the allocations changed since the refresh
    /// before (absent on the first, and without `--watch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<i64>,
    /// rtpengine with Redis: its limit on new calls (`maxsessions`; -1 is
    /// none, 0 refuses them all, shown as draining).
    pub max_sessions: Option<i64>,
    /// rtpengine with Redis: where its calls are not held by a peer of its
    /// site (each also a problem, and the relay unhealthy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redundancy_holes: Vec<relay::rtpengine::Hole>,
    /// etcd member health for cluster members: `healthy` or `unhealthy`.
    pub etcd: Option<&'static str>,
    pub healthy: bool,
    /// What went wrong, for each thing that could not be read.
    pub problems: Vec<String>,
    #[serde(skip)]
    health: Option<Health>,
    #[serde(skip)]
    cert_ok: bool,
    #[serde(skip)]
    redundancy_unread: bool,
    /// rtpengine: its report, read with the rest (or why it was not).
    #[serde(skip)]
    report: Option<Result<relay::rtpengine::Reading, String>>,
}

pub fn run(cfg: &Config, watch: Option<std::time::Duration>) -> anyhow::Result<()> {
    let inv = cfg.inventory()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let remote = Arc::new(Remote::with_persist(cfg.control_dir.clone(), cfg.ssh_persist)?);
    // The trust store is read (the system's, a few hundred certificates)
    // only where a served certificate is to be verified.
    let trust = if inv.relays().any(|r| r.turns_target().is_some()) {
        let ca: Vec<_> = inv.cert_ca.iter().cloned().collect();
        Some(Arc::new(
            crate::cert::Trust::load(&ca).map_err(|e| error::mark(Kind::Input, e))?,
        ))
    } else {
        None
    };
    let result = runtime.block_on(async {
        match watch {
            None => {
                let rows = snapshot(cfg, inv, &remote, trust).await?;
                match cfg.output {
                    Output::Json => cfg.printer.document(&rows)?,
                    Output::Text => cfg.printer.text(&table(&rows, false)),
                }
                verdict(&rows)
            }
            Some(every) => watch_until_interrupted(cfg, inv, &remote, trust, every).await,
        }
    });
    if let Ok(remote) = Arc::try_unwrap(remote) {
        runtime.block_on(remote.close());
    }
    result
}

/// Every node read once, with whether each relay is advertised (the
/// values file read again each time: a drain edits it) and healthy.
async fn snapshot(
    cfg: &Config,
    inv: &Inventory,
    remote: &Arc<Remote>,
    trust: Option<Arc<crate::cert::Trust>>,
) -> anyhow::Result<Vec<Row>> {
    let values = ValuesFile::load(inv).map_err(|e| error::mark(Kind::Input, e))?;
    let advertised = match &values {
        Some(v) => v
            .relay_entries(inv, inv.relays())
            .map_err(|e| error::mark(Kind::Input, e))?,
        None => Default::default(),
    };
    let mut rows = read_all(inv, remote, cfg.forks, trust).await?;
    for row in &mut rows {
        row.advertised = advertised.get(&row.node).map(|e| match advertise::state(e) {
            State::Advertised => "advertised",
            State::Unadvertised => "unadvertised",
            State::Partial => "partial",
        });
        // One definition of a healthy relay, with whether clients are sent to it.
        if let Some(h) = &row.health {
            let listed = row.advertised.is_none_or(|a| a != "unadvertised");
            row.healthy =
                h.healthy(listed) && row.cert_ok && row.redundancy_holes.is_empty() && !row.redundancy_unread;
            if listed && row.max_sessions == Some(0) {
                row.problems.push(
                    "its limit on new calls (`maxsessions`) is 0 while it is in service: every new call is refused\nhelp: `rtpengine-ctl set maxsessions -1` (or the limit it had) on it, or `opsctl resume RUN` for the run that set it (`opsctl runs`)".into(),
                );
            } else if listed && h.draining == Some(true) {
                row.problems.push(health::DRAINING_WHILE_ADVERTISED.into());
            }
        }
    }
    Ok(rows)
}

/// Exit status 1, naming them, when any node is unhealthy.
fn verdict(rows: &[Row]) -> anyhow::Result<()> {
    let unhealthy: Vec<&str> = rows
        .iter()
        .filter(|r| !r.healthy)
        .map(|r| r.node.as_str())
        .collect();
    if unhealthy.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} nodes unhealthy: {}",
            unhealthy.len(),
            rows.len(),
            unhealthy.join(", ")
        )
    }
}

/// One refresh of `status --watch`, as a JSON line.
#[derive(Serialize)]
struct Refresh<'a> {
    /// Unix seconds when the refresh began.
    at: u64,
    rows: &'a [Row],
}

/// `status --watch`: the table again every `every` until Ctrl-C, each
/// relay's allocations with their change since the refresh before. On a
/// terminal it is redrawn in place; otherwise (a pipe, a log) one table
/// follows another, each under the time it was read; with `--output json`,
/// one line per refresh. A refresh that fails says why, and the watch goes
/// on: a values file caught mid-edit is read again next time.
async fn watch_until_interrupted(
    cfg: &Config,
    inv: &Inventory,
    remote: &Arc<Remote>,
    trust: Option<Arc<crate::cert::Trust>>,
    every: std::time::Duration,
) -> anyhow::Result<()> {
    let term = console::Term::stdout();
    let redraw = term.is_term() && !matches!(cfg.output, Output::Json);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut before: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    loop {
        let started = tokio::time::Instant::now();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let read = tokio::select! {
            read = snapshot(cfg, inv, remote, trust.clone()) => read,
            _ = &mut interrupted => return Ok(()),
        };
        let head = format!(
            "opsctl status, every {}: read at {} (Ctrl-C to stop)\n",
            crate::duration::format(every),
            crate::duration::utc_clock(at)
        );
        match (read, cfg.output) {
            (Ok(mut rows), output) => {
                for row in &mut rows {
                    row.change = match (row.allocations, before.get(&row.node)) {
                        (Some(now), Some(&then)) => Some(now as i64 - then as i64),
                        _ => None,
                    };
                }
                before = rows
                    .iter()
                    .filter_map(|r| Some((r.node.clone(), r.allocations?)))
                    .collect();
                match output {
                    Output::Json => cfg.printer.event(&Refresh { at, rows: &rows }),
                    Output::Text => {
                        if redraw {
                            let _ = term.clear_screen();
                        }
                        cfg.printer.text(&format!("{head}{}\n", table(&rows, true)));
                    }
                }
            }
            (Err(e), Output::Json) => cfg.printer.event(&serde_json::json!({
                "at": at,
                "error": format!("{e:#}"),
            })),
            (Err(e), Output::Text) => {
                if redraw {
                    let _ = term.clear_screen();
                }
                cfg.printer.text(&format!("{head}this refresh failed: {e:#}\n\n"));
            }
        }
        tokio::select! {
            () = tokio::time::sleep_until(started + every) => {}
            _ = &mut interrupted => return Ok(()),
        }
    }
}

async fn read_all(
    inv: &Inventory,
    remote: &Arc<Remote>,
    forks: usize,
    trust: Option<Arc<crate::cert::Trust>>,
) -> anyhow::Result<Vec<Row>> {
    let limit = Arc::new(Semaphore::new(forks.max(1)));
    let mut tasks = JoinSet::new();
    let mut index = 0;
    for site in &inv.sites {
        for r in &site.relays {
            let (remote, limit, r, trust) = (remote.clone(), limit.clone(), r.clone(), trust.clone());
            let i = index;
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, read_relay(&remote, &r, trust).await)
            });
            index += 1;
        }
        if let Some(c) = &site.cluster {
            for m in &c.members {
                let (remote, limit) = (remote.clone(), limit.clone());
                let (m, site_name, flavor) = (m.clone(), site.name.clone(), c.flavor.clone());
                let i = index;
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    (i, read_member(&remote, &site_name, &flavor, &m).await)
                });
                index += 1;
            }
        }
    }
    let mut rows: Vec<(usize, Row)> = Vec::with_capacity(index);
    while let Some(done) = tasks.join_next().await {
        rows.push(done?);
    }
    rows.sort_by_key(|(i, _)| *i);
    let mut rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    for site in &inv.sites {
        redundancy(site, &mut rows);
    }
    Ok(rows)
}

/// The site's rtpengines: each one's limit on new calls, and for those
/// that share calls through Redis (two or more), the holes in each one's
/// cover.
fn redundancy(site: &crate::inventory::Site, rows: &mut [Row]) {
    let reports: Vec<crate::rtpengine::Report> =
        site.relays.iter().filter_map(crate::rtpengine::report).collect();
    if reports.is_empty() {
        return;
    }
    let shared = reports.iter().filter(|r| r.keyspace.is_some()).count();
    let readings: Vec<Result<relay::rtpengine::Reading, String>> = reports
        .iter()
        .map(|rep| {
            rows.iter_mut()
                .find(|row| row.node == rep.relay)
                .and_then(|row| row.report.take())
                .unwrap_or_else(|| Err(format!("{} could not be reached to read it", rep.relay)))
        })
        .collect();
    let checked = crate::rtpengine::check(&reports, &readings);
    for (rep, reading) in reports.iter().zip(&readings) {
        let Some(row) = rows.iter_mut().find(|r| r.node == rep.relay) else {
            continue;
        };
        match reading {
            Ok(rd) => {
                row.max_sessions = Some(rd.max_sessions);
                let (mut live, mut said) = (rd.subscribed.clone(), rep.subscribe.clone());
                live.sort_unstable();
                said.sort_unstable();
                if !said.is_empty() && live != said {
                    // Told, not judged: a keyspace it lacks is a hole of its peer's.
                    row.problems.push(format!(
                        "it follows keyspaces {live:?} (`kslist`), the inventory says {said:?}"
                    ));
                }
                if rd.max_sessions == 0 {
                    // rtpengine's own drain: every new call is refused.
                    row.draining = Some(true);
                    if let Some(h) = &mut row.health {
                        h.draining = Some(true);
                    }
                }
            }
            Err(why) if row.reachable => {
                // Whether its calls are covered cannot be told.
                row.redundancy_unread = true;
                row.problems.push(format!("rtpengine report: {why}"));
            }
            Err(_) => {}
        }
        if shared > 1 && rep.keyspace.is_some() {
            row.redundancy_holes = checked
                .holes
                .iter()
                .filter(|h| h.of() == rep.relay)
                .cloned()
                .collect();
            for h in &row.redundancy_holes {
                row.problems.push(format!("redundancy hole: {h}"));
            }
        }
    }
}

impl Row {
    fn new(node: &str, site: &str, kind: String, access: &Access) -> Row {
        Row {
            node: node.to_owned(),
            site: site.to_owned(),
            kind,
            address: Host::of(node, access).address,
            reachable: false,
            service_up: None,
            allocations: None,
            sessions: None,
            max_sessions: None,
            redundancy_holes: Vec::new(),
            advertised: None,
            cert_days_left: None,
            cert: None,
            draining: None,
            change: None,
            etcd: None,
            healthy: false,
            problems: Vec::new(),
            health: None,
            cert_ok: true,
            redundancy_unread: false,
            report: None,
        }
    }

    /// Connects; an unreachable node gets its reason recorded and no further reads.
    async fn connect(&mut self, remote: &Remote, access: &Access) -> Option<Node> {
        let n = Node {
            name: self.node.clone(),
            access: access.clone(),
        };
        match remote.reachable(&n).await {
            Ok(()) => {
                self.reachable = true;
                Some(n)
            }
            Err(e) => {
                self.problems.push(e.to_string());
                None
            }
        }
    }
}

fn command(name: &str, access: &Access, argv: Vec<String>) -> Command {
    Command::remote(name, access, argv)
}

async fn read_relay(remote: &Remote, r: &Relay, trust: Option<Arc<crate::cert::Trust>>) -> Row {
    let mut row = Row::new(&r.name, &r.site, r.kind.to_string(), &r.access);
    let probe = match Probe::of(r) {
        Ok(p) => p,
        Err(e) => {
            row.problems.push(format!("{e:#}"));
            return row;
        }
    };
    let node = Node {
        name: r.name.clone(),
        access: r.access.clone(),
    };
    // Everything status asks the node goes in one command line: the
    // service, the stats, the drain state, and an rtpengine's report.
    let report = crate::rtpengine::report(r);
    let fed = report.as_ref().map(crate::rtpengine::stdin);
    let extra: Vec<crate::remote::Part> = match (&report, &fed) {
        (Some(rep), Some(Ok(stdin))) => vec![crate::remote::Part {
            command: &rep.command,
            stdin: stdin.as_deref(),
            timeout: crate::rtpengine::timeout(&node),
        }],
        _ => Vec::new(),
    };
    let (h, extra_out) = health::read_at_once(remote, &node, &probe, &extra).await;
    if let Some(rep) = &report {
        row.report = Some(match (fed, extra_out) {
            (Some(Err(e)), _) => Err(format!("{e:#}")),
            (_, Ok(outs)) => match outs.first() {
                Some(out) => crate::rtpengine::reading(rep, out).map_err(|e| format!("{e:#}")),
                None => Err("it was not read".into()),
            },
            (_, Err(e)) => Err(e),
        });
    }
    row.reachable = h.reachable;
    if !h.reachable {
        row.problems = h.problems;
        return row;
    }
    row.service_up = h.service_up;
    row.allocations = h.allocations;
    row.sessions = h.sessions;
    row.draining = h.draining;
    row.problems = h.problems.clone();
    row.health = Some(h);
    // A relay advertised under `turns:` must serve a certificate a client
    // accepts: valid now, for its host, with a chain to a trusted root.
    let mut cert_ok = true;
    if let (Some(hostport), Some(trust)) = (r.turns_target(), trust) {
        let name = crate::cert::host_of(&hostport).to_owned();
        let served = tokio::task::spawn_blocking(move || {
            crate::served_cert::read(&hostport, std::time::Duration::from_secs(5))
        })
        .await;
        match served {
            Ok(Ok(c)) => {
                row.cert_days_left = Some(c.days_left);
                let verdict = trust.verify(&c.chain, &name, crate::cert::now());
                row.cert = Some(verdict.to_string());
                if c.days_left < 0 {
                    cert_ok = false;
                    let ago = -c.days_left;
                    row.problems.push(format!(
                        "the served certificate ({}) has expired ({ago} day{} ago)",
                        c.subject,
                        if ago == 1 { "" } else { "s" }
                    ));
                } else if verdict != crate::cert::Verdict::Trusted {
                    cert_ok = false;
                    let why = match verdict {
                        crate::cert::Verdict::NameMismatch => format!(
                            "it is not valid for {name}, the host clients connect to"
                        ),
                        crate::cert::Verdict::ChainIncomplete => "an intermediate certificate is missing from the chain it sends: clients fail with \"unable to get local issuer certificate\"".to_owned(),
                        crate::cert::Verdict::Untrusted => format!("its chain ends at a root that is not in {}", trust.described),
                        v => v.to_string(),
                    };
                    row.problems.push(format!(
                        "the served certificate ({}, sha256 {}): {why}",
                        c.subject, c.fingerprint
                    ));
                }
            }
            Ok(Err(e)) => {
                cert_ok = false;
                row.problems.push(format!("served certificate: {e:#}"));
            }
            Err(e) => {
                cert_ok = false;
                row.problems.push(format!("served certificate: {e}"));
            }
        }
    }
    row.cert_ok = cert_ok;
    row
}

async fn read_member(remote: &Remote, site: &str, flavor: &Flavor, m: &crate::inventory::Member) -> Row {
    let kind = match &m.role {
        MemberRole::Clearwater { role, .. } => format!("clearwater:{}", role.name()),
        MemberRole::Etcd { .. } => "etcd".into(),
    };
    let mut row = Row::new(&m.name, site, kind, &m.access);
    let Some(n) = row.connect(remote, &m.access).await else {
        return row;
    };
    let argv: Vec<String> = match (flavor, &m.role) {
        (Flavor::Etcd(e), MemberRole::Etcd { client_url, .. }) => {
            vec![
                e.etcdctl.clone(),
                format!("--endpoints={client_url}"),
                "endpoint".into(),
                "health".into(),
            ]
        }
        _ => vec!["clearwater-etcdctl".into(), "cluster-health".into()],
    };
    let health = command(&m.name, &m.access, argv);
    match remote
        .probe(&n, &health, m.access.ssh.command_timeout, None)
        .await
    {
        Ok(out) if out.code == 0 => row.etcd = Some("healthy"),
        Ok(out) => {
            row.etcd = Some("unhealthy");
            row.problems.push(format!(
                "`{}` exited {}: {}",
                health.line,
                out.code,
                crate::remote::trim_output(&format!("{}{}", out.stdout, out.stderr))
            ));
        }
        Err(e) => row.problems.push(e.to_string()),
    }
    row.healthy = row.etcd == Some("healthy");
    row
}

/// The status table; for `--watch`, each relay's allocations with their
/// change since the refresh before, and its own drain mode.
fn table(rows: &[Row], watch: bool) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let opt = |b: Option<bool>, yes: &str, no: &str| match b {
                Some(true) => yes.to_owned(),
                Some(false) => no.to_owned(),
                None => "-".to_owned(),
            };
            vec![
                r.node.clone(),
                r.site.clone(),
                r.kind.clone(),
                if r.reachable { "yes".into() } else { "NO".into() },
                if r.etcd.is_some() {
                    "-".into()
                } else {
                    opt(r.service_up, "up", "DOWN")
                },
                match (r.allocations, r.sessions) {
                    (Some(a), Some(s)) => format!("{a} ({} own, {} foreign)", s.own, s.foreign),
                    (Some(a), None) => a.to_string(),
                    (None, _) => "-".into(),
                } + &match r.change {
                    Some(c) if c != 0 => format!(" ({c:+})"),
                    _ => String::new(),
                },
                opt(r.draining, "yes", "no"),
                r.advertised.unwrap_or("-").to_owned(),
                r.etcd.unwrap_or("-").to_owned(),
                match (r.cert_days_left, r.cert.as_deref()) {
                    (Some(d), Some("trusted") | None) => format!("{d}d"),
                    (Some(d), Some("expired")) if d < 0 => "expired".into(),
                    (_, Some(v)) => v.to_owned(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    let mut head = vec![
        "NODE",
        "SITE",
        "KIND",
        "REACHABLE",
        "SERVICE",
        "ALLOCATIONS",
        "DRAIN",
        "ADVERTISED",
        "ETCD",
        "CERT",
    ];
    // The relay's own drain mode is for watching a drain; a one-off status
    // keeps its columns.
    let mut cells = cells;
    if !watch {
        head.remove(6);
        for c in &mut cells {
            c.remove(6);
        }
    }
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (w, v) in width.iter_mut().zip(c) {
            *w = (*w).max(v.len());
        }
    }
    let line = |vals: &[String]| {
        let mut s = String::new();
        for (i, (v, &w)) in vals.iter().zip(&width).enumerate() {
            if i + 1 == vals.len() {
                s.push_str(v);
            } else {
                s.push_str(&format!("{v:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let head: Vec<String> = head.into_iter().map(String::from).collect();
    let mut out = line(&head);
    for c in &cells {
        out.push_str(&line(c));
    }
    for r in rows.iter().filter(|r| !r.problems.is_empty()) {
        for p in &r.problems {
            out.push_str(&format!("{}: {}\n", r.node, p.replace('\n', "\n    ")));
        }
    }
    out
}

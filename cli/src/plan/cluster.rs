//! The phases of a cluster plan (etcd, Project Clearwater) and the order
//! members are worked in.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use super::request::{Builder, service_argv, step_name};
use super::steps::gate_defaults;
use super::*;
use crate::inventory::{ClearwaterRole, Cluster, Flavor as InvFlavor, Member, MemberRole};
use crate::playbook::{
    self, Flavor, Gate as PbGate, GateSpec, Preflight, RunOn, Selector, ServiceAction, StepKind, Store,
};
use crate::template::Template;

impl Builder<'_> {
    pub(super) fn cluster(
        &mut self,
        flavor: Flavor,
        phases: &[playbook::Phase],
    ) -> anyhow::Result<Vec<Check>> {
        let inv = self.inv;
        let site_name = self.req.targets.first().context("no site selected")?;
        let site = inv
            .site(site_name)
            .with_context(|| format!("no site `{site_name}`"))?;
        let cluster = site
            .cluster
            .as_ref()
            .with_context(|| format!("site `{}` has no `cluster` in {}", site.name, inv.file))?;
        let q = match &self.req.procedure {
            Procedure::RecoverQuorum(q) => q.clone(),
            _ => Default::default(),
        };
        let shared_from = q.shared_from.clone();
        let seed_version = match (&q.seed_version, &q.seed_version_unread) {
            (Some(v), _) => Ok(v.clone()),
            (None, why) => Err(why.clone().unwrap_or_else(|| "not read".into())),
        };
        let down = self.leave_out(cluster, &q.unreachable, &q.lost)?;
        let mut order = ClusterOrder::new(cluster, &down)?;
        if let InvFlavor::Etcd(e) = &cluster.flavor {
            order.etcdutl = self.restore_tool(e, &seed_version)?;
        }
        if let Some(why) = &order.why_masters {
            self.note(why.clone());
        }
        if let Some(src) = &shared_from
            && let InvFlavor::Etcd(_) = &cluster.flavor
        {
            bail!(
                "--shared-config-from {src}: applies to Clearwater clusters; site `{}` has an etcd cluster",
                site.name
            );
        }
        if let Some(src) = &shared_from
            && !order.masters.iter().any(|m| &m.name == src)
        {
            bail!(
                "--shared-config-from {src}: not one of the masters ({})",
                order.names(&order.masters)
            );
        }
        match (&cluster.flavor, flavor) {
            (InvFlavor::Clearwater(_), Flavor::Clearwater) | (InvFlavor::Etcd(_), Flavor::Etcd) => {}
            (f, _) => bail!(
                "playbook {} is for `{}` clusters, but site `{}` has a `{}` cluster",
                self.pb_file(),
                if flavor == Flavor::Etcd {
                    "etcd"
                } else {
                    "clearwater"
                },
                site.name,
                f.name()
            ),
        }
        let preflight = self.cluster_preflight(cluster, &order, shared_from.as_deref())?;
        for phase in phases {
            let members = order.select(phase.on);
            if members.is_empty() {
                self.note(match phase.on {
                    Selector::Vellum | Selector::OneVellum => format!(
                        "no Vellum node takes part, so `{}` is skipped, as the runbook says when none is left",
                        phase.title
                    ),
                    _ => format!("`{}` is skipped: no member it runs on takes part", phase.title),
                });
                continue;
            }
            let mut section = Section {
                rollback: None,
                title: format!(
                    "{} (on {}: {})",
                    phase.title,
                    playbook::selector_name(phase.on),
                    members
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                steps: Vec::new(),
            };
            for m in members {
                let vars = order.vars(cluster, m, &self.req.run);
                for step in &phase.steps {
                    let actions =
                        self.member_step(cluster, &order, m, step, &vars, shared_from.as_deref())?;
                    self.push(&mut section, &m.name, step, actions);
                }
            }
            if !section.steps.is_empty() {
                self.sections.push(section);
            }
        }
        let vars = order.vars(cluster, order.first(), &self.req.run);
        self.next_steps = self.pb.next_steps.iter().map(|t| t.render(&vars)).collect();
        Ok(preflight)
    }

    /// Whether the seed's etcd (as it reports itself now) restores with
    /// `etcdutl`. Unread, the plan is for etcd 3.4, and says so: the run
    /// reads every member's version before any change and refuses another.
    fn restore_tool(
        &mut self,
        e: &crate::inventory::Etcd,
        version: &Result<String, String>,
    ) -> anyhow::Result<bool> {
        match version {
            Ok(v) => match crate::etcd::restores_with_etcdutl(v) {
                Some(etcdutl) => {
                    self.note(format!(
                        "the seed `{}` runs etcd {v}: it is restored with {}",
                        e.seed,
                        crate::etcd::restore_tool_words(etcdutl)
                    ));
                    Ok(etcdutl)
                }
                None => Err(crate::error::refused(format!(
                    "the seed `{}` reports etcd {v}, which opsctl does not recover (etcd 3 only)",
                    e.seed
                ))),
            },
            Err(why) => {
                self.note(format!(
                    "the seed `{}`'s etcd version cannot be read now ({why}): this plan restores with {}; a run reads every member's version first and refuses another",
                    e.seed,
                    crate::etcd::restore_tool_words(false)
                ));
                Ok(false)
            }
        }
    }

    /// A member whose host is down is left out of the rebuilt cluster, if
    /// the seed and a majority of the members answer; too few answering is
    /// refused. With the seed itself silent (or every host: an inventory
    /// planned from afar), the plan counts every member in, says so, and its
    /// `reachable` check refuses the run until they answer. What it leaves
    /// out it returns.
    fn leave_out(
        &mut self,
        cluster: &Cluster,
        down: &BTreeMap<String, String>,
        lost: &[String],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        if !lost.is_empty() && matches!(cluster.flavor, InvFlavor::Etcd(_)) {
            bail!(
                "--lost applies to Clearwater sites; an etcd rebuild leaves out the members that do not answer when the others are a majority"
            );
        }
        for name in lost {
            if !cluster.members.iter().any(|m| &m.name == name) {
                bail!("--lost {name}: no such node in site `{}`", cluster.site);
            }
        }
        if down.len() < cluster.members.len()
            && let Some(up) = lost.iter().find(|n| !down.contains_key(*n))
        {
            return Err(crate::error::refused(format!(
                "--lost {up}: {up} answers SSH, so it is not lost; nothing was run\nhelp: leave it out of --lost"
            )));
        }
        if down.is_empty() {
            return Ok(BTreeMap::new());
        }
        let e = match &cluster.flavor {
            InvFlavor::Etcd(e) => e,
            InvFlavor::Clearwater(_) => {
                if down.len() == cluster.members.len() {
                    // Planned from afar: shown whole, and refused by its
                    // `reachable` check if run.
                    self.note(format!(
                        "no node of site `{}` answers SSH now: this plan counts every node in, and a run refuses at its `reachable` check until they answer",
                        cluster.site
                    ));
                    return Ok(BTreeMap::new());
                }
                // A node only cut off from here may still be in a cluster
                // with quorum: the operator says which are gone.
                let unnamed: Vec<String> = down
                    .iter()
                    .filter(|(m, _)| !lost.contains(m))
                    .map(|(m, why)| format!("{m} ({why})"))
                    .collect();
                if !unnamed.is_empty() {
                    return Err(crate::error::refused(format!(
                        "these nodes of site `{}` do not answer SSH: {}; a node only cut off from here may still be in a cluster with quorum, and a second one built beside it would split the site; nothing was run\nhelp: if they are lost for good, name them: --lost {}",
                        cluster.site,
                        unnamed.join(", "),
                        down.keys().cloned().collect::<Vec<_>>().join(",")
                    )));
                }
                for (m, why) in down {
                    self.note(format!(
                        "{m} does not answer SSH ({why}) and is lost (--lost): it is left out, as the runbook says for nodes that no longer exist; replace it once the cluster is recovered"
                    ));
                }
                return Ok(down.clone());
            }
        };
        let n = cluster.members.len();
        let majority = n / 2 + 1;
        let answering = n - down.len();
        let list = down
            .iter()
            .map(|(m, why)| format!("{m} ({why})"))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(why) = down.get(&e.seed) {
            self.note(format!(
                "the seed `{}` does not answer SSH now ({why}): this plan counts every member in, and a run refuses at its `reachable` check until they answer; to rebuild without a lost member, make an answering member the seed (`seed: NAME`)",
                e.seed
            ));
            return Ok(BTreeMap::new());
        }
        if answering < majority {
            return Err(crate::error::refused(format!(
                "too few members answer SSH: {answering} of {n} (down: {list}); a rebuilt cluster needs a majority of the inventory's members ({majority})\nhelp: bring their hosts back first, or take the members that are lost for good out of the cluster in {}",
                self.inv.file
            )));
        }
        for (m, why) in down {
            self.note(format!(
                "{m} does not answer SSH ({why}): it is left out of the rebuilt cluster; when its host is back, add it with `member add` and start it with an empty data directory and ETCD_INITIAL_CLUSTER_STATE=existing"
            ));
        }
        Ok(down.clone())
    }

    fn cluster_preflight(
        &mut self,
        cluster: &Cluster,
        order: &ClusterOrder,
        shared_from: Option<&str>,
    ) -> anyhow::Result<Vec<Check>> {
        let first = order.first();
        let mut checks = Vec::new();
        for p in &self.pb.preflight {
            if let InvFlavor::Clearwater(cw) = &cluster.flavor
                && !matches!(p, Preflight::Reachable)
            {
                match self.clearwater_check(*p, cw, order, shared_from)? {
                    Some(c) => checks.push(c),
                    None => continue,
                }
                continue;
            }
            let description = match (p, &cluster.flavor) {
                (Preflight::Reachable, _) => {
                    let left_out = cluster.members.len() - order.all.len();
                    checks.push(Check {
                        description: format!(
                            "every member {}answers: {}",
                            if left_out > 0 { "taking part " } else { "" },
                            order
                                .all
                                .iter()
                                .map(|m| format!("{} ({})", m.name, Host::of(&m.name, &m.access).address))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        kind: CheckKind::Reachable {
                            nodes: order.all.iter().map(|m| Host::of(&m.name, &m.access)).collect(),
                        },
                    });
                    continue;
                }
                (Preflight::QuorumLost, InvFlavor::Etcd(e)) => format!(
                    "the cluster has lost quorum: `{} endpoint health` fails on every member; a healthy cluster is refused{}",
                    e.etcdctl,
                    if self.req.force {
                        " (--force: a healthy one is rebuilt too)"
                    } else {
                        " (unless --force)"
                    }
                ),
                (Preflight::SeedLatest, InvFlavor::Etcd(e)) => format!(
                    "the seed `{}` answers and no answering member is ahead of it (revision, then raft index, by `{} endpoint status` on each; otherwise refuse and name the member to use as seed); every member runs an etcd whose restore is {}",
                    first.name,
                    e.etcdctl,
                    crate::etcd::restore_tool_words(order.etcdutl)
                ),
                (Preflight::KeysCounted, InvFlavor::Etcd(e)) => format!(
                    "count the keys and read the revision on the seed `{}` with a serializable read (`{} get \"\" --prefix --keys-only --consistency=s`), kept as `{KEYS}` to compare at the end",
                    first.name, e.etcdctl
                ),
                (other, f) => bail!(
                    "playbook {}: preflight check `{}` does not apply to a `{}` cluster",
                    self.pb_file(),
                    other.name(),
                    f.name()
                ),
            };
            let kind = match (p, &cluster.flavor) {
                (Preflight::QuorumLost, InvFlavor::Etcd(e)) => CheckKind::QuorumLost {
                    health: order.each_member(|m, url| {
                        etcdctl(e, m, url, &["--command-timeout=3s", "endpoint", "health"])
                    }),
                    force: self.req.force,
                },
                (Preflight::SeedLatest, InvFlavor::Etcd(e)) => CheckKind::SeedLatest {
                    seed: first.name.clone(),
                    status: order.each_member(|m, url| {
                        etcdctl(
                            e,
                            m,
                            url,
                            &["--command-timeout=3s", "endpoint", "status", "-w", "json"],
                        )
                    }),
                    etcdutl: order.etcdutl,
                    tool: order
                        .etcdutl
                        .then(|| Command::remote_str(&first.name, &first.access, &[&e.etcdutl, "version"])),
                },
                (Preflight::KeysCounted, InvFlavor::Etcd(e)) => CheckKind::KeysCounted {
                    seed: first.name.clone(),
                    command: etcdctl(e, first, &order.seed_url(), &COUNT_KEYS),
                    record: KEYS.into(),
                },
                _ => unreachable!("described above"),
            };
            checks.push(Check { description, kind });
        }
        Ok(checks)
    }

    /// A Clearwater check, or none where the runbook says to leave it out
    /// (no Vellum or no Sprout node left).
    fn clearwater_check(
        &mut self,
        p: Preflight,
        cw: &crate::inventory::Clearwater,
        order: &ClusterOrder,
        shared_from: Option<&str>,
    ) -> anyhow::Result<Option<Check>> {
        let on = |x: &Member, argv: &[&str]| Command::remote_str(&x.name, &x.access, argv);
        let read = |x: &Member, argv: &[&str]| MemberRead {
            member: x.name.clone(),
            command: on(x, argv),
        };
        Ok(Some(match p {
            Preflight::QuorumLost => Check {
                description: format!(
                    "the cluster has lost quorum: on every node, `clearwater-etcdctl cluster-health` says neither healthy nor degraded; a cluster with quorum is refused{}",
                    if self.req.force {
                        " (--force: it is rebuilt anyway)"
                    } else {
                        " (unless --force)"
                    }
                ),
                kind: CheckKind::ClearwaterQuorumLost {
                    health: order
                        .all
                        .iter()
                        .map(|m| read(m, &["clearwater-etcdctl", "cluster-health"]))
                        .collect(),
                    force: self.req.force,
                },
            },
            Preflight::ConfigPresent => Check {
                description: format!(
                    "{} on every node names the management IP planned for it; {} is on every master ({}) and {}",
                    cw.local_config,
                    cw.shared_config,
                    order.names(&order.masters),
                    match shared_from {
                        Some(src) => format!(
                            "the others get {src}'s copy (--shared-config-from; the differences are shown)"
                        ),
                        None => "the same on all of them (otherwise refused, with the differences)".into(),
                    }
                ),
                kind: CheckKind::ConfigPresent {
                    local: order
                        .all
                        .iter()
                        .map(|m| read(m, &["cat", "--", &cw.local_config]))
                        .collect(),
                    ips: order
                        .all
                        .iter()
                        .map(|m| {
                            (
                                m.name.clone(),
                                NodeIps {
                                    management: management_ip(m),
                                    local: local_ip(m),
                                },
                            )
                        })
                        .collect(),
                    shared: order
                        .masters
                        .iter()
                        .map(|m| read(m, &["cat", "--", &cw.shared_config]))
                        .collect(),
                    from: shared_from.map(str::to_owned),
                },
            },
            Preflight::CassandraHealthy => {
                let Some(v) = order.one_vellum() else {
                    self.note("no Vellum node takes part: the Cassandra check is skipped, as the runbook says when none is left".into());
                    return Ok(None);
                };
                Check {
                    description: format!(
                        "Cassandra is healthy: `nodetool status` on {} lists every node up and normal (otherwise fix it and remove failed nodes first, as the runbook says)",
                        v.name
                    ),
                    kind: CheckKind::CassandraHealthy {
                        read: read(v, &[RUN_IN_SIGNALING, "nodetool", "status"]),
                    },
                }
            }
            Preflight::SproutConfig => {
                let sprouts: Vec<&Member> = order
                    .all
                    .iter()
                    .copied()
                    .filter(|m| role(m) == Some(ClearwaterRole::Sprout))
                    .collect();
                if sprouts.is_empty() {
                    self.note(
                        "no Sprout node takes part: the check of Sprout's JSON files is skipped".into(),
                    );
                    return Ok(None);
                }
                let mut reads = Vec::new();
                for s in &sprouts {
                    for f in SPROUT_JSON {
                        reads.push(FileRead {
                            member: s.name.clone(),
                            path: f.into(),
                            command: read_file(s, f),
                        });
                    }
                }
                Check {
                    description: format!(
                        "Sprout's {} parse as JSON on {}",
                        SPROUT_JSON.join(", "),
                        order.names(&sprouts)
                    ),
                    kind: CheckKind::SproutConfig { reads },
                }
            }
            other => bail!(
                "playbook {}: preflight check `{}` does not apply to a `clearwater` cluster",
                self.pb_file(),
                other.name()
            ),
        }))
    }

    fn member_step(
        &mut self,
        cluster: &Cluster,
        order: &ClusterOrder,
        m: &Member,
        step: &playbook::Step,
        vars: &BTreeMap<&'static str, String>,
        shared_from: Option<&str>,
    ) -> anyhow::Result<Vec<Action>> {
        if !step.when.is_empty() {
            bail!(
                "playbook {}:{}: `when` conditions apply to relay steps only",
                self.pb_file(),
                step.line
            );
        }
        let first = order.first();
        let render = |argv: &[Template]| argv.iter().map(|t| t.render(vars)).collect::<Vec<_>>();
        Ok(match &step.kind {
            StepKind::Confirm {
                message,
                show_allocations: _,
            } => vec![Action::Confirm {
                // What the operator chose or was told is confirmed with the rest.
                prompt: {
                    let mut p = message.render(vars);
                    if !order.left_out.is_empty() {
                        p.push_str(&format!(
                            ", without {} (not answering SSH)",
                            order.left_out.join(", ")
                        ));
                    }
                    if let Some(src) = shared_from {
                        p.push_str(&format!(
                            ", replacing the other masters' shared_config with {src}'s"
                        ));
                    }
                    p
                },
                allocations: None,
                service: None,
            }],
            StepKind::Run { argv, on } => vec![Action::Run {
                command: match on {
                    RunOn::Node => Command::remote(&m.name, &m.access, render(argv)),
                    RunOn::First => Command::remote(&first.name, &first.access, render(argv)),
                    RunOn::Local => Command::local(render(argv), &self.inv.dir),
                },
            }],
            StepKind::Service(action) => {
                let argv = match &m.role {
                    MemberRole::Etcd { service, .. } => service_argv(service, *action)
                        .with_context(|| format!("etcd member `{}` has no reload command", m.name))?,
                    // Clearwater's etcd is monit's group `etcd`.
                    MemberRole::Clearwater { .. } => {
                        let verb = match action {
                            ServiceAction::Stop => "stop",
                            ServiceAction::Start => "monitor",
                            ServiceAction::Restart => "restart",
                            ServiceAction::Reload => bail!(
                                "playbook {}:{}: Clearwater's etcd has no reload",
                                self.pb_file(),
                                step.line
                            ),
                        };
                        ["monit", verb, "-g", "etcd"].map(str::to_owned).to_vec()
                    }
                };
                vec![Action::Run {
                    command: Command::remote(&m.name, &m.access, argv),
                }]
            }
            StepKind::DatastoreConfig(store) => {
                if role(m) != Some(ClearwaterRole::Vellum) {
                    bail!(
                        "playbook {}:{}: `datastore-config` applies to Vellum nodes (`on: vellum`), not {}",
                        self.pb_file(),
                        step.line,
                        m.name
                    );
                }
                let path = store.path();
                let content = match store {
                    Store::Chronos => crate::clearwater::chronos_default(&local_ip(m), &order.site_vellum),
                    Store::Memcached => crate::clearwater::cluster_settings_default(&order.site_vellum),
                };
                vec![Action::DatastoreConfig {
                    on: Host::of(&m.name, &m.access),
                    store: *store,
                    path: path.into(),
                    content,
                    read: read_file(m, path),
                    commands: self.write_with_backup(m, path),
                }]
            }
            StepKind::CopySharedConfig => {
                let InvFlavor::Clearwater(cw) = &cluster.flavor else {
                    bail!(
                        "playbook {}:{}: `copy-shared-config` is Clearwater's",
                        self.pb_file(),
                        step.line
                    );
                };
                let source = shared_from.and_then(|s| order.masters.iter().find(|x| x.name == s));
                match source {
                    Some(src) if src.name != m.name => vec![Action::CopyFile {
                        on: Host::of(&m.name, &m.access),
                        path: cw.shared_config.clone(),
                        source: src.name.clone(),
                        read: Command::remote_str(&src.name, &src.access, &["cat", "--", &cw.shared_config]),
                        commands: self.write_with_backup(m, &cw.shared_config),
                    }],
                    _ => Vec::new(),
                }
            }
            StepKind::Wait(spec) => vec![self.member_gate(cluster, order, m, spec)?],
            StepKind::Backup(path) => vec![self.backup(&m.name, &m.access, &path.render(vars))],
            StepKind::MoveAside(path) => vec![self.move_aside(&m.name, &m.access, &path.render(vars))],
            StepKind::SetConfig { file, values, unset } => vec![self.set_config(
                &m.name,
                &m.access,
                file.render(vars),
                values.iter().map(|(k, v)| (k.clone(), v.render(vars))).collect(),
                unset.clone(),
            )],
            other => bail!(
                "playbook {}:{}: step `{}` applies to relays, not cluster members",
                self.pb_file(),
                step.line,
                step_name(other)
            ),
        })
    }

    fn member_gate(
        &self,
        cluster: &Cluster,
        order: &ClusterOrder,
        m: &Member,
        spec: &GateSpec,
    ) -> anyhow::Result<Action> {
        let (poll, timeout) = gate_defaults(spec.gate);
        let first = order.first();
        let on = |x: &Member, argv: Vec<String>| Command::remote(&x.name, &x.access, argv);
        let cw_etcdctl = |x: &Member, what: &str| {
            let mut argv = vec!["clearwater-etcdctl".to_owned(), what.to_owned()];
            if what == "member" {
                argv.push("list".into());
            }
            on(x, argv)
        };
        let (fact, gate) = match (&cluster.flavor, &m.role, spec.gate) {
            (InvFlavor::Etcd(e), MemberRole::Etcd { client_url, .. }, PbGate::MemberHealthy) => (
                format!("etcd member {} is healthy", m.name),
                Gate::MemberHealthy {
                    command: on(
                        m,
                        vec![
                            e.etcdctl.clone(),
                            format!("--endpoints={client_url}"),
                            "endpoint".into(),
                            "health".into(),
                        ],
                    ),
                },
            ),
            (InvFlavor::Etcd(e), _, PbGate::ClusterHealthy) => (
                format!(
                    "every member of {}'s etcd cluster is listed, started and answering, none a learner or unknown, and all agree on one leader",
                    cluster.site
                ),
                Gate::ClusterHealthy {
                    command: etcdctl(e, first, &order.seed_url(), &["member", "list", "-w", "json"]),
                    status: etcdctl(
                        e,
                        first,
                        &order.endpoints(),
                        &["--command-timeout=3s", "endpoint", "status", "-w", "json"],
                    ),
                    expect: order.join_order().iter().map(|m| m.name.clone()).collect(),
                },
            ),
            (InvFlavor::Etcd(e), _, PbGate::KeysPreserved) => (
                format!("the key count and revision are at least those kept as `{KEYS}` before any change"),
                Gate::KeysPreserved {
                    command: etcdctl(e, first, &order.seed_url(), &COUNT_KEYS),
                    record: KEYS.into(),
                },
            ),
            (InvFlavor::Etcd(e), MemberRole::Etcd { peer_url, .. }, PbGate::MemberAdded) => (
                format!("{} ({peer_url}) is in the member list", m.name),
                Gate::MemberAdded {
                    list: etcdctl(e, first, &order.seed_url(), &["member", "list", "-w", "json"]),
                    add: etcdctl(
                        e,
                        first,
                        &order.seed_url(),
                        &["member", "add", &m.name, &format!("--peer-urls={peer_url}")],
                    ),
                    name: m.name.clone(),
                    peer_url: peer_url.clone(),
                },
            ),
            (InvFlavor::Etcd(e), _, PbGate::AcceptsWrites) => {
                let key = format!("opsctl-check/{}", self.req.run);
                let endpoints = order.endpoints();
                (
                    format!("a test key `{key}` is written, read back and deleted"),
                    Gate::AcceptsWrites {
                        put: etcdctl(e, first, &endpoints, &["put", &key, &self.req.run]),
                        get: etcdctl(e, first, &endpoints, &["get", &key, "--print-value-only"]),
                        del: etcdctl(e, first, &endpoints, &["del", &key]),
                        value: self.req.run.clone(),
                    },
                )
            }
            (
                InvFlavor::Clearwater(_),
                MemberRole::Clearwater { management_ip, .. },
                PbGate::MemberHealthy | PbGate::ClusterHealthy,
            ) => (
                if spec.gate == PbGate::MemberHealthy {
                    format!(
                        "{} ({management_ip}) reaches the masters' cluster through its own etcd: healthy, the masters and no other member listed, all started, one leader",
                        m.name
                    )
                } else {
                    format!(
                        "the masters ({}) formed one cluster, as {} sees it: healthy, the masters and no other member listed, all started, one leader",
                        order.master_ips().join(", "),
                        m.name
                    )
                },
                Gate::ClearwaterCluster {
                    health: cw_etcdctl(m, "cluster-health"),
                    list: cw_etcdctl(m, "member"),
                    masters: order.master_ips(),
                },
            ),
            (InvFlavor::Clearwater(_), _, PbGate::MonitRunning) => (
                format!("monit on {} shows {} running", m.name, spec.services.join(", ")),
                Gate::MonitRunning {
                    command: on(m, vec!["monit".into(), "summary".into()]),
                    services: spec.services.clone(),
                },
            ),
            (InvFlavor::Clearwater(_), _, PbGate::MonitStopped) => (
                format!(
                    "monit on {} shows {} stopped (not monitored)",
                    m.name,
                    spec.services.join(", ")
                ),
                Gate::MonitStopped {
                    command: on(m, vec!["monit".into(), "summary".into()]),
                    services: spec.services.clone(),
                },
            ),
            (InvFlavor::Clearwater(_), _, PbGate::ConfigSynced) => (
                format!("the shared configuration of {} is in sync with etcd", m.name),
                Gate::ConfigSynced {
                    command: on(m, vec![CHECK_CONFIG_SYNC.into()]),
                },
            ),
            (f, _, g) => bail!(
                "playbook {}: gate `{}` does not apply to a `{}` cluster",
                self.pb_file(),
                g.name(),
                f.name()
            ),
        };
        Ok(Action::Gate {
            gate,
            fact,
            poll: spec.poll.unwrap_or(poll),
            timeout: spec.timeout.unwrap_or(timeout),
            on_timeout: OnTimeout::Stop,
        })
    }
}

/// Under this name the seed's key count and revision are kept.
const KEYS: &str = "keys";

/// Every key counted by a serializable read, returning one: the reply's
/// `count` is the total, its header the revision.
const COUNT_KEYS: [&str; 9] = [
    "--command-timeout=10s",
    "get",
    "",
    "--prefix",
    "--keys-only",
    "--limit=1",
    "--consistency=s",
    "-w",
    "json",
];

/// `etcdctl --endpoints=URLS ARGS...`, run on member `on`.
fn etcdctl(e: &crate::inventory::Etcd, on: &Member, urls: &str, args: &[&str]) -> Command {
    let mut argv = vec![e.etcdctl.clone(), format!("--endpoints={urls}")];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    Command::remote(&on.name, &on.access, argv)
}

/// Runs a command in Clearwater's signaling namespace (or plainly, where there is none).
const RUN_IN_SIGNALING: &str = "/usr/share/clearwater/bin/run-in-signaling-namespace";
/// Clearwater's check that the shared configuration matches etcd's.
const CHECK_CONFIG_SYNC: &str = "/usr/share/clearwater/clearwater-config-manager/scripts/check_config_sync";
/// Sprout's JSON configuration, checked before the rebuild.
const SPROUT_JSON: [&str; 3] = [
    "/etc/clearwater/enum.json",
    "/etc/clearwater/s-cscf.json",
    "/etc/clearwater/bgcf.json",
];

/// Prints `path` on `m`; exits 3 when there is none (told apart from a failure).
fn read_file(m: &Member, path: &str) -> Command {
    Command::remote_str(
        &m.name,
        &m.access,
        &[
            "sh",
            "-c",
            r#"if [ -e "$1" ]; then exec cat -- "$1"; fi; exit 3"#,
            "opsctl-read",
            path,
        ],
    )
}

fn role(m: &Member) -> Option<ClearwaterRole> {
    match &m.role {
        MemberRole::Clearwater { role, .. } => Some(*role),
        MemberRole::Etcd { .. } => None,
    }
}

/// The signalling address of a Clearwater node (management IP for others).
fn local_ip(m: &Member) -> String {
    match &m.role {
        MemberRole::Clearwater { local_ip, .. } => local_ip.clone(),
        MemberRole::Etcd { .. } => m.access.host.clone(),
    }
}

fn management_ip(m: &Member) -> String {
    match &m.role {
        MemberRole::Clearwater { management_ip, .. } => management_ip.clone(),
        MemberRole::Etcd { .. } => m.access.host.clone(),
    }
}

impl Builder<'_> {
    /// A file written on `m` beside `path`, the one there kept as
    /// `path.opsctl-RUN` first (once: a continued run keeps the original).
    fn write_with_backup(&self, m: &Member, path: &str) -> crate::remote::UploadCommands {
        crate::remote::UploadCommands::keeping_backup(
            &m.name,
            &m.access,
            path,
            &format!("{path}.opsctl-{}.tmp", self.req.run),
            &format!("{path}.opsctl-{}", self.req.run),
        )
    }
}

/// The order cluster members are worked in: the first (seed or first
/// master), the rest, and for clearwater, masters and non-masters, and the
/// Vellum nodes.
struct ClusterOrder<'a> {
    all: Vec<&'a Member>,
    first: &'a Member,
    masters: Vec<&'a Member>,
    /// Clearwater: the Vellum nodes taking part.
    vellum: Vec<&'a Member>,
    /// Clearwater: the management IP of every Vellum node of the site, as
    /// the data-store files the runbook writes list them.
    site_vellum: Vec<String>,
    /// Clearwater: why these masters.
    why_masters: Option<String>,
    /// Members left out, for the next steps.
    left_out: Vec<String>,
    /// etcd: the seed is restored with `etcdutl` (3.5 and later).
    etcdutl: bool,
}

impl<'a> ClusterOrder<'a> {
    /// The order of `c`'s members, without those in `down`.
    fn new(c: &'a Cluster, down: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let by_name = |n: &str| c.members.iter().find(|m| m.name == n);
        let all: Vec<&Member> = c.members.iter().filter(|m| !down.contains_key(&m.name)).collect();
        let left_out = down.keys().cloned().collect();
        let is_vellum = |m: &&Member| role(m) == Some(ClearwaterRole::Vellum);
        let order = match &c.flavor {
            InvFlavor::Etcd(e) => ClusterOrder {
                first: by_name(&e.seed).context("the seed is not a member")?,
                all,
                masters: Vec::new(),
                vellum: Vec::new(),
                site_vellum: Vec::new(),
                why_masters: None,
                left_out,
                etcdutl: false,
            },
            InvFlavor::Clearwater(cw) => {
                let vellum: Vec<&Member> = all.iter().copied().filter(is_vellum).collect();
                let (names, why) = if cw.masters_chosen {
                    if let Some(gone) = cw.masters.iter().find(|n| down.contains_key(*n)) {
                        return Err(crate::error::refused(format!(
                            "master {gone} does not answer SSH ({}); the new cluster cannot be formed on it\nhelp: take it out of `masters` in the inventory, or remove `masters` to let opsctl choose by the runbook's rule",
                            down[gone]
                        )));
                    }
                    (
                        cw.masters.clone(),
                        "the inventory names them (`masters`)".to_owned(),
                    )
                } else if vellum.len() >= 3 {
                    (
                        crate::inventory::masters_of(all.iter().copied()),
                        format!(
                            "{} Vellum nodes answer, and with 3 or more working Vellum nodes the runbook makes those the masters",
                            vellum.len()
                        ),
                    )
                } else {
                    (
                        crate::inventory::masters_of(all.iter().copied()),
                        format!(
                            "{} Vellum node{} answer{}, fewer than 3, so the runbook makes every node that answers a master",
                            vellum.len(),
                            if vellum.len() == 1 { "" } else { "s" },
                            if vellum.len() == 1 { "s" } else { "" },
                        ),
                    )
                };
                let masters: Vec<&Member> = names.iter().filter_map(|n| by_name(n)).collect();
                let first = *masters.first().context("no master takes part")?;
                let site_vellum = c.members.iter().filter(is_vellum).map(local_ip).collect();
                let mut why = format!(
                    "masters: {}: {why}",
                    masters
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if masters.len() < 3 {
                    why.push_str(&format!(
                        "; a cluster of {} master{} survives no lost master: add masters once the site is repaired",
                        masters.len(),
                        if masters.len() == 1 { "" } else { "s" }
                    ));
                }
                ClusterOrder {
                    all,
                    first,
                    masters,
                    vellum,
                    site_vellum,
                    why_masters: Some(why),
                    left_out,
                    etcdutl: false,
                }
            }
        };
        Ok(order)
    }

    fn names(&self, members: &[&Member]) -> String {
        members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn master_ips(&self) -> Vec<String> {
        self.masters.iter().map(|m| management_ip(m)).collect()
    }

    /// The Vellum node the data-store state is reloaded on: a master if one is.
    fn one_vellum(&self) -> Option<&'a Member> {
        self.vellum
            .iter()
            .copied()
            .find(|v| self.masters.iter().any(|m| m.name == v.name))
            .or_else(|| self.vellum.first().copied())
    }

    fn first(&self) -> &'a Member {
        self.first
    }

    /// The seed first, then the others in inventory order: the order members
    /// (re)join a rebuilt cluster.
    fn join_order(&self) -> Vec<&'a Member> {
        std::iter::once(self.first)
            .chain(self.all.iter().copied().filter(|m| m.name != self.first.name))
            .collect()
    }

    fn select(&self, s: Selector) -> Vec<&'a Member> {
        match s {
            Selector::All => self.all.clone(),
            Selector::First => vec![self.first],
            Selector::Rest => self.join_order().into_iter().skip(1).collect(),
            Selector::Masters => self.masters.clone(),
            Selector::NonMasters => self
                .all
                .iter()
                .copied()
                .filter(|m| !self.masters.iter().any(|x| x.name == m.name))
                .collect(),
            Selector::Vellum => self.vellum.clone(),
            Selector::OneVellum => self.one_vellum().into_iter().collect(),
        }
    }

    /// The seed's client URL.
    fn seed_url(&self) -> String {
        match &self.first.role {
            MemberRole::Etcd { client_url, .. } => client_url.clone(),
            MemberRole::Clearwater { .. } => String::new(),
        }
    }

    /// `read` for each etcd member, on that member, to its own client URL.
    fn each_member(&self, read: impl Fn(&Member, &str) -> Command) -> Vec<MemberRead> {
        self.join_order()
            .into_iter()
            .filter_map(|m| match &m.role {
                MemberRole::Etcd { client_url, .. } => Some(MemberRead {
                    member: m.name.clone(),
                    command: read(m, client_url),
                }),
                MemberRole::Clearwater { .. } => None,
            })
            .collect()
    }

    fn endpoints(&self) -> String {
        self.join_order()
            .iter()
            .filter_map(|m| match &m.role {
                MemberRole::Etcd { client_url, .. } => Some(client_url.clone()),
                MemberRole::Clearwater { .. } => None,
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn vars(&self, c: &Cluster, m: &Member, run: &str) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::from([
            ("node", m.name.clone()),
            ("host", m.access.host.clone()),
            ("site", c.site.clone()),
            ("run", run.to_owned()),
            (
                "left_out",
                if self.left_out.is_empty() {
                    "none".to_owned()
                } else {
                    self.left_out.join(", ")
                },
            ),
        ]);
        match (&c.flavor, &m.role) {
            (
                InvFlavor::Etcd(e),
                MemberRole::Etcd {
                    client_url,
                    peer_url,
                    data_dir,
                    env_file,
                    ..
                },
            ) => {
                // The members in the cluster once this one has joined: the seed,
                // then each other member in turn.
                let order = self.join_order();
                let upto = order.iter().position(|x| x.name == m.name).unwrap_or(0);
                let initial: Vec<String> = order[..=upto]
                    .iter()
                    .filter_map(|x| match &x.role {
                        MemberRole::Etcd { peer_url, .. } => Some(format!("{}={peer_url}", x.name)),
                        MemberRole::Clearwater { .. } => None,
                    })
                    .collect();
                let seed_client = match &self.first.role {
                    MemberRole::Etcd { client_url, .. } => client_url.clone(),
                    MemberRole::Clearwater { .. } => String::new(),
                };
                v.extend([
                    ("data_dir", data_dir.clone()),
                    ("env_file", env_file.clone()),
                    ("client_url", client_url.clone()),
                    ("peer_url", peer_url.clone()),
                    ("initial_cluster", initial.join(",")),
                    ("token", e.token.clone()),
                    ("etcdctl", e.etcdctl.clone()),
                    (
                        "snapshot_tool",
                        if self.etcdutl {
                            e.etcdutl.clone()
                        } else {
                            e.etcdctl.clone()
                        },
                    ),
                    ("seed", self.first.name.clone()),
                    ("seed_client_url", seed_client),
                    ("endpoints", self.endpoints()),
                    ("snapshot", format!("/var/tmp/opsctl-{run}-{}-etcd.db", c.site)),
                ]);
            }
            (InvFlavor::Clearwater(cw), MemberRole::Clearwater { management_ip, .. }) => {
                let masters = self.master_ips();
                v.extend([
                    ("management_ip", management_ip.clone()),
                    ("local_config", cw.local_config.clone()),
                    ("shared_config", cw.shared_config.clone()),
                    ("data_dir", cw.data_dir.clone()),
                    ("masters", masters.join(",")),
                ]);
            }
            _ => {}
        }
        v
    }
}

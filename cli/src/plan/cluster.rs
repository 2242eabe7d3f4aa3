//! The phases of a cluster plan (etcd, Project Clearwater) and the order
//! members are worked in.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use super::request::{Builder, service_argv, step_name};
use super::steps::gate_defaults;
use super::*;
use crate::inventory::{Cluster, Flavor as InvFlavor, Member, MemberRole};
use crate::playbook::{self, Flavor, Gate as PbGate, GateSpec, Preflight, RunOn, Selector, StepKind};
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
        // Only a plain etcd rebuild goes on without a member whose host is down.
        let down = match (&self.req.procedure, &cluster.flavor) {
            (Procedure::RecoverQuorum { unreachable }, InvFlavor::Etcd(_)) => unreachable.clone(),
            _ => BTreeMap::new(),
        };
        let down = self.leave_out(cluster, &down)?;
        let order = ClusterOrder::new(cluster, &down)?;
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
        let preflight = self.cluster_preflight(cluster, &order)?;
        for phase in phases {
            let members = order.select(phase.on);
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
                    let actions = self.member_step(cluster, &order, m, step, &vars)?;
                    self.push(&mut section, &m.name, step, actions);
                }
            }
            self.sections.push(section);
        }
        Ok(preflight)
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
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let InvFlavor::Etcd(e) = &cluster.flavor else {
            return Ok(BTreeMap::new());
        };
        if down.is_empty() {
            return Ok(BTreeMap::new());
        }
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

    fn cluster_preflight(&self, cluster: &Cluster, order: &ClusterOrder) -> anyhow::Result<Vec<Check>> {
        let first = order.first();
        let mut checks = Vec::new();
        for p in &self.pb.preflight {
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
                (Preflight::QuorumLost, InvFlavor::Clearwater(_)) => {
                    "the cluster has lost quorum: `clearwater-etcdctl cluster-health` fails on the masters; a healthy cluster is refused".into()
                }
                (Preflight::SeedLatest, InvFlavor::Etcd(e)) => format!(
                    "the seed `{}` answers and no answering member is ahead of it (revision, then raft index, by `{} endpoint status` on each; otherwise refuse and name the member to use as seed); every member runs etcd {RESTORES_WITH_ETCDCTL}, whose restore is `etcdctl snapshot restore`",
                    first.name, e.etcdctl
                ),
                (Preflight::KeysCounted, InvFlavor::Etcd(e)) => format!(
                    "count the keys and read the revision on the seed `{}` with a serializable read (`{} get \"\" --prefix --keys-only --consistency=s`), kept as `{KEYS}` to compare at the end",
                    first.name, e.etcdctl
                ),
                (Preflight::ConfigPresent, InvFlavor::Clearwater(c)) => format!(
                    "{} and {} exist on every master ({})",
                    c.shared_config,
                    c.local_config,
                    c.masters.join(", ")
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
                (Preflight::QuorumLost, _) => CheckKind::ClearwaterQuorumLost,
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
                    version: RESTORES_WITH_ETCDCTL.into(),
                },
                (Preflight::KeysCounted, InvFlavor::Etcd(e)) => CheckKind::KeysCounted {
                    seed: first.name.clone(),
                    command: etcdctl(e, first, &order.seed_url(), &COUNT_KEYS),
                    record: KEYS.into(),
                },
                _ => CheckKind::ConfigPresent,
            };
            checks.push(Check { description, kind });
        }
        Ok(checks)
    }

    fn member_step(
        &mut self,
        cluster: &Cluster,
        order: &ClusterOrder,
        m: &Member,
        step: &playbook::Step,
        vars: &BTreeMap<&'static str, String>,
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
                prompt: message.render(vars),
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
                let MemberRole::Etcd { service, .. } = &m.role else {
                    bail!(
                        "playbook {}:{}: `service` steps apply to etcd members; clearwater nodes are driven through monit (`run`)",
                        self.pb_file(),
                        step.line
                    );
                };
                let argv = service_argv(service, *action)
                    .with_context(|| format!("etcd member `{}` has no reload command", m.name))?;
                vec![Action::Run {
                    command: Command::remote(&m.name, &m.access, argv),
                }]
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
        let cw_health = |x: &Member| on(x, vec!["clearwater-etcdctl".into(), "cluster-health".into()]);
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
                    status: Some(etcdctl(
                        e,
                        first,
                        &order.endpoints(),
                        &["--command-timeout=3s", "endpoint", "status", "-w", "json"],
                    )),
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
                PbGate::MemberHealthy,
            ) => (
                format!(
                    "{} ({management_ip}) reaches the cluster through its etcd proxy",
                    m.name
                ),
                Gate::MemberHealthy {
                    command: cw_health(m),
                },
            ),
            (InvFlavor::Clearwater(_), _, PbGate::ClusterHealthy) => (
                format!("every master of {}'s etcd cluster is healthy", cluster.site),
                Gate::ClusterHealthy {
                    command: cw_health(first),
                    status: None,
                    expect: Vec::new(),
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

/// The etcd release line whose restore is `etcdctl snapshot restore` (3.5
/// moved it to `etcdutl`, 3.6 removed etcdctl's).
const RESTORES_WITH_ETCDCTL: &str = "3.4";

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

/// The order cluster members are worked in: the first (seed or first vellum
/// master), the rest, and for clearwater, masters and non-masters.
struct ClusterOrder<'a> {
    all: Vec<&'a Member>,
    first: &'a Member,
    masters: Vec<&'a Member>,
}

impl<'a> ClusterOrder<'a> {
    /// The order of `c`'s members, without those in `down`.
    fn new(c: &'a Cluster, down: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let by_name = |n: &str| c.members.iter().find(|m| m.name == n);
        let (first, masters) = match &c.flavor {
            InvFlavor::Etcd(e) => (by_name(&e.seed).context("the seed is not a member")?, Vec::new()),
            InvFlavor::Clearwater(cw) => {
                let masters: Vec<&Member> = cw.masters.iter().filter_map(|n| by_name(n)).collect();
                let is_vellum = |m: &&Member| {
                    matches!(
                        m.role,
                        MemberRole::Clearwater {
                            role: crate::inventory::ClearwaterRole::Vellum,
                            ..
                        }
                    )
                };
                let first = masters
                    .iter()
                    .copied()
                    .find(is_vellum)
                    .or_else(|| c.members.iter().find(is_vellum))
                    .with_context(|| {
                        format!(
                            "site `{}` has no vellum member to reload the data-store cluster state on",
                            c.site
                        )
                    })?;
                (first, masters)
            }
        };
        Ok(ClusterOrder {
            all: c.members.iter().filter(|m| !down.contains_key(&m.name)).collect(),
            first,
            masters,
        })
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
                    ("seed", self.first.name.clone()),
                    ("seed_client_url", seed_client),
                    ("endpoints", self.endpoints()),
                    ("snapshot", format!("/var/tmp/opsctl-{run}-{}-etcd.db", c.site)),
                ]);
            }
            (InvFlavor::Clearwater(cw), MemberRole::Clearwater { management_ip, .. }) => {
                let masters: Vec<String> = self
                    .masters
                    .iter()
                    .filter_map(|x| match &x.role {
                        MemberRole::Clearwater { management_ip, .. } => Some(management_ip.clone()),
                        MemberRole::Etcd { .. } => None,
                    })
                    .collect();
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

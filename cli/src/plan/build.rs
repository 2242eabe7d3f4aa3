//! Expanding a playbook for concrete nodes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use relay::{CertLayout, RelayDrain, StatsSource};

use super::Refused;
use super::*;
use crate::advertise::{self as adv, Entry, State, ValuesFile};
use crate::duration;
use crate::inventory::{
    Access, AdvertiseCheck, Backend, Cluster, Flavor as InvFlavor, Inventory, Member, MemberRole, OnTimeout,
    ReadOn, Relay, Service, Transport,
};
use crate::playbook::{
    self, Body, Condition, Flavor, Gate, GateSpec, Playbook, Preflight, RunOn, Selector, ServiceAction,
    StepKind, Targets,
};
use crate::template::Template;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub enum Procedure {
    RestartNoDowntime,
    Restart,
    RebootNode,
    RenewCert {
        bundle: PathBuf,
        key: Option<PathBuf>,
        reload: bool,
    },
    RecoverQuorum,
}

/// A procedure, its targets (already resolved to inventory names) and the run id.
#[derive(Debug, Clone)]
pub struct Request {
    pub procedure: Procedure,
    /// Relay names (relay procedures) or the site whose cluster is rebuilt.
    pub targets: Vec<String>,
    pub run: String,
    /// Relays an earlier run took out of the advertised list and did not put
    /// back, with that run's id (from the journal).
    pub left_out: BTreeMap<String, String>,
    /// On a drain timeout, restart anyway once the remaining count is confirmed.
    pub force: bool,
}

impl Procedure {
    fn playbook(&self, inv: &Inventory, targets: &[String]) -> anyhow::Result<&'static str> {
        Ok(match self {
            Procedure::RestartNoDowntime => "restart-no-downtime",
            Procedure::Restart => "restart",
            Procedure::RebootNode => "reboot-node",
            Procedure::RenewCert { .. } => "renew-cert",
            Procedure::RecoverQuorum => {
                let site = targets
                    .first()
                    .and_then(|s| inv.site(s))
                    .context("no site selected")?;
                match site.cluster.as_ref().map(|c| &c.flavor) {
                    Some(InvFlavor::Clearwater(_)) => "recover-quorum-clearwater",
                    Some(InvFlavor::Etcd(_)) => "recover-quorum-etcd",
                    None => bail!("site `{}` has no `cluster` in {}", site.name, inv.file),
                }
            }
        })
    }
}

pub fn build(inv: &Inventory, req: &Request) -> anyhow::Result<Plan> {
    let name = req.procedure.playbook(inv, &req.targets)?;
    let pb = playbook::load(name, inv.playbooks_dir.as_deref())?;
    let mut b = Builder {
        inv,
        req,
        pb: &pb,
        sections: Vec::new(),
        notes: Vec::new(),
        number: 0,
        continues: BTreeMap::new(),
    };
    let preflight = match (&pb.targets, &pb.body) {
        (Targets::Relays, Body::PerRelay(steps)) => b.relays(steps)?,
        (Targets::Cluster(f), Body::Phases(phases)) => b.cluster(*f, phases)?,
        _ => bail!(
            "playbook `{}` ({}) does not match the procedure: expected `targets: {}`",
            pb.name,
            pb.origin,
            if matches!(req.procedure, Procedure::RecoverQuorum) {
                "cluster"
            } else {
                "relays"
            }
        ),
    };
    Ok(Plan {
        schema: SCHEMA,
        procedure: name.to_owned(),
        playbook: PlaybookRef {
            name: pb.name.clone(),
            origin: pb.origin.clone(),
        },
        description: pb.description.clone(),
        inventory: inv.file.clone(),
        run: req.run.clone(),
        targets: req.targets.clone(),
        preflight,
        sections: b.sections,
        notes: b.notes,
        continues: b.continues,
        force: req.force,
    })
}

struct Builder<'a> {
    inv: &'a Inventory,
    req: &'a Request,
    pb: &'a Playbook,
    sections: Vec<Section>,
    notes: Vec<String>,
    number: usize,
    continues: BTreeMap<String, String>,
}

fn gate_defaults(g: Gate) -> (Duration, Duration) {
    let s = Duration::from_secs;
    match g {
        Gate::Drained => (s(10), s(12 * 3600)),
        Gate::ServiceUp | Gate::StatsAnswer | Gate::StunBinding | Gate::SshDown => (s(1), s(120)),
        Gate::Unadvertised | Gate::Advertised => (s(5), s(600)),
        Gate::NewBoot => (s(2), s(600)),
        Gate::ServedCert | Gate::KeysPreserved => (s(2), s(60)),
        Gate::MemberHealthy => (s(2), s(120)),
        Gate::ClusterHealthy => (s(2), s(300)),
    }
}

fn gate_action(
    gate: Gate,
    fact: String,
    source: String,
    threshold: Option<u64>,
    (poll, timeout): (Duration, Duration),
    on_timeout: &str,
) -> Action {
    Action::Gate {
        gate: gate.name(),
        fact,
        source,
        threshold,
        poll: duration::format(poll),
        poll_secs: poll.as_secs_f64(),
        timeout: duration::format(timeout),
        timeout_secs: timeout.as_secs_f64(),
        on_timeout: on_timeout.to_owned(),
    }
}

fn stats_source(r: &Relay) -> String {
    let on = match (r.stats.read_on, r.access.transport) {
        (ReadOn::Local, _) | (_, Transport::Local) => "from here".to_owned(),
        (ReadOn::Node, Transport::Ssh) => format!("on {}, through SSH", r.name),
    };
    let pw = r
        .stats
        .password
        .as_ref()
        .map(|p| format!(", password from {p}"))
        .unwrap_or_default();
    format!("{} ({on}{pw})", r.stats.source)
}

impl<'a> Builder<'a> {
    fn push(&mut self, section: &mut Section, node: &str, step: &playbook::Step, actions: Vec<Action>) {
        for (i, action) in actions.into_iter().enumerate() {
            self.number += 1;
            section.steps.push(Step {
                number: self.number,
                node: node.to_owned(),
                title: step
                    .title
                    .clone()
                    .unwrap_or_else(|| title(node, &step.kind, &action, i)),
                source: format!("{}:{}", self.pb_file(), step.line),
                action,
            });
        }
    }

    fn pb_file(&self) -> String {
        if self.pb.origin == "built-in" {
            format!("playbooks/{}.yaml", self.pb.name)
        } else {
            self.pb.origin.clone()
        }
    }

    fn note(&mut self, n: String) {
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    fn relays(&mut self, steps: &[playbook::Step]) -> anyhow::Result<Vec<Check>> {
        let inv = self.inv;
        let relays: Vec<&Relay> = self
            .req
            .targets
            .iter()
            .map(|n| {
                inv.relays()
                    .find(|r| &r.name == n)
                    .with_context(|| format!("`{n}` is not a relay"))
            })
            .collect::<anyhow::Result<_>>()?;
        let values = ValuesFile::load(inv)?;
        // Targets and the other relays of their sites (the minimum counts those).
        let entries = match &values {
            Some(v) => v.relay_entries(
                inv,
                self.sites_of(&relays).into_iter().flat_map(|s| s.relays.iter()),
            )?,
            None => BTreeMap::new(),
        };
        let (reload, cert_inputs) = match &self.req.procedure {
            Procedure::RenewCert { bundle, key, reload } => (*reload, Some((bundle.clone(), key.clone()))),
            _ => (false, None),
        };
        let preflight = self.relay_preflight(&relays, &entries, cert_inputs.as_ref())?;
        for r in &relays {
            let mut section = Section {
                title: format!(
                    "{} ({}, {}, {})",
                    r.name,
                    r.site,
                    r.kind,
                    Host::of(&r.name, &r.access).address
                ),
                steps: Vec::new(),
            };
            for step in steps {
                let applies = step.when.iter().all(|c| match c {
                    Condition::RelayDrain => r.drain.relay_drain,
                    Condition::StunCheck => r.stun_check,
                    Condition::Reload => reload,
                    Condition::Restart => !reload,
                });
                if applies {
                    let actions = self.relay_step(
                        r,
                        step,
                        values.as_ref(),
                        entries.get(&r.name),
                        cert_inputs.as_ref(),
                    )?;
                    self.push(&mut section, &r.name, step, actions);
                }
            }
            self.sections.push(section);
        }
        if matches!(inv.advertise.backend, Backend::None) {
            self.note(
                "advertise backend is `none`: relays stay in whatever list clients get, so a drain waits for clients to leave on their own".into(),
            );
        }
        Ok(preflight)
    }

    fn relay_preflight(
        &mut self,
        relays: &[&Relay],
        entries: &BTreeMap<String, Vec<Entry>>,
        cert: Option<&(PathBuf, Option<PathBuf>)>,
    ) -> anyhow::Result<Vec<Check>> {
        let inv = self.inv;
        let names = |rs: &[&Relay]| rs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
        let mut checks = Vec::new();
        for p in &self.pb.preflight {
            let description = match p {
                Preflight::Reachable => format!(
                    "every target answers: {}",
                    relays
                        .iter()
                        .map(|r| format!("{} ({})", r.name, Host::of(&r.name, &r.access).address))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Preflight::StatsReadable => format!(
                    "every target's stats answer: {}",
                    relays
                        .iter()
                        .map(|r| format!("{}: {}", r.name, stats_source(r)))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                Preflight::PeersHealthy => {
                    let mut parts = Vec::new();
                    for site in self.sites_of(relays) {
                        let peers: Vec<&Relay> = site
                            .relays
                            .iter()
                            .filter(|r| !relays.iter().any(|t| t.name == r.name))
                            .collect();
                        if peers.is_empty() {
                            parts.push(format!(
                                "{}: every relay is a target; each is checked before it goes out",
                                site.name
                            ));
                        } else {
                            parts.push(format!("{}: {}", site.name, names(&peers)));
                        }
                    }
                    format!(
                        "the relays that stay in service are up, their stats answer, and those with `stun_check` answer a STUN binding from here ({})",
                        parts.join("; ")
                    )
                }
                Preflight::MinHealthy => {
                    let mut parts = Vec::new();
                    for site in self.sites_of(relays) {
                        let advertised: Vec<&Relay> = site
                            .relays
                            .iter()
                            .filter(|r| {
                                entries
                                    .get(&r.name)
                                    .is_none_or(|e| adv::state(e) == State::Advertised)
                            })
                            .collect();
                        // While a target is out, the other advertised relays carry
                        // the calls; a target already out (continued) is not one.
                        let left = relays
                            .iter()
                            .filter(|t| t.site == site.name)
                            .map(|t| advertised.iter().filter(|r| r.name != t.name).count())
                            .min()
                            .unwrap_or(advertised.len());
                        if left < site.min_healthy_relays {
                            let others: Vec<&Relay> = advertised
                                .iter()
                                .copied()
                                .filter(|r| !relays.iter().any(|t| t.name == r.name))
                                .collect();
                            return Err(Refused(format!(
                                "refusing: taking one relay out of site `{}` would leave {left} advertised relay{} ({}), below its minimum of {} (`min_healthy_relays`)\nhelp: put the missing relays back in service first, or lower `min_healthy_relays` in {}",
                                site.name,
                                if left == 1 { "" } else { "s" },
                                if others.is_empty() { "none besides the target".into() } else { names(&others) },
                                site.min_healthy_relays,
                                inv.file
                            )).into());
                        }
                        parts.push(format!(
                            "{} keeps at least {} healthy advertised relay{} while one is out ({} advertised now)",
                            site.name,
                            site.min_healthy_relays,
                            if site.min_healthy_relays == 1 { "" } else { "s" },
                            advertised.len()
                        ));
                    }
                    parts.join("; ")
                }
                Preflight::Advertised => {
                    let mut parts = Vec::new();
                    for r in relays {
                        let Some(e) = entries.get(&r.name) else {
                            parts.push(format!("{}: not checked (advertise backend has no file)", r.name));
                            continue;
                        };
                        let lines = e
                            .iter()
                            .map(|x| (x.line + 1).to_string())
                            .collect::<Vec<_>>()
                            .join(", ");
                        match adv::state(e) {
                            State::Advertised => parts.push(format!("{} (lines {lines})", r.name)),
                            State::Unadvertised if self.req.left_out.contains_key(&r.name) => {
                                let run = &self.req.left_out[&r.name];
                                self.continues.insert(r.name.clone(), run.clone());
                                parts.push(format!("{} (lines {lines}, out since run {run}, which this run continues)", r.name));
                            }
                            State::Unadvertised => return Err(Refused(format!(
                                "refusing: relay `{}` is not in the advertised list now: its entries on lines {lines} of {} are commented out\nhelp: uncomment them if it should be in service, or leave `{}` out of this run",
                                r.name,
                                self.values_label(),
                                r.name
                            )).into()),
                            State::Partial => return Err(Refused(format!(
                                "refusing: relay `{}` is half advertised: some of its entries on lines {lines} of {} are commented out and some are not\nhelp: make them all commented or all uncommented first",
                                r.name,
                                self.values_label()
                            )).into()),
                        }
                    }
                    format!("every target is in the advertised list now: {}", parts.join(", "))
                }
                Preflight::BundleValid => {
                    let (bundle, key) = cert.context("the bundle-valid check needs `--bundle`")?;
                    for f in std::iter::once(bundle).chain(key.iter()) {
                        std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
                    }
                    format!(
                        "{}{}: PEM blocks well-formed, exactly one private key and it matches the leaf, chain in order and each certificate signed by the next, all valid now, the leaf's names cover every target's `turns:` host, and it expires no earlier than the certificate now deployed",
                        bundle.display(),
                        key.as_ref()
                            .map(|k| format!(" with key {}", k.display()))
                            .unwrap_or_default()
                    )
                }
                other => bail!(
                    "playbook {}: preflight check `{}` applies to clusters, not relays",
                    self.pb_file(),
                    other.name()
                ),
            };
            checks.push(Check {
                check: p.name(),
                description,
            });
        }
        Ok(checks)
    }

    fn values_label(&self) -> String {
        match &self.inv.advertise.backend {
            Backend::ValuesFile { file, .. } => file.display().to_string(),
            _ => String::new(),
        }
    }

    fn sites_of(&self, relays: &[&Relay]) -> Vec<&'a crate::inventory::Site> {
        self.inv
            .sites
            .iter()
            .filter(|s| relays.iter().any(|r| r.site == s.name))
            .collect()
    }

    fn relay_vars(&self, r: &Relay) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("node", r.name.clone()),
            ("host", r.access.host.clone()),
            ("site", r.site.clone()),
            ("kind", r.kind.to_string()),
            ("run", self.req.run.clone()),
        ])
    }

    fn relay_step(
        &mut self,
        r: &Relay,
        step: &playbook::Step,
        values: Option<&ValuesFile>,
        entries: Option<&Vec<Entry>>,
        cert: Option<&(PathBuf, Option<PathBuf>)>,
    ) -> anyhow::Result<Vec<Action>> {
        let vars = self.relay_vars(r);
        let host = Host::of(&r.name, &r.access);
        Ok(match &step.kind {
            StepKind::Confirm {
                message,
                show_allocations,
            } => vec![Action::Confirm {
                prompt: message.render(&vars),
                show_allocations: *show_allocations,
            }],
            StepKind::Unadvertise | StepKind::Advertise => {
                let out = matches!(step.kind, StepKind::Unadvertise);
                self.advertise(r, out, values, entries).into_iter().collect()
            }
            StepKind::RelayDrain(on) => {
                let cost = match r.kind.relay_drain() {
                    RelayDrain::Unsupported => bail!(
                        "relay `{}` ({}) has no drain mode opsctl can use\nhelp: set `drain.relay_drain: false` for it in {}",
                        r.name,
                        r.kind,
                        self.inv.file
                    ),
                    RelayDrain::RefusesRefresh => {
                        let c = format!(
                            "{} refuses refreshes while draining: its calls lose their allocation within its lifetime (at most 10 min) and re-allocate on another relay",
                            r.kind
                        );
                        if *on {
                            self.note(format!("{}: {c}", r.name));
                        }
                        Some(c)
                    }
                    RelayDrain::KeepsExisting => None,
                };
                if !matches!(r.stats.source, StatsSource::Turnstats { .. }) {
                    bail!(
                        "relay `{}`: the relay's drain mode is switched through the turnstats status port, but its stats are read via {}",
                        r.name,
                        r.stats.source.via()
                    );
                }
                vec![Action::StatusCommand {
                    on: host,
                    via: stats_source(r),
                    command: if *on { "drain_enable" } else { "drain_disable" }.into(),
                    cost: cost.filter(|_| *on),
                }]
            }
            StepKind::Wait(spec) => self.relay_gate(r, spec)?.into_iter().collect(),
            StepKind::Service(action) => {
                let argv = match action {
                    ServiceAction::Stop => r.service.stop.clone(),
                    ServiceAction::Start => r.service.start.clone(),
                    ServiceAction::Restart => r.service.restart.clone(),
                    ServiceAction::Reload => r.service.reload.clone().with_context(|| {
                        format!(
                            "relay `{}` ({}) cannot load a new certificate without a restart\nhelp: drop `--reload` (the certificate then goes into service by a drained restart), or set `service.reload` for it",
                            r.name, r.kind
                        )
                    })?,
                };
                vec![Action::Run {
                    command: Command::remote(&r.name, &r.access, argv),
                }]
            }
            StepKind::Run { argv, on } => {
                let argv: Vec<String> = argv.iter().map(|t| t.render(&vars)).collect();
                vec![Action::Run {
                    command: match on {
                        RunOn::Local => Command::local(argv, &self.inv.dir),
                        _ => Command::remote(&r.name, &r.access, argv),
                    },
                }]
            }
            StepKind::Reboot => vec![
                Action::Record {
                    name: "boot_id".into(),
                    command: Command::remote(&r.name, &r.access, r.reboot.boot_id.clone()),
                },
                Action::Run {
                    command: Command::remote(&r.name, &r.access, r.reboot.command.clone()),
                },
            ],
            StepKind::UploadCert => self.upload_cert(r, cert)?,
            StepKind::Backup(path) => vec![self.backup(&r.name, &r.access, &path.render(&vars))],
            StepKind::MoveAside(path) => vec![self.move_aside(&r.name, &r.access, &path.render(&vars))],
            StepKind::SetConfig { file, values, unset } => vec![Action::SetConfig {
                on: host,
                path: file.render(&vars),
                set: values.iter().map(|(k, v)| (k.clone(), v.render(&vars))).collect(),
                unset: unset.clone(),
            }],
        })
    }

    fn advertise(
        &mut self,
        r: &Relay,
        out: bool,
        values: Option<&ValuesFile>,
        entries: Option<&Vec<Entry>>,
    ) -> Option<Action> {
        let vars = BTreeMap::from([
            ("node", r.name.clone()),
            ("host", r.access.host.clone()),
            ("site", r.site.clone()),
        ]);
        match &self.inv.advertise.backend {
            Backend::None => None,
            Backend::ValuesFile {
                apply, then, workdir, ..
            } => {
                let (v, e) = (values?, entries?);
                // Each relay is put back before the next goes out, so every
                // edit starts from the file as it is now.
                let taken_out = adv::edit(&v.text, e, true);
                // Put back means every entry listed again, also for a relay an
                // earlier run left out.
                let listed = adv::edit(&v.text, e, false);
                let (old, new) = if out {
                    (v.text.clone(), taken_out)
                } else {
                    (taken_out, listed)
                };
                let mut commands = vec![Command::local(apply.clone(), workdir)];
                commands.extend(then.iter().map(|c| Command::local(c.clone(), workdir)));
                Some(Action::Advertise {
                    out,
                    backend: "values-file",
                    edit: Some(FileEdit {
                        on: Host::here(),
                        path: v.path.display().to_string(),
                        diff: adv::diff(&v.label, &old, &new),
                    }),
                    commands,
                })
            }
            Backend::Command {
                remove,
                restore,
                then,
                workdir,
            } => {
                let argv: Vec<String> = if out { remove } else { restore }
                    .iter()
                    .map(|t| t.render(&vars))
                    .collect();
                let mut commands = vec![Command::local(argv, workdir)];
                commands.extend(then.iter().map(|c| Command::local(c.clone(), workdir)));
                Some(Action::Advertise {
                    out,
                    backend: "command",
                    edit: None,
                    commands,
                })
            }
        }
    }

    fn relay_gate(&mut self, r: &Relay, spec: &GateSpec) -> anyhow::Result<Option<Action>> {
        let (mut poll, mut timeout) = gate_defaults(spec.gate);
        let mut threshold = None;
        let mut on_timeout = "stop".to_owned();
        let (fact, source) = match spec.gate {
            Gate::Drained => {
                poll = r.drain.poll;
                timeout = r.drain.timeout;
                threshold = Some(r.drain.threshold);
                on_timeout = match r.drain.on_timeout {
                    OnTimeout::Stop => format!(
                        "stop: the rollout stops and {} stays out of the advertised list",
                        r.name
                    ),
                    OnTimeout::Readvertise => format!(
                        "readvertise: {} is put back in the advertised list, then the rollout stops",
                        r.name
                    ),
                };
                if self.req.force {
                    on_timeout = format!(
                        "force: ask whether to restart {} with the allocations it still carries (`--yes` answers yes); if not, {on_timeout}",
                        r.name
                    );
                }
                (
                    format!("allocations on {} <= {}", r.name, r.drain.threshold),
                    stats_source(r),
                )
            }
            Gate::ServiceUp => {
                let expect = r
                    .service
                    .status_expect
                    .as_ref()
                    .map(|e| format!(", which must exit 0 and print `{e}`"))
                    .unwrap_or_else(|| ", which must exit 0".into());
                (
                    format!("the relay service on {} is up", r.name),
                    format!(
                        "`{}` on {}{expect}",
                        crate::shell::join(&r.service.status),
                        r.name
                    ),
                )
            }
            Gate::StatsAnswer => (format!("the stats of {} answer", r.name), stats_source(r)),
            Gate::StunBinding => {
                let target = stun_target(r).with_context(|| {
                    format!(
                        "relay `{}` has `stun_check` on but no UDP `turn:` or `stun:` URL to send a binding request to\nhelp: add one to its `urls`, or set `stun_check: false`",
                        r.name
                    )
                })?;
                (
                    format!("a STUN binding request to {target} (udp) gets an answer"),
                    "from here".into(),
                )
            }
            Gate::Unadvertised | Gate::Advertised => {
                let Some(check) = &self.inv.advertise.check else {
                    self.note("no `advertise.check` in the inventory: the advertised list is not confirmed from the clients' side".into());
                    return Ok(None);
                };
                let how = match check {
                    AdvertiseCheck::Url(u) => format!("GET {u}"),
                    AdvertiseCheck::Command(c) => format!("`{}`", crate::shell::join(c)),
                };
                let verb = if spec.gate == Gate::Unadvertised {
                    "lists none of"
                } else {
                    "lists every one of"
                };
                (format!("the list clients receive {verb} {}'s URLs", r.name), how)
            }
            Gate::SshDown => (
                format!("{} stops answering SSH (the old boot is going down)", r.name),
                format!("connecting to {}", Host::of(&r.name, &r.access).address),
            ),
            Gate::NewBoot => {
                timeout = r.reboot.timeout;
                (
                    format!(
                        "{} answers SSH again with a boot id other than the one read before the reboot",
                        r.name
                    ),
                    format!("`{}` on {}", crate::shell::join(&r.reboot.boot_id), r.name),
                )
            }
            Gate::ServedCert => {
                let target = r
                    .urls
                    .iter()
                    .find_map(|u| u.strip_prefix("turns:"))
                    .map(|u| u.split('?').next().unwrap_or(u).to_owned())
                    .with_context(|| {
                        format!(
                            "relay `{}` has no `turns:` URL, so the certificate it serves cannot be checked\nhelp: add its `turns:host:port?transport=tcp` URL to `urls`",
                            r.name
                        )
                    })?;
                (
                    format!("TLS on {target} serves the new leaf certificate (same SHA-256 fingerprint)"),
                    "a TLS handshake from here".into(),
                )
            }
            Gate::MemberHealthy | Gate::ClusterHealthy | Gate::KeysPreserved => bail!(
                "playbook {}: gate `{}` applies to clusters, not relays",
                self.pb_file(),
                spec.gate.name()
            ),
        };
        Ok(Some(gate_action(
            spec.gate,
            fact,
            source,
            threshold,
            (spec.poll.unwrap_or(poll), spec.timeout.unwrap_or(timeout)),
            &on_timeout,
        )))
    }

    fn upload_cert(
        &mut self,
        r: &Relay,
        cert: Option<&(PathBuf, Option<PathBuf>)>,
    ) -> anyhow::Result<Vec<Action>> {
        let (bundle, key) = cert.context("upload-cert needs `--bundle`")?;
        let layout = r.cert.clone().with_context(|| {
            format!(
                "relay `{}` ({}) has no `cert` in {}\nhelp: add `cert: {{cert: PATH, key: PATH}}` (or `bundle: PATH`) to it",
                r.name, r.kind, self.inv.file
            )
        })?;
        let b = bundle.display().to_string();
        let key_from = key
            .as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| b.clone());
        let upload = |content: String, from: Vec<String>, cut: Option<&'static str>, to: &str, mode: &str| {
            Action::Upload {
                on: Host::of(&r.name, &r.access),
                content,
                from,
                cut,
                to: to.to_owned(),
                mode: mode.to_owned(),
                temp: format!("{to}.opsctl-{}.tmp", self.req.run),
                backup: format!("{to}.opsctl-{}", self.req.run),
            }
        };
        Ok(match layout {
            CertLayout::Bundle { path } => {
                let content = match key {
                    Some(_) => format!("certificate chain from {b}, then the private key from {key_from}"),
                    None => format!("certificate chain and private key from {b}"),
                };
                let from = std::iter::once(b.clone())
                    .chain(key.as_ref().map(|_| key_from.clone()))
                    .collect();
                vec![upload(content, from, None, &path, "0600")]
            }
            CertLayout::Split { cert, key: key_path } => {
                // Without `--key` both parts come out of the one bundle file.
                let (chain, private) = if key.is_none() {
                    (Some("chain"), Some("key"))
                } else {
                    (None, None)
                };
                vec![
                    upload(
                        format!("certificate chain from {b}"),
                        vec![b.clone()],
                        chain,
                        &cert,
                        "0644",
                    ),
                    upload(
                        format!("private key from {key_from}"),
                        vec![key_from.clone()],
                        private,
                        &key_path,
                        "0600",
                    ),
                ]
            }
        })
    }

    fn backup(&self, node: &str, a: &Access, path: &str) -> Action {
        Action::Run {
            command: Command::remote(
                node,
                a,
                ["cp", "-a", "--", path, &format!("{path}.opsctl-{}", self.req.run)]
                    .map(String::from)
                    .to_vec(),
            ),
        }
    }

    fn move_aside(&self, node: &str, a: &Access, path: &str) -> Action {
        Action::Run {
            command: Command::remote(
                node,
                a,
                ["mv", "-T", "--", path, &format!("{path}.opsctl-{}", self.req.run)]
                    .map(String::from)
                    .to_vec(),
            ),
        }
    }

    fn cluster(&mut self, flavor: Flavor, phases: &[playbook::Phase]) -> anyhow::Result<Vec<Check>> {
        let inv = self.inv;
        let site_name = self.req.targets.first().context("no site selected")?;
        let site = inv
            .site(site_name)
            .with_context(|| format!("no site `{site_name}`"))?;
        let cluster = site
            .cluster
            .as_ref()
            .with_context(|| format!("site `{}` has no `cluster` in {}", site.name, inv.file))?;
        let order = ClusterOrder::new(cluster)?;
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

    fn cluster_preflight(&self, cluster: &Cluster, order: &ClusterOrder) -> anyhow::Result<Vec<Check>> {
        let first = order.first();
        let mut checks = Vec::new();
        for p in &self.pb.preflight {
            let description = match (p, &cluster.flavor) {
                (Preflight::Reachable, _) => format!(
                    "every member answers: {}",
                    cluster
                        .members
                        .iter()
                        .map(|m| format!("{} ({})", m.name, Host::of(&m.name, &m.access).address))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (Preflight::QuorumLost, InvFlavor::Etcd(e)) => format!(
                    "the cluster has lost quorum: `{} endpoint health --cluster` fails; a healthy cluster is refused",
                    e.etcdctl
                ),
                (Preflight::QuorumLost, InvFlavor::Clearwater(_)) => {
                    "the cluster has lost quorum: `clearwater-etcdctl cluster-health` fails on the masters; a healthy cluster is refused".into()
                }
                (Preflight::SeedLatest, InvFlavor::Etcd(e)) => format!(
                    "no answering member has a higher raft index than the seed `{}` (`{} endpoint status` on each); otherwise refuse and name the member to use as seed",
                    first.name, e.etcdctl
                ),
                (Preflight::KeysCounted, InvFlavor::Etcd(e)) => format!(
                    "count the keys on the seed `{}` with a serializable read (`{} get \"\" --prefix --keys-only --consistency=s`), to compare at the end",
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
            checks.push(Check {
                check: p.name(),
                description,
            });
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
                show_allocations: false,
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
            StepKind::SetConfig { file, values, unset } => vec![Action::SetConfig {
                on: Host::of(&m.name, &m.access),
                path: file.render(vars),
                set: values.iter().map(|(k, v)| (k.clone(), v.render(vars))).collect(),
                unset: unset.clone(),
            }],
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
        let (fact, source) = match (&cluster.flavor, &m.role, spec.gate) {
            (InvFlavor::Etcd(e), MemberRole::Etcd { client_url, .. }, Gate::MemberHealthy) => (
                format!("etcd member {} is healthy", m.name),
                format!(
                    "`{} --endpoints={client_url} endpoint health` on {}",
                    e.etcdctl, m.name
                ),
            ),
            (InvFlavor::Etcd(e), _, Gate::ClusterHealthy) => (
                format!("every member of {}'s etcd cluster is healthy", cluster.site),
                format!(
                    "`{} --endpoints={} endpoint health` on {}",
                    e.etcdctl,
                    order.endpoints(),
                    first.name
                ),
            ),
            (InvFlavor::Etcd(e), _, Gate::KeysPreserved) => (
                "the key count is at least the count read before any change".into(),
                format!("`{} get \"\" --prefix --keys-only` on {}", e.etcdctl, first.name),
            ),
            (InvFlavor::Clearwater(_), MemberRole::Clearwater { management_ip, .. }, Gate::MemberHealthy) => {
                (
                    format!(
                        "{} ({management_ip}) reaches the cluster through its etcd proxy",
                        m.name
                    ),
                    format!("`clearwater-etcdctl cluster-health` on {}", m.name),
                )
            }
            (InvFlavor::Clearwater(_), _, Gate::ClusterHealthy) => (
                format!("every master of {}'s etcd cluster is healthy", cluster.site),
                format!("`clearwater-etcdctl cluster-health` on {}", first.name),
            ),
            (f, _, g) => bail!(
                "playbook {}: gate `{}` does not apply to a `{}` cluster",
                self.pb_file(),
                g.name(),
                f.name()
            ),
        };
        Ok(gate_action(
            spec.gate,
            fact,
            source,
            None,
            (spec.poll.unwrap_or(poll), spec.timeout.unwrap_or(timeout)),
            "stop",
        ))
    }
}

fn service_argv(s: &Service, a: ServiceAction) -> Option<Vec<String>> {
    match a {
        ServiceAction::Stop => Some(s.stop.clone()),
        ServiceAction::Start => Some(s.start.clone()),
        ServiceAction::Restart => Some(s.restart.clone()),
        ServiceAction::Reload => s.reload.clone(),
    }
}

/// What a step does, in a few words, for progress lines and the plan.
fn title(node: &str, kind: &StepKind, action: &Action, i: usize) -> String {
    match (kind, action) {
        (StepKind::Service(a), _) => format!(
            "{} the service",
            match a {
                ServiceAction::Stop => "stop",
                ServiceAction::Start => "start",
                ServiceAction::Restart => "restart",
                ServiceAction::Reload => "reload",
            }
        ),
        (StepKind::Reboot, _) if i == 0 => "read the boot id".into(),
        (StepKind::Reboot, _) => "reboot".into(),
        (StepKind::Backup(_), Action::Run { command }) => format!(
            "back up {}",
            command.argv.iter().rev().nth(1).map(String::as_str).unwrap_or("")
        ),
        (StepKind::MoveAside(_), Action::Run { command }) => format!(
            "move {} aside",
            command.argv.iter().rev().nth(1).map(String::as_str).unwrap_or("")
        ),
        (_, Action::Run { .. }) => "run".into(),
        (_, Action::Record { name, .. }) => format!("read {name}"),
        (_, Action::Gate { gate, .. }) => format!("wait: {gate}"),
        (_, Action::Advertise { out: true, .. }) => format!("take {node} out of the advertised list"),
        (_, Action::Advertise { out: false, .. }) => format!("put {node} back in the advertised list"),
        (_, Action::StatusCommand { command, .. }) => {
            if command == "drain_enable" {
                "switch the relay's drain mode on".into()
            } else {
                "switch the relay's drain mode off".into()
            }
        }
        (_, Action::Upload { content, .. }) => {
            format!("upload the {}", content.split(" from ").next().unwrap_or("file"))
        }
        (_, Action::SetConfig { path, .. }) => format!("edit {path}"),
        (_, Action::Confirm { .. }) => "confirm".into(),
    }
}

fn step_name(k: &StepKind) -> &'static str {
    match k {
        StepKind::Confirm { .. } => "confirm",
        StepKind::Unadvertise => "unadvertise",
        StepKind::Advertise => "advertise",
        StepKind::RelayDrain(_) => "relay-drain",
        StepKind::Wait(_) => "wait",
        StepKind::Service(_) => "service",
        StepKind::Run { .. } => "run",
        StepKind::Reboot => "reboot",
        StepKind::UploadCert => "upload-cert",
        StepKind::Backup(_) => "backup",
        StepKind::MoveAside(_) => "move-aside",
        StepKind::SetConfig { .. } => "set-config",
    }
}

/// A UDP STUN/TURN address of the relay: `turn:host:port` without `transport=tcp`.
pub fn stun_target(r: &Relay) -> Option<String> {
    r.urls.iter().find_map(|u| {
        let rest = u.strip_prefix("turn:").or_else(|| u.strip_prefix("stun:"))?;
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        if query == "transport=tcp" {
            return None;
        }
        let has_port = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
        Some(if has_port {
            hostport.to_owned()
        } else {
            format!("{hostport}:3478")
        })
    })
}

/// The order cluster members are worked in: the first (seed or first vellum
/// master), the rest, and for clearwater, masters and non-masters.
struct ClusterOrder<'a> {
    all: Vec<&'a Member>,
    first: &'a Member,
    masters: Vec<&'a Member>,
}

impl<'a> ClusterOrder<'a> {
    fn new(c: &'a Cluster) -> anyhow::Result<Self> {
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
            all: c.members.iter().collect(),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory;

    fn inv(text: &str) -> Inventory {
        inventory::parse(text, Path::new("inv.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn plan(inv: &Inventory, procedure: Procedure, targets: &[&str]) -> anyhow::Result<Plan> {
        build(
            inv,
            &Request {
                procedure,
                targets: targets.iter().map(|s| (*s).to_owned()).collect(),
                run: "t".into(),
                left_out: BTreeMap::new(),
                force: false,
            },
        )
    }

    fn gates(p: &Plan, node: &str) -> Vec<&'static str> {
        p.steps()
            .filter(|s| s.node == node)
            .filter_map(|s| match s.action {
                Action::Gate { gate, .. } => Some(gate),
                _ => None,
            })
            .collect()
    }

    const RELAYS: &str = r#"
defaults: {relay: {kind: relayd}}
sites:
  - name: a
    relays:
      - {name: r1, host: 10.0.0.1, urls: ['turn:t1.example.com:3478'], stun_check: true, drain: {relay_drain: true}}
      - {name: r2, host: 10.0.0.2, urls: ['turn:t2.example.com?transport=tcp']}
      - {name: r3, host: 10.0.0.3, kind: coturn, stats: {via: coturn-cli, password_env: P}, drain: {relay_drain: true}}
"#;

    #[test]
    fn conditional_steps_follow_each_node() {
        let i = inv(RELAYS);
        let p = plan(&i, Procedure::RestartNoDowntime, &["r1", "r2"]).unwrap();
        assert_eq!(
            gates(&p, "r1"),
            ["drained", "service-up", "stats-answer", "stun-binding"]
        );
        assert_eq!(gates(&p, "r2"), ["drained", "service-up", "stats-answer"]);
        let drains: Vec<(&str, &str)> = p
            .steps()
            .filter_map(|s| match &s.action {
                Action::StatusCommand { command, .. } => Some((s.node.as_str(), command.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(drains, [("r1", "drain_enable"), ("r1", "drain_disable")]);
        // No advertise backend: nothing to take out, and the plan says what that means.
        assert!(p.notes.iter().any(|n| n.contains("advertise backend is `none`")));
        let numbers: Vec<usize> = p.steps().map(|s| s.number).collect();
        assert_eq!(numbers, (1..=numbers.len()).collect::<Vec<_>>());
    }

    #[test]
    fn a_relay_drain_the_relay_cannot_do_is_refused() {
        let i = inv(RELAYS);
        let e = plan(&i, Procedure::RestartNoDowntime, &["r3"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("relay `r3` (coturn) has no drain mode opsctl can use"),
            "{e}"
        );
    }

    #[test]
    fn the_minimum_is_a_refusal_not_a_usage_error() {
        let i = inv(&RELAYS.replace(
            "sites:\n  - name: a\n",
            "sites:\n  - name: a\n    defaults: {min_healthy_relays: 3}\n",
        ));
        let e = plan(&i, Procedure::RestartNoDowntime, &["r1"]).unwrap_err();
        assert!(e.is::<Refused>(), "{e}");
        // Restarting at once takes nothing out of the list, so no minimum applies.
        assert!(plan(&i, Procedure::Restart, &["r1"]).is_ok());
    }

    #[test]
    fn etcd_members_rejoin_with_a_growing_initial_cluster() {
        let i = inv(
            "sites:\n  - name: s\n    cluster:\n      flavor: etcd\n      seed: e2\n      members:\n\
             \x20       - {name: e1, host: 10.0.0.1}\n        - {name: e2, host: 10.0.0.2}\n        - {name: e3, host: 10.0.0.3}\n",
        );
        let p = plan(&i, Procedure::RecoverQuorum, &["s"]).unwrap();
        let clusters: Vec<(String, String)> = p
            .steps()
            .filter_map(|s| match &s.action {
                Action::SetConfig { set, .. } => set
                    .iter()
                    .find(|(k, _)| k == "ETCD_INITIAL_CLUSTER")
                    .map(|(_, v)| (s.node.clone(), v.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            clusters,
            [
                ("e2".into(), "e2=http://10.0.0.2:2380".into()),
                (
                    "e1".into(),
                    "e2=http://10.0.0.2:2380,e1=http://10.0.0.1:2380".into()
                ),
                (
                    "e3".into(),
                    "e2=http://10.0.0.2:2380,e1=http://10.0.0.1:2380,e3=http://10.0.0.3:2380".into()
                ),
            ]
        );
        // `member add` for a rejoining member runs on the seed.
        let adds: Vec<(&str, &str)> = p
            .steps()
            .filter_map(|s| match &s.action {
                Action::Run { command } if command.argv.contains(&"add".to_owned()) => {
                    Some((s.node.as_str(), command.on.node.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(adds, [("e1", "e2"), ("e3", "e2")]);
    }
}

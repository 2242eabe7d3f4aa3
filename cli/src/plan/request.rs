//! What the operator asked for, and the playbook expanded for it: the
//! builder the relay, safety and cluster parts add their steps to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::*;
use crate::advertise::ValuesFile;
use crate::inventory::{Backend, Flavor as InvFlavor, Inventory, Relay, Service};
use crate::playbook::{self, Body, Condition, Playbook, ServiceAction, StepKind, Targets};

/// What the operator asked for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Procedure {
    RestartNoDowntime,
    Restart,
    RebootNode {
        /// Wait for the calls to drain first (unless `--no-drain`).
        drain: bool,
    },
    RenewCert {
        bundle: PathBuf,
        key: Option<PathBuf>,
        /// `--restart`: the drained restart for every relay, also those that reload.
        restart: bool,
        /// `--ca`: roots clients trust besides the system's.
        ca: Vec<PathBuf>,
        /// `--allow-earlier-expiry`.
        allow_earlier: bool,
        /// What each target serves now, read from here before planning.
        served: BTreeMap<String, Result<crate::cert::ServedNow, String>>,
    },
    RecoverQuorum(Quorum),
}

/// What a cluster rebuild is planned from besides the inventory: the
/// operator's choices and what was read from the members just before. A
/// plan keeps it, so a run continued later is compared with a plan made
/// from the same readings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quorum {
    /// Members whose host does not answer SSH, with why: the rebuilt
    /// cluster is formed without them.
    pub unreachable: BTreeMap<String, String>,
    /// Clearwater, `--lost`: the nodes the operator says are lost for good;
    /// every node that does not answer must be one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<String>,
    /// Clearwater, `--shared-config-from`: the master whose shared
    /// configuration the other masters get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_from: Option<String>,
    /// etcd: the version the seed's etcd reports (`endpoint status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_version: Option<String>,
    /// Why it could not be read, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_version_unread: Option<String>,
}

/// A procedure, its targets (already resolved to inventory names) and the
/// run id: with the inventory, all a plan is made from. A plan keeps it, so
/// a run resumed later is compared with a plan made again from it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// rtpengine targets of a no-downtime restart: whether their peers
    /// hold their calls, read just before planning (the path each takes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handover: BTreeMap<String, crate::rtpengine::Handover>,
    /// The reports read to tell that (the commands run to make the plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handover_reads: Vec<crate::rtpengine::Report>,
    /// coturn targets whose own drain mode is asked for: the version each
    /// runs, read just before planning (only 4.6.3 and later have one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, VersionRead>,
}

/// A relay's version as the running process reports it, with the command
/// that read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionRead {
    pub command: Command,
    /// What it printed (trimmed), or why it could not be read.
    pub read: Result<String, String>,
}

impl Procedure {
    fn playbook(&self, inv: &Inventory, targets: &[String]) -> anyhow::Result<&'static str> {
        Ok(match self {
            Procedure::RestartNoDowntime => "restart-no-downtime",
            Procedure::Restart => "restart",
            Procedure::RebootNode { .. } => "reboot-node",
            Procedure::RenewCert { .. } => "renew-cert",
            Procedure::RecoverQuorum { .. } => {
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
        next_steps: Vec::new(),
        refused: BTreeMap::new(),
        exit_drains: Vec::new(),
    };
    let preflight = match (&pb.targets, &pb.body) {
        (Targets::Relays, Body::PerRelay(steps)) => b.relays(steps)?,
        (Targets::Cluster(f), Body::Phases(phases)) => b.cluster(*f, phases)?,
        _ => bail!(
            "playbook `{}` ({}) does not match the procedure: expected `targets: {}`",
            pb.name,
            pb.origin,
            if matches!(req.procedure, Procedure::RecoverQuorum { .. }) {
                "cluster"
            } else {
                "relays"
            }
        ),
    };
    let nodes = b.nodes();
    let locks = b.locks();
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
        nodes,
        continues: b.continues,
        next_steps: b.next_steps,
        locks,
        request: Some(req.clone()),
    })
}

pub(super) struct Builder<'a> {
    pub(super) inv: &'a Inventory,
    pub(super) req: &'a Request,
    pub(super) pb: &'a Playbook,
    pub(super) sections: Vec<Section>,
    pub(super) notes: Vec<String>,
    pub(super) number: usize,
    pub(super) continues: BTreeMap<String, String>,
    pub(super) next_steps: Vec<String>,
    /// The step that refused new calls on a node, until one allows them again.
    pub(super) refused: BTreeMap<String, usize>,
    /// Relays whose own drain, once started, ends only with the process
    /// (coturn's): their drain gates take the exit as drained.
    pub(super) exit_drains: Vec<String>,
}

impl<'a> Builder<'a> {
    /// How every node the plan may touch is reached: the relays of the
    /// targets' sites (peers are read too) and cluster members.
    fn nodes(&self) -> BTreeMap<String, Access> {
        let mut out = BTreeMap::new();
        for site in &self.inv.sites {
            let relays_used = site.relays.iter().any(|r| self.req.targets.contains(&r.name));
            if relays_used {
                for r in &site.relays {
                    out.insert(r.name.clone(), r.access.clone());
                }
            }
            // The site's etcd members hold its lock (see `locks`).
            if (self.etcd_lock_members(site).is_some() || self.req.targets.contains(&site.name))
                && let Some(c) = &site.cluster
            {
                for m in &c.members {
                    out.insert(m.name.clone(), m.access.clone());
                }
            }
        }
        out
    }

    /// The sites the run works on, each locked on its nodes: a relay
    /// procedure on the site's relays, a rebuild on the members taking part
    /// (never through the cluster it repairs).
    fn locks(&self) -> Vec<crate::lock::SiteLock> {
        let in_plan = |name: &str| {
            self.sections
                .iter()
                .any(|s| s.steps.iter().any(|st| st.node == name))
        };
        let mut out = Vec::new();
        for site in &self.inv.sites {
            let nodes: Vec<(&str, &Access)> = if matches!(self.req.procedure, Procedure::RecoverQuorum(_)) {
                match &site.cluster {
                    Some(c) if self.req.targets.contains(&site.name) => c
                        .members
                        .iter()
                        .filter(|m| in_plan(&m.name))
                        .map(|m| (m.name.as_str(), &m.access))
                        .collect(),
                    _ => Vec::new(),
                }
            } else if site.relays.iter().any(|r| self.req.targets.contains(&r.name)) {
                site.relays.iter().map(|r| (r.name.as_str(), &r.access)).collect()
            } else {
                Vec::new()
            };
            // A relay procedure on a site with an etcd cluster locks there:
            // a lease that dies with its holder. (A rebuild never locks
            // through the cluster it repairs.)
            if let Some(members) = self.etcd_lock_members(site) {
                out.push(crate::lock::SiteLock::etcd(
                    &site.name,
                    &self.req.run,
                    self.inv.lock_lease,
                    &members,
                ));
            } else if !nodes.is_empty() {
                out.push(crate::lock::SiteLock::new(
                    &site.name,
                    &self.inv.lock_dir,
                    &self.req.run,
                    &nodes,
                ));
            }
        }
        out
    }

    /// The members through which a relay procedure locks `site` in its etcd
    /// cluster (name, access, etcdctl, client URL), when it does: the run
    /// works on the site's relays, the site has a plain etcd cluster, and
    /// the inventory does not say `lock: {backend: nodes}`. A rebuild never
    /// locks through the cluster it repairs.
    fn etcd_lock_members<'s>(
        &self,
        site: &'s crate::inventory::Site,
    ) -> Option<Vec<(&'s str, &'s Access, &'s str, &'s str)>> {
        if !self.inv.lock_etcd
            || matches!(self.req.procedure, Procedure::RecoverQuorum(_))
            || !site.relays.iter().any(|r| self.req.targets.contains(&r.name))
        {
            return None;
        }
        let c = site.cluster.as_ref()?;
        let InvFlavor::Etcd(e) = &c.flavor else {
            return None;
        };
        let members: Vec<_> = c
            .members
            .iter()
            .filter_map(|m| match &m.role {
                crate::inventory::MemberRole::Etcd { client_url, .. } => Some((
                    m.name.as_str(),
                    &m.access,
                    e.etcdctl.as_str(),
                    client_url.as_str(),
                )),
                _ => None,
            })
            .collect();
        (!members.is_empty()).then_some(members)
    }

    pub(super) fn push(
        &mut self,
        section: &mut Section,
        node: &str,
        step: &playbook::Step,
        actions: Vec<Action>,
    ) {
        // A reboot's boot id, read just before it: what tells a resumed run
        // that the reboot happened.
        let mut boot_id = None;
        for (i, action) in actions.into_iter().enumerate() {
            self.number += 1;
            let done_if = match (&step.kind, &action) {
                (StepKind::Reboot, Action::Run { .. }) => boot_id.take(),
                _ => None,
            };
            let undoes = match step.kind {
                StepKind::NewSessions { refuse: true } => {
                    // Allowing them again undoes the first refusal.
                    self.refused.entry(node.to_owned()).or_insert(self.number);
                    None
                }
                StepKind::NewSessions { refuse: false } => self.refused.remove(node),
                _ => None,
            };
            if let (StepKind::Reboot, Action::Record { name, command }) = (&step.kind, &action) {
                boot_id = Some(DoneIf::NewBoot {
                    command: command.clone(),
                    record: name.clone(),
                });
            }
            section.steps.push(Step {
                number: self.number,
                node: node.to_owned(),
                title: step
                    .title
                    .clone()
                    .unwrap_or_else(|| title(node, &step.kind, &action, i)),
                source: format!("{}:{}", self.pb_file(), step.line),
                takes_out: takes_out_of_service(&step.kind),
                done_if,
                undoes,
                action,
            });
        }
    }

    pub(super) fn pb_file(&self) -> String {
        if self.pb.origin == "built-in" {
            format!("playbooks/{}.yaml", self.pb.name)
        } else {
            self.pb.origin.clone()
        }
    }

    pub(super) fn note(&mut self, n: String) {
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
        let cert = self.cert_plan(&relays)?;
        let preflight = self.relay_preflight(&relays, &entries, cert.as_ref())?;
        let drain = !matches!(self.req.procedure, Procedure::RebootNode { drain: false });
        for r in &relays {
            let handover = matches!(
                self.req.handover.get(&r.name),
                Some(crate::rtpengine::Handover::Held { .. })
            );
            self.handover_note(r);
            let mut section = Section {
                title: format!(
                    "{} ({}, {}, {})",
                    r.name,
                    r.site,
                    r.kind,
                    Host::of(&r.name, &r.access).address
                ),
                steps: Vec::new(),
                rollback: None,
            };
            let restarts = cert.as_ref().is_none_or(|c| c.restarts(r));
            let mut checked = false;
            for step in steps {
                let applies = step.when.iter().all(|c| match c {
                    Condition::RelayDrain => r.drain.relay_drain,
                    Condition::StunCheck => r.stun_check,
                    Condition::Reload => !restarts,
                    Condition::Restart => restarts,
                    Condition::Drain => drain && !handover,
                    Condition::NoDrain => !drain,
                    Condition::Rtpengine => r.kind == relay::Kind::Rtpengine,
                    Condition::Handover => handover,
                    Condition::NgCheck => r.rtpengine.as_ref().is_some_and(|e| e.ng.is_some()),
                });
                if applies && !checked && takes_out_of_service(&step.kind) {
                    checked = true;
                    let safety = self.safety(r)?;
                    self.number += 1;
                    section.steps.push(Step {
                        number: self.number,
                        node: r.name.clone(),
                        title: format!("check the relays staying in service before {} goes out", r.name),
                        source: format!("before {}:{}", self.pb_file(), step.line),
                        takes_out: false,
                        done_if: None,
                        undoes: None,
                        action: Action::Safety { safety },
                    });
                }
                if applies {
                    let actions =
                        self.relay_step(r, step, values.as_ref(), entries.get(&r.name), cert.as_ref())?;
                    self.push(&mut section, &r.name, step, actions);
                }
            }
            if let Some(cp) = &cert {
                section.rollback = self.rollback(r, &section, cp);
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

    pub(super) fn values_label(&self) -> String {
        match &self.inv.advertise.backend {
            Backend::ValuesFile { file, .. } => file.display().to_string(),
            _ => String::new(),
        }
    }

    pub(super) fn sites_of(&self, relays: &[&Relay]) -> Vec<&'a crate::inventory::Site> {
        self.inv
            .sites
            .iter()
            .filter(|s| relays.iter().any(|r| r.site == s.name))
            .collect()
    }

    pub(super) fn relay_vars(&self, r: &Relay) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("node", r.name.clone()),
            ("host", r.access.host.clone()),
            ("site", r.site.clone()),
            ("kind", r.kind.to_string()),
            ("run", self.req.run.clone()),
        ])
    }
}

/// Steps after which the relay carries no new calls, or none at all.
fn takes_out_of_service(k: &StepKind) -> bool {
    match k {
        StepKind::Unadvertise
        | StepKind::RelayDrain(true)
        | StepKind::NewSessions { refuse: true }
        | StepKind::Reboot
        | StepKind::Service(ServiceAction::Stop | ServiceAction::Restart) => true,
        StepKind::Confirm { .. }
        | StepKind::Advertise
        | StepKind::RelayDrain(false)
        | StepKind::NewSessions { refuse: false }
        | StepKind::RecordCalls
        | StepKind::Wait(_)
        | StepKind::Service(ServiceAction::Start | ServiceAction::Reload)
        | StepKind::Run { .. }
        | StepKind::UploadCert
        | StepKind::ReadServed
        | StepKind::Backup(_)
        | StepKind::MoveAside(_)
        | StepKind::SetConfig { .. }
        | StepKind::DatastoreConfig(_)
        | StepKind::CopySharedConfig => false,
    }
}

pub(super) fn service_argv(s: &Service, a: ServiceAction) -> Option<Vec<String>> {
    match a {
        ServiceAction::Stop => Some(s.stop.clone()),
        ServiceAction::Start => Some(s.start.clone()),
        ServiceAction::Restart => Some(s.restart.clone()),
        ServiceAction::Reload => s.reload.clone(),
    }
}

/// What a step does, in a few words, for progress lines and the plan.
pub(super) fn title(node: &str, kind: &StepKind, action: &Action, i: usize) -> String {
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
        (StepKind::NewSessions { refuse: true }, _) => "refuse new calls (maxsessions 0)".into(),
        (StepKind::NewSessions { refuse: false }, _) => "allow new calls again (the limit it had)".into(),
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
        (_, Action::RecordCalls { .. }) => {
            "keep the ids of the calls it owns, and of those carrying media".into()
        }
        (_, Action::Gate { gate, .. }) => format!("wait: {}", gate.name()),
        (_, Action::Safety { safety }) => format!(
            "check the relays staying in service before {} goes out",
            safety.out
        ),
        (_, Action::Advertise { out: true, .. }) => format!("take {node} out of the advertised list"),
        (_, Action::Advertise { out: false, .. }) => format!("put {node} back in the advertised list"),
        (_, Action::DrainToExit { .. }) => {
            "switch the relay's drain mode on (it ends with the process)".into()
        }
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
        (_, Action::DatastoreConfig { path, .. }) => {
            format!("check {path}, rewrite it only if missing or invalid")
        }
        (_, Action::CopyFile { path, source, .. }) => format!("copy {path} from {source}"),
        (_, Action::Confirm { .. }) => "confirm".into(),
        (_, Action::ReadServed { .. }) => "read the certificate it serves now".into(),
        (_, Action::Restore { path, .. }) => format!("put the backup of {path} back"),
    }
}

pub(super) fn step_name(k: &StepKind) -> &'static str {
    match k {
        StepKind::Confirm { .. } => "confirm",
        StepKind::Unadvertise => "unadvertise",
        StepKind::Advertise => "advertise",
        StepKind::RelayDrain(_) => "relay-drain",
        StepKind::NewSessions { .. } => "new-sessions",
        StepKind::RecordCalls => "record-calls",
        StepKind::Wait(_) => "wait",
        StepKind::Service(_) => "service",
        StepKind::Run { .. } => "run",
        StepKind::Reboot => "reboot",
        StepKind::UploadCert => "upload-cert",
        StepKind::ReadServed => "read-served",
        StepKind::Backup(_) => "backup",
        StepKind::MoveAside(_) => "move-aside",
        StepKind::SetConfig { .. } => "set-config",
        StepKind::DatastoreConfig(_) => "datastore-config",
        StepKind::CopySharedConfig => "copy-shared-config",
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
        build(inv, &request(procedure, targets))
    }

    fn request(procedure: Procedure, targets: &[&str]) -> Request {
        Request {
            procedure,
            targets: targets.iter().map(|s| (*s).to_owned()).collect(),
            run: "t".into(),
            left_out: BTreeMap::new(),
            force: false,
            handover: BTreeMap::new(),
            handover_reads: Vec::new(),
            versions: BTreeMap::new(),
        }
    }

    /// A no-downtime restart of r3 (coturn, `relay_drain` on) whose running
    /// coturn was read as `version`.
    fn coturn_restart(i: &Inventory, version: Result<&str, &str>) -> anyhow::Result<Plan> {
        let mut req = request(Procedure::RestartNoDowntime, &["r3"]);
        let r3 = i.relays().find(|r| r.name == "r3").unwrap();
        req.versions.insert(
            "r3".into(),
            VersionRead {
                command: Command::remote("r3", &r3.access, r3.service.version.clone().unwrap()),
                read: version.map(str::to_owned).map_err(str::to_owned),
            },
        );
        build(i, &req)
    }

    fn gates(p: &Plan, node: &str) -> Vec<&'static str> {
        p.steps()
            .filter(|s| s.node == node)
            .filter_map(|s| match &s.action {
                Action::Gate { gate, .. } => Some(gate.name()),
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

    /// The plan is data: what a run stores in its journal reads back as the
    /// very same plan.
    #[test]
    fn a_plan_reads_back_as_it_was_written() {
        let i = inv(RELAYS);
        let p = plan(&i, Procedure::RestartNoDowntime, &["r1", "r2"]).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        let back: Plan = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        assert_eq!(back.commands().len(), p.commands().len());
        assert!(p.commands().len() > 10);
    }

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
        let i = inv(&RELAYS.replace("kind: relayd", "kind: rtpengine"));
        let e = plan(&i, Procedure::RestartNoDowntime, &["r1"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("relay `r1` (rtpengine) has no drain mode opsctl can use"),
            "{e}"
        );
    }

    #[test]
    fn coturn_s_drain_is_refused_unless_the_running_coturn_has_one() {
        let i = inv(RELAYS);
        let refused_with = |e: anyhow::Error, help: &str| {
            assert!(crate::error::is(&e, crate::error::Kind::Refused), "{e}");
            let text = e.to_string();
            assert!(text.contains(&format!("nothing was run\nhelp: {help}")), "{text}");
            text
        };
        // An older coturn is to be upgraded; one whose version is unknown may be down.
        let refused = |e| {
            refused_with(
                e,
                "upgrade coturn on r3 to 4.6.3 or later, or set `drain.relay_drain: false` for it in",
            )
        };
        let unknown = |e| {
            refused_with(
                e,
                "start coturn on r3 if it is down (the version is read from the running process), upgrade it to 4.6.3 or later if it is older, or set `drain.relay_drain: false` for it in",
            )
        };
        let old = refused(coturn_restart(&i, Ok("4.6.1")).unwrap_err());
        assert!(
            old.starts_with("relay `r3` runs coturn 4.6.1, which has no drain mode: coturn's came in 4.6.3 (and SIGUSR1 would end coturn 4.6.1 at once"),
            "{old}"
        );
        let down = unknown(coturn_restart(&i, Err("exit status 3: coturn is not running")).unwrap_err());
        assert!(
            down.starts_with("relay `r3` (coturn): cannot tell whether the coturn running there has a drain mode: its version could not be read (exit status 3: coturn is not running)"),
            "{down}"
        );
        let unread = unknown(plan(&i, Procedure::RestartNoDowntime, &["r3"]).unwrap_err());
        assert!(unread.contains("which coturn it runs was not read"), "{unread}");
        unknown(coturn_restart(&i, Ok("devel")).unwrap_err());
    }

    #[test]
    fn coturn_s_drain_is_sent_once_and_its_end_is_the_exit() {
        // `on_timeout: readvertise` cannot apply: nothing ends the drain but the exit.
        let i = inv(&RELAYS.replace(
            "password_env: P}, drain: {relay_drain: true}",
            "password_env: P}, drain: {relay_drain: true, on_timeout: readvertise}",
        ));
        let p = coturn_restart(&i, Ok("4.6.3")).unwrap();
        let drains: Vec<(&str, &Action)> = p
            .steps()
            .filter(|s| {
                matches!(
                    s.action,
                    Action::DrainToExit { .. } | Action::StatusCommand { .. }
                )
            })
            .map(|s| (s.node.as_str(), &s.action))
            .collect();
        assert_eq!(drains.len(), 1, "{drains:?}");
        let Action::DrainToExit {
            command,
            version,
            ended_by,
        } = drains[0].1
        else {
            panic!("{drains:?}")
        };
        assert_eq!(command.argv, ["systemctl", "kill", "--signal=SIGUSR1", "coturn"]);
        assert_eq!(version, "4.6.3");
        let restart = p
            .steps()
            .find_map(|s| match &s.action {
                Action::Run { command } if command.argv.ends_with(&["restart".into(), "coturn".into()]) => {
                    Some(command)
                }
                _ => None,
            })
            .unwrap();
        assert!(ended_by.contains(restart));
        let gate = p
            .steps()
            .find_map(|s| match &s.action {
                Action::Gate {
                    gate: Gate::Drained { exits, .. },
                    fact,
                    on_timeout,
                    ..
                } => Some((exits.is_some(), fact.as_str(), *on_timeout)),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            gate,
            (
                true,
                "allocations on r3 <= 0, or coturn has exited (the end of its drain)",
                OnTimeout::Stop
            )
        );
        // What read the version is a command the plan shows.
        assert!(p.commands().iter().any(
            |c| c.argv.first().is_some_and(|a| a == "sh") && c.argv.iter().any(|a| a.contains("MainPID"))
        ));
        assert!(
            p.notes.iter().any(|n| n.contains("cannot be switched off")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn the_minimum_is_a_refusal_not_a_usage_error() {
        let i = inv(&RELAYS.replace(
            "sites:\n  - name: a\n",
            "sites:\n  - name: a\n    defaults: {min_healthy_relays: 3}\n",
        ));
        let e = plan(&i, Procedure::RestartNoDowntime, &["r1"]).unwrap_err();
        assert!(crate::error::is(&e, crate::error::Kind::Refused), "{e}");
        // Restarting at once takes nothing out of the list, so no minimum applies.
        assert!(plan(&i, Procedure::Restart, &["r1"]).is_ok());
    }

    #[test]
    fn etcd_members_rejoin_with_a_growing_initial_cluster() {
        let i = inv(
            "sites:\n  - name: s\n    cluster:\n      flavor: etcd\n      seed: e2\n      members:\n\
             \x20       - {name: e1, host: 10.0.0.1}\n        - {name: e2, host: 10.0.0.2}\n        - {name: e3, host: 10.0.0.3}\n",
        );
        let p = plan(
            &i,
            Procedure::RecoverQuorum(Quorum {
                seed_version: Some("3.4.23".into()),
                ..Quorum::default()
            }),
            &["s"],
        )
        .unwrap();
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
        // `member add` for a rejoining member runs on the seed, for that member's peer URL.
        let adds: Vec<(&str, &str, &str)> = p
            .steps()
            .filter_map(|s| match &s.action {
                Action::Gate {
                    gate: Gate::MemberAdded { add, peer_url, .. },
                    ..
                } => Some((s.node.as_str(), add.on.node.as_str(), peer_url.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            adds,
            [
                ("e1", "e2", "http://10.0.0.1:2380"),
                ("e3", "e2", "http://10.0.0.3:2380")
            ]
        );
    }
}

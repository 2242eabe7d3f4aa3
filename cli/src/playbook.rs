//! Playbooks: the procedures as typed data.
//!
//! A playbook names what it operates on (`targets: relays`, or `targets:
//! cluster` with a flavor), the safety checks that run before anything changes
//! (`preflight`), and its steps, each one of a fixed set of kinds. Relay
//! playbooks list `steps` that run for each selected relay in turn; cluster
//! playbooks list `phases`, each naming the members it runs on.
//!
//! The built-in playbooks (playbooks/*.yaml) are compiled in; a directory named
//! by the inventory's `playbooks:` may replace any of them by file name.

use std::path::Path;
use std::time::Duration;

use crate::reader::{At, Diags, InputError, MapReader};
use crate::template::Template;
use crate::yaml::{self, Value};

/// The built-in playbooks, by name.
pub const BUILT_IN: [(&str, &str); 6] = [
    (
        "restart-no-downtime",
        include_str!("../../playbooks/restart-no-downtime.yaml"),
    ),
    ("restart", include_str!("../../playbooks/restart.yaml")),
    ("reboot-node", include_str!("../../playbooks/reboot-node.yaml")),
    ("renew-cert", include_str!("../../playbooks/renew-cert.yaml")),
    (
        "recover-quorum-clearwater",
        include_str!("../../playbooks/recover-quorum-clearwater.yaml"),
    ),
    (
        "recover-quorum-etcd",
        include_str!("../../playbooks/recover-quorum-etcd.yaml"),
    ),
];

#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub description: String,
    /// `built-in` or the override file's path.
    pub origin: String,
    pub targets: Targets,
    pub preflight: Vec<Preflight>,
    pub body: Body,
    /// What is left to the operator once the procedure has run, printed at
    /// the end of a run and of `--dry-run`.
    pub next_steps: Vec<Template>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    Relays,
    Cluster(Flavor),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Clearwater,
    Etcd,
}

#[derive(Debug, Clone)]
pub enum Body {
    /// Run for each selected relay, one relay at a time.
    PerRelay(Vec<Step>),
    Phases(Vec<Phase>),
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub title: String,
    pub on: Selector,
    pub steps: Vec<Step>,
}

/// Which cluster members a phase runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// Every member, in inventory order.
    All,
    /// The seed (etcd) or the first master (clearwater).
    First,
    /// Every member but the first.
    Rest,
    /// Clearwater's masters.
    Masters,
    /// Clearwater's members that are not masters, one at a time.
    NonMasters,
    /// Clearwater's Vellum nodes that take part (none: the phase is skipped).
    Vellum,
    /// One of them, a master if one is (none: the phase is skipped).
    OneVellum,
}

pub const SELECTORS: [(&str, Selector); 7] = [
    ("all", Selector::All),
    ("first", Selector::First),
    ("rest", Selector::Rest),
    ("masters", Selector::Masters),
    ("non-masters", Selector::NonMasters),
    ("vellum", Selector::Vellum),
    ("one-vellum", Selector::OneVellum),
];

/// A safety check that runs before the first step changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preflight {
    Reachable,
    StatsReadable,
    PeersHealthy,
    MinHealthy,
    Advertised,
    BundleValid,
    QuorumLost,
    SeedLatest,
    KeysCounted,
    ConfigPresent,
    CassandraHealthy,
    SproutConfig,
}

pub const PREFLIGHTS: [(&str, Preflight); 12] = [
    ("reachable", Preflight::Reachable),
    ("stats-readable", Preflight::StatsReadable),
    ("peers-healthy", Preflight::PeersHealthy),
    ("min-healthy", Preflight::MinHealthy),
    ("advertised", Preflight::Advertised),
    ("bundle-valid", Preflight::BundleValid),
    ("quorum-lost", Preflight::QuorumLost),
    ("seed-latest", Preflight::SeedLatest),
    ("keys-counted", Preflight::KeysCounted),
    ("config-present", Preflight::ConfigPresent),
    ("cassandra-healthy", Preflight::CassandraHealthy),
    ("sprout-config", Preflight::SproutConfig),
];

#[derive(Debug, Clone)]
pub struct Step {
    pub line: u64,
    pub title: Option<String>,
    /// Every condition must hold for the step to be part of a node's plan.
    pub when: Vec<Condition>,
    pub kind: StepKind,
}

/// When a step applies; decided per node when the plan is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The node's `drain.relay_drain` is on.
    RelayDrain,
    /// The node's `stun_check` is on.
    StunCheck,
    /// The relay loads a new certificate by a reload (relayd, coturn), and
    /// `--restart` is not given.
    Reload,
    /// The certificate goes into service by a drained restart: restund, any
    /// relay without a reload, and `--restart`.
    Restart,
    /// The relay's calls are waited for (the default).
    Drain,
    /// They are not (`--no-drain`): they are dropped, once confirmed.
    NoDrain,
    /// The relay is an rtpengine.
    Rtpengine,
    /// An rtpengine whose peers hold every call it owns (through Redis),
    /// as read when the plan was made: it restarts while they do, instead
    /// of waiting for its calls to end.
    Handover,
    /// An rtpengine with an ng control address (`rtpengine.ng`).
    NgCheck,
}

pub const CONDITIONS: [(&str, Condition); 9] = [
    ("relay-drain", Condition::RelayDrain),
    ("stun-check", Condition::StunCheck),
    ("reload", Condition::Reload),
    ("restart", Condition::Restart),
    ("drain", Condition::Drain),
    ("no-drain", Condition::NoDrain),
    ("rtpengine", Condition::Rtpengine),
    ("handover", Condition::Handover),
    ("ng-check", Condition::NgCheck),
];

#[derive(Debug, Clone)]
pub enum StepKind {
    /// Ask before going on; `show_allocations` reads the count first.
    Confirm {
        message: Template,
        show_allocations: bool,
    },
    Unadvertise,
    Advertise,
    /// Switch the relay's own drain mode on or off.
    RelayDrain(bool),
    /// rtpengine: refuse new calls (`set maxsessions 0`, its documented
    /// drain, the limit it had kept on the node) or allow them again at
    /// that limit. Allowing also runs when the run stops after refusing.
    NewSessions {
        refuse: bool,
    },
    /// rtpengine: keep the ids of the calls it owns, for `calls-restored`.
    RecordCalls,
    Wait(GateSpec),
    Service(ServiceAction),
    Run {
        argv: Vec<Template>,
        on: RunOn,
    },
    /// Read the boot id, then reboot.
    Reboot,
    /// Upload the new certificate in the layout the node needs.
    UploadCert,
    /// Read the certificate the relay serves now (kept for a rollback, and
    /// compared with the new one's expiry) before anything of it changes.
    ReadServed,
    /// Copy a file aside as `<path>.opsctl-<run>` (kept, never deleted).
    Backup(Template),
    /// Rename a directory aside as `<path>.opsctl-<run>` and recreate it empty.
    MoveAside(Template),
    /// Set (and remove) `KEY=value` lines in a shell-style config file.
    SetConfig {
        file: Template,
        values: Vec<(String, Template)>,
        unset: Vec<String>,
    },
    /// Clearwater: a Vellum node's data-store cluster file, checked; written
    /// listing every Vellum node of the site only if missing or invalid.
    DatastoreConfig(Store),
    /// Clearwater: the shared configuration of the master the operator
    /// named (`--shared-config-from`) copied onto this master; nothing
    /// without that option, or on that master.
    CopySharedConfig,
}

/// A Clearwater data store whose cluster file a Vellum node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Store {
    /// Chronos: /etc/chronos/chronos_cluster.conf.
    Chronos,
    /// Memcached: /etc/clearwater/cluster_settings.
    Memcached,
}

impl Store {
    pub fn path(self) -> &'static str {
        match self {
            Store::Chronos => "/etc/chronos/chronos_cluster.conf",
            Store::Memcached => "/etc/clearwater/cluster_settings",
        }
    }
}

/// Where a `run` step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOn {
    /// The node the step is planned for.
    Node,
    /// The machine opsctl runs on.
    Local,
    /// The cluster's first member (the seed), on behalf of this node.
    First,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Stop,
    Start,
    Restart,
    Reload,
}

#[derive(Debug, Clone)]
pub struct GateSpec {
    pub gate: Gate,
    pub timeout: Option<Duration>,
    pub poll: Option<Duration>,
    /// `monit-running`: the monit processes that must run.
    pub services: Vec<String>,
}

/// A fact read from a node (or from the advertised list) that must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Drained,
    ServiceUp,
    StatsAnswer,
    StunBinding,
    Unadvertised,
    Advertised,
    SshDown,
    NewBoot,
    ServedCert,
    MemberHealthy,
    ClusterHealthy,
    KeysPreserved,
    /// The member is in the cluster's member list (`member add` until it is).
    MemberAdded,
    /// A test key written is read back, then deleted.
    AcceptsWrites,
    /// Clearwater: `monit summary` shows each of the gate's `services` running.
    MonitRunning,
    /// Clearwater: ... and each of them stopped (`Not monitored`).
    MonitStopped,
    /// Clearwater: `check_config_sync` says the shared configuration is in sync.
    ConfigSynced,
    /// rtpengine: every peer of its group holds each call it owns.
    CallsHeld,
    /// rtpengine: it owns again every call it owned before the restart
    /// that its peers still hold (restored from Redis).
    CallsRestored,
    /// rtpengine: every instance of the group holds each peer's calls, and
    /// none a call its owner does not have.
    CallsConsistent,
    /// rtpengine: the packet counters of its own calls advance.
    MediaFlows,
    /// rtpengine: its ng control socket answers `ping` from here.
    NgPing,
}

pub const GATES: [(&str, Gate); 22] = [
    ("drained", Gate::Drained),
    ("service-up", Gate::ServiceUp),
    ("stats-answer", Gate::StatsAnswer),
    ("stun-binding", Gate::StunBinding),
    ("unadvertised", Gate::Unadvertised),
    ("advertised", Gate::Advertised),
    ("ssh-down", Gate::SshDown),
    ("new-boot", Gate::NewBoot),
    ("served-cert", Gate::ServedCert),
    ("member-healthy", Gate::MemberHealthy),
    ("cluster-healthy", Gate::ClusterHealthy),
    ("keys-preserved", Gate::KeysPreserved),
    ("member-added", Gate::MemberAdded),
    ("accepts-writes", Gate::AcceptsWrites),
    ("monit-running", Gate::MonitRunning),
    ("monit-stopped", Gate::MonitStopped),
    ("config-synced", Gate::ConfigSynced),
    ("calls-held", Gate::CallsHeld),
    ("calls-restored", Gate::CallsRestored),
    ("calls-consistent", Gate::CallsConsistent),
    ("media-flows", Gate::MediaFlows),
    ("ng-ping", Gate::NgPing),
];

impl Gate {
    pub fn name(self) -> &'static str {
        GATES
            .iter()
            .find(|(_, g)| *g == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

impl Preflight {
    pub fn name(self) -> &'static str {
        PREFLIGHTS
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Placeholders a relay playbook may use.
pub const RELAY_VARS: &[&str] = &["node", "host", "site", "kind", "run"];
/// Placeholders a clearwater playbook may use.
pub const CLEARWATER_VARS: &[&str] = &[
    "node",
    "host",
    "site",
    "run",
    "management_ip",
    "local_config",
    "shared_config",
    "data_dir",
    "masters",
    "left_out",
];
/// Placeholders an etcd playbook may use.
pub const ETCD_VARS: &[&str] = &[
    "node",
    "host",
    "site",
    "run",
    "data_dir",
    "env_file",
    "client_url",
    "peer_url",
    "initial_cluster",
    "token",
    "etcdctl",
    "seed",
    "seed_client_url",
    "endpoints",
    "snapshot",
    "snapshot_tool",
    "left_out",
];

impl Targets {
    pub fn vars(self) -> &'static [&'static str] {
        match self {
            Targets::Relays => RELAY_VARS,
            Targets::Cluster(Flavor::Clearwater) => CLEARWATER_VARS,
            Targets::Cluster(Flavor::Etcd) => ETCD_VARS,
        }
    }
}

/// Loads playbook `name`: the override in `dir` if there is one, else the built-in.
pub fn load(name: &str, dir: Option<&Path>) -> anyhow::Result<Playbook> {
    if let Some(dir) = dir {
        let path = dir.join(format!("{name}.yaml"));
        if path.exists() {
            let text = crate::reader::read_text(&path)
                .map_err(|e| anyhow::anyhow!("cannot read playbook override {}: {e}", path.display()))?;
            tracing::debug!(playbook = name, file = %path.display(), "using playbook override");
            return Ok(parse(&text, &path.display().to_string())?);
        }
    }
    let (_, text) = BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| anyhow::anyhow!("no built-in playbook named `{name}`"))?;
    let mut pb = parse(text, &format!("playbooks/{name}.yaml"))?;
    pb.origin = "built-in".into();
    Ok(pb)
}

/// Reads playbook text; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<Playbook, InputError> {
    let diags = Diags::new(file);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            diags.report(e.pos.unwrap_or_default(), "", e.message, None);
            return Err(diags.finish(()).unwrap_err());
        }
    };
    let pb = read(&At::root(&root, &diags), file);
    diags.finish(())?;
    Ok(pb.expect("a playbook that read without problems is complete"))
}

fn read(root: &At, file: &str) -> Option<Playbook> {
    let mut m = root.map()?;
    let name = m
        .require("name", "the procedure's name, e.g. `name: restart-no-downtime`")
        .and_then(|a| a.name());
    let description = m.get("description").and_then(|a| a.str()).unwrap_or_default();
    let targets = m
        .require("targets", "`relays` or `cluster`")
        .and_then(|a| a.choice(&[("relays", false), ("cluster", true)]));
    let flavor = m
        .get("flavor")
        .and_then(|a| a.choice(&[("clearwater", Flavor::Clearwater), ("etcd", Flavor::Etcd)]));
    let targets = match (targets, flavor) {
        (Some(false), None) => Some(Targets::Relays),
        (Some(false), Some(_)) => {
            root.error("`flavor` applies only to `targets: cluster`", None);
            None
        }
        (Some(true), Some(f)) => Some(Targets::Cluster(f)),
        (Some(true), None) => {
            root.error("missing field `flavor`", Some("`clearwater` or `etcd`".into()));
            None
        }
        (None, _) => None,
    };
    let preflight = m
        .get("preflight")
        .and_then(|a| a.list())
        .map(|items| items.iter().filter_map(|i| i.choice(&PREFLIGHTS)).collect())
        .unwrap_or_default();
    let steps_at = m.get("steps");
    let phases_at = m.get("phases");
    let vars = targets.map(Targets::vars).unwrap_or(RELAY_VARS);
    let next_steps = m
        .get("next-steps")
        .and_then(|a| a.list())
        .map(|items| items.iter().filter_map(|i| template(i, vars)).collect())
        .unwrap_or_default();
    let body = match (targets, &steps_at, &phases_at) {
        (Some(Targets::Relays), Some(s), None) => steps(s, RELAY_VARS).map(Body::PerRelay),
        (Some(t @ Targets::Cluster(_)), None, Some(p)) => phases(p, t).map(Body::Phases),
        (Some(Targets::Relays), _, _) => {
            root.error(
                "a relay playbook lists `steps` (run for each relay in turn), not `phases`",
                None,
            );
            None
        }
        (Some(Targets::Cluster(_)), _, _) => {
            root.error(
                "a cluster playbook lists `phases`, each with `on` and `steps`",
                None,
            );
            None
        }
        (None, _, _) => None,
    };
    m.finish();
    Some(Playbook {
        name: name?,
        description,
        origin: file.to_owned(),
        targets: targets?,
        preflight,
        body: body?,
        next_steps,
    })
}

fn phases(at: &At, targets: Targets) -> Option<Vec<Phase>> {
    let mut out = Vec::new();
    let mut ok = true;
    for item in at.list()? {
        let Some(mut m) = item.map() else {
            ok = false;
            continue;
        };
        let title = m
            .require("title", "say what the phase does")
            .and_then(|a| a.name());
        let on = m
            .require(
                "on",
                "which members: all, first, rest (etcd and clearwater); masters, non-masters, vellum, one-vellum (clearwater)",
            )
            .and_then(|a| a.choice(&SELECTORS));
        if let (
            Some(sel @ (Selector::Masters | Selector::NonMasters | Selector::Vellum | Selector::OneVellum)),
            Targets::Cluster(Flavor::Etcd),
        ) = (on, targets)
        {
            item.error(
                format!("`on: {}` applies only to clearwater clusters", selector_name(sel)),
                Some("use all, first or rest".into()),
            );
        }
        let steps = m.require("steps", "").and_then(|a| steps(&a, targets.vars()));
        m.finish();
        match (title, on, steps) {
            (Some(title), Some(on), Some(steps)) => out.push(Phase { title, on, steps }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

pub fn selector_name(s: Selector) -> &'static str {
    SELECTORS
        .iter()
        .find(|(_, x)| *x == s)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

const STEP_KINDS: [&str; 17] = [
    "confirm",
    "unadvertise",
    "advertise",
    "relay-drain",
    "new-sessions",
    "record-calls",
    "wait",
    "service",
    "run",
    "reboot",
    "upload-cert",
    "read-served",
    "backup",
    "move-aside",
    "set-config",
    "datastore-config",
    "copy-shared-config",
];

fn steps(at: &At, vars: &[&str]) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    let mut ok = true;
    for item in at.list()? {
        match step(&item, vars) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One step: a bare name (`advertise`) or a mapping with exactly one step kind
/// as key, plus optional `title` and `when`.
fn step(at: &At, vars: &[&str]) -> Option<Step> {
    if let Value::Str(word) = &at.node.value {
        let kind = match word.as_str() {
            "unadvertise" => StepKind::Unadvertise,
            "advertise" => StepKind::Advertise,
            "reboot" => StepKind::Reboot,
            "upload-cert" => StepKind::UploadCert,
            "read-served" => StepKind::ReadServed,
            "copy-shared-config" => StepKind::CopySharedConfig,
            "record-calls" => StepKind::RecordCalls,
            other => {
                let help = crate::suggest::closest(other, STEP_KINDS)
                    .map(|k| format!("did you mean `{k}`?"))
                    .unwrap_or_else(|| format!("step kinds: {}", STEP_KINDS.join(", ")));
                at.error(format!("`{other}` is not a step that stands alone"), Some(help));
                return None;
            }
        };
        return Some(Step {
            line: at.pos().line,
            title: None,
            when: Vec::new(),
            kind,
        });
    }
    let mut m = at.map()?;
    let title = m.get("title").and_then(|a| a.name());
    let when = match m.get("when") {
        None => Vec::new(),
        Some(a) => match &a.node.value {
            Value::Seq(_) => a.list()?.iter().filter_map(|c| c.choice(&CONDITIONS)).collect(),
            _ => a.choice(&CONDITIONS).into_iter().collect(),
        },
    };
    let present: Vec<&str> = STEP_KINDS.iter().copied().filter(|k| m.has(k)).collect();
    m.expect(&STEP_KINDS);
    let kind = match present.as_slice() {
        [one] => step_kind(&mut m, one, vars),
        [] => {
            // A misspelt kind is reported (with "did you mean") as an unknown field.
            if m.unknown_keys() == 0 {
                m.at.error(
                    "no step kind in this step",
                    Some(format!("a step has one of: {}", STEP_KINDS.join(", "))),
                );
            }
            None
        }
        many => {
            m.at.error(
                format!("one step has several kinds: {}", many.join(", ")),
                Some("split it into separate steps".into()),
            );
            None
        }
    };
    m.finish();
    Some(Step {
        line: at.pos().line,
        title,
        when,
        kind: kind?,
    })
}

fn step_kind(m: &mut MapReader, key: &'static str, vars: &[&str]) -> Option<StepKind> {
    let flag = |m: &mut MapReader, what: StepKind| -> Option<StepKind> {
        // `advertise: {}` and `advertise:` (null) both mean the bare step.
        if let Some(a) = m.get(key) {
            match &a.node.value {
                Value::Map(e) if e.is_empty() => {}
                _ => a.error(
                    format!("`{key}` takes no settings"),
                    Some(format!("write `- {key}`")),
                ),
            }
        }
        Some(what)
    };
    match key {
        "unadvertise" => flag(m, StepKind::Unadvertise),
        "advertise" => flag(m, StepKind::Advertise),
        "reboot" => flag(m, StepKind::Reboot),
        "upload-cert" => flag(m, StepKind::UploadCert),
        "read-served" => flag(m, StepKind::ReadServed),
        "copy-shared-config" => flag(m, StepKind::CopySharedConfig),
        "record-calls" => flag(m, StepKind::RecordCalls),
        "new-sessions" => m
            .get(key)?
            .choice(&[("refuse", true), ("allow", false)])
            .map(|refuse| StepKind::NewSessions { refuse }),
        "datastore-config" => m
            .get(key)?
            .choice(&[("chronos", Store::Chronos), ("memcached", Store::Memcached)])
            .map(StepKind::DatastoreConfig),
        "relay-drain" => m
            .get(key)?
            .choice(&[("enable", true), ("disable", false)])
            .map(StepKind::RelayDrain),
        "service" => m
            .get(key)?
            .choice(&[
                ("stop", ServiceAction::Stop),
                ("start", ServiceAction::Start),
                ("restart", ServiceAction::Restart),
                ("reload", ServiceAction::Reload),
            ])
            .map(StepKind::Service),
        "wait" => {
            let a = m.get(key)?;
            if let Value::Str(_) = a.node.value {
                return a.choice(&GATES).map(|gate| {
                    StepKind::Wait(GateSpec {
                        gate,
                        timeout: None,
                        poll: None,
                        services: Vec::new(),
                    })
                });
            }
            let mut w = a.map()?;
            let gate = w.require("gate", "").and_then(|g| g.choice(&GATES));
            let timeout = w.get("timeout").and_then(|t| t.duration());
            let poll = w.get("poll").and_then(|t| t.duration());
            let services = w.get("services").and_then(|s| s.strings()).unwrap_or_default();
            w.finish();
            if matches!(gate, Some(Gate::MonitRunning | Gate::MonitStopped)) && services.is_empty() {
                a.error(
                    "`monit-running` and `monit-stopped` name the monit processes they wait for",
                    Some("add `services: [etcd_process, ...]`".into()),
                );
                return None;
            }
            Some(StepKind::Wait(GateSpec {
                gate: gate?,
                timeout,
                poll,
                services,
            }))
        }
        "confirm" => {
            let a = m.get(key)?;
            if let Value::Str(_) = a.node.value {
                let message = template(&a, vars)?;
                return Some(StepKind::Confirm {
                    message,
                    show_allocations: false,
                });
            }
            let mut c = a.map()?;
            let message = c.require("message", "").and_then(|t| template(&t, vars));
            let show = c
                .get("show")
                .and_then(|s| s.choice(&[("allocations", true)]))
                .unwrap_or(false);
            c.finish();
            Some(StepKind::Confirm {
                message: message?,
                show_allocations: show,
            })
        }
        "run" => {
            let a = m.get(key)?;
            let (argv_at, on) = match &a.node.value {
                Value::Map(_) => {
                    let mut r = a.map()?;
                    let cmd = r.require("command", "");
                    let on = r
                        .get("on")
                        .and_then(|o| {
                            o.choice(&[
                                ("node", RunOn::Node),
                                ("local", RunOn::Local),
                                ("first", RunOn::First),
                            ])
                        })
                        .unwrap_or(RunOn::Node);
                    r.finish();
                    (cmd?, on)
                }
                _ => (a, RunOn::Node),
            };
            let items = argv_at.list()?;
            if items.is_empty() {
                argv_at.error("the command is empty", None);
                return None;
            }
            let argv: Option<Vec<Template>> = items.iter().map(|i| template(i, vars)).collect();
            Some(StepKind::Run { argv: argv?, on })
        }
        "backup" => template(&m.get(key)?, vars).map(StepKind::Backup),
        "move-aside" => template(&m.get(key)?, vars).map(StepKind::MoveAside),
        "set-config" => {
            let a = m.get(key)?;
            let mut s = a.map()?;
            let file = s.require("file", "").and_then(|f| template(&f, vars));
            let values = s.require("values", "KEY: value pairs").and_then(|v| {
                let crate::yaml::Value::Map(entries) = &v.node.value else {
                    v.error("expected a mapping of KEY: value", None);
                    return None;
                };
                let mut out = Vec::new();
                for (k, node) in entries {
                    let at = At {
                        node,
                        path: format!("{}.{}", v.path, k.name),
                        diags: v.diags,
                    };
                    out.push((k.name.clone(), template(&at, vars)?));
                }
                Some(out)
            });
            let unset = s.get("unset").and_then(|u| u.strings()).unwrap_or_default();
            s.finish();
            Some(StepKind::SetConfig {
                file: file?,
                values: values?,
                unset,
            })
        }
        _ => None,
    }
}

fn template(at: &At, vars: &[&str]) -> Option<Template> {
    let text = at.scalar_text()?;
    match Template::parse(&text, vars) {
        Ok(t) => Some(t),
        Err((msg, help)) => {
            at.error(msg, help);
            None
        }
    }
}

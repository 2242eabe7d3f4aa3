//! The plan: a playbook expanded for concrete nodes.
//!
//! Every action, gate and check holds the exact commands it runs (the line as
//! sent, with `sudo -n` where it applies, and the host) and the decision it
//! makes: threshold, expected output, poll, timeout, what a timeout ends in.
//! `--dry-run` prints this value; a real run executes this same value and
//! reads nothing else: the executor never sees the inventory.
//!
//! The plan serializes and deserializes (`--output json`, and the first event
//! of a run's journal); its shape is documented in README.md and versioned by
//! `schema`.

mod cluster;
mod render;
mod renew;
mod request;
mod rtpengine;
mod safety;
mod steps;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::cert::CertInfo;
pub use crate::command::{Access, Command, Host};
use crate::health::{Probe, ServiceProbe};
use crate::remote::UploadCommands;
use crate::stats::StatsRead;
pub use render::text;
pub use renew::read_served_now;
pub use request::{Procedure, Quorum, Request, VersionRead, build};

/// The version of the JSON shape; bumped on any incompatible change.
pub const SCHEMA: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub schema: u32,
    pub procedure: String,
    pub playbook: PlaybookRef,
    pub description: String,
    pub inventory: String,
    /// Names this run: backups and the journal carry it.
    pub run: String,
    pub targets: Vec<String>,
    /// How each node the plan works on is reached.
    pub nodes: BTreeMap<String, Access>,
    /// Safety checks that run, in this order, before the first step changes anything.
    pub preflight: Vec<Check>,
    /// Steps in execution order, grouped per node (relays) or per phase (clusters).
    pub sections: Vec<Section>,
    /// What the reader should know: costs, skipped checks, things left to the operator.
    pub notes: Vec<String>,
    /// Relays found out of the advertised list, left so by an earlier run
    /// (its id) that this run continues: taken out again is no change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub continues: BTreeMap<String, String>,
    /// What is left to the operator once the plan has run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    /// What the plan was made from besides the inventory (the operator's
    /// choices, and what was read just before): a resumed run's plan is
    /// made again from it and must come out the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// The sites the run locks before its safety checks, and how.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<crate::lock::SiteLock>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaybookRef {
    pub name: String,
    /// `built-in` or the path of the override file.
    pub origin: String,
}

/// A safety check: what it reads and what must hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub description: String,
    #[serde(flatten)]
    pub kind: CheckKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum CheckKind {
    /// Every target answers SSH.
    Reachable { nodes: Vec<Host> },
    /// Every target's stats answer.
    StatsReadable { reads: Vec<StatsRead> },
    /// The relays that stay in service (the advertised peers) are healthy.
    PeersHealthy {
        peers: Vec<Probe>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<ValuesRef>,
    },
    /// Taking any one target out leaves its site its minimum: the very
    /// re-check each relay gets before it goes out, done for all up front.
    MinHealthy { each: Vec<Safety> },
    /// Every target is in the advertised list now (or was left out by a run
    /// this one continues).
    Advertised {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<ValuesRef>,
        relays: BTreeMap<String, Vec<String>>,
    },
    /// The new certificate, checked as the relays' clients will check it
    /// (see [`crate::cert::check_bundle`]); the run checks it again and
    /// requires the very leaf the plan was made for.
    BundleValid {
        bundle: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// CA files trusted besides the system's store.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ca: Vec<String>,
        /// Each target relay and the `turns:` host its clients check.
        hosts: BTreeMap<String, String>,
        leaf: CertInfo,
        /// What each target serves now, as read when the plan was made, or
        /// why it could not be read from here.
        served: BTreeMap<String, String>,
    },
    /// No member of the etcd cluster is healthy (`endpoint health` on each
    /// fails): it has lost quorum. A healthy cluster is refused, unless
    /// `force`.
    QuorumLost { health: Vec<MemberRead>, force: bool },
    /// Clearwater: no node's `clearwater-etcdctl cluster-health` says the
    /// cluster is healthy or degraded (either has quorum). A cluster with
    /// quorum is refused, unless `force`.
    ClearwaterQuorumLost { health: Vec<MemberRead>, force: bool },
    /// The seed answers and no answering member is ahead of it (revision,
    /// then raft index), and each runs an etcd the plan's restore is for:
    /// `etcdutl snapshot restore` (3.5 and later) or etcdctl's (3.4).
    SeedLatest {
        seed: String,
        status: Vec<MemberRead>,
        etcdutl: bool,
        /// With `etcdutl`: `etcdutl version` on the seed, which must run
        /// (it is needed after the other members have stopped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<Command>,
    },
    /// The seed's key count and revision (a serializable read), kept as
    /// `record` for the `keys-preserved` gate.
    KeysCounted {
        seed: String,
        command: Command,
        record: String,
    },
    /// Clearwater: every node's local_config (`local`) names the management
    /// and signalling IPs the plan uses for it (`ips`), and the shared configuration
    /// (`shared`, on each master) is the same everywhere, or, with `from`,
    /// present on that master, whose copy the others get.
    ConfigPresent {
        local: Vec<MemberRead>,
        ips: BTreeMap<String, NodeIps>,
        shared: Vec<MemberRead>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// Clearwater: `nodetool status` on a Vellum node lists every Cassandra
    /// node up and normal.
    CassandraHealthy { read: MemberRead },
    /// Clearwater: each Sprout node's JSON configuration files parse (a
    /// file that is not there is reported, not refused).
    SproutConfig { reads: Vec<FileRead> },
}

/// A Clearwater node's addresses, as the plan uses them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIps {
    /// etcd's (`management_local_ip`, else `local_ip`).
    pub management: String,
    /// Signalling (`local_ip`): the data stores'.
    pub local: String,
}

/// One file read on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRead {
    pub member: String,
    pub path: String,
    /// Prints the file; exits 3 when there is none.
    pub command: Command,
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Reachable { .. } => "reachable",
            CheckKind::StatsReadable { .. } => "stats-readable",
            CheckKind::PeersHealthy { .. } => "peers-healthy",
            CheckKind::MinHealthy { .. } => "min-healthy",
            CheckKind::Advertised { .. } => "advertised",
            CheckKind::BundleValid { .. } => "bundle-valid",
            CheckKind::QuorumLost { .. } | CheckKind::ClearwaterQuorumLost { .. } => "quorum-lost",
            CheckKind::SeedLatest { .. } => "seed-latest",
            CheckKind::KeysCounted { .. } => "keys-counted",
            CheckKind::ConfigPresent { .. } => "config-present",
            CheckKind::CassandraHealthy { .. } => "cassandra-healthy",
            CheckKind::SproutConfig { .. } => "sprout-config",
        }
    }
}

/// One command run on one cluster member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRead {
    pub member: String,
    pub command: Command,
}

/// The values file that holds the advertised list, as the plan found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuesRef {
    pub path: String,
    /// The keys down to the list in it (`brig.turnStatic.v2`).
    pub list: String,
}

/// Before `out` is taken out of service: every other relay of its site that
/// is advertised must be healthy, and at least `min` of them must be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Safety {
    pub site: String,
    pub out: String,
    pub min: usize,
    pub others: Vec<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<ValuesRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    pub title: String,
    pub steps: Vec<Step>,
    /// What puts the node back as it was when a step from `rollback.from`
    /// on fails: run in order, then the run stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

/// Undoing a node's change: a new certificate the relay does not serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollback {
    /// The first step whose failure rolls back (the first file written).
    pub from: usize,
    /// The last: the check of what the relay serves. Past it the new
    /// certificate is proven, and a later failure is not the certificate's.
    pub to: usize,
    /// Numbered 1.. within the rollback.
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// 1-based, counted across the whole plan.
    pub number: usize,
    /// The node the step is for.
    pub node: String,
    /// What the step does, in a few words.
    pub title: String,
    /// The playbook step it came from: `file:line`.
    pub source: String,
    /// The step takes its node out of service (un-advertise, the relay's
    /// own drain, a stop, a restart, a reboot): the first such step done is
    /// where a run starts to change what clients or a cluster rely on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_out: bool,
    /// For a step that would hurt twice: how a resumed run tells that it
    /// happened, when it began and did not finish (it is then skipped).
    /// Every other step is safe to run again; see README.md, "Resume".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_if: Option<DoneIf>,
    /// This step undoes what step `undoes` (of its section) changed for a
    /// while: when the run stops after that step and before this one, for
    /// any reason, this step runs then (rtpengine's new calls allowed again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<usize>,
    #[serde(flatten)]
    pub action: Action,
}

/// How a resumed run knows a step it was in when cut short already happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DoneIf {
    /// The reboot happened: the node's boot id (`command`) differs from the
    /// one kept as `record` before it, or the node does not answer SSH
    /// (it is going down or coming up; the gates after it wait).
    NewBoot { command: Command, record: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEdit {
    pub on: Host,
    pub path: String,
    /// The keys down to the list whose entries are edited.
    pub list: String,
    /// The URLs whose entries are commented out or restored.
    pub urls: Vec<String>,
    /// Unified diff of the real file; empty when the file is already as wanted.
    pub diff: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Run {
        command: Command,
    },
    /// Runs a command and keeps its output under `name` for a later gate
    /// (the boot id read before a reboot).
    Record {
        name: String,
        command: Command,
    },
    Gate {
        #[serde(flatten)]
        gate: Gate,
        /// The fact, in words: "allocations on relay-1 <= 0".
        fact: String,
        #[serde(with = "crate::command::secs", rename = "poll_secs")]
        poll: Duration,
        #[serde(with = "crate::command::secs", rename = "timeout_secs")]
        timeout: Duration,
        on_timeout: OnTimeout,
    },
    /// Re-checks, just before the relay goes out of service, that the relays
    /// staying in service are healthy and the site keeps its minimum.
    Safety {
        #[serde(flatten)]
        safety: Safety,
    },
    /// Take a relay out of (or put it back into) the advertised list: the file
    /// edit and the commands that apply it, as one unit: if a command fails the
    /// file is restored.
    Advertise {
        out: bool,
        backend: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edit: Option<FileEdit>,
        commands: Vec<Command>,
    },
    /// A command sent to the relay's status port (restund's `drain_enable`).
    StatusCommand {
        /// `drain_enable` or `drain_disable`.
        command: String,
        send: StatsRead,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost: Option<String>,
    },
    /// Starts a relay's own drain that ends with its process (coturn 4.6.3
    /// and later, SIGUSR1): new allocations are refused from then on, and
    /// the process exits once none are left. Nothing switches it off: it
    /// lasts until the process ends, which any of `ended_by` does.
    DrainToExit {
        command: Command,
        /// What the running relay reported, read when the plan was made.
        version: String,
        /// The commands after which the drained process is gone (the
        /// service's restart, start, stop; the reboot).
        ended_by: Vec<Command>,
    },
    Upload {
        on: Host,
        /// What goes into the file, in words ("certificate chain from new.pem").
        content: String,
        /// Local files, written one after the other.
        from: Vec<String>,
        /// `chain` or `key`: only that part of `from` goes into the file
        /// (a bundle split into coturn's two files). Not built yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cut: Option<String>,
        to: String,
        mode: String,
        /// Written beside `to`, synced, checked by SHA-256 and renamed over it;
        /// the file now at `to` is kept first.
        commands: UploadCommands,
    },
    /// Set (and remove) `KEY=value` lines in a shell-style config file on the
    /// node: read it, edit it here, write the result beside it with the same
    /// mode and owner, rename.
    SetConfig {
        on: Host,
        path: String,
        set: Vec<(String, String)>,
        unset: Vec<String>,
        read: Command,
        commands: UploadCommands,
    },
    /// Clearwater: a Vellum node's data-store cluster file (`store`),
    /// read and checked; only if it is missing or invalid, `content` (every
    /// Vellum node of the site) is written, the invalid file kept aside.
    DatastoreConfig {
        on: Host,
        store: crate::playbook::Store,
        path: String,
        content: String,
        /// Prints the file; exits 3 when there is none.
        read: Command,
        commands: UploadCommands,
    },
    /// A file copied from another node (`read` runs there) onto this one,
    /// the file it replaces kept aside.
    CopyFile {
        on: Host,
        path: String,
        source: String,
        read: Command,
        commands: UploadCommands,
    },
    /// A rollback's: puts back the file upload step `upload` replaced, when
    /// that step completed (a failed upload replaced nothing).
    Restore {
        upload: usize,
        path: String,
        command: Command,
    },
    /// rtpengine, just before a restart: keeps the ids of the calls it owns
    /// (`own`'s output, as `record`), and of those that carry media (`media`
    /// read twice, 2 s apart, packets summed over the instances, as
    /// `media_record`).
    RecordCalls {
        own: Command,
        record: String,
        media: Vec<Command>,
        media_record: String,
    },
    /// Reads the certificate the relay serves now, before anything of it
    /// changes: kept as `record` (what a rollback must serve again), and
    /// refused when it ends later than the new one (`new_not_after`)
    /// unless `allow_earlier`.
    ReadServed {
        /// `host:port` of its `turns:` URL, read from here.
        target: String,
        /// The name sent as SNI and checked: the `turns:` host.
        name: String,
        record: String,
        new_not_after: i64,
        allow_earlier: bool,
    },
    Confirm {
        prompt: String,
        /// Read first and shown in the question.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allocations: Option<StatsRead>,
        /// When the allocations cannot be read: a service that is down
        /// carries no calls and the question says so; one that is up is
        /// refused, as what it carries is unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<ServiceProbe>,
    },
}

/// A fact read from a node (or from the advertised list) that must hold,
/// with the exact way it is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "gate", rename_all = "kebab-case")]
pub enum Gate {
    Drained {
        stats: StatsRead,
        threshold: u64,
        /// How the relay lists its allocations one by one, read when the
        /// count stops falling: restund's `turn`, coturn's `ps`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        list: Option<Box<StatsRead>>,
        /// How long the count may stay put before that.
        #[serde(with = "crate::command::secs", rename = "stuck_after_secs")]
        stuck_after: Duration,
        /// A drain that ends in the relay's exit (coturn's): once its stats
        /// no longer answer, a service this probe finds down has drained.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exits: Option<ServiceProbe>,
    },
    ServiceUp {
        service: ServiceProbe,
    },
    StatsAnswer {
        stats: StatsRead,
    },
    StunBinding {
        /// `host:port`, sent from here over UDP.
        target: String,
    },
    /// The list clients receive holds none (`Unadvertised`) or all
    /// (`Advertised`) of `urls`; `check` prints brig's calls-config JSON.
    Unadvertised {
        check: Command,
        urls: Vec<String>,
    },
    Advertised {
        check: Command,
        urls: Vec<String>,
    },
    /// A fresh SSH connection to the node fails: the old boot is going down.
    /// While it still answers, `command` says whether it is the same boot
    /// (the boot id kept as `record`).
    SshDown {
        on: Host,
        command: Command,
        record: String,
    },
    /// The node answers SSH again and `command` prints something other
    /// than what the `record` step kept as `record`.
    NewBoot {
        command: Command,
        record: String,
    },
    /// A TLS handshake from here to `target` with `name` as SNI serves the
    /// expected leaf; with `verify`, the chain must also verify for `name`
    /// against the system's trust store and `ca`.
    ServedCert {
        target: String,
        name: String,
        expect: Expect,
        verify: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ca: Vec<String>,
    },
    /// `command` exits 0: the member answers as healthy.
    MemberHealthy {
        command: Command,
    },
    /// etcd: `command` is `member list -w json`, `status` is `endpoint
    /// status --cluster -w json`; every member in `expect` is listed and
    /// started, none is a learner, none is unknown, every one answers and
    /// all agree on one leader.
    ClusterHealthy {
        command: Command,
        status: Command,
        expect: Vec<String>,
    },
    /// Clearwater, as one node sees the cluster through its own etcd
    /// (member or proxy): `health` (`cluster-health`) says healthy, and
    /// `list` (`member list`) holds exactly the `masters` (by management IP),
    /// all started, one of them the leader.
    ClearwaterCluster {
        health: Command,
        list: Command,
        masters: Vec<String>,
    },
    /// Clearwater: `command` (`monit summary`) shows every one of `services`
    /// running.
    MonitRunning {
        command: Command,
        services: Vec<String>,
    },
    /// Clearwater: ... shows every one of them stopped: monit acts on
    /// `stop` after the command returns.
    MonitStopped {
        command: Command,
        services: Vec<String>,
    },
    /// Clearwater: `command` (`check_config_sync`) exits 0.
    ConfigSynced {
        command: Command,
    },
    /// The key count and revision (`command`: a serializable `get -w json`)
    /// are at least those kept as `record` before any change.
    KeysPreserved {
        command: Command,
        record: String,
    },
    /// `name` with `peer_url` is in the member list (`list`); while it is
    /// not, `add` is tried again.
    MemberAdded {
        list: Command,
        add: Command,
        name: String,
        peer_url: String,
    },
    /// `put` writes `value` under a test key, `get` reads it back (it must
    /// print `value`), `del` removes it.
    AcceptsWrites {
        put: Command,
        get: Command,
        del: Command,
        value: String,
    },
    /// rtpengine: every peer in `group` holds each call `of` owns (and
    /// follows its keyspace), as their reports say.
    CallsHeld {
        of: String,
        group: Vec<crate::rtpengine::Report>,
    },
    /// rtpengine: after its restart `of` owns again each call it owned
    /// before (kept as `record`) that a peer still holds; one no peer
    /// holds any more ended meanwhile.
    CallsRestored {
        of: String,
        record: String,
        group: Vec<crate::rtpengine::Report>,
    },
    /// rtpengine: no hole in the group and no foreign call whose owner
    /// does not have it.
    CallsConsistent {
        group: Vec<crate::rtpengine::Report>,
    },
    /// rtpengine: `reads` list the packet counters of `of`'s calls, on it
    /// and on its peers; read twice, 2 s apart, one of the calls kept as
    /// `record` (those that carried media before the restart) must have
    /// carried packets, summed over the instances; with none kept, there is
    /// nothing to compare.
    MediaFlows {
        of: String,
        reads: Vec<Command>,
        record: String,
    },
    /// rtpengine: an ng `ping` sent from here to `target` (UDP) is answered `pong`.
    NgPing {
        target: String,
    },
}

impl Gate {
    pub fn name(&self) -> &'static str {
        match self {
            Gate::Drained { .. } => "drained",
            Gate::ServiceUp { .. } => "service-up",
            Gate::StatsAnswer { .. } => "stats-answer",
            Gate::StunBinding { .. } => "stun-binding",
            Gate::Unadvertised { .. } => "unadvertised",
            Gate::Advertised { .. } => "advertised",
            Gate::SshDown { .. } => "ssh-down",
            Gate::NewBoot { .. } => "new-boot",
            Gate::ServedCert { .. } => "served-cert",
            Gate::MemberHealthy { .. } => "member-healthy",
            Gate::ClusterHealthy { .. } => "cluster-healthy",
            Gate::KeysPreserved { .. } => "keys-preserved",
            Gate::MemberAdded { .. } => "member-added",
            Gate::AcceptsWrites { .. } => "accepts-writes",
            Gate::ClearwaterCluster { .. } => "cluster-healthy",
            Gate::MonitRunning { .. } => "monit-running",
            Gate::MonitStopped { .. } => "monit-stopped",
            Gate::ConfigSynced { .. } => "config-synced",
            Gate::CallsHeld { .. } => "calls-held",
            Gate::CallsRestored { .. } => "calls-restored",
            Gate::CallsConsistent { .. } => "calls-consistent",
            Gate::MediaFlows { .. } => "media-flows",
            Gate::NgPing { .. } => "ng-ping",
        }
    }
}

/// The leaf a served-certificate gate waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "leaf", rename_all = "kebab-case")]
pub enum Expect {
    /// The new certificate, by its SHA-256 fingerprint.
    New { fingerprint: String },
    /// The one a `read-served` step kept as `record` (a rollback's).
    Recorded { record: String },
}

/// What a gate that times out ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    /// The run stops; a relay out of the advertised list stays out.
    Stop,
    /// The relay's own drain mode is switched off and it is put back in the
    /// advertised list (the plan's own later steps), then the run stops.
    Readvertise,
    /// `--force`: ask whether to go on with the allocations left (`--yes`
    /// answers yes); if not, stop and leave the relay out.
    Force,
    /// `--force` with `readvertise` for the answer no.
    ForceElseReadvertise,
}

impl Plan {
    /// Every step, in execution order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.sections.iter().flat_map(|s| s.steps.iter())
    }

    /// Every step that may run: the plan's, then each rollback's.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps().chain(
            self.sections
                .iter()
                .flat_map(|s| s.rollback.iter().flat_map(|r| r.steps.iter())),
        )
    }

    /// How to reach the node a command runs on.
    pub fn node(&self, host: &Host) -> anyhow::Result<crate::remote::Node> {
        if host.is_here() {
            return Ok(crate::remote::Node::here());
        }
        self.node_named(&host.node)
    }

    /// How to reach node `name`, as the plan says.
    pub fn node_named(&self, name: &str) -> anyhow::Result<crate::remote::Node> {
        let access = self
            .nodes
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("the plan has no access settings for `{name}`"))?;
        Ok(crate::remote::Node {
            name: name.to_owned(),
            access: access.clone(),
        })
    }

    /// Every command the plan can run, in plan order: what `--dry-run` shows
    /// and a run may send, and nothing else.
    pub fn commands(&self) -> Vec<&Command> {
        let mut out = Vec::new();
        for l in &self.locks {
            out.extend(l.commands());
        }
        for c in &self.preflight {
            c.kind.commands(&mut out);
        }
        for s in self.all_steps() {
            s.action.commands(&mut out);
            match &s.done_if {
                Some(DoneIf::NewBoot { command, .. }) => out.push(command),
                None => {}
            }
        }
        if let Some(r) = &self.request {
            out.extend(r.handover_reads.iter().map(|rep| &rep.command));
            out.extend(r.versions.values().map(|v| &v.command));
        }
        out
    }
}

impl CheckKind {
    fn commands<'a>(&'a self, out: &mut Vec<&'a Command>) {
        match self {
            CheckKind::Reachable { .. } => {}
            CheckKind::StatsReadable { reads } => out.extend(reads.iter().filter_map(StatsRead::command)),
            CheckKind::PeersHealthy { peers, .. } => {
                for p in peers {
                    out.extend(p.commands());
                }
            }
            CheckKind::MinHealthy { each } => {
                for s in each {
                    for p in &s.others {
                        out.extend(p.commands());
                    }
                }
            }
            CheckKind::QuorumLost { health: reads, .. } => out.extend(reads.iter().map(|r| &r.command)),
            CheckKind::SeedLatest { status, tool, .. } => {
                out.extend(status.iter().map(|r| &r.command));
                out.extend(tool);
            }
            CheckKind::ClearwaterQuorumLost { health: reads, .. } => {
                out.extend(reads.iter().map(|r| &r.command))
            }
            CheckKind::KeysCounted { command, .. } => out.push(command),
            CheckKind::ConfigPresent { local, shared, .. } => {
                out.extend(local.iter().chain(shared).map(|r| &r.command))
            }
            CheckKind::CassandraHealthy { read } => out.push(&read.command),
            CheckKind::SproutConfig { reads } => out.extend(reads.iter().map(|r| &r.command)),
            CheckKind::Advertised { .. } | CheckKind::BundleValid { .. } => {}
        }
    }
}

impl Action {
    fn commands<'a>(&'a self, out: &mut Vec<&'a Command>) {
        match self {
            Action::Run { command } | Action::Record { command, .. } | Action::Restore { command, .. } => {
                out.push(command)
            }
            Action::Gate { gate, .. } => match gate {
                Gate::Drained {
                    stats, list, exits, ..
                } => {
                    out.extend(stats.command());
                    out.extend(list.as_ref().and_then(|l| l.command()));
                    out.extend(exits.as_ref().map(|s| &s.command));
                }
                Gate::StatsAnswer { stats } => out.extend(stats.command()),
                Gate::ServiceUp { service } => out.push(&service.command),
                Gate::Unadvertised { check, .. } | Gate::Advertised { check, .. } => out.push(check),
                Gate::NewBoot { command, .. }
                | Gate::SshDown { command, .. }
                | Gate::MemberHealthy { command }
                | Gate::KeysPreserved { command, .. } => out.push(command),
                Gate::ClusterHealthy { command, status, .. } => out.extend([command, status]),
                Gate::ClearwaterCluster { health, list, .. } => out.extend([health, list]),
                Gate::MonitRunning { command, .. }
                | Gate::MonitStopped { command, .. }
                | Gate::ConfigSynced { command } => out.push(command),
                Gate::MemberAdded { list, add, .. } => out.extend([list, add]),
                Gate::AcceptsWrites { put, get, del, .. } => out.extend([put, get, del]),
                Gate::CallsHeld { group, .. }
                | Gate::CallsRestored { group, .. }
                | Gate::CallsConsistent { group } => out.extend(group.iter().map(|r| &r.command)),
                Gate::MediaFlows { reads, .. } => out.extend(reads),
                Gate::StunBinding { .. } | Gate::ServedCert { .. } | Gate::NgPing { .. } => {}
            },
            Action::Safety { safety } => {
                for p in &safety.others {
                    out.extend(p.commands());
                }
            }
            Action::Advertise { commands, .. } => out.extend(commands),
            Action::StatusCommand { send, .. } => out.extend(send.command()),
            Action::DrainToExit { command, .. } => out.push(command),
            Action::Upload { commands, .. } => out.extend(commands.all()),
            Action::SetConfig { read, commands, .. } => {
                out.push(read);
                out.extend(commands.all());
            }
            Action::DatastoreConfig { read, commands, .. } | Action::CopyFile { read, commands, .. } => {
                out.push(read);
                out.extend(commands.all());
            }
            Action::ReadServed { .. } => {}
            Action::RecordCalls { own, media, .. } => {
                out.push(own);
                out.extend(media);
            }
            Action::Confirm {
                allocations, service, ..
            } => {
                out.extend(allocations.as_ref().and_then(StatsRead::command));
                out.extend(service.as_ref().map(|s| &s.command));
            }
        }
    }
}

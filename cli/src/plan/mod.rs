//! The plan: a playbook expanded for concrete nodes.
//!
//! Every command with its arguments, every gate with its threshold, poll
//! interval and timeout, every file edit as a diff. `--dry-run` prints this
//! value; a real run executes this same value, and nothing else.
//!
//! The JSON form (`--output json`) is this structure serialized; its shape is
//! documented in README.md and versioned by `schema`.

mod build;
mod render;

use serde::Serialize;

pub use crate::command::{Command, Host};
pub use build::{Procedure, Request, build, stun_target};
pub use render::text;

/// The version of the JSON shape; bumped on any incompatible change.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub schema: u32,
    pub procedure: String,
    pub playbook: PlaybookRef,
    pub description: String,
    pub inventory: String,
    /// Names this run: backups and the journal carry it.
    pub run: String,
    pub targets: Vec<String>,
    /// Safety checks that run, in this order, before the first step changes anything.
    pub preflight: Vec<Check>,
    /// Steps in execution order, grouped per node (relays) or per phase (clusters).
    pub sections: Vec<Section>,
    /// What the reader should know: costs, skipped checks, things left to the operator.
    pub notes: Vec<String>,
    /// Relays found out of the advertised list, left so by an earlier run
    /// (its id) that this run continues: taken out again is no change.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub continues: std::collections::BTreeMap<String, String>,
    /// `--force`: a drain that times out may end in a confirmed restart.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaybookRef {
    pub name: String,
    /// `built-in` or the path of the override file.
    pub origin: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 1-based, counted across the whole plan.
    pub number: usize,
    /// The node the step is for.
    pub node: String,
    /// What the step does, in a few words.
    pub title: String,
    /// The playbook step it came from: `file:line`.
    pub source: String,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileEdit {
    pub on: Host,
    pub path: String,
    /// Unified diff of the real file; empty when the file is already as wanted.
    pub diff: String,
}

#[derive(Debug, Clone, Serialize)]
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
        gate: &'static str,
        /// The fact, in words: "allocations on relay-1 <= 0".
        fact: String,
        /// Where the fact is read from.
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        threshold: Option<u64>,
        poll: String,
        poll_secs: f64,
        timeout: String,
        timeout_secs: f64,
        on_timeout: String,
    },
    /// Take a relay out of (or put it back into) the advertised list: the file
    /// edit and the commands that apply it, as one unit: if a command fails the
    /// file is restored.
    Advertise {
        out: bool,
        backend: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        edit: Option<FileEdit>,
        commands: Vec<Command>,
    },
    /// A command sent to the relay's status port (restund's `drain_enable`).
    StatusCommand {
        on: Host,
        via: String,
        command: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cost: Option<String>,
    },
    Upload {
        on: Host,
        /// What goes into the file, in words ("certificate chain from new.pem").
        content: String,
        /// Local files, written one after the other.
        from: Vec<String>,
        /// `chain` or `key`: only that part of `from` goes into the file
        /// (a bundle split into coturn's two files).
        #[serde(skip_serializing_if = "Option::is_none")]
        cut: Option<&'static str>,
        to: String,
        mode: String,
        /// Written beside `to`, synced and checked by SHA-256, then renamed over it.
        temp: String,
        /// The file now at `to` is kept under this name.
        backup: String,
    },
    SetConfig {
        on: Host,
        path: String,
        set: Vec<(String, String)>,
        unset: Vec<String>,
    },
    Confirm {
        prompt: String,
        show_allocations: bool,
    },
}

impl Plan {
    /// Every step, in execution order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.sections.iter().flat_map(|s| s.steps.iter())
    }
}

/// The procedure was refused because of the deployment's state (not a mistake
/// in the input): exit status 1.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

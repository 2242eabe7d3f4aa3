//! The executor's state and what every part of it uses: the options, the
//! stop signal, the events a run reports, and running one of the plan's
//! commands or asking the operator.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::error::Stopped;
use crate::journal::{self, Event, Journal};
use crate::plan::{Action, Command, Plan, Step};
use crate::printer::{Printer, Tone};
use crate::remote::{Node, Remote};

/// What one reading of a gate's fact found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Holds(String),
    NotYet(String),
}

/// How a run is carried out.
pub struct Options {
    /// How many nodes the safety checks read at once.
    pub forks: usize,
    /// Where the run's journal goes, and the inventory's name in it.
    pub state_dir: PathBuf,
    pub inventory_id: String,
    pub yes: bool,
    /// Where everything the run says goes.
    pub printer: Arc<Printer>,
    pub control_dir: PathBuf,
    pub ssh_persist: Option<Duration>,
    /// Continue an earlier run of this very plan: skip the steps it
    /// finished, with what they kept.
    pub resume: Option<Resume>,
    /// `--break-lock`: take over a site lock another run holds, once confirmed.
    pub break_lock: bool,
    /// `--notify CMD`: run with `sh -c` on every change of the run's state,
    /// the event as one JSON line on its stdin.
    pub notify: Option<String>,
}

/// How long a `--notify` command may take before it is stopped: a hook that
/// hangs must not hold a rollout.
const NOTIFY_WITHIN: Duration = Duration::from_secs(10);

/// What an earlier run of the plan did, from its journal.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub done: std::collections::BTreeSet<usize>,
    pub records: BTreeMap<(String, String), String>,
    /// The step that began and did not finish when the run was cut short.
    pub interrupted: Option<usize>,
}

/// The stop signal a run is handed: the first press stops at the next safe
/// point; the second abandons the remote command running (a local one is
/// killed), so the step's own restore, the journal and the summary still run.
#[derive(Clone)]
pub struct Stop {
    presses: Arc<tokio::sync::watch::Sender<u8>>,
}

impl Default for Stop {
    fn default() -> Stop {
        Stop {
            presses: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Stop {
    pub fn requested(&self) -> bool {
        *self.presses.borrow() > 0
    }

    /// Asks the run to stop; returns how many times it has been asked.
    pub fn press(&self) -> u8 {
        let mut n = 0;
        self.presses.send_modify(|p| {
            *p = p.saturating_add(1);
            n = *p;
        });
        n
    }

    /// Resolves once a stop at once is asked for.
    pub(super) async fn at_once(&self) {
        let mut rx = self.presses.subscribe();
        let _ = rx.wait_for(|p| *p >= 2).await;
    }

    /// Presses this stop on every Ctrl-C, saying what each press does.
    /// Call from inside the runtime the run uses.
    pub fn on_ctrl_c(&self, out: Arc<Printer>) {
        let stop = self.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if stop.press() == 1 {
                    out.line(
                        "Interrupted",
                        "finishing the running command, then stopping at the next safe point (Ctrl-C again stops at once)",
                        Tone::Warn,
                    );
                } else {
                    out.line("Stopping", "abandoning the running command", Tone::Warn);
                }
            }
        });
    }
}

/// Runs `fut` unless a stop at once comes first: then the future (and the
/// command it runs) is dropped and the step sees [`Stopped`].
pub(super) async fn unless_stopped<T>(
    stop: &Stop,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = fut => r,
        _ = stop.at_once() => Err(anyhow::Error::new(Stopped).context("stopped at once by a second Ctrl-C; the running command was abandoned")),
    }
}

/// What a run says on stdout with `--output json`: one object per line.
/// Its shape is documented in README.md.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum RunEvent<'a> {
    /// The run begins with the plan it executes, exactly.
    Start { run: &'a str, plan: &'a Plan },
    /// A safety check before anything changes.
    Check {
        check: &'a str,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    StepStart {
        number: usize,
        node: &'a str,
        title: &'a str,
    },
    StepEnd {
        number: usize,
        node: &'a str,
        ok: bool,
        secs: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Every reading a gate takes, with its verdict.
    Reading {
        number: usize,
        node: &'a str,
        gate: &'a str,
        /// `holds`, `not-yet` or `timed-out`.
        verdict: &'a str,
        reading: &'a str,
        elapsed_secs: f64,
    },
    /// A node's rollback begins: `cause` is the step's failure.
    Rollback { node: &'a str, cause: String },
    /// One step of a rollback, numbered within it (R1..).
    RollbackStep {
        number: usize,
        node: &'a str,
        title: &'a str,
        /// `done`, `failed`, or `skipped` (a restore whose upload did not complete).
        result: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// How the run ended, and every node's state.
    Summary {
        outcome: &'a str,
        secs: f64,
        steps_done: usize,
        steps_total: usize,
        nodes: Vec<NodeSummary<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        journal: Option<String>,
    },
}

#[derive(Debug, serde::Serialize)]
pub struct NodeSummary<'a> {
    pub node: &'a str,
    pub steps_done: usize,
    pub steps_total: usize,
    /// `false`: out of the advertised list at the end; `null`: not touched.
    pub advertised: Option<bool>,
    /// The relay's own drain mode is still on.
    pub relay_drain: bool,
}

/// What a run did to one node, for the summary.
#[derive(Debug, Default, Clone)]
pub(super) struct NodeState {
    /// `Some(false)` once taken out of the advertised list, `Some(true)` once back.
    pub(super) advertised: Option<bool>,
    /// When it was taken out of the advertised list (Unix seconds).
    pub(super) out_since: Option<u64>,
    pub(super) relay_drain: bool,
    /// A drain on that only the process's end ends (coturn's): the commands
    /// that end it.
    pub(super) drain_ended_by: Option<Vec<crate::plan::Command>>,
    pub(super) steps_done: usize,
    pub(super) steps_total: usize,
}

impl NodeState {
    /// What a step done `at` (Unix seconds) did to the node.
    pub(super) fn apply(&mut self, action: &Action, at: u64) {
        match action {
            Action::Advertise { out, .. } => {
                self.advertised = Some(!out);
                self.out_since = out.then_some(at);
            }
            Action::StatusCommand { command, .. } => self.relay_drain = command == "drain_enable",
            Action::DrainToExit { ended_by, .. } => {
                self.relay_drain = true;
                self.drain_ended_by = Some(ended_by.clone());
            }
            Action::Run { command } if self.drain_ended_by.as_ref().is_some_and(|e| e.contains(command)) => {
                self.relay_drain = false;
                self.drain_ended_by = None;
            }
            _ => {}
        }
    }
}

pub struct Executor<'a> {
    pub(super) plan: &'a Plan,
    pub(super) remote: Arc<Remote>,
    pub(super) opts: Options,
    pub(super) out: Arc<Printer>,
    pub(super) stop: Stop,
    pub(super) journal: Option<Journal>,
    /// Outputs kept by `record` steps, by (node, name).
    pub(super) records: BTreeMap<(String, String), String>,
    pub(super) state: BTreeMap<String, NodeState>,
    /// The files of the new certificate as the `bundle-valid` check read
    /// and checked them, by path: what uploads write.
    pub(super) files: BTreeMap<String, Vec<u8>>,
    /// Numbers of the steps that completed.
    pub(super) finished: std::collections::BTreeSet<usize>,
    /// Trust stores read so far, by their CA files: a gate polls with one
    /// instead of reading the system's store again every poll.
    pub(super) trust: std::sync::Mutex<BTreeMap<Vec<String>, Arc<crate::cert::Trust>>>,
    /// The site locks taken: (lock, node) indexes into the plan's locks.
    pub(super) locks_held: Vec<(usize, usize)>,
    /// etcd locks: the lease each is held under, by lock index.
    pub(super) leases: BTreeMap<usize, String>,
    /// The tasks renewing those leases.
    pub(super) keepers: Vec<tokio::task::JoinHandle<()>>,
    /// The steps already run to undo an earlier one as the run stops.
    pub(super) undone_by: std::collections::BTreeSet<usize>,
}

impl Executor<'_> {
    /// Records a finished step: the journal, and the node's state for the summary.
    /// The system's trust store plus `ca`, read once per run.
    pub(super) fn trust(&self, ca: &[String]) -> anyhow::Result<Arc<crate::cert::Trust>> {
        let mut cache = self.trust.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(ca) {
            return Ok(t.clone());
        }
        let files: Vec<PathBuf> = ca.iter().map(PathBuf::from).collect();
        let t = Arc::new(crate::cert::Trust::load(&files)?);
        cache.insert(ca.to_vec(), t.clone());
        Ok(t)
    }

    /// Hands `event` to the `--notify` command, if any, as one JSON line
    /// (with the run id and procedure) on its stdin, and waits for it (10 s
    /// at most). A hook that fails is said, and the run goes on.
    pub(super) async fn notify(&self, event: &RunEvent<'_>) {
        use tokio::io::AsyncWriteExt;
        let Some(cmd) = &self.opts.notify else { return };
        let Ok(mut v) = serde_json::to_value(event) else {
            return;
        };
        if let Some(o) = v.as_object_mut() {
            o.insert("run".into(), self.plan.run.clone().into());
            o.insert("procedure".into(), self.plan.procedure.clone().into());
        }
        let line = format!("{v}\n");
        let spawned = tokio::process::Command::new("sh")
            .args(["-c", cmd])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.out.line(
                    "Warning",
                    &format!("--notify `{cmd}` could not be started: {e}"),
                    Tone::Warn,
                );
                return;
            }
        };
        let stdin = child.stdin.take();
        let ran = tokio::time::timeout(NOTIFY_WITHIN, async move {
            if let Some(mut s) = stdin {
                // A hook that does not read its stdin is its own business.
                let _ = s.write_all(line.as_bytes()).await;
            }
            child.wait_with_output().await
        })
        .await;
        match ran {
            Ok(Ok(o)) if o.status.success() => {}
            Ok(Ok(o)) => self.out.line(
                "Warning",
                &format!(
                    "--notify `{cmd}` failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("")
                ),
                Tone::Warn,
            ),
            Ok(Err(e)) => self
                .out
                .line("Warning", &format!("--notify `{cmd}` failed: {e}"), Tone::Warn),
            Err(_) => self.out.line(
                "Warning",
                &format!(
                    "--notify `{cmd}` did not finish within {}s and was stopped",
                    NOTIFY_WITHIN.as_secs()
                ),
                Tone::Warn,
            ),
        }
    }

    /// Appends one event to the run's journal.
    pub(super) fn journal(&mut self, event: Event) -> anyhow::Result<()> {
        match &mut self.journal {
            Some(j) => j.record(&event),
            None => Ok(()),
        }
    }

    /// Keeps a fact for later steps, in the journal too.
    pub(super) fn keep(&mut self, node: &str, name: &str, value: String) -> anyhow::Result<()> {
        if let Some(j) = &mut self.journal {
            j.record(&Event::Record {
                node: node.to_owned(),
                name: name.to_owned(),
                value: value.clone(),
                at: journal::now(),
            })?;
        }
        self.records.insert((node.to_owned(), name.to_owned()), value);
        Ok(())
    }

    pub(super) fn done(&mut self, step: &Step) -> anyhow::Result<()> {
        self.record_done(step, true)
    }

    /// Records a finished step; a rollback's (`counted` false) is not one of
    /// the plan's steps, but what it did to the node's state is recorded.
    pub(super) fn record_done(&mut self, step: &Step, counted: bool) -> anyhow::Result<()> {
        if let Some(j) = &mut self.journal {
            if counted {
                j.record(&Event::Step {
                    number: step.number,
                    node: step.node.clone(),
                    title: step.title.clone(),
                    at: journal::now(),
                })?;
            }
            if let Action::Advertise { out, .. } = &step.action {
                j.record(&Event::Advertised {
                    node: step.node.clone(),
                    out: *out,
                    at: journal::now(),
                })?;
            }
        }
        let s = self.state.entry(step.node.clone()).or_default();
        // A step done before (a question asked again) counts once.
        if counted && self.finished.insert(step.number) {
            s.steps_done += 1;
        }
        s.apply(&step.action, journal::now());
        Ok(())
    }

    /// Whether the run switched `node`'s own drain mode on and not yet off.
    pub(super) fn draining(&self, node: &str) -> bool {
        self.state.get(node).is_some_and(|s| s.relay_drain)
    }

    /// How to reach node `name`, as the plan says.
    pub(super) fn node(&self, name: &str) -> anyhow::Result<Node> {
        self.plan.node_named(name)
    }

    /// Runs a command where the plan says: on a node, or here. A stop at once
    /// abandons it.
    pub(super) async fn run(&self, c: &Command) -> anyhow::Result<String> {
        let node = self.plan.node(&c.on)?;
        let t = node.access.ssh.command_timeout;
        unless_stopped(&self.stop, async {
            Ok(self.remote.run(&node, c, t).await?.stdout)
        })
        .await
    }

    /// Runs a command whose exit status is an answer: the status and stdout.
    pub(super) async fn probe(&self, c: &Command) -> anyhow::Result<(i32, String)> {
        let node = self.plan.node(&c.on)?;
        let t = node.access.ssh.command_timeout;
        unless_stopped(&self.stop, async {
            let out = self.remote.probe(&node, c, t, None).await?;
            Ok((out.code, out.stdout))
        })
        .await
    }

    /// Asks a yes/no question: `--yes` answers yes; with no terminal, refuse.
    pub(super) async fn ask(&self, question: &str) -> anyhow::Result<()> {
        if self.opts.yes {
            self.out.note(&format!("{question}: yes (--yes)"));
            return Ok(());
        }
        if !std::io::stdin().is_terminal() || !console::Term::stderr().is_term() {
            bail!(
                "`{question}?` needs an answer, and there is no terminal to ask on\nhelp: pass `--yes` to answer yes in automation"
            );
        }
        // Asked off the run's thread: while the operator thinks, the run's
        // other tasks (an etcd lock's renewal) go on.
        let prompt = question.to_owned();
        let yes = tokio::task::spawn_blocking(move || {
            dialoguer::Confirm::new()
                .with_prompt(prompt)
                .default(false)
                .interact_on(&console::Term::stderr())
        })
        .await
        .context("asking for confirmation")?
        .context("asking for confirmation")?;
        if !yes {
            bail!("not confirmed: {question}");
        }
        Ok(())
    }
}

pub(super) fn verb(a: &Action) -> &'static str {
    match a {
        Action::Run { .. } => "Running",
        Action::Record { .. } | Action::RecordCalls { .. } => "Reading",
        Action::Gate {
            gate: crate::plan::Gate::Drained { .. },
            ..
        } => "Draining",
        Action::Gate { .. } => "Waiting",
        Action::Safety { .. } => "Checking",
        Action::Advertise { out: true, .. } => "Withdrawing",
        Action::Advertise { out: false, .. } => "Advertising",
        Action::StatusCommand { .. } | Action::DrainToExit { .. } => "Signalling",
        Action::Upload { .. } => "Uploading",
        Action::SetConfig { .. } => "Editing",
        Action::DatastoreConfig { .. } => "Checking",
        Action::CopyFile { .. } => "Copying",
        Action::Confirm { .. } => "Confirming",
        Action::ReadServed { .. } => "Reading",
        Action::Restore { .. } => "Restoring",
    }
}

//! Running a plan: the very object `--dry-run` prints, step by step.
//!
//! Before anything changes, the executor checks that it can perform every
//! step of the plan (and refuses, changing nothing, if the plan needs a part
//! that is not built yet), then runs the plan's safety checks. Steps run in
//! order, one at a time. Gates fail closed. The first Ctrl-C lets the running
//! command finish and stops at the next safe point; a second one stops at
//! once. Whatever happens, the summary says where the run stopped and what
//! state every node was left in.

mod checks;
mod gates;
mod steps;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::error::{self, Kind};
use crate::journal::{self, Event, Journal};
use crate::plan::{Action, Plan, Step};
use crate::printer::{Printer, Tone};
use crate::remote::{Node, Remote};

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
    async fn at_once(&self) {
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
async fn unless_stopped<T>(
    stop: &Stop,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = fut => r,
        _ = stop.at_once() => Err(anyhow::Error::new(Stopped).context("stopped at once by a second Ctrl-C; the running command was abandoned")),
    }
}

/// The run was stopped (Ctrl-C).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by Ctrl-C")
    }
}

impl std::error::Error for Stopped {}

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
struct NodeState {
    /// `Some(false)` once taken out of the advertised list, `Some(true)` once back.
    advertised: Option<bool>,
    relay_drain: bool,
    steps_done: usize,
    steps_total: usize,
}

pub struct Executor<'a> {
    plan: &'a Plan,
    remote: Arc<Remote>,
    opts: Options,
    out: Arc<Printer>,
    stop: Stop,
    journal: Option<Journal>,
    /// Outputs kept by `record` steps, by (node, name).
    records: BTreeMap<(String, String), String>,
    state: BTreeMap<String, NodeState>,
}

/// Runs the plan, and only the plan; the error says why it did not finish.
pub async fn run(plan: &Plan, opts: Options, stop: Stop) -> anyhow::Result<()> {
    let remote = Arc::new(Remote::with_persist(opts.control_dir.clone(), opts.ssh_persist)?);
    let out = opts.printer.clone();
    let mut state = BTreeMap::new();
    for step in plan.steps() {
        state
            .entry(step.node.clone())
            .or_insert_with(NodeState::default)
            .steps_total += 1;
    }
    let mut journal = Journal::create(&opts.state_dir, &plan.run)?;
    journal.record(&Event::Start {
        run: plan.run.clone(),
        procedure: plan.procedure.clone(),
        inventory: opts.inventory_id.clone(),
        targets: plan.targets.clone(),
        at: journal::now(),
        plan: Some(Box::new(plan.clone())),
    })?;
    let mut ex = Executor {
        journal: Some(journal),
        plan,
        remote,
        opts,
        out,
        stop,
        records: BTreeMap::new(),
        state,
    };
    let started = Instant::now();
    ex.out.event(&RunEvent::Start { run: &plan.run, plan });
    let result = ex.execute().await;
    ex.summary(&result, started.elapsed());
    let outcome = match &result {
        Ok(()) => "done",
        Err(e) if error::is(e, Kind::Refused) => "refused",
        Err(e) if error::is(e, Kind::Stopped) => "stopped",
        Err(_) => "failed",
    };
    ex.out.event(&RunEvent::Summary {
        outcome,
        secs: started.elapsed().as_secs_f64(),
        steps_done: ex.state.values().map(|s| s.steps_done).sum(),
        steps_total: ex.state.values().map(|s| s.steps_total).sum(),
        nodes: ex
            .state
            .iter()
            .map(|(node, s)| NodeSummary {
                node,
                steps_done: s.steps_done,
                steps_total: s.steps_total,
                advertised: s.advertised,
                relay_drain: s.relay_drain,
            })
            .collect(),
        journal: ex.journal.as_ref().map(|j| j.path().display().to_string()),
    });
    if let Some(j) = &mut ex.journal {
        let message = result
            .as_ref()
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        if let Err(e) = j.record(&Event::End {
            outcome: outcome.into(),
            message,
            at: journal::now(),
        }) {
            tracing::warn!("cannot write the journal: {e:#}");
        }
        if outcome != "refused" {
            ex.out.note(&format!("journal: {}", j.path().display()));
        }
    }
    if let Ok(remote) = Arc::try_unwrap(ex.remote) {
        remote.close().await;
    }
    result
}

impl Executor<'_> {
    async fn execute(&mut self) -> anyhow::Result<()> {
        if !self.plan.not_built.is_empty() {
            return Err(error::refused(format!(
                "refusing: this plan needs parts of opsctl that are not built yet, so nothing was run or changed:\n  - {}",
                self.plan.not_built.join("\n  - ")
            )));
        }
        self.out.status(
            "Checking",
            &format!("{} safety checks before any change", self.plan.preflight.len()),
        );
        for check in &self.plan.preflight {
            let name = check.kind.name();
            let checked = unless_stopped(&self.stop.clone(), checks::preflight(self, &check.kind)).await;
            self.out.event(&RunEvent::Check {
                check: name,
                ok: checked.is_ok(),
                error: checked.as_ref().err().map(|e| format!("{e:#}")),
            });
            if let Err(e) = checked {
                if e.is::<Stopped>() {
                    return Err(e);
                }
                return Err(error::refused(format!(
                    "refusing: safety check `{name}` failed; nothing was changed: {e:#}"
                )));
            }
            self.out.note(&format!("ok: {name}"));
        }
        let plan = self.plan;
        for section in &plan.sections {
            self.out.status("Starting", &section.title);
            for step in &section.steps {
                if self.stop.requested() {
                    return Err(
                        anyhow::Error::new(Stopped).context(format!("stopped before step {}", step.number))
                    );
                }
                self.out.status(
                    verb(&step.action),
                    &format!("{}. {}: {}", step.number, step.node, step.title),
                );
                self.run_step(step).await.with_context(|| {
                    format!("step {} ({}: {}) failed", step.number, step.node, step.title)
                })?;
            }
        }
        Ok(())
    }

    /// Performs one step, with its events, and records it once done.
    async fn run_step(&mut self, step: &Step) -> anyhow::Result<()> {
        self.out.event(&RunEvent::StepStart {
            number: step.number,
            node: &step.node,
            title: &step.title,
        });
        let began = Instant::now();
        let result = steps::perform(self, step).await;
        self.out.event(&RunEvent::StepEnd {
            number: step.number,
            node: &step.node,
            ok: result.is_ok(),
            secs: began.elapsed().as_secs_f64(),
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        });
        result?;
        self.done(step)
    }

    /// Records a finished step: the journal, and the node's state for the summary.
    fn done(&mut self, step: &Step) -> anyhow::Result<()> {
        if let Some(j) = &mut self.journal {
            j.record(&Event::Step {
                number: step.number,
                node: step.node.clone(),
                title: step.title.clone(),
                at: journal::now(),
            })?;
            if let Action::Advertise { out, .. } = &step.action {
                j.record(&Event::Advertised {
                    node: step.node.clone(),
                    out: *out,
                    at: journal::now(),
                })?;
            }
        }
        let s = self.state.entry(step.node.clone()).or_default();
        s.steps_done += 1;
        match &step.action {
            Action::Advertise { out, .. } => s.advertised = Some(!out),
            Action::StatusCommand { command, .. } => s.relay_drain = command == "drain_enable",
            _ => {}
        }
        Ok(())
    }

    /// Whether the run switched `node`'s own drain mode on and not yet off.
    fn draining(&self, node: &str) -> bool {
        self.state.get(node).is_some_and(|s| s.relay_drain)
    }

    /// How to reach node `name`, as the plan says.
    fn node(&self, name: &str) -> anyhow::Result<Node> {
        self.plan.node(&crate::plan::Host {
            node: name.to_owned(),
            address: String::new(),
        })
    }

    /// The closing report: how long, how far, and every node's state with
    /// what to do about a relay left out of service.
    fn summary(&self, result: &anyhow::Result<()>, elapsed: Duration) {
        let took = crate::duration::format(Duration::from_secs(elapsed.as_secs()));
        let done: usize = self.state.values().map(|s| s.steps_done).sum();
        let total: usize = self.state.values().map(|s| s.steps_total).sum();
        match result {
            Err(e) if error::is(e, Kind::Refused) => {
                self.out.line(
                    "Refused",
                    &format!("{}: nothing was changed", self.plan.procedure),
                    Tone::Bad,
                );
                return;
            }
            Ok(()) => self.out.status(
                "Finished",
                &format!(
                    "{} on {} in {took}: {done} of {total} steps",
                    self.plan.procedure,
                    self.plan.targets.join(", ")
                ),
            ),
            Err(e) if e.is::<Stopped>() || e.chain().any(|c| c.is::<Stopped>()) => self.out.line(
                "Stopped",
                &format!(
                    "{} after {took}: {done} of {total} steps done",
                    self.plan.procedure
                ),
                Tone::Warn,
            ),
            Err(_) => self.out.line(
                "Failed",
                &format!(
                    "{} after {took}: {done} of {total} steps done",
                    self.plan.procedure
                ),
                Tone::Bad,
            ),
        }
        for (node, s) in &self.state {
            let mut words = vec![format!("{}/{} steps", s.steps_done, s.steps_total)];
            match s.advertised {
                Some(false) => words.push("OUT of the advertised list".into()),
                Some(true) => words.push("back in the advertised list".into()),
                None => {}
            }
            if s.relay_drain {
                words.push("its own drain mode is ON".into());
            }
            let tone = if s.advertised == Some(false) || s.relay_drain {
                Tone::Warn
            } else {
                Tone::Good
            };
            self.out.line("", &format!("{node}: {}", words.join(", ")), tone);
            if s.relay_drain {
                self.out.line(
                    "",
                    &format!(
                        "    before {node} is advertised again, switch its own drain mode off: {}",
                        self.drain_off_hint(node)
                    ),
                    Tone::Warn,
                );
            }
            if s.advertised == Some(false) {
                self.out.line(
                    "",
                    &format!(
                        "    to put {node} back in service: {}",
                        self.readvertise_hint(node)
                    ),
                    Tone::Warn,
                );
            }
        }
        if result.is_err() && done < total {
            // The journal lets the same command pick up where this one stopped.
            let again: Vec<String> = std::iter::once("opsctl".to_owned())
                .chain(std::env::args().skip(1))
                .collect();
            self.out.line(
                "",
                &format!(
                    "to continue where this run stopped: fix the cause, then run `{}` again",
                    crate::shell::join(&again)
                ),
                Tone::Warn,
            );
        }
    }

    /// How the plan switches `node`'s own drain mode off.
    fn drain_off_hint(&self, node: &str) -> String {
        let off = self.plan.steps().find_map(|s| match &s.action {
            Action::StatusCommand { command, send, .. } if s.node == node && command == "drain_disable" => {
                Some(send)
            }
            _ => None,
        });
        match off.map(|s| &s.how) {
            Some(crate::stats::How::Command { command, .. }) => {
                format!("run `{}` on {}", command.line, command.on.node)
            }
            Some(crate::stats::How::Here { addr, message }) => format!("send `{message}` to udp {addr}"),
            None => "send `drain_disable` to its status port".into(),
        }
    }

    fn readvertise_hint(&self, node: &str) -> String {
        let step = self
            .plan
            .steps()
            .find(|s| s.node == node && matches!(s.action, Action::Advertise { out: false, .. }));
        match step {
            Some(Step {
                number,
                action:
                    Action::Advertise {
                        edit: Some(e),
                        commands,
                        ..
                    },
                ..
            }) => format!(
                "restore its lines in {} as step {number} of the plan shows (`--dry-run`), then run {}",
                e.path,
                commands
                    .iter()
                    .map(|c| format!("`{}`", c.line))
                    .collect::<Vec<_>>()
                    .join(", then ")
            ),
            Some(Step {
                action: Action::Advertise { commands, .. },
                ..
            }) => format!(
                "run {}",
                commands
                    .iter()
                    .map(|c| format!("`{}`", c.line))
                    .collect::<Vec<_>>()
                    .join(", then ")
            ),
            _ => "put it back in the list clients receive".into(),
        }
    }
}

fn verb(a: &Action) -> &'static str {
    match a {
        Action::Run { .. } => "Running",
        Action::Record { .. } => "Reading",
        Action::Gate {
            gate: crate::plan::Gate::Drained { .. },
            ..
        } => "Draining",
        Action::Gate { .. } => "Waiting",
        Action::Safety { .. } => "Checking",
        Action::Advertise { out: true, .. } => "Withdrawing",
        Action::Advertise { out: false, .. } => "Advertising",
        Action::StatusCommand { .. } => "Signalling",
        Action::Upload { .. } => "Uploading",
        Action::SetConfig { .. } => "Editing",
        Action::Confirm { .. } => "Confirming",
    }
}

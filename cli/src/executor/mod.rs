//! Running a plan: the very object `--dry-run` prints, step by step.
//!
//! Before anything changes, the executor checks that it can perform every
//! step of the plan (and refuses, changing nothing, if the plan needs a part
//! that is not built yet), then runs the plan's safety checks. Steps run in
//! order, one at a time; the executor reads the plan and nothing else (no
//! inventory). Gates fail closed. The stop signal it is handed (Ctrl-C) stops
//! at the next safe point the first time; the second time it abandons the
//! command running, and the step's own restore, the journal and the summary
//! still run. Whatever happens, the summary says where the run stopped and
//! what state every node was left in.

mod checks;
mod core;
mod gates;
mod lock;
mod rtpengine;
mod steps;
mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

pub use self::core::{Executor, NodeSummary, Options, Resume, RunEvent, Stop};
use self::core::{NodeState, unless_stopped, verb};
pub use crate::error::Stopped;
use crate::error::{self, Kind};
use crate::journal::{self, Event, Journal};
use crate::plan::{Action, CheckKind, DoneIf, Gate, OnTimeout, Plan, Rollback, Step};
use crate::remote::Remote;

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
    let mut journal = match &opts.resume {
        Some(_) => Journal::reopen(&opts.state_dir, &plan.run)?,
        None => Journal::create(&opts.state_dir, &plan.run)?,
    };
    match &opts.resume {
        // The same journal goes on: its plan is this plan.
        Some(r) => journal.record(&Event::Resume {
            done: r.done.len(),
            at: journal::now(),
            pid: std::process::id(),
        })?,
        None => journal.record(&Event::Start {
            run: plan.run.clone(),
            procedure: plan.procedure.clone(),
            inventory: opts.inventory_id.clone(),
            targets: plan.targets.clone(),
            at: journal::now(),
            plan: Some(Box::new(plan.clone())),
            user: crate::lock::user(),
            machine: crate::lock::machine(),
            pid: std::process::id(),
        })?,
    }
    let resume = opts.resume.clone().unwrap_or_default();
    let mut ex = Executor {
        journal: Some(journal),
        plan,
        remote,
        opts,
        out,
        stop,
        records: resume.records.clone(),
        state,
        files: BTreeMap::new(),
        finished: resume.done.clone(),
        trust: Default::default(),
        locks_held: Vec::new(),
        leases: BTreeMap::new(),
        keepers: Vec::new(),
        undone_by: Default::default(),
    };
    // What the steps done before did to each node: a resumed run's summary
    // says a relay it left out is out.
    for step in plan.steps().filter(|s| resume.done.contains(&s.number)) {
        if let Some(s) = ex.state.get_mut(&step.node) {
            s.steps_done += 1;
            s.apply(&step.action, journal::now());
        }
    }
    let started = Instant::now();
    ex.out.event(&RunEvent::Start { run: &plan.run, plan });
    let result = ex.execute().await;
    lock::release(&mut ex).await;
    ex.summary(&result, started.elapsed());
    let outcome = match &result {
        Ok(()) => "done",
        Err(e) if error::is(e, Kind::Refused) => "refused",
        Err(e) if error::is(e, Kind::Stopped) => "stopped",
        Err(_) => "failed",
    };
    let summary = RunEvent::Summary {
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
    };
    ex.out.event(&summary);
    ex.notify(&summary).await;
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
        // What the plan says the operator should know, said before it runs.
        for n in &self.plan.notes {
            self.out.note(&format!("note: {n}"));
        }
        let resuming = self.opts.resume.is_some();
        if resuming {
            self.out.status(
                "Continuing",
                &format!(
                    "run {}: {} of its steps were done; the nodes are mid-change, so of the safety checks it passed before its first change only those that still mean something are read again: reachable, stats-readable and advertised on the nodes it has not left mid-change, peers-healthy, bundle-valid, and quorum-lost on the members it has not stopped (min-healthy is read again by each relay's own check before it goes out)",
                    self.plan.run,
                    self.finished.len()
                ),
            );
        } else {
            self.out.status(
                "Checking",
                &format!("{} safety checks before any change", self.plan.preflight.len()),
            );
        }
        // Continuing, only what still holds mid-change is read again.
        // Continuing, the members this run has not taken out yet must still
        // be without quorum: a cluster that came back meanwhile took writes
        // that stopping it now would lose.
        let taken_out: std::collections::BTreeSet<&str> = self
            .plan
            .steps()
            .filter(|s| s.takes_out && self.finished.contains(&s.number))
            .map(|s| s.node.as_str())
            .collect();
        // The members not taken out yet; none left, nothing to read.
        let not_out = |health: &[crate::plan::MemberRead]| {
            let left: Vec<_> = health
                .iter()
                .filter(|r| !taken_out.contains(r.member.as_str()))
                .cloned()
                .collect();
            (!left.is_empty()).then_some(left)
        };
        // Nodes the run took out of service and has not finished with: a
        // relay out of the list (maybe down for its restart or reboot),
        // whose own later steps reach it and wait for it.
        let mid_change: std::collections::BTreeSet<String> = self
            .plan
            .steps()
            .filter(|s| s.takes_out && self.finished.contains(&s.number))
            .map(|s| s.node.clone())
            .filter(|n| {
                self.plan
                    .steps()
                    .any(|s| &s.node == n && !self.finished.contains(&s.number))
            })
            .collect();
        let checks: Vec<CheckKind> = self
            .plan
            .preflight
            .iter()
            .filter_map(|c| match &c.kind {
                _ if !resuming => Some(c.kind.clone()),
                CheckKind::Reachable { nodes } => Some(CheckKind::Reachable {
                    nodes: nodes
                        .iter()
                        .filter(|h| !mid_change.contains(&h.node))
                        .cloned()
                        .collect(),
                }),
                CheckKind::StatsReadable { reads } => Some(CheckKind::StatsReadable {
                    reads: reads
                        .iter()
                        .filter(|r| !mid_change.contains(&r.relay))
                        .cloned()
                        .collect(),
                }),
                CheckKind::Advertised { values, relays } => Some(CheckKind::Advertised {
                    values: values.clone(),
                    relays: relays
                        .iter()
                        .filter(|(r, _)| !mid_change.contains(*r))
                        .map(|(r, u)| (r.clone(), u.clone()))
                        .collect(),
                }),
                CheckKind::PeersHealthy { .. } | CheckKind::BundleValid { .. } => Some(c.kind.clone()),
                CheckKind::QuorumLost { health, force } => {
                    not_out(health).map(|health| CheckKind::QuorumLost {
                        health,
                        force: *force,
                    })
                }
                CheckKind::ClearwaterQuorumLost { health, force } => {
                    not_out(health).map(|health| CheckKind::ClearwaterQuorumLost {
                        health,
                        force: *force,
                    })
                }
                _ => None,
            })
            .collect();
        let unchanged = if resuming {
            "nothing more was changed"
        } else {
            "nothing was changed"
        };
        // Once the targets answer, the sites are locked before the other
        // checks: two runs never both pass them.
        let mut locked = false;
        for kind in &checks {
            if !locked && !matches!(kind, CheckKind::Reachable { .. }) {
                lock::take(self).await?;
                locked = true;
            }
            let name = kind.name();
            let checked = unless_stopped(&self.stop.clone(), checks::preflight(self, kind)).await;
            self.out.event(&RunEvent::Check {
                check: name,
                ok: checked.is_ok(),
                error: checked.as_ref().err().map(|e| format!("{e:#}")),
            });
            if let Err(e) = checked {
                if e.is::<Stopped>() {
                    return Err(e);
                }
                // The cause stays an error of its own under the refusal.
                return Err(error::mark(
                    Kind::Refused,
                    e.context(format!("refusing: safety check `{name}` failed; {unchanged}")),
                ));
            }
            self.out.note(&format!("ok: {name}"));
        }
        if !locked {
            lock::take(self).await?;
        }
        let plan = self.plan;
        let interrupted = self.opts.resume.as_ref().and_then(|r| r.interrupted);
        for section in &plan.sections {
            self.out.status("Starting", &section.title);
            for step in &section.steps {
                // A question is asked again: the answer was for then; so is
                // a relay's safety check while it has not gone out: the
                // others may have changed since.
                let again = match step.action {
                    Action::Confirm { .. } => true,
                    Action::Safety { .. } => !plan
                        .steps()
                        .any(|s| s.node == step.node && s.takes_out && self.finished.contains(&s.number)),
                    _ => false,
                };
                if self.finished.contains(&step.number) && !again {
                    continue;
                }
                if interrupted == Some(step.number)
                    && let Some(check) = &step.done_if
                    && let Some(found) = self.already_done(step, check).await?
                {
                    self.out.note(&format!(
                        "{}. {}: {} began in the run cut short and happened: {found}; not done again",
                        step.number, step.node, step.title
                    ));
                    self.done(step)?;
                    continue;
                }
                if self.stop.requested() {
                    let e =
                        anyhow::Error::new(Stopped).context(format!("stopped before step {}", step.number));
                    return Err(self.undo(section, step.number - 1, e).await);
                }
                self.out.status(
                    verb(&step.action),
                    &format!("{}. {}: {}", step.number, step.node, step.title),
                );
                let result = self
                    .run_step(step)
                    .await
                    .with_context(|| format!("step {} ({}: {}) failed", step.number, step.node, step.title));
                if let Err(e) = result {
                    let e = self.undo(section, step.number, e).await;
                    return Err(match &section.rollback {
                        Some(rb)
                            if (rb.from..=rb.to).contains(&step.number) && !error::is(&e, Kind::Stopped) =>
                        {
                            self.roll_back(&step.node, rb, e).await
                        }
                        _ => e,
                    });
                }
            }
        }
        if !plan.next_steps.is_empty() {
            self.out.note("next steps, left to the operator:");
            for n in &plan.next_steps {
                self.out.note(&format!("  - {n}"));
            }
        }
        Ok(())
    }

    /// Runs each step of `section` that undoes a step begun by now (up to
    /// step `reached`) and has not run itself: the run stops, and what was
    /// changed only for a while (an rtpengine refusing new calls) must not
    /// stay so. They run even after a stop at once (a short command each,
    /// bounded by its timeout). The journal marks the step they undo not
    /// done, so a resumed run does it again; and unless a later step took
    /// the node further out of service (its restart), also every step done
    /// after it: a drain or a check that held while new calls were refused
    /// no longer does. Says what was undone; the error is an undo that failed.
    async fn undo_pending(
        &mut self,
        section: &crate::plan::Section,
        reached: usize,
    ) -> anyhow::Result<Vec<String>> {
        let mut said = Vec::new();
        for s in &section.steps {
            let Some(n) = s.undoes else { continue };
            if n > reached
                || s.number <= reached
                || self.finished.contains(&s.number)
                || !self.undone_by.insert(s.number)
            {
                continue;
            }
            self.out.status(
                "Undoing",
                &format!(
                    "{}. {}: {} (the run stops after step {n})",
                    s.number, s.node, s.title
                ),
            );
            // A second Ctrl-C abandoned the run's commands; this one still runs.
            let stop = std::mem::take(&mut self.stop);
            let done = steps::perform(self, s).await;
            self.stop = stop;
            if let Err(e) = done.and_then(|()| self.record_done(s, false)) {
                bail!(
                    "step {} ({}: {}) could not undo step {n} as the run stopped: {e:#}\ndo it by hand, as `--dry-run` shows step {}",
                    s.number,
                    s.node,
                    s.title,
                    s.number
                );
            }
            let taken_further = section.steps.iter().any(|t| {
                t.number > n
                    && t.number <= reached
                    && t.takes_out
                    && matches!(t.action, Action::Run { .. })
                    && self.finished.contains(&t.number)
            });
            let again: Vec<usize> = section
                .steps
                .iter()
                .map(|t| t.number)
                .filter(|&t| {
                    t == n || (!taken_further && t > n && t <= reached && self.finished.contains(&t))
                })
                .collect();
            for &t in &again {
                self.journal(journal::Event::Undone {
                    number: t,
                    by: s.number,
                    at: journal::now(),
                })?;
                self.finished.remove(&t);
            }
            said.push(format!(
                "step {} ran as the run stopped ({}: {}); a resumed run does step{} {} again",
                s.number,
                s.node,
                s.title,
                if again.len() == 1 { "" } else { "s" },
                again
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(said)
    }

    /// [`Self::undo_pending`] as a run stops with `cause`: the error says
    /// what was undone, or which undo failed.
    async fn undo(
        &mut self,
        section: &crate::plan::Section,
        reached: usize,
        cause: anyhow::Error,
    ) -> anyhow::Error {
        match self.undo_pending(section, reached).await {
            Ok(said) => said.into_iter().fold(cause, |c, s| c.context(s)),
            Err(e) => cause.context(format!("{e:#}")),
        }
    }

    /// Puts `node` back as it was after a step of its section failed: the
    /// plan's rollback, step by step. The error says what happened to it.
    async fn roll_back(&mut self, node: &str, rb: &Rollback, cause: anyhow::Error) -> anyhow::Error {
        self.out.status("Rolling back", &format!("{node}: {cause:#}"));
        for step in &rb.steps {
            let at = format!("R{}. {}: {}", step.number, step.node, step.title);
            if self.stop.requested() {
                return cause.context(format!(
                    "the rollback of {node} was stopped before {at}: {node} is left as that step found it"
                ));
            }
            if let Action::Restore { upload, path, .. } = &step.action
                && !self.finished.contains(upload)
            {
                self.out.note(&format!(
                    "{at}: step {upload} did not replace {path}, so nothing is put back"
                ));
                self.out.event(&RunEvent::RollbackStep {
                    number: step.number,
                    node,
                    title: &step.title,
                    result: "skipped",
                    error: None,
                });
                continue;
            }
            self.out.status(verb(&step.action), &at);
            let done = match steps::perform(self, step).await {
                Ok(()) => self.record_done(step, false),
                Err(e) => Err(e),
            };
            self.out.event(&RunEvent::RollbackStep {
                number: step.number,
                node,
                title: &step.title,
                result: if done.is_ok() { "done" } else { "failed" },
                error: done.as_ref().err().map(|e| format!("{e:#}")),
            });
            if let Err(e) = done {
                return cause.context(format!(
                    "{node} failed, and so did its rollback at {at}: {e:#}\n{node} is left as that step found it: look at it before anything else"
                ));
            }
        }
        let back = match self.state.get(node).and_then(|s| s.advertised) {
            Some(true) => ", and is back in the advertised list",
            _ => "",
        };
        error::mark(
            Kind::Failed,
            cause.context(format!(
                "{node} was rolled back: its old certificate files are back in place and it serves its old certificate again{back}; the rollout stops here"
            )),
        )
    }

    /// A step run again after its connection came back.
    async fn again(&mut self, step: &Step) -> anyhow::Result<()> {
        self.out.status(
            verb(&step.action),
            &format!(
                "{}. {}: {} (again: the connection was lost while it ran)",
                step.number, step.node, step.title
            ),
        );
        steps::perform(self, step).await
    }

    /// Waits, with backoff (1 s doubling to 30 s, for 5 minutes at most),
    /// until `node` answers SSH again after a connection was lost in step
    /// `number`; false if it does not, or a stop was asked for.
    async fn reconnect(&mut self, node: &str, number: usize, lost: &str) -> bool {
        const FOR: std::time::Duration = std::time::Duration::from_secs(300);
        let Ok(n) = self.node(node) else { return false };
        let since = Instant::now();
        let mut wait = std::time::Duration::from_secs(1);
        self.out.line(
            "Reconnecting",
            &format!(
                "{node}: step {number} lost its connection ({}); trying again for up to {}",
                lost.lines().next().unwrap_or(""),
                crate::duration::format(FOR)
            ),
            crate::printer::Tone::Warn,
        );
        loop {
            if self.stop.requested() {
                return false;
            }
            self.remote.forget_node(node).await;
            match self.remote.reachable(&n).await {
                Ok(()) => {
                    self.out.note(&format!(
                        "{node} answers again, after {}",
                        crate::duration::format(std::time::Duration::from_secs(since.elapsed().as_secs()))
                    ));
                    return true;
                }
                Err(e) if since.elapsed() + wait > FOR => {
                    self.out
                        .note(&format!("{node} still does not answer ({e}): giving up"));
                    return false;
                }
                Err(_) => {}
            }
            let until = Instant::now() + wait;
            while Instant::now() < until && !self.stop.requested() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            wait = (wait * 2).min(std::time::Duration::from_secs(30));
        }
    }

    /// For the step a run was in when it was cut short: whether it happened
    /// (in words), as its `done_if` says; `None`: it did not, and it is run
    /// again.
    async fn already_done(&mut self, step: &Step, check: &DoneIf) -> anyhow::Result<Option<String>> {
        match check {
            DoneIf::NewBoot { command, record } => {
                let Some(before) = self.records.get(&(step.node.clone(), record.clone())).cloned() else {
                    bail!(
                        "step {} ({}) began in the run cut short, but no `{record}` was kept before it, so whether {} rebooted cannot be told: not rebooting it blindly\nhelp: look at the node; once it is up, run the procedure again",
                        step.number,
                        step.title,
                        step.node
                    );
                };
                let node = self.plan.node(&command.on)?;
                self.remote.forget_node(&node.name).await;
                if let Err(e) = self.remote.reachable(&node).await {
                    let why = e.to_string();
                    return Ok(Some(format!(
                        "{} does not answer SSH ({}): it is going down or coming up",
                        step.node,
                        why.lines().next().unwrap_or("")
                    )));
                }
                let now = self.run(command).await?;
                Ok((now.trim() != before.trim())
                    .then(|| format!("its boot id is {}, not {} as before", now.trim(), before.trim())))
            }
        }
    }

    /// Performs one step, with its events, and records it once done.
    async fn run_step(&mut self, step: &Step) -> anyhow::Result<()> {
        self.out.event(&RunEvent::StepStart {
            number: step.number,
            node: &step.node,
            title: &step.title,
        });
        self.journal(Event::StepStart {
            number: step.number,
            node: step.node.clone(),
            title: step.title.clone(),
            at: journal::now(),
        })?;
        let began = Instant::now();
        let mut performed = steps::perform(self, step).await;
        // A connection lost in a step (a gate reads again on its own): once
        // the node answers again, the step is checked as a resumed run
        // checks it (a reboot that happened is not done again), else run
        // again, once: every step is written to be safe to repeat.
        if !matches!(step.action, Action::Gate { .. } | Action::Confirm { .. })
            && let Err(e) = &performed
            && lost_connection(e)
        {
            let lost = format!("{e:#}");
            if self.reconnect(&step.node, step.number, &lost).await {
                performed = match &step.done_if {
                    Some(check) => match self.already_done(step, check).await {
                        Ok(Some(found)) => {
                            self.out.note(&format!(
                                "{}. {}: {} happened before the connection was lost: {found}; not done again",
                                step.number, step.node, step.title
                            ));
                            Ok(())
                        }
                        Ok(None) => self.again(step).await,
                        Err(e) => Err(e),
                    },
                    None => self.again(step).await,
                };
            }
        }
        let result = match performed {
            // Found anywhere in the chain: context added on the way must not
            // turn a timeout into a plain failure that skips `on_timeout`.
            Err(e) => match e
                .chain()
                .find_map(|c| c.downcast_ref::<gates::TimedOut>())
                .map(|t| t.last.clone())
            {
                // Boxed: what a timeout ends in may run later steps of the plan.
                Some(last) => Box::pin(self.timed_out(step, &last)).await,
                None => Err(e),
            },
            ok => ok,
        };
        let end = RunEvent::StepEnd {
            number: step.number,
            node: &step.node,
            ok: result.is_ok(),
            secs: began.elapsed().as_secs_f64(),
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        };
        self.out.event(&end);
        self.notify(&end).await;
        if let Err(e) = &result {
            self.journal(Event::StepFailed {
                number: step.number,
                node: step.node.clone(),
                error: format!("{e:#}"),
                at: journal::now(),
            })?;
        }
        result?;
        self.done(step)
    }

    /// What a gate that timed out ends in, as the plan's `on_timeout` says:
    /// with `--force`, a confirmed go-on; with `readvertise`, the relay's own
    /// drain mode switched off and the relay put back (the plan's own later
    /// steps); and the run stops.
    async fn timed_out(&mut self, step: &Step, last: &str) -> anyhow::Result<()> {
        let ex = self;
        let Action::Gate {
            gate,
            fact,
            timeout,
            on_timeout,
            ..
        } = &step.action
        else {
            bail!("step {} is not a gate", step.number)
        };
        let (timeout, on_timeout) = (*timeout, *on_timeout);
        let waited = crate::duration::format(timeout);
        let node = &step.node;
        if let (OnTimeout::Force | OnTimeout::ForceElseReadvertise, Gate::Drained { stats, .. }) =
            (on_timeout, gate)
        {
            let n = crate::stats::read(&ex.remote, &ex.node(&stats.relay)?, stats)
                .await
                .map(|s| s.to_drain());
            let what = stats.source.kind().drains();
            let question = match n {
                Ok(n) => format!(
                    "the drain of {node} timed out after {waited}; restart it anyway, dropping its {n} {what}"
                ),
                Err(e) => bail!(
                    "the drain of {node} timed out and its allocations cannot be read ({e:#}): not restarting"
                ),
            };
            if ex.ask(&question).await.is_ok() {
                return Ok(());
            }
        }
        if matches!(
            on_timeout,
            OnTimeout::Readvertise | OnTimeout::ForceElseReadvertise
        ) {
            let plan = ex.plan;
            // Undo the relay's own drain mode first: a relay advertised while
            // draining refuses every new call.
            let later = plan.steps().filter(|s| s.node == *node && s.number > step.number);
            let undo: Vec<&Step> = later
                .filter(|s| match &s.action {
                    Action::StatusCommand { command, .. } => command == "drain_disable" && ex.draining(node),
                    Action::Advertise { out: false, .. } => true,
                    _ => false,
                })
                .collect();
            if undo.iter().any(|s| matches!(s.action, Action::Advertise { .. })) {
                // New calls allowed again before it is listed: a relay
                // advertised while refusing them fails every one.
                if let Some(section) = plan
                    .sections
                    .iter()
                    .find(|s| s.steps.iter().any(|t| t.number == step.number))
                {
                    for said in ex.undo_pending(section, step.number).await? {
                        ex.out.note(&said);
                    }
                }
                for back in undo {
                    ex.out.status(
                        verb(&back.action),
                        &format!(
                            "{}. {}: {} ({fact}: timed out)",
                            back.number, back.node, back.title
                        ),
                    );
                    // Boxed: performing a step may wait on a gate, which is where this came from.
                    Box::pin(ex.run_step(back)).await?;
                }
                bail!(
                    "timed out after {waited} waiting until {fact} ({last}); {node} was put back in the advertised list and the rollout stops"
                );
            }
        }
        if matches!(gate, Gate::Drained { .. }) {
            bail!(
                "timed out after {waited} waiting until {fact} ({last}); {node} stays out of the advertised list and the rollout stops"
            )
        }
        bail!("timed out after {waited} waiting until {fact}: {last}\nthe run stops here")
    }
}

/// Whether `e` is an SSH connection that was lost or could not be made.
fn lost_connection(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::remote::ExecError>(),
            Some(crate::remote::ExecError::Disconnected { .. } | crate::remote::ExecError::Connect { .. })
        )
    })
}

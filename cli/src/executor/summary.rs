//! The closing report of a run: how long, how far, and every node's state
//! with what to do about a relay left out of service.

use std::time::Duration;

use super::core::Executor;
use crate::error::{self, Kind};
use crate::plan::{Action, Step};
use crate::printer::Tone;

impl Executor<'_> {
    /// The closing report: how long, how far, and every node's state with
    /// what to do about a relay left out of service.
    pub(super) fn summary(&self, result: &anyhow::Result<()>, elapsed: Duration) {
        let took = crate::duration::format(Duration::from_secs(elapsed.as_secs()));
        let done: usize = self.state.values().map(|s| s.steps_done).sum();
        let total: usize = self.state.values().map(|s| s.steps_total).sum();
        match result {
            Err(e) if error::is(e, Kind::Refused) => {
                let what = if self.opts.resume.is_some() {
                    format!(
                        "nothing more was changed; run {} stays unfinished, {done} of {total} steps done",
                        self.plan.run
                    )
                } else {
                    "nothing was changed".to_owned()
                };
                self.out
                    .line("Refused", &format!("{}: {what}", self.plan.procedure), Tone::Bad);
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
            Err(e) if error::is(e, Kind::Stopped) => self.out.line(
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
                Some(false) => words.push(match s.out_since {
                    Some(t) => format!(
                        "OUT of the advertised list since {}",
                        crate::duration::utc_clock(t)
                    ),
                    None => "OUT of the advertised list".into(),
                }),
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
            // Nothing done: the same command starts it afresh; else the
            // journal lets `resume` pick up where this one stopped.
            let again: Vec<String> = if done == 0 {
                std::iter::once("opsctl".to_owned())
                    .chain(std::env::args().skip(1))
                    .collect()
            } else {
                ["opsctl", "resume", &self.plan.run].map(str::to_owned).to_vec()
            };
            self.out.line(
                "",
                &format!(
                    "to continue where this run stopped: fix the cause, then run `{}`",
                    crate::shell::join(&again)
                ),
                Tone::Warn,
            );
        }
    }

    /// How the plan switches `node`'s own drain mode off.
    fn drain_off_hint(&self, node: &str) -> String {
        if let Some(ends) = self.state.get(node).and_then(|s| s.drain_ended_by.as_ref()) {
            return format!(
                "nothing switches it off but ending the process: restart it, `{}` on {node}",
                ends[0].line
            );
        }
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

//! The steps of a relay plan: each playbook step expanded for one relay,
//! with the exact commands it runs and the gates it waits on.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use relay::kind::{COTURN_DRAIN_SINCE, version_at_least};
use relay::{RelayDrain, StatsSource};

use super::renew::CertPlan;
use super::request::Builder;
use super::*;
use crate::advertise::{self as adv, Entry, ValuesFile};
use crate::inventory::{AdvertiseCheck, Backend, OnTimeout as InvOnTimeout, Relay};
use crate::playbook::{self, Gate as PbGate, GateSpec, RunOn, ServiceAction, StepKind};

impl Builder<'_> {
    pub(super) fn relay_step(
        &mut self,
        r: &Relay,
        step: &playbook::Step,
        values: Option<&ValuesFile>,
        entries: Option<&Vec<Entry>>,
        cert: Option<&CertPlan>,
    ) -> anyhow::Result<Vec<Action>> {
        let vars = self.relay_vars(r);
        Ok(match &step.kind {
            StepKind::Confirm {
                message,
                show_allocations,
            } => vec![Action::Confirm {
                prompt: message.render(&vars),
                allocations: if *show_allocations {
                    Some(crate::stats::plan(r)?)
                } else {
                    None
                },
                service: show_allocations.then(|| ServiceProbe::of(r)),
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
                    RelayDrain::EndsInExit => return self.exit_drain(r, *on),
                };
                if !matches!(r.stats.source, StatsSource::Turnstats { .. }) {
                    bail!(
                        "relay `{}`: the relay's drain mode is switched through the turnstats status port, but its stats are read via {}",
                        r.name,
                        r.stats.source.via()
                    );
                }
                let command = if *on { "drain_enable" } else { "drain_disable" };
                vec![Action::StatusCommand {
                    command: command.into(),
                    send: crate::stats::status_port(r, command)?,
                    cost: cost.filter(|_| *on),
                }]
            }
            StepKind::NewSessions { refuse } => vec![self.new_sessions(r, *refuse)?],
            StepKind::RecordCalls => vec![self.record_calls(r)?],
            StepKind::Wait(spec) => self.relay_gate(r, spec, cert)?.into_iter().collect(),
            StepKind::Service(action) => {
                let argv = match action {
                    ServiceAction::Stop => r.service.stop.clone(),
                    ServiceAction::Start => r.service.start.clone(),
                    ServiceAction::Restart => r.service.restart.clone(),
                    ServiceAction::Reload => r.service.reload.clone().with_context(|| {
                        format!(
                            "relay `{}` ({}) cannot load a new certificate without a restart\nhelp: give the playbook's `service: reload` step `when: reload` (relays without a reload then take the drained restart), or set `service.reload` for it",
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
            StepKind::ReadServed => vec![self.read_served(r, cert.context("read-served needs `--bundle`")?)?],
            StepKind::Backup(path) => vec![self.backup(&r.name, &r.access, &path.render(&vars))],
            StepKind::MoveAside(path) => vec![self.move_aside(&r.name, &r.access, &path.render(&vars))],
            StepKind::SetConfig { file, values, unset } => vec![self.set_config(
                &r.name,
                &r.access,
                file.render(&vars),
                values.iter().map(|(k, v)| (k.clone(), v.render(&vars))).collect(),
                unset.clone(),
            )],
            StepKind::DatastoreConfig(_) | StepKind::CopySharedConfig => bail!(
                "playbook {}:{}: step `{}` applies to Clearwater clusters, not relays",
                self.pb_file(),
                step.line,
                super::request::step_name(&step.kind)
            ),
        })
    }

    /// A drain started by a signal and ended by the process's exit
    /// (coturn's): sent only to a relay whose running version has one.
    fn exit_drain(&mut self, r: &Relay, on: bool) -> anyhow::Result<Vec<Action>> {
        let version = self.drain_version(r)?;
        if !on {
            // Nothing switches it off: the restart (or reboot) before this
            // step ended it with the process.
            return Ok(Vec::new());
        }
        let drain = r.service.drain.clone().with_context(|| {
            format!(
                "relay `{}` ({}): no command starts its drain\nhelp: set `drain.relay_drain: false` for it in {}",
                r.name, r.kind, self.inv.file
            )
        })?;
        let on_node = |argv: &Vec<String>| Command::remote(&r.name, &r.access, argv.clone());
        self.exit_drains.push(r.name.clone());
        self.note(format!(
            "{}: coturn {version}'s drain mode cannot be switched off: once it is on, {} refuses new allocations until it exits (when its last allocation ends) or is restarted; so a drain that times out leaves it out of the advertised list, whatever `on_timeout` says",
            r.name, r.name
        ));
        Ok(vec![Action::DrainToExit {
            command: on_node(&drain),
            version,
            ended_by: [
                &r.service.restart,
                &r.service.start,
                &r.service.stop,
                &r.reboot.command,
            ]
            .into_iter()
            .map(on_node)
            .collect(),
        }])
    }

    /// The version of the coturn `r` runs, as read when the plan was made,
    /// if it has a drain mode; refused with why and the fix if not.
    fn drain_version(&self, r: &Relay) -> anyhow::Result<String> {
        let fix = format!(
            "help: upgrade coturn on {} to {COTURN_DRAIN_SINCE} or later, or set `drain.relay_drain: false` for it in {}",
            r.name, self.inv.file
        );
        // Unread, the version is taken from the running process: one that
        // is down tells none.
        let unread = format!(
            "help: start coturn on {} if it is down (the version is read from the running process), upgrade it to {COTURN_DRAIN_SINCE} or later if it is older, or set `drain.relay_drain: false` for it in {}",
            r.name, self.inv.file
        );
        let why = match self.req.versions.get(&r.name).map(|v| &v.read) {
            None => "which coturn it runs was not read".to_owned(),
            Some(Err(e)) => format!("its version could not be read ({e})"),
            Some(Ok(v)) => match version_at_least(v, COTURN_DRAIN_SINCE) {
                Some(true) => return Ok(v.clone()),
                Some(false) => {
                    return Err(crate::error::refused(format!(
                        "relay `{}` runs coturn {v}, which has no drain mode: coturn's came in {COTURN_DRAIN_SINCE} (and SIGUSR1 would end coturn {v} at once, dropping its calls); nothing was run\n{fix}",
                        r.name
                    )));
                }
                None => format!("it reports its version as `{v}`, which holds no version number"),
            },
        };
        Err(crate::error::refused(format!(
            "relay `{}` (coturn): cannot tell whether the coturn running there has a drain mode: {why}; nothing was run\n{unread}",
            r.name
        )))
    }

    pub(super) fn advertise(
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
                    backend: "values-file".into(),
                    edit: Some(FileEdit {
                        on: Host::here(),
                        path: v.path.display().to_string(),
                        list: v.list.clone(),
                        urls: r.urls.clone(),
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
                    backend: "command".into(),
                    edit: None,
                    commands,
                })
            }
        }
    }

    fn relay_gate(
        &mut self,
        r: &Relay,
        spec: &GateSpec,
        cert: Option<&CertPlan>,
    ) -> anyhow::Result<Option<Action>> {
        let (mut poll, mut timeout) = gate_defaults(spec.gate);
        let mut on_timeout = OnTimeout::Stop;
        let (fact, gate) = match spec.gate {
            PbGate::Drained => {
                poll = r.drain.poll;
                timeout = r.drain.timeout;
                let exits = self.exit_drains.contains(&r.name);
                // A drain that cannot be switched off is never put back.
                let readvertise = r.drain.on_timeout == InvOnTimeout::Readvertise && !exits;
                on_timeout = match (self.req.force, readvertise) {
                    (false, false) => OnTimeout::Stop,
                    (false, true) => OnTimeout::Readvertise,
                    (true, false) => OnTimeout::Force,
                    (true, true) => OnTimeout::ForceElseReadvertise,
                };
                let mut fact = format!(
                    "{} on {} <= {}",
                    r.stats.source.kind().drains(),
                    r.name,
                    r.drain.threshold
                );
                if exits {
                    fact.push_str(&format!(", or {} has exited (the end of its drain)", r.kind));
                }
                (
                    fact,
                    Gate::Drained {
                        stats: crate::stats::plan(r)?,
                        threshold: r.drain.threshold,
                        list: crate::stats::listing(r)?.map(Box::new),
                        stuck_after: r.drain.stuck_after,
                        exits: exits.then(|| ServiceProbe::of(r)),
                    },
                )
            }
            PbGate::ServiceUp => (
                format!("the relay service on {} is up", r.name),
                Gate::ServiceUp {
                    service: ServiceProbe::of(r),
                },
            ),
            PbGate::StatsAnswer => (
                format!("the stats of {} answer", r.name),
                Gate::StatsAnswer {
                    stats: crate::stats::plan(r)?,
                },
            ),
            PbGate::StunBinding => {
                let target = r.stun_target().with_context(|| {
                    format!(
                        "relay `{}` has `stun_check` on but no UDP `turn:` or `stun:` URL to send a binding request to\nhelp: add one to its `urls`, or set `stun_check: false`",
                        r.name
                    )
                })?;
                (
                    format!("a STUN binding request to {target} (udp) gets an answer"),
                    Gate::StunBinding { target },
                )
            }
            PbGate::Unadvertised | PbGate::Advertised => {
                let Some(check) = &self.inv.advertise.check else {
                    self.note("no `advertise.check` in the inventory: the advertised list is not confirmed from the clients' side".into());
                    return Ok(None);
                };
                let check = match check {
                    AdvertiseCheck::Url(u) => Command::local(
                        ["curl", "-fsS", "--max-time", "10", u.as_str()]
                            .map(String::from)
                            .to_vec(),
                        &self.inv.dir,
                    ),
                    AdvertiseCheck::Command(c) => Command::local(c.clone(), &self.inv.dir),
                };
                let urls = r.urls.clone();
                if spec.gate == PbGate::Unadvertised {
                    (
                        format!("the list clients receive lists none of {}'s URLs", r.name),
                        Gate::Unadvertised { check, urls },
                    )
                } else {
                    (
                        format!("the list clients receive lists every one of {}'s URLs", r.name),
                        Gate::Advertised { check, urls },
                    )
                }
            }
            PbGate::SshDown => {
                // A reboot that does not take the node down in this long did nothing.
                timeout = r.reboot.timeout;
                (
                    format!("{} stops answering SSH (the old boot is going down)", r.name),
                    Gate::SshDown {
                        on: Host::of(&r.name, &r.access),
                        command: Command::remote(&r.name, &r.access, r.reboot.boot_id.clone()),
                        record: "boot_id".into(),
                    },
                )
            }
            PbGate::NewBoot => {
                timeout = r.reboot.timeout;
                (
                    format!(
                        "{} answers SSH again with a boot id other than the one read before the reboot",
                        r.name
                    ),
                    Gate::NewBoot {
                        command: Command::remote(&r.name, &r.access, r.reboot.boot_id.clone()),
                        record: "boot_id".into(),
                    },
                )
            }
            PbGate::ServedCert => self.served_cert(r, cert)?,
            PbGate::CallsHeld => {
                // Nothing was disturbed yet: the relay goes back in service.
                on_timeout = OnTimeout::Readvertise;
                self.rtpengine_gate(r, spec.gate)?
            }
            PbGate::CallsRestored | PbGate::CallsConsistent | PbGate::MediaFlows | PbGate::NgPing => {
                self.rtpengine_gate(r, spec.gate)?
            }
            PbGate::MemberHealthy
            | PbGate::ClusterHealthy
            | PbGate::KeysPreserved
            | PbGate::MemberAdded
            | PbGate::AcceptsWrites
            | PbGate::MonitRunning
            | PbGate::MonitStopped
            | PbGate::ConfigSynced => bail!(
                "playbook {}: gate `{}` applies to clusters, not relays",
                self.pb_file(),
                spec.gate.name()
            ),
        };
        Ok(Some(Action::Gate {
            gate,
            fact,
            poll: spec.poll.unwrap_or(poll),
            timeout: spec.timeout.unwrap_or(timeout),
            on_timeout,
        }))
    }

    /// Copies `path` as `path.opsctl-RUN`. A copy this run made already is
    /// kept: it is the file as it was before the run changed it.
    pub(super) fn backup(&self, node: &str, a: &Access, path: &str) -> Action {
        let path = match path.trim_end_matches('/') {
            "" => path,
            p => p,
        };
        Action::Run {
            command: Command::remote_str(
                node,
                a,
                &[
                    "sh",
                    "-c",
                    r#"if [ ! -e "$2" ]; then cp -a -- "$1" "$2"; fi"#,
                    "opsctl-backup",
                    path,
                    &format!("{path}.opsctl-{}", self.req.run),
                ],
            ),
        }
    }

    /// Renames `path` aside as `path.opsctl-RUN`; a missing one is fine
    /// (nothing to keep, or this run moved it already); both there is
    /// refused (the aside one is never replaced).
    pub(super) fn move_aside(&self, node: &str, a: &Access, path: &str) -> Action {
        // `dir/` would put the aside name inside the directory.
        let path = match path.trim_end_matches('/') {
            "" => path,
            p => p,
        };
        Action::Run {
            command: Command::remote_str(
                node,
                a,
                &[
                    "sh",
                    "-c",
                    r#"if [ ! -e "$1" ]; then exit 0; fi; if [ -e "$2" ]; then echo "opsctl: $2 exists already; nothing was moved" >&2; exit 1; fi; mv -T -- "$1" "$2""#,
                    "opsctl-move-aside",
                    path,
                    &format!("{path}.opsctl-{}", self.req.run),
                ],
            ),
        }
    }

    /// A `KEY=value` edit of a config file on a node: read it, edit it here,
    /// write the result beside it with the same mode and owner, rename.
    pub(super) fn set_config(
        &self,
        node: &str,
        a: &Access,
        path: String,
        set: Vec<(String, String)>,
        unset: Vec<String>,
    ) -> Action {
        let temp = format!("{path}.opsctl-{}.tmp", self.req.run);
        Action::SetConfig {
            on: Host::of(node, a),
            read: Command::remote_str(node, a, &["cat", "--", &path]),
            commands: UploadCommands::new(node, a, &path, &temp, None, None),
            path,
            set,
            unset,
        }
    }
}

pub(super) fn gate_defaults(g: PbGate) -> (Duration, Duration) {
    let s = Duration::from_secs;
    match g {
        PbGate::Drained => (s(10), s(12 * 3600)),
        PbGate::ServiceUp | PbGate::StatsAnswer | PbGate::StunBinding | PbGate::SshDown => (s(1), s(120)),
        PbGate::Unadvertised | PbGate::Advertised => (s(5), s(600)),
        PbGate::NewBoot => (s(2), s(600)),
        PbGate::ServedCert => (s(2), s(30)),
        PbGate::KeysPreserved | PbGate::AcceptsWrites => (s(2), s(60)),
        // etcd refuses `member add` for about 5 s after a join.
        PbGate::MemberAdded => (s(2), s(60)),
        PbGate::MemberHealthy => (s(2), s(120)),
        PbGate::ClusterHealthy => (s(2), s(300)),
        PbGate::MonitRunning | PbGate::MonitStopped | PbGate::ConfigSynced => (s(2), s(120)),
        // A peer learns a call within milliseconds of its owner writing it.
        PbGate::CallsHeld => (s(1), s(30)),
        // rtpengine restores its calls from Redis as it starts.
        PbGate::CallsRestored | PbGate::CallsConsistent => (s(1), s(60)),
        // Each reading takes 2 s.
        PbGate::MediaFlows => (s(3), s(60)),
        PbGate::NgPing => (s(1), s(60)),
    }
}

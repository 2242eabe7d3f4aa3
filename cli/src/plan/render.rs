//! The plan as text, for people: what `--dry-run` prints. Every command a
//! step, gate or check may run is shown with its host, as it is sent. A
//! script passed as one argument (`bash -c SCRIPT`) is shown once, at the
//! end, and named where it is used; `--output json` has every line whole.

use std::fmt::Write as _;

use super::{Action, Check, CheckKind, Command, Expect, Gate, OnTimeout, Plan, Safety};
use crate::health::Probe;
use crate::stats::{How, StatsRead};

pub fn text(plan: &Plan) -> String {
    let mut r = Render::default();
    r.plan(plan);
    let mut o = r.out;
    if !r.scripts.is_empty() {
        let _ = writeln!(o, "\nscripts, each sent as one argument exactly as shown:");
        for (i, s) in r.scripts.iter().enumerate() {
            let _ = writeln!(o, "  <script {}>:", i + 1);
            for line in s.lines() {
                let _ = writeln!(o, "    {line}");
            }
        }
    }
    o
}

#[derive(Default)]
struct Render {
    out: String,
    scripts: Vec<String>,
    /// Relays whose health probe the safety checks already showed.
    probed: Vec<String>,
}

impl Render {
    fn plan(&mut self, plan: &Plan) {
        let origin = if plan.playbook.origin == "built-in" {
            "built-in playbook".to_owned()
        } else {
            format!("playbook {}", plan.playbook.origin)
        };
        let o = &mut self.out;
        let _ = writeln!(o, "plan: {} ({origin}), run {}", plan.procedure, plan.run);
        if !plan.description.is_empty() {
            let _ = writeln!(o, "  {}", plan.description);
        }
        let _ = writeln!(o, "inventory: {}", plan.inventory);
        let _ = writeln!(o, "targets: {}", plan.targets.join(", "));
        for (relay, run) in &plan.continues {
            let _ = writeln!(
                o,
                "continues: run {run} left {relay} out of the advertised list; this run takes it from there"
            );
        }
        for l in &plan.locks {
            if l.backend == crate::lock::Backend::Etcd {
                let _ = writeln!(
                    self.out,
                    "\nlock: site {}, the key {} in its etcd cluster, under a lease of {}s that dies with this run; taken through the first member that answers, in this order, after the `reachable` check and before the others; released at the end:",
                    l.site,
                    l.path,
                    l.lease_secs.unwrap_or(0)
                );
            } else {
                let _ = writeln!(
                    self.out,
                    "\nlock: site {}, in {} on each node; held once a majority ({} of {}) takes it, in this order, after the `reachable` check and before the others; released at the end:",
                    l.site,
                    l.path,
                    l.need,
                    l.on.len()
                );
            }
            let take: Vec<&Command> = l.on.iter().map(|o| &o.take).collect();
            self.commands(&take, "  ");
            let keep: Vec<&Command> = l.on.iter().filter_map(|o| o.keep.as_ref()).collect();
            if !keep.is_empty() {
                let _ = writeln!(
                    self.out,
                    "  renewed every {}s, through the member that took it, by:",
                    l.renew_secs()
                );
                self.commands(&keep, "  ");
            }
            let _ = writeln!(self.out, "  released by:");
            let release: Vec<&Command> = l.on.iter().map(|o| &o.release).collect();
            self.commands(&release, "  ");
            let _ = writeln!(
                self.out,
                "  held by another run: refused, naming it; with --break-lock, once confirmed, its lock is removed by:"
            );
            let brk: Vec<&Command> = l.on.iter().map(|o| &o.break_).collect();
            self.commands(&brk, "  ");
        }
        if !plan.preflight.is_empty() {
            let _ = writeln!(self.out, "\nsafety checks, all before anything changes:");
            let width = plan
                .preflight
                .iter()
                .map(|c| c.kind.name().len())
                .max()
                .unwrap_or(0);
            for c in &plan.preflight {
                self.check(c, width);
            }
        }
        for section in &plan.sections {
            let _ = writeln!(self.out, "\n{}", section.title);
            if section.steps.is_empty() {
                let _ = writeln!(self.out, "  (no steps apply)");
            }
            for step in &section.steps {
                let n = format!("{:>4}. ", step.number);
                let pad = " ".repeat(n.len());
                let _ = writeln!(self.out, "{n}{}", step.title);
                self.action(&step.action, &step.node, &pad);
                match &step.done_if {
                    Some(super::DoneIf::NewBoot { command, record }) => {
                        let _ = writeln!(
                            self.out,
                            "{pad}  a connection lost while it runs is the reboot taking the node down: the gates after it tell"
                        );
                        let _ = writeln!(
                            self.out,
                            "{pad}  resumed after it began and did not finish: skipped if the boot id differs from `{record}` (or SSH does not answer), read with"
                        );
                        self.command(command, &format!("{pad}  "));
                    }
                    None => {}
                }
                if let Some(n) = step.undoes {
                    let _ = writeln!(
                        self.out,
                        "{pad}  also run at once if the run stops after step {n} began and before this one (a step fails or times out, or Ctrl-C stops it)"
                    );
                }
            }
            if let Some(r) = &section.rollback {
                let _ = writeln!(
                    self.out,
                    "  rollback, if one of steps {} to {} fails: these run, then the rollout stops",
                    r.from, r.to
                );
                for step in &r.steps {
                    let n = format!("{:>5}. ", format!("R{}", step.number));
                    let pad = " ".repeat(n.len());
                    let _ = writeln!(self.out, "{n}{}", step.title);
                    self.action(&step.action, &step.node, &pad);
                }
            }
        }
        if !plan.notes.is_empty() {
            let _ = writeln!(self.out, "\nnotes:");
            for n in &plan.notes {
                let _ = writeln!(self.out, "  - {n}");
            }
        }
        if let Some(r) = plan.request.as_ref().filter(|r| !r.versions.is_empty()) {
            let _ = writeln!(
                self.out,
                "\nread to make this plan (the version each coturn runs: its drain mode came in {}):",
                relay::kind::COTURN_DRAIN_SINCE
            );
            for (relay, v) in &r.versions {
                let read = match &v.read {
                    Ok(v) => format!("coturn {v}"),
                    Err(e) => format!("not read: {e}"),
                };
                let _ = writeln!(self.out, "  {relay}: {read}");
                self.command(&v.command, "  ");
            }
        }
        if let Some(r) = plan.request.as_ref().filter(|r| !r.handover_reads.is_empty()) {
            let _ = writeln!(
                self.out,
                "\nread to make this plan (whether each rtpengine's peers hold its calls):"
            );
            for rep in &r.handover_reads {
                self.command(&rep.command, "  ");
            }
        }
        if !plan.next_steps.is_empty() {
            let _ = writeln!(self.out, "\nnext steps, left to the operator once it has run:");
            for n in &plan.next_steps {
                let _ = writeln!(self.out, "  - {n}");
            }
        }
    }

    fn check(&mut self, c: &Check, width: usize) {
        let pad = " ".repeat(width + 2);
        let mut lines = c.description.lines();
        let _ = writeln!(
            self.out,
            "  {:width$}  {}",
            c.kind.name(),
            lines.next().unwrap_or("")
        );
        for l in lines {
            let _ = writeln!(self.out, "{pad}  {}", l.trim_start());
        }
        match &c.kind {
            CheckKind::StatsReadable { reads } => {
                let cmds: Vec<&Command> = reads.iter().filter_map(StatsRead::command).collect();
                self.commands(&cmds, &pad);
            }
            CheckKind::PeersHealthy { peers, .. } => self.preflight_probes(peers.iter(), &pad),
            CheckKind::MinHealthy { each } => {
                self.preflight_probes(each.iter().flat_map(|s| s.others.iter()), &pad)
            }
            CheckKind::QuorumLost { health: reads, .. } => {
                let cmds: Vec<&Command> = reads.iter().map(|r| &r.command).collect();
                self.commands(&cmds, &pad);
            }
            CheckKind::SeedLatest { status, tool, .. } => {
                let cmds: Vec<&Command> = status.iter().map(|r| &r.command).chain(tool).collect();
                self.commands(&cmds, &pad);
            }
            CheckKind::ClearwaterQuorumLost { health: reads, .. } => {
                let cmds: Vec<&Command> = reads.iter().map(|r| &r.command).collect();
                self.commands(&cmds, &pad);
            }
            CheckKind::KeysCounted { command, .. } => self.command(command, &pad),
            CheckKind::ConfigPresent { local, shared, .. } => {
                let cmds: Vec<&Command> = local.iter().chain(shared).map(|r| &r.command).collect();
                self.commands(&cmds, &pad);
            }
            CheckKind::CassandraHealthy { read } => self.command(&read.command, &pad),
            CheckKind::SproutConfig { reads } => {
                let cmds: Vec<&Command> = reads.iter().map(|r| &r.command).collect();
                self.commands(&cmds, &pad);
            }
            CheckKind::Reachable { .. } | CheckKind::Advertised { .. } | CheckKind::BundleValid { .. } => {}
        }
    }

    /// Probes in the safety checks: each relay's once, later ones name it.
    fn preflight_probes<'a>(&mut self, probes: impl Iterator<Item = &'a Probe>, pad: &str) {
        let mut again = Vec::new();
        for p in probes {
            if self.probed.contains(&p.relay) {
                if !again.contains(&p.relay) {
                    again.push(p.relay.clone());
                }
                continue;
            }
            self.probed.push(p.relay.clone());
            self.probes(std::iter::once(p), pad);
        }
        if !again.is_empty() {
            let _ = writeln!(self.out, "{pad}  {}: read as shown above", again.join(", "));
        }
    }

    fn probes<'a>(&mut self, probes: impl Iterator<Item = &'a Probe>, pad: &str) {
        for p in probes {
            let _ = writeln!(self.out, "{pad}  {}", p.describe());
            self.commands(&p.commands(), &format!("{pad}  "));
        }
    }

    /// Commands with where they run, the place said once for a run of
    /// commands on the same host.
    fn commands(&mut self, cmds: &[&Command], pad: &str) {
        let mut last: Option<String> = None;
        for c in cmds {
            let place = place(c);
            if last.as_ref() != Some(&place) {
                let _ = writeln!(self.out, "{pad}  on {place}:");
            }
            let line = self.shown(c);
            let _ = writeln!(self.out, "{pad}    $ {line}");
            last = Some(place);
        }
    }

    fn command(&mut self, c: &Command, pad: &str) {
        self.commands(&[c], pad);
    }

    /// The line as sent, with a multi-line script argument named instead.
    fn shown(&mut self, c: &Command) -> String {
        if !c.argv.iter().any(|a| a.contains('\n')) {
            return c.line.clone();
        }
        let words: Vec<String> = c
            .argv
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if a.contains('\n') {
                    let n = match self.scripts.iter().position(|s| s == a) {
                        Some(n) => n,
                        None => {
                            self.scripts.push(a.clone());
                            self.scripts.len() - 1
                        }
                    };
                    format!("<script {}>", n + 1)
                } else {
                    crate::shell::join(&c.argv[i..=i])
                }
            })
            .collect();
        words.join(" ")
    }

    fn stats(&mut self, s: &StatsRead, pad: &str) {
        match &s.how {
            How::Command { command, stdin } => {
                self.command(command, pad);
                if let Some(secret) = stdin {
                    let _ = writeln!(self.out, "{pad}    with the password from {secret} on its stdin");
                }
            }
            How::Here { addr, message } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  opsctl sends `{message}` to udp {addr} from here and reads the reply"
                );
            }
        }
    }

    fn safety(&mut self, s: &Safety, pad: &str) {
        let _ = writeln!(
            self.out,
            "{pad}  every relay of {} but {} that is advertised now{} must be healthy, and at least {} of them",
            s.site,
            s.out,
            s.values
                .as_ref()
                .map(|v| format!(" (by {})", v.path))
                .unwrap_or_default(),
            s.min
        );
        self.probes(s.others.iter(), pad);
    }

    fn action(&mut self, a: &Action, node: &str, pad: &str) {
        match a {
            Action::Run { command } => self.command(command, pad),
            Action::Record { name, command } => {
                self.command(command, pad);
                let _ = writeln!(self.out, "{pad}  keep its output as `{name}`");
            }
            Action::RecordCalls {
                own,
                record,
                media,
                media_record,
            } => {
                self.command(own, pad);
                let _ = writeln!(
                    self.out,
                    "{pad}  keep its output as `{record}`; then these twice, 2 s apart:"
                );
                self.commands(&media.iter().collect::<Vec<_>>(), pad);
                let _ = writeln!(
                    self.out,
                    "{pad}  keep the ids of the calls whose packets grew as `{media_record}`"
                );
            }
            Action::Gate {
                gate,
                fact,
                poll,
                timeout,
                on_timeout,
            } => {
                let _ = writeln!(self.out, "{pad}  until {fact}");
                self.gate(gate, pad);
                let on_timeout = on_timeout_text(*on_timeout, gate, node);
                let _ = writeln!(
                    self.out,
                    "{pad}  poll every {}, timeout {}; on timeout: {on_timeout}",
                    crate::duration::format(*poll),
                    crate::duration::format(*timeout)
                );
            }
            Action::Safety { safety } => self.safety(safety, pad),
            Action::Advertise {
                backend,
                edit,
                commands,
                ..
            } => {
                let _ = writeln!(self.out, "{pad}  backend: {backend}");
                if let Some(e) = edit {
                    if e.diff.is_empty() {
                        let _ = writeln!(self.out, "{pad}  edit {}: already as wanted, no change", e.path);
                    } else {
                        let _ = writeln!(self.out, "{pad}  edit {} (a backup is kept):", e.path);
                        for line in e.diff.lines() {
                            let _ = writeln!(self.out, "{pad}    {line}");
                        }
                    }
                }
                for c in commands {
                    self.command(c, pad);
                }
                if edit.is_some() {
                    let _ = writeln!(
                        self.out,
                        "{pad}  if a command fails, the file is restored and the run stops"
                    );
                }
            }
            Action::DrainToExit { command, version, .. } => {
                self.command(command, pad);
                let _ = writeln!(
                    self.out,
                    "{pad}  coturn {version} (read when this plan was made) refuses new allocations from then on and exits once none are left; nothing switches it off before that but ending the process"
                );
            }
            Action::StatusCommand { command, send, cost } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  send `{command}` to {}'s {}",
                    send.relay, send.described
                );
                self.stats(send, pad);
                let want = if command == "drain_enable" { 1 } else { 0 };
                let _ = writeln!(self.out, "{pad}  the reply must be `is_draining: {want}`");
                if let Some(c) = cost {
                    let _ = writeln!(self.out, "{pad}  cost: {c}");
                }
            }
            Action::Upload {
                on,
                content,
                from,
                to,
                mode,
                commands,
                ..
            } => {
                let _ = writeln!(self.out, "{pad}  {content} to {}:{to} (mode {mode})", on.node);
                let _ = writeln!(
                    self.out,
                    "{pad}  from {}: written to {} (content on stdin), its SHA-256 checked, the current file kept, renamed into place:",
                    from.join(" + "),
                    commands.temp
                );
                self.upload(commands, pad);
            }
            Action::SetConfig {
                on,
                path,
                set,
                unset,
                read,
                commands,
            } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  on {} ({}), {path}, read, edited here, written beside it with its mode and owner, renamed:",
                    on.node, on.address
                );
                for (k, v) in set {
                    let _ = writeln!(self.out, "{pad}  set   {k}={v}");
                }
                for k in unset {
                    let _ = writeln!(self.out, "{pad}  unset {k}");
                }
                self.command(read, pad);
                self.upload(commands, pad);
            }
            Action::ReadServed {
                target,
                name,
                record,
                new_not_after,
                allow_earlier,
            } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by opsctl: a TLS handshake with {target} from here, SNI {name}; its leaf's fingerprint is kept as `{record}`"
                );
                let _ = writeln!(
                    self.out,
                    "{pad}  {}",
                    if *allow_earlier {
                        format!(
                            "an earlier expiry than the new one's ({}) is allowed (--allow-earlier-expiry)",
                            crate::cert::date(*new_not_after)
                        )
                    } else {
                        format!(
                            "the run stops here if it ends later than the new one ({}), or cannot be read",
                            crate::cert::date(*new_not_after)
                        )
                    }
                );
            }
            Action::DatastoreConfig {
                on,
                path,
                content,
                read,
                commands,
                ..
            } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  on {} ({}), {path} is read and checked; valid, it is left as it is (node states untouched); missing or invalid, this is written (the file there kept aside), every Vellum node of the site listed:",
                    on.node, on.address
                );
                for line in content.lines() {
                    let _ = writeln!(self.out, "{pad}    | {line}");
                }
                self.command(read, pad);
                self.upload(commands, pad);
            }
            Action::CopyFile {
                on,
                path,
                source,
                read,
                commands,
            } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  {source}'s {path} read, written to {} ({}) beside it with its mode and owner, the current one kept, renamed:",
                    on.node, on.address
                );
                self.command(read, pad);
                self.upload(commands, pad);
            }
            Action::Restore { upload, command, .. } => {
                self.command(command, pad);
                let _ = writeln!(self.out, "{pad}  (only if step {upload} wrote its file)");
            }
            Action::Confirm {
                prompt,
                allocations,
                service,
            } => {
                let extra = if allocations.is_some() {
                    " (showing its current allocations)"
                } else {
                    ""
                };
                let _ = writeln!(self.out, "{pad}  ask: {prompt}?{extra}; `--yes` answers yes");
                if let Some(s) = allocations {
                    self.stats(s, pad);
                }
                if let Some(s) = service {
                    let _ = writeln!(
                        self.out,
                        "{pad}  if they cannot be read: asks only when {} says it is down (no calls to drop), else refuses",
                        s.describe()
                    );
                    self.command(&s.command, pad);
                }
            }
        }
    }

    /// An upload's commands (write, check, keep, rename, clean up).
    fn upload(&mut self, commands: &crate::remote::UploadCommands, pad: &str) {
        self.commands(&commands.all(), pad);
        let _ = writeln!(
            self.out,
            "{pad}  (the last removes the temporary file if any of them fails)"
        );
    }

    fn gate(&mut self, g: &Gate, pad: &str) {
        match g {
            Gate::Drained {
                stats, list, exits, ..
            } => {
                let _ = writeln!(self.out, "{pad}  read by {}", stats.described);
                self.stats(stats, pad);
                if let Some(l) = list {
                    let _ = writeln!(
                        self.out,
                        "{pad}  when the count stops falling, its allocations are listed (which carry no traffic, when they expire):"
                    );
                    self.stats(l, pad);
                }
                if let Some(service) = exits {
                    let _ = writeln!(
                        self.out,
                        "{pad}  when the stats no longer answer, drained if the service is down: read by {}",
                        service.describe()
                    );
                    self.command(&service.command, pad);
                }
            }
            Gate::StatsAnswer { stats } => {
                let _ = writeln!(self.out, "{pad}  read by {}", stats.described);
                self.stats(stats, pad);
            }
            Gate::ServiceUp { service } => {
                let _ = writeln!(self.out, "{pad}  read by {}", service.describe());
                self.command(&service.command, pad);
            }
            Gate::StunBinding { target } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by opsctl: a STUN binding request to {target} (udp) from here"
                );
            }
            Gate::Unadvertised { check, .. } | Gate::Advertised { check, .. } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by the calls config JSON (`ice_servers[].urls`) that this prints:"
                );
                self.command(check, pad);
            }
            Gate::SshDown { on, command, record } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by opening a new SSH connection to {}; while it answers, this, compared with `{record}`:",
                    on.address
                );
                self.command(command, pad);
            }
            Gate::NewBoot { command, record } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by a new SSH connection, then this, compared with `{record}`:"
                );
                self.command(command, pad);
            }
            Gate::ServedCert {
                target,
                name,
                expect,
                verify,
                ca,
            } => {
                let leaf = match expect {
                    Expect::New { fingerprint } => format!("the leaf must be sha256 {fingerprint}"),
                    Expect::Recorded { record } => format!("the leaf must be the one kept as `{record}`"),
                };
                let trust = if *verify {
                    format!(
                        ", and the chain must verify for {name} against the system's trust store{}",
                        if ca.is_empty() {
                            String::new()
                        } else {
                            format!(" and {}", ca.join(", "))
                        }
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    self.out,
                    "{pad}  read by opsctl: a TLS handshake with {target} from here, SNI {name}; {leaf}{trust}"
                );
            }
            Gate::MemberHealthy { command } => {
                let _ = writeln!(self.out, "{pad}  read by this, which must exit 0:");
                self.command(command, pad);
            }
            Gate::ClusterHealthy { command, status, .. } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by the member list and every member's status (JSON), both parsed:"
                );
                self.commands(&[command, status], pad);
            }
            Gate::ClearwaterCluster { health, list, .. } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by cluster-health and the member list (etcdctl's v2 text), both parsed:"
                );
                self.commands(&[health, list], pad);
            }
            Gate::MonitRunning { command, .. } | Gate::MonitStopped { command, .. } => {
                let _ = writeln!(self.out, "{pad}  read by monit's summary, parsed:");
                self.command(command, pad);
            }
            Gate::ConfigSynced { command } => {
                let _ = writeln!(self.out, "{pad}  read by this, which must exit 0:");
                self.command(command, pad);
            }
            Gate::KeysPreserved { command, record } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by a serializable count (JSON `count` and the header's revision), against `{record}`:"
                );
                self.command(command, pad);
            }
            Gate::MemberAdded { list, add, .. } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by the member list (JSON); while the member is not in it, the second is tried:"
                );
                self.commands(&[list, add], pad);
            }
            Gate::AcceptsWrites { put, get, del, value } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  written, read back (it must print `{value}`), deleted:"
                );
                self.commands(&[put, get, del], pad);
            }
            Gate::CallsHeld { group, .. }
            | Gate::CallsRestored { group, .. }
            | Gate::CallsConsistent { group } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by each instance's report (its own and foreign calls, subscribed keyspaces, maxsessions, the keys of its Redis database), parsed and compared:"
                );
                for rep in group {
                    self.command(&rep.command, pad);
                    if let Some(secret) = &rep.stdin {
                        let _ = writeln!(
                            self.out,
                            "{pad}    with the Redis password from {secret} on its stdin"
                        );
                    }
                }
                if let Gate::CallsRestored { record, .. } = g {
                    let _ = writeln!(self.out, "{pad}  against the ids kept as `{record}`");
                }
            }
            Gate::MediaFlows { reads, record, .. } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by these twice, 2 s apart (packets per call, summed over its streams and the instances), for the calls kept as `{record}`:"
                );
                self.commands(&reads.iter().collect::<Vec<_>>(), pad);
            }
            Gate::NgPing { target } => {
                let _ = writeln!(
                    self.out,
                    "{pad}  read by opsctl: an ng `ping` (bencode over UDP) to {target} from here"
                );
            }
        }
    }
}

fn place(c: &Command) -> String {
    if c.on.is_here() {
        match &c.cwd {
            Some(d) => format!("here, in {d}"),
            None => "here".to_owned(),
        }
    } else {
        format!("{} ({})", c.on.node, c.on.address)
    }
}

fn on_timeout_text(t: OnTimeout, gate: &Gate, node: &str) -> String {
    let stays = if matches!(gate, Gate::Drained { .. }) {
        format!("stop: the rollout stops and {node} stays out of the advertised list")
    } else {
        "stop".to_owned()
    };
    let back = format!(
        "readvertise: {node}'s own drain mode is switched off and it is put back in the advertised list (its later steps), then the rollout stops"
    );
    let ask = format!(
        "force: ask whether to restart {node} with the allocations it still carries (`--yes` answers yes); if not, "
    );
    match t {
        OnTimeout::Stop => stays,
        OnTimeout::Readvertise => back,
        OnTimeout::Force => format!("{ask}{stays}"),
        OnTimeout::ForceElseReadvertise => format!("{ask}{back}"),
    }
}

//! Waiting on facts read from nodes. A gate polls until its fact holds, its
//! timeout passes, or the run is asked to stop. A fact that cannot be read is
//! not satisfied: the gate keeps trying and shows why, and if the timeout
//! comes first the last reason is the error.
//!
//! The decisions are pure ([`decide`], [`DrainProgress::observe`]): a function
//! of the time since the gate started, the reading, and the readings before;
//! tested with virtual time. Reading the fact is the thin I/O around them.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::core::{Executor, RunEvent, unless_stopped};
use crate::error::Stopped;
use crate::journal::Event;
use crate::plan::{Action, Expect, Gate, Step};

/// A gate that timed out; what that ends in (the plan's `on_timeout`) is
/// the executor's to carry out.
#[derive(Debug)]
pub struct TimedOut {
    /// What the last reading said.
    pub last: String,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out: {}", self.last)
    }
}

impl std::error::Error for TimedOut {}

pub use super::core::Poll;

/// What the gate does after a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Holds(String),
    /// Poll again; the reason is shown on the progress line.
    NotYet(String),
    /// The timeout has passed; the last reason says why.
    TimedOut(String),
}

/// The gate's decision after a reading at `elapsed` (a reading that failed
/// is `Err` with why): fail closed, and time out only once the whole timeout
/// has passed.
pub fn decide(elapsed: Duration, timeout: Duration, reading: Result<Poll, String>) -> Verdict {
    let why = match reading {
        Ok(Poll::Holds(what)) => return Verdict::Holds(what),
        Ok(Poll::NotYet(why)) | Err(why) => why,
    };
    if elapsed >= timeout {
        Verdict::TimedOut(why)
    } else {
        Verdict::NotYet(why)
    }
}

/// A drain's history: how fast the count falls, how long until it reaches
/// the threshold, and whether it has stopped falling.
#[derive(Debug, Clone)]
pub struct DrainProgress {
    /// How long the count may stay put before the line says so.
    stuck_after: Duration,
    first: Option<(Duration, u64)>,
    /// When the count last fell (or was first read), and to what.
    last_fall: Option<(Duration, u64)>,
    /// The count last read.
    last: Option<u64>,
    /// What is counted: `allocations`, or rtpengine's `own calls`.
    noun: &'static str,
}

impl DrainProgress {
    pub fn new(stuck_after: Duration) -> DrainProgress {
        DrainProgress {
            stuck_after,
            first: None,
            last_fall: None,
            last: None,
            noun: "allocations",
        }
    }

    /// Counting `noun` instead of allocations.
    pub fn counting(mut self, noun: &'static str) -> DrainProgress {
        self.noun = noun;
        self
    }

    /// What a reading is told apart by: the count, not the rate or the
    /// time left, which move with every poll.
    fn key(&self, verdict: &'static str, text: &str) -> (&'static str, String) {
        match self.last {
            Some(n) => (verdict, n.to_string()),
            None => (verdict, text.to_owned()),
        }
    }

    /// Whether the count has stayed put (or risen) for `stuck_after`.
    pub fn stuck(&self, elapsed: Duration) -> bool {
        self.last_fall
            .is_some_and(|(since, _)| elapsed.saturating_sub(since) >= self.stuck_after)
    }

    pub fn observe(&mut self, elapsed: Duration, count: u64, threshold: u64) -> Poll {
        self.last = Some(count);
        if count <= threshold {
            return Poll::Holds(format!("{count} {}", self.noun));
        }
        let (t0, start) = *self.first.get_or_insert((elapsed, count));
        match self.last_fall {
            Some((_, c)) if count >= c => {}
            _ => self.last_fall = Some((elapsed, count)),
        }
        let mins = (elapsed.saturating_sub(t0)).as_secs_f64() / 60.0;
        let fallen = start.saturating_sub(count) as f64;
        let rate = if mins > 0.0 { fallen / mins } else { 0.0 };
        let eta = if rate > 0.0 {
            let left = (count - threshold) as f64 / rate * 60.0;
            format!(
                ", about {} left",
                crate::duration::format(Duration::from_secs((left as u64).max(1)))
            )
        } else {
            String::new()
        };
        let mut line = format!("{count} {} (from {start}, -{rate:.1}/min{eta})", self.noun);
        if let Some((since, _)) = self.last_fall {
            let flat = elapsed.saturating_sub(since);
            if flat >= self.stuck_after && self.noun == "allocations" {
                line.push_str(&format!(
                    "; not falling for {}: allocations of clients that left without deallocating stay counted until their lifetime ends",
                    crate::duration::format(Duration::from_secs(flat.as_secs()))
                ));
            }
        }
        Poll::NotYet(line)
    }
}

/// What a relay's listing says of the allocations a drain still waits on.
pub fn listing_note(allocs: &[relay::stats::Allocation]) -> String {
    let last = |a: &[&relay::stats::Allocation]| {
        a.iter()
            .map(|x| x.expires_in)
            .max()
            .map(|d| crate::duration::format(Duration::from_secs(d.as_secs().max(1))))
    };
    let all: Vec<&relay::stats::Allocation> = allocs.iter().collect();
    if all.iter().any(|a| a.idle.is_some()) {
        let idle: Vec<&relay::stats::Allocation> =
            all.iter().copied().filter(|a| a.idle == Some(true)).collect();
        match last(&idle) {
            Some(t) => format!(
                "{} of the {} listed carry no traffic now; the last of those expires in {t} unless refreshed",
                idle.len(),
                all.len()
            ),
            None => format!("all {} listed carry traffic", all.len()),
        }
    } else {
        match last(&all) {
            Some(t) => format!("{} listed; the last expires in {t} unless refreshed", all.len()),
            None => "none listed".to_owned(),
        }
    }
}

pub async fn wait(ex: &mut Executor<'_>, step: &Step) -> anyhow::Result<()> {
    let Action::Gate {
        gate,
        fact,
        poll,
        timeout,
        ..
    } = &step.action
    else {
        unreachable!("gates::wait is called for gates")
    };
    let (poll, timeout) = (*poll, *timeout);
    let out = ex.out.clone();
    let bar = out.wait(&format!("{}: waiting until {fact}", step.node));
    let started = Instant::now();
    let mut drain = match gate {
        Gate::Drained {
            stuck_after, stats, ..
        } => DrainProgress::new(*stuck_after).counting(stats.source.kind().drains()),
        _ => DrainProgress::new(Duration::MAX),
    };
    // The reading last journaled: only a change is written again.
    let mut journaled: Option<(&'static str, String)> = None;
    loop {
        // A reading never runs past the timeout by more than one poll.
        let bound = timeout.saturating_sub(started.elapsed()) + poll.max(Duration::from_secs(1));
        let one = unless_stopped(&ex.stop, read(ex, step, gate, &mut drain, started));
        let reading = match tokio::time::timeout(bound, one).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) if e.is::<Stopped>() || e.chain().any(|c| c.is::<Stopped>()) => {
                drop(bar);
                return Err(e);
            }
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!(
                "no answer within {}",
                crate::duration::format(Duration::from_secs(bound.as_secs().max(1)))
            )),
        };
        // A reading that failed (a lost connection) is a change of its own.
        let failed = reading.is_err();
        let verdict = decide(started.elapsed(), timeout, reading);
        let (word, text) = match &verdict {
            Verdict::Holds(t) => ("holds", t),
            Verdict::NotYet(t) => ("not-yet", t),
            Verdict::TimedOut(t) => ("timed-out", t),
        };
        ex.out.event(&RunEvent::Reading {
            number: step.number,
            node: &step.node,
            gate: gate.name(),
            verdict: word,
            reading: text,
            elapsed_secs: started.elapsed().as_secs_f64(),
        });
        let now = if failed {
            (word, text.clone())
        } else {
            drain.key(word, text)
        };
        if journaled.as_ref() != Some(&now) {
            ex.journal(Event::Reading {
                number: step.number,
                node: step.node.clone(),
                verdict: word.to_owned(),
                reading: text.clone(),
                at: crate::journal::now(),
            })?;
            journaled = Some(now.clone());
        }
        match verdict {
            Verdict::Holds(what) => {
                drop(bar);
                ex.out.note(&format!(
                    "{}: {fact} ({what}, after {})",
                    step.node,
                    elapsed(started)
                ));
                return Ok(());
            }
            Verdict::TimedOut(last) => {
                drop(bar);
                return Err(TimedOut { last }.into());
            }
            Verdict::NotYet(why) => bar.progress(
                &now.1,
                format!(
                    "{}: waiting until {fact}: {why} [{} of {}]",
                    step.node,
                    elapsed(started),
                    crate::duration::format(timeout)
                ),
            ),
        }
        // Sleep in short slices so a stop is honoured within a fraction of a second.
        let until = Instant::now() + poll.min(timeout.saturating_sub(started.elapsed()));
        while Instant::now() < until {
            if ex.stop.requested() {
                drop(bar);
                return Err(
                    anyhow::Error::new(Stopped).context(format!("stopped while waiting until {fact}"))
                );
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
        }
    }
}

fn elapsed(since: Instant) -> String {
    crate::duration::format(Duration::from_secs(since.elapsed().as_secs()))
}

/// One reading of the gate's fact, exactly as the plan says to read it.
async fn read(
    ex: &Executor<'_>,
    step: &Step,
    gate: &Gate,
    drain: &mut DrainProgress,
    started: Instant,
) -> anyhow::Result<Poll> {
    Ok(match gate {
        Gate::Drained {
            stats,
            threshold,
            list,
            exits,
            ..
        } => {
            let node = ex.node(&stats.relay)?;
            let count = match (crate::stats::read(&ex.remote, &node, stats).await, exits) {
                (Ok(s), _) => s.to_drain(),
                (Err(e), None) => return Err(e),
                (Err(e), Some(service)) => {
                    // Its drain ends with its exit: stats that stopped
                    // answering may be that end.
                    let (up, seen) = service.read(&ex.remote, &node).await?;
                    if up {
                        return Err(e);
                    }
                    return Ok(Poll::Holds(format!(
                        "the relay has exited, its drain over: {seen}"
                    )));
                }
            };
            let poll = drain.observe(started.elapsed(), count, *threshold);
            match (poll, list) {
                (Poll::NotYet(line), Some(list)) if drain.stuck(started.elapsed()) => {
                    // Told, never acted on: they still count until they expire.
                    let listed = crate::stats::send(&ex.remote, &node, list)
                        .await
                        .and_then(|t| Ok(relay::stats::parse_allocations(list.source.kind(), &t)?));
                    match listed {
                        Ok(allocs) => Poll::NotYet(format!("{line}; {}", listing_note(&allocs))),
                        Err(e) => Poll::NotYet(format!("{line}; its allocations cannot be listed: {e:#}")),
                    }
                }
                (poll, _) => poll,
            }
        }
        Gate::ServiceUp { service } => {
            let node = ex.plan.node(&service.command.on)?;
            let (up, seen) = service.read(&ex.remote, &node).await?;
            if up { Poll::Holds(seen) } else { Poll::NotYet(seen) }
        }
        Gate::StatsAnswer { stats } => {
            let node = ex.node(&stats.relay)?;
            match crate::stats::read(&ex.remote, &node, stats).await {
                Ok(s) => Poll::Holds(format!("{} allocations", s.allocations)),
                Err(e) => Poll::NotYet(format!("{e:#}")),
            }
        }
        Gate::StunBinding { target } => match crate::health::stun_binding(target).await {
            Ok(mapped) => Poll::Holds(format!("{target} answered, mapped address {mapped}")),
            Err(e) => Poll::NotYet(format!("{e:#}")),
        },
        Gate::Unadvertised { check, urls } => listed(ex, check, urls, false).await?,
        Gate::Advertised { check, urls } => listed(ex, check, urls, true).await?,
        Gate::SshDown { on, command, record } => {
            let node = ex.plan.node(on)?;
            ex.remote.forget_node(&node.name).await;
            match ex.remote.reachable(&node).await {
                Err(e) => Poll::Holds(format!("{e}").lines().next().unwrap_or("").to_owned()),
                Ok(()) => {
                    let before = ex.records.get(&(step.node.clone(), record.clone()));
                    match ex.run(command).await.map(|s| s.trim().to_owned()) {
                        // Down and up again between two polls.
                        Ok(now) if before.is_some_and(|b| *b != now) => {
                            Poll::Holds(format!("already back, with the new boot id {now}"))
                        }
                        Ok(_) => Poll::NotYet(
                            "still answers SSH with the boot id it had before the reboot: the reboot has not taken it down"
                                .into(),
                        ),
                        Err(_) => Poll::NotYet("still answers SSH".into()),
                    }
                }
            }
        }
        Gate::NewBoot { command, record } => {
            let before = ex
                .records
                .get(&(step.node.clone(), record.clone()))
                .with_context(|| format!("no `{record}` was read before the reboot"))?
                .clone();
            let node = ex.plan.node(&command.on)?;
            ex.remote.forget_node(&node.name).await;
            if let Err(e) = ex.remote.reachable(&node).await {
                return Ok(Poll::NotYet(
                    format!("{e}").lines().next().unwrap_or("").to_owned(),
                ));
            }
            let now = ex.run(command).await?.trim().to_owned();
            if now != before {
                Poll::Holds(format!("boot id {now}"))
            } else {
                Poll::NotYet("answers, with the same boot id".into())
            }
        }
        Gate::ServedCert {
            target,
            name,
            expect,
            verify,
            ca,
        } => {
            let want = match expect {
                Expect::New { fingerprint } => fingerprint.clone(),
                Expect::Recorded { record } => ex
                    .records
                    .get(&(step.node.clone(), record.clone()))
                    .with_context(|| format!("no `{record}` was read before the change"))?
                    .clone(),
            };
            let t = target.clone();
            let served = tokio::task::spawn_blocking(move || {
                crate::served_cert::read(&t, std::time::Duration::from_secs(3))
            })
            .await?;
            match served {
                Err(e) => Poll::NotYet(format!("{e:#}")),
                Ok(c) if c.fingerprint != want => Poll::NotYet(format!(
                    "serves {} (sha256 {}), not the expected leaf",
                    c.subject, c.fingerprint
                )),
                Ok(c) if *verify => {
                    let trust = ex.trust(ca)?;
                    match trust.verify(&c.chain, name, crate::cert::now()) {
                        crate::cert::Verdict::Trusted => Poll::Holds(format!(
                            "serves {} (sha256 {}), trusted for {name}",
                            c.subject, c.fingerprint
                        )),
                        v => Poll::NotYet(format!(
                            "serves the expected leaf, but a client connecting to {name} finds it: {v}"
                        )),
                    }
                }
                Ok(c) => Poll::Holds(format!("serves {} (sha256 {})", c.subject, c.fingerprint)),
            }
        }
        Gate::MemberHealthy { command } => match ex.run(command).await {
            Ok(out) => Poll::Holds(out.trim().lines().next().unwrap_or("healthy").to_owned()),
            Err(e) => Poll::NotYet(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
        },
        Gate::ClusterHealthy {
            command,
            status,
            expect,
        } => {
            let members = match ex.run(command).await.and_then(|o| crate::etcd::members(&o)) {
                Ok(m) => m,
                Err(e) => {
                    return Ok(Poll::NotYet(
                        format!("{e:#}").lines().next().unwrap_or("").to_owned(),
                    ));
                }
            };
            // Members that do not answer are left out of the reply.
            let node = ex.plan.node(&status.on)?;
            let out = ex
                .remote
                .probe(&node, status, node.access.ssh.command_timeout, None)
                .await?;
            let statuses = crate::etcd::statuses(&out.stdout).unwrap_or_default();
            match crate::etcd::judge_cluster(expect, &members, &statuses) {
                Ok(what) => Poll::Holds(what),
                Err(why) => Poll::NotYet(why),
            }
        }
        Gate::KeysPreserved { command, record } => {
            let before = ex
                .records
                .get(&(String::new(), record.clone()))
                .with_context(|| format!("no `{record}` was counted before any change"))?;
            let before = crate::etcd::Keys::from_record(before)?;
            match ex.run(command).await.and_then(|o| crate::etcd::keys(&o)) {
                Ok(now) if now.count >= before.count && now.revision >= before.revision => {
                    Poll::Holds(format!(
                        "{} keys at revision {} (before: {} at {})",
                        now.count, now.revision, before.count, before.revision
                    ))
                }
                Ok(now) => Poll::NotYet(format!(
                    "{} keys at revision {}, fewer than the {} at revision {} before",
                    now.count, now.revision, before.count, before.revision
                )),
                Err(e) => Poll::NotYet(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
            }
        }
        Gate::MemberAdded {
            list,
            add,
            name,
            peer_url,
        } => {
            let listed = ex.run(list).await.and_then(|o| crate::etcd::members(&o));
            match listed {
                Ok(ms) if ms.iter().any(|m| m.peer_urls.contains(peer_url)) => {
                    Poll::Holds(format!("{name} is in the member list"))
                }
                Ok(_) => match ex.run(add).await {
                    Ok(_) => Poll::Holds(format!("{name} was added")),
                    // etcd refuses a member add for a few seconds after a join.
                    Err(e) => Poll::NotYet(format!("{e:#}").lines().last().unwrap_or("").to_owned()),
                },
                Err(e) => Poll::NotYet(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
            }
        }
        Gate::AcceptsWrites { put, get, del, value } => {
            let written = async {
                ex.run(put).await?;
                let got = ex.run(get).await?;
                ex.run(del).await?;
                anyhow::Ok(got)
            }
            .await;
            match written {
                Ok(got) if got.trim() == value => Poll::Holds("written, read back and deleted".into()),
                Ok(got) => Poll::NotYet(format!("read back `{}`, not `{value}`", got.trim())),
                Err(e) => Poll::NotYet(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
            }
        }
        Gate::ClearwaterCluster {
            health,
            list,
            masters,
        } => {
            // cluster-health exits non-zero while the cluster is not
            // healthy: its reply still says why.
            let h = match ex.probe(health).await {
                Ok((_, h)) => h,
                Err(e) => {
                    return Ok(Poll::NotYet(
                        format!("{e:#}").lines().next().unwrap_or("").to_owned(),
                    ));
                }
            };
            match ex.run(list).await {
                Err(e) => Poll::NotYet(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
                Ok(l) => match crate::clearwater::judge_cluster(masters, &h, &l) {
                    Ok(what) => Poll::Holds(what),
                    Err(why) => Poll::NotYet(why),
                },
            }
        }
        Gate::MonitRunning { command, services } | Gate::MonitStopped { command, services } => {
            let running = matches!(gate, Gate::MonitRunning { .. });
            match ex.run(command).await {
                Err(e) => Poll::NotYet(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
                Ok(out) => match crate::clearwater::judge_monit(services, &out, running) {
                    Ok(what) => Poll::Holds(what),
                    Err(why) => Poll::NotYet(why),
                },
            }
        }
        Gate::ConfigSynced { command } => match ex.probe(command).await? {
            (0, out) => Poll::Holds(out.trim().lines().last().unwrap_or("in sync").to_owned()),
            (code, out) => Poll::NotYet(format!(
                "exit {code}: {}",
                out.trim().lines().last().unwrap_or("")
            )),
        },
        Gate::CallsHeld { .. }
        | Gate::CallsRestored { .. }
        | Gate::CallsConsistent { .. }
        | Gate::MediaFlows { .. }
        | Gate::NgPing { .. } => super::rtpengine::read(ex, step, gate).await?,
    })
}

/// Whether the list clients receive (brig's `/calls/config/v2` JSON, printed
/// by `check`) holds all of `urls` (`present`) or none.
async fn listed(
    ex: &Executor<'_>,
    check: &crate::plan::Command,
    urls: &[String],
    present: bool,
) -> anyhow::Result<Poll> {
    let out = ex.run(check).await?;
    let got =
        ice_urls(&out).with_context(|| format!("`{}` did not print the calls config JSON", check.line))?;
    let listed = urls.iter().filter(|u| got.contains(u)).count();
    let holds = if present {
        listed == urls.len()
    } else {
        listed == 0
    };
    let what = format!("{listed} of its {} URLs listed", urls.len());
    Ok(if holds {
        Poll::Holds(what)
    } else {
        Poll::NotYet(what)
    })
}

/// Every URL in `{"ice_servers": [{"urls": [...] | "..."}]}`.
pub fn ice_urls(json: &str) -> anyhow::Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let servers = v
        .get("ice_servers")
        .and_then(|s| s.as_array())
        .context("no `ice_servers` list")?;
    let mut out = Vec::new();
    for s in servers {
        match s.get("urls") {
            Some(serde_json::Value::String(u)) => out.push(u.clone()),
            Some(serde_json::Value::Array(list)) => {
                out.extend(list.iter().filter_map(|u| u.as_str().map(str::to_owned)))
            }
            _ => bail!("an ice server without `urls`"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn reads_brig_s_calls_config() {
        let json = r#"{"ice_servers":[{"urls":["turn:a:3478","turn:a:3478?transport=tcp"],"username":"u","credential":"c"},{"urls":"turns:b:5349?transport=tcp"}],"ttl":3600}"#;
        assert_eq!(
            ice_urls(json).unwrap(),
            [
                "turn:a:3478",
                "turn:a:3478?transport=tcp",
                "turns:b:5349?transport=tcp"
            ]
        );
        assert!(ice_urls("{}").is_err());
        assert!(ice_urls("not json").is_err());
    }

    #[test]
    fn a_gate_times_out_only_after_its_whole_timeout_and_fails_closed() {
        let t = S(60);
        assert_eq!(
            decide(S(10), t, Ok(Poll::Holds("ok".into()))),
            Verdict::Holds("ok".into())
        );
        assert_eq!(
            decide(S(59), t, Err("silent".into())),
            Verdict::NotYet("silent".into())
        );
        assert_eq!(
            decide(S(60), t, Err("silent".into())),
            Verdict::TimedOut("silent".into())
        );
        assert_eq!(
            decide(S(61), t, Ok(Poll::NotYet("3 allocations".into()))),
            Verdict::TimedOut("3 allocations".into())
        );
        // A fact that holds at the last moment holds.
        assert_eq!(
            decide(S(600), t, Ok(Poll::Holds("0".into()))),
            Verdict::Holds("0".into())
        );
    }

    #[test]
    fn the_drain_line_gives_rate_and_time_left() {
        let mut d = DrainProgress::new(S(120));
        assert_eq!(
            d.observe(S(0), 100, 0),
            Poll::NotYet("100 allocations (from 100, -0.0/min)".into())
        );
        // 100 -> 80 in two minutes: 10/min, 8 minutes left.
        assert_eq!(
            d.observe(S(120), 80, 0),
            Poll::NotYet("80 allocations (from 100, -10.0/min, about 8m left)".into())
        );
        assert_eq!(d.observe(S(600), 0, 0), Poll::Holds("0 allocations".into()));
    }

    #[test]
    fn a_threshold_above_zero_holds_at_the_threshold() {
        let mut d = DrainProgress::new(S(120));
        assert_eq!(
            d.observe(S(0), 5, 2).clone(),
            Poll::NotYet("5 allocations (from 5, -0.0/min)".into())
        );
        assert_eq!(d.observe(S(30), 2, 2), Poll::Holds("2 allocations".into()));
    }

    #[test]
    fn a_listing_says_which_allocations_are_idle_and_when_they_go() {
        use relay::stats::Allocation;
        let a = |secs, idle| Allocation {
            expires_in: S(secs),
            idle,
        };
        assert_eq!(
            listing_note(&[a(300, Some(true)), a(30, Some(false)), a(540, Some(true))]),
            "2 of the 3 listed carry no traffic now; the last of those expires in 9m unless refreshed"
        );
        assert_eq!(listing_note(&[a(30, Some(false))]), "all 1 listed carry traffic");
        assert_eq!(
            listing_note(&[a(90, None), a(20, None)]),
            "2 listed; the last expires in 1m30s unless refreshed"
        );
        assert_eq!(listing_note(&[]), "none listed");
    }

    #[test]
    fn a_count_that_stops_falling_is_called_out_but_never_treated_as_gone() {
        let mut d = DrainProgress::new(S(120));
        d.observe(S(0), 10, 0);
        d.observe(S(60), 3, 0);
        // Three allocations stay put: within two minutes nothing is said...
        let Poll::NotYet(line) = d.observe(S(170), 3, 0) else {
            panic!()
        };
        assert!(!line.contains("not falling"), "{line}");
        // ...after, the line says why they may linger, and the gate still waits.
        let Poll::NotYet(line) = d.observe(S(181), 3, 0) else {
            panic!()
        };
        assert!(line.contains("not falling for 2m"), "{line}");
        assert!(line.contains("until their lifetime ends"), "{line}");
        // A rise is not a fall: the clock keeps running from the last fall.
        let Poll::NotYet(line) = d.observe(S(300), 4, 0) else {
            panic!()
        };
        assert!(line.contains("not falling for 4m"), "{line}");
        // Once it falls again the note goes away.
        let Poll::NotYet(line) = d.observe(S(310), 1, 0) else {
            panic!()
        };
        assert!(!line.contains("not falling"), "{line}");
    }
}

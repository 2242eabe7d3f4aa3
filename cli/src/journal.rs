//! The journal: an append-only JSON-lines record of every run, one file per
//! run in opsctl's state directory (`$XDG_STATE_HOME/opsctl/runs`, else
//! `~/.local/state/opsctl/runs`). It is what lets a later run know that a
//! relay found out of the advertised list was left there by opsctl itself,
//! and by which run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One line of a run's journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Start {
        run: String,
        procedure: String,
        inventory: String,
        targets: Vec<String>,
        at: u64,
        /// The plan the run executes, exactly: what a later run can replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<Box<crate::plan::Plan>>,
        /// Who ran it, from which machine, as which process.
        #[serde(default)]
        user: String,
        #[serde(default)]
        machine: String,
        #[serde(default)]
        pid: u32,
    },
    /// A step begins.
    StepStart {
        number: usize,
        node: String,
        title: String,
        at: u64,
    },
    /// A step finished: its effect is in place.
    Step {
        number: usize,
        node: String,
        title: String,
        at: u64,
    },
    /// A step failed (or was stopped), and why.
    StepFailed {
        number: usize,
        node: String,
        error: String,
        at: u64,
    },
    /// What a gate read: its first reading, each that differs from the one
    /// before, and the last (`holds` or `timed-out`).
    Reading {
        number: usize,
        node: String,
        /// `holds`, `not-yet` or `timed-out`.
        verdict: String,
        reading: String,
        at: u64,
    },
    /// A relay left (`out: true`) or rejoined the advertised list.
    Advertised { node: String, out: bool, at: u64 },
    /// A fact a step kept for a later one (a boot id, the certificate served
    /// before, the key count), so that a continued run has it too.
    Record {
        node: String,
        name: String,
        value: String,
        at: u64,
    },
    /// What step `number` changed was undone by step `by`, run as the run
    /// stopped: a continued run does `number` again.
    Undone { number: usize, by: usize, at: u64 },
    /// The run is continued by a later invocation, from the steps not done.
    Resume {
        done: usize,
        at: u64,
        #[serde(default)]
        pid: u32,
    },
    End {
        outcome: String,
        message: String,
        at: u64,
    },
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where journals live.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("opsctl/runs");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/state/opsctl/runs")
}

/// A run's journal, open for appending.
pub struct Journal {
    file: std::fs::File,
    path: PathBuf,
}

impl Journal {
    /// A new run's journal. A run id names one run: a journal of that id
    /// is never appended to by another run, so one that exists is refused.
    pub fn create(dir: &Path, run: &str) -> anyhow::Result<Journal> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the journal directory {}", dir.display()))?;
        let path = dir.join(format!("{run}.jsonl"));
        let file = match std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(crate::error::usage(format!(
                    "run id `{run}` is taken: {} holds the run of that id, and backups carry the id, so a second run under it could replace the first one's; nothing was run\nhelp: leave out --run-id (and OPSCTL_RUN_ID) for a fresh one, or give an id not used before",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot create the journal {}", path.display()))
                );
            }
        };
        Ok(Journal { file, path })
    }

    /// The journal of a run this invocation continues.
    pub fn reopen(dir: &Path, run: &str) -> anyhow::Result<Journal> {
        use anyhow::Context;
        let path = dir.join(format!("{run}.jsonl"));
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open the journal {}", path.display()))?;
        Ok(Journal { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and syncs one event: a journal that lags the nodes is worse than none.
    pub fn record(&mut self, event: &Event) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(event)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        Ok(())
    }
}

/// The fields of a journal line that [`left_out`] reads. The plan a start
/// event carries is skipped, never built: every procedure reads every
/// journal when it plans.
#[derive(Deserialize)]
struct Line {
    event: String,
    #[serde(default)]
    run: String,
    #[serde(default)]
    inventory: String,
    #[serde(default)]
    at: u64,
    #[serde(default)]
    node: String,
    #[serde(default)]
    out: bool,
}

/// Relays that some earlier run took out of the advertised list and did not
/// put back, with that run's id, for runs against `inventory`.
/// A run as its journal tells it.
#[derive(Debug, Clone)]
pub struct Previous {
    pub run: String,
    pub procedure: String,
    pub targets: Vec<String>,
    pub inventory: String,
    pub started: u64,
    pub plan: crate::plan::Plan,
    /// The numbers of the steps that finished.
    pub done: std::collections::BTreeSet<usize>,
    /// What its steps kept, by (node, name).
    pub records: BTreeMap<(String, String), String>,
    /// How its last invocation ended; `None` when it was killed.
    pub outcome: Option<String>,
    /// The steps that began (finished or not).
    pub begun: std::collections::BTreeSet<usize>,
    /// Who ran it, from where, and the process of its last invocation.
    pub user: String,
    pub machine: String,
    pub pid: u32,
}

impl Previous {
    /// running, done, stopped, failed, refused, killed (no end, and its
    /// process is gone) or unknown (no end, run from another machine).
    pub fn state(&self) -> String {
        state(self.outcome.clone(), &self.machine, self.pid)
    }

    /// The step that began and neither finished nor failed: where the run
    /// was when it was killed.
    pub fn interrupted(&self) -> Option<usize> {
        self.begun.difference(&self.done).max().copied()
    }
}

/// Reads one journal; `None` when it has no stored plan.
pub fn read(path: &Path) -> Option<Previous> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut events = text.lines().filter_map(|l| serde_json::from_str::<Event>(l).ok());
    let Some(Event::Start {
        run,
        procedure,
        inventory,
        targets,
        at,
        plan: Some(plan),
        user,
        machine,
        pid,
    }) = events.next()
    else {
        return None;
    };
    let mut p = Previous {
        run,
        procedure,
        targets,
        inventory,
        started: at,
        plan: *plan,
        done: Default::default(),
        records: BTreeMap::new(),
        outcome: None,
        begun: Default::default(),
        user,
        machine,
        pid,
    };
    for e in events {
        match e {
            Event::StepStart { number, .. } => {
                p.begun.insert(number);
            }
            Event::StepFailed { number, .. } => {
                p.begun.remove(&number);
            }
            Event::Step { number, .. } => {
                p.done.insert(number);
            }
            Event::Undone { number, .. } => {
                p.done.remove(&number);
                p.begun.remove(&number);
            }
            Event::Record {
                node, name, value, ..
            } => {
                p.records.insert((node, name), value);
            }
            Event::End { outcome, .. } => p.outcome = Some(outcome),
            Event::Resume { pid, .. } => {
                p.outcome = None;
                p.pid = pid;
            }
            Event::Start { .. } | Event::Advertised { .. } | Event::Reading { .. } => {}
        }
    }
    Some(p)
}

/// One run, as `opsctl runs` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run: String,
    pub procedure: String,
    pub targets: Vec<String>,
    pub user: String,
    pub machine: String,
    /// Unix seconds.
    pub started: u64,
    /// running, done, stopped, failed, refused, or killed (ended without a
    /// word: its process is gone), or unknown (no word, on another machine).
    pub state: String,
    pub steps_done: usize,
    pub steps_total: usize,
    pub journal: String,
}

/// A run's state from how it last ended (`None`: no end yet), and where and
/// as which process it last ran.
fn state(ended: Option<String>, machine: &str, pid: u32) -> String {
    match ended {
        Some(outcome) => outcome,
        None if machine != crate::lock::machine() => "unknown".into(),
        None if pid != 0 && Path::new(&format!("/proc/{pid}")).exists() => "running".into(),
        None => "killed".into(),
    }
}

/// Every run with a journal in `dir`, the latest first.
pub fn runs(dir: &Path) -> Vec<Summary> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Summary> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("jsonl"))
        .filter_map(|path| history_at(&path).map(|h| h.summary))
        .collect();
    out.sort_by(|a, b| (b.started, &b.run).cmp(&(a.started, &a.run)));
    out
}

/// One step of a run, as `opsctl runs show` prints it: its last attempt.
#[derive(Debug, Clone, Serialize)]
pub struct StepHistory {
    pub number: usize,
    pub node: String,
    pub title: String,
    /// Unix seconds; `None`: it never began.
    pub started: Option<u64>,
    pub ended: Option<u64>,
    /// done, failed, interrupted (began, and the run ended or was killed
    /// before it did), running, or not-run.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What its gate read: the first reading, each change, the last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readings: Vec<ReadingAt>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadingAt {
    pub at: u64,
    pub verdict: String,
    pub reading: String,
}

/// One run in full: what `opsctl runs show RUN` prints.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    #[serde(flatten)]
    pub summary: Summary,
    pub inventory: String,
    /// How it last ended, in words (empty while running or once killed).
    pub message: String,
    /// When each invocation after the first continued it (Unix seconds).
    pub resumed: Vec<u64>,
    /// Facts its steps kept, by node then name.
    pub records: BTreeMap<String, BTreeMap<String, String>>,
    pub steps: Vec<StepHistory>,
}

/// Reads the journal of run `run` in `dir` in full.
pub fn history(dir: &Path, run: &str) -> Option<History> {
    history_at(&dir.join(format!("{run}.jsonl")))
}

/// Reads the journal at `path` in full; `None` if it is not one.
fn history_at(path: &Path) -> Option<History> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut events = text.lines().filter_map(|l| serde_json::from_str::<Event>(l).ok());
    let Event::Start {
        run,
        procedure,
        inventory,
        targets,
        at,
        plan,
        user,
        machine,
        pid,
    } = events.next()?
    else {
        return None;
    };
    let mut steps: Vec<StepHistory> = plan
        .as_ref()
        .map(|p| {
            p.steps()
                .map(|s| StepHistory {
                    number: s.number,
                    node: s.node.clone(),
                    title: s.title.clone(),
                    started: None,
                    ended: None,
                    result: "not-run".into(),
                    error: None,
                    readings: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let (mut pid, mut ended, mut message) = (pid, None, String::new());
    let (mut resumed, mut records) = (Vec::new(), BTreeMap::<String, BTreeMap<String, String>>::new());
    for e in events {
        let step = |steps: &mut Vec<StepHistory>, n: usize| steps.iter_mut().position(|s| s.number == n);
        match e {
            Event::StepStart { number, at, .. } => {
                if let Some(i) = step(&mut steps, number) {
                    let s = &mut steps[i];
                    (s.started, s.ended, s.result, s.error) = (Some(at), None, "running".into(), None);
                    s.readings.clear();
                }
            }
            Event::Step { number, at, .. } => {
                if let Some(i) = step(&mut steps, number) {
                    let s = &mut steps[i];
                    (s.ended, s.result) = (Some(at), "done".into());
                }
            }
            Event::StepFailed {
                number, at, error, ..
            } => {
                if let Some(i) = step(&mut steps, number) {
                    let s = &mut steps[i];
                    (s.ended, s.result, s.error) = (Some(at), "failed".into(), Some(error));
                }
            }
            Event::Reading {
                number,
                at,
                verdict,
                reading,
                ..
            } => {
                if let Some(i) = step(&mut steps, number) {
                    steps[i].readings.push(ReadingAt { at, verdict, reading });
                }
            }
            Event::Record {
                node, name, value, ..
            } => {
                records.entry(node).or_default().insert(name, value);
            }
            Event::Undone { number, by, .. } => {
                if let Some(i) = step(&mut steps, number) {
                    let s = &mut steps[i];
                    s.result = "undone".into();
                    s.error = Some(format!(
                        "undone by step {by} as the run stopped; a resumed run does it again"
                    ));
                }
            }
            Event::Resume { at, pid: p, .. } => {
                resumed.push(at);
                ended = None;
                pid = p;
                // What the last invocation left running, it left unfinished.
                for s in steps.iter_mut().filter(|s| s.result == "running") {
                    s.result = "interrupted".into();
                }
            }
            Event::End {
                outcome, message: m, ..
            } => {
                ended = Some(outcome);
                message = m;
            }
            Event::Start { .. } | Event::Advertised { .. } => {}
        }
    }
    let state = state(ended, &machine, pid);
    if state != "running" {
        for s in steps.iter_mut().filter(|s| s.result == "running") {
            s.result = "interrupted".into();
        }
    }
    Some(History {
        summary: Summary {
            run,
            procedure,
            targets,
            user,
            machine,
            started: at,
            state,
            steps_done: steps.iter().filter(|s| s.result == "done").count(),
            steps_total: steps.len(),
            journal: path.display().to_string(),
        },
        inventory,
        message,
        resumed,
        records,
        steps,
    })
}

/// The latest run of `procedure` on `targets` against this inventory, if
/// it took a node out of service and then did not finish (it stopped,
/// failed, or was killed): a later run continues it.
pub fn unfinished(dir: &Path, inventory: &str, procedure: &str, targets: &[String]) -> Option<Previous> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("jsonl"))
        .filter_map(|p| read(&p))
        .filter(|p| p.inventory == inventory && p.procedure == procedure && p.targets == targets)
        // A run refused by its checks before any step changed nothing: it
        // is not the last word. (A continuation refused leaves its run as
        // unfinished as it was.)
        .filter(|p| !(p.outcome.as_deref() == Some("refused") && p.done.is_empty()))
        .max_by(|a, b| (a.started, &a.run).cmp(&(b.started, &b.run)))
        // Until a step took a node out of service, a new run starts afresh.
        .filter(|p| p.plan.steps().any(|s| s.takes_out && p.done.contains(&s.number)))
        .filter(|p| p.outcome.as_deref() != Some("done"))
}

pub fn left_out(dir: &Path, inventory: &str) -> BTreeMap<String, String> {
    // Each run: when it started, its id, and its relays' moves (taken out?).
    type Moves = Vec<(String, bool)>;
    let mut runs: Vec<(u64, String, Moves)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // A line cut short by a crash is skipped, not fatal.
        let mut lines = text.lines().filter_map(|l| serde_json::from_str::<Line>(l).ok());
        let Some(start) = lines
            .next()
            .filter(|l| l.event == "start" && l.inventory == inventory)
        else {
            continue;
        };
        let moves = lines
            .filter(|l| l.event == "advertised")
            .map(|l| (l.node, l.out))
            .collect();
        runs.push((start.at, start.run, moves));
    }
    runs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut out = BTreeMap::new();
    for (_, run, moves) in runs {
        for (node, taken_out) in moves {
            if taken_out {
                out.insert(node, run.clone());
            } else {
                out.remove(&node);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_word_on_each_relay_wins() {
        let dir = std::env::temp_dir().join(format!("opsctl-journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let started = |run: &str, at, machine: String, pid| Event::Start {
            run: run.into(),
            procedure: "restart-no-downtime".into(),
            inventory: "inv.yaml".into(),
            targets: vec![],
            at,
            plan: None,
            user: "alice".into(),
            machine,
            pid,
        };
        let start = |run: &str, at| started(run, at, crate::lock::machine(), u32::MAX - 1);
        let adv = |node: &str, out| Event::Advertised {
            node: node.into(),
            out,
            at: 0,
        };
        let mut a = Journal::create(&dir, "a").unwrap();
        for e in [start("a", 1), adv("r1", true), adv("r1", false), adv("r2", true)] {
            a.record(&e).unwrap();
        }
        let mut b = Journal::create(&dir, "b").unwrap();
        for e in [start("b", 2), adv("r3", true)] {
            b.record(&e).unwrap();
        }
        std::fs::write(
            dir.join("other.jsonl"),
            serde_json::to_string(&start("c", 3))
                .unwrap()
                .replace("inv.yaml", "x.yaml")
                + "\n{\"event\":\"adv",
        )
        .unwrap();
        let left = left_out(&dir, "inv.yaml");
        assert_eq!(
            left,
            BTreeMap::from([("r2".into(), "a".into()), ("r3".into(), "b".into())])
        );
        // A run id names one run: a second journal of it is refused, and
        // the first is left as it was; the run it names can be continued.
        let before = std::fs::read_to_string(dir.join("a.jsonl")).unwrap();
        let err = Journal::create(&dir, "a").err().unwrap().to_string();
        assert!(err.starts_with("run id `a` is taken"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.join("a.jsonl")).unwrap(), before);
        Journal::reopen(&dir, "a")
            .unwrap()
            .record(&adv("r2", false))
            .unwrap();
        assert_eq!(left_out(&dir, "inv.yaml").len(), 1);
        // Listed latest first; a run with no end whose process is gone was
        // killed; one that ended says how.
        b.record(&Event::End {
            outcome: "done".into(),
            message: String::new(),
            at: 3,
        })
        .unwrap();
        let listed: Vec<(String, String)> = runs(&dir).into_iter().map(|r| (r.run, r.state)).collect();
        assert_eq!(
            listed,
            [
                ("c".to_owned(), "killed".to_owned()),
                ("b".to_owned(), "done".to_owned()),
                ("a".to_owned(), "killed".to_owned())
            ]
        );
        let mut live = Journal::create(&dir, "d").unwrap();
        live.record(&started("d", 4, crate::lock::machine(), std::process::id()))
            .unwrap();
        let mut away = Journal::create(&dir, "e").unwrap();
        away.record(&started("e", 5, "elsewhere".into(), 1)).unwrap();
        let states: Vec<String> = runs(&dir).into_iter().take(2).map(|r| r.state).collect();
        assert_eq!(states, ["unknown", "running"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

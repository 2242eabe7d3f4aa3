//! Running opsctl and checking what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    cmd: String,
}

impl Output {
    /// What a process `cmd` (in words) gave.
    pub fn of(cmd: &str, out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmd: cmd.to_owned(),
        }
    }

    /// Everything about the run, for a failed expectation.
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }

    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\n{}", self.dump());
        self
    }

    /// Expects a dry run that printed its plan.
    pub fn planned(&self) -> &Self {
        self.success()
    }

    /// Expects failure with `code` and exactly `message` on stderr.
    pub fn fails_with(&self, code: i32, message: &str) {
        assert_eq!(self.code, code, "wrong exit status\n{}", self.dump());
        assert_eq!(self.stderr, message, "wrong message\n{}", self.dump());
        assert!(
            self.stdout.is_empty(),
            "a failure printed results\n{}",
            self.dump()
        );
    }
}

/// The workspace root, where inventory.example.yaml lives.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs opsctl in `dir` with `args`; the run id is fixed so plans are stable.
pub fn opsctl_in(dir: &Path, args: &[&str]) -> Output {
    opsctl_env(dir, args, &[])
}

/// The run id a test's next opsctl gets: `test`, or once a run of that id
/// has a journal in `dir`, `test-2`, `test-3`, ... (an id names one run).
pub fn next_run_id(dir: &Path) -> String {
    (1..)
        .map(|n| {
            if n == 1 {
                "test".to_owned()
            } else {
                format!("test-{n}")
            }
        })
        .find(|id| !dir.join(".opsctl-state").join(format!("{id}.jsonl")).exists())
        .unwrap()
}

/// [`opsctl_in`] with extra environment variables.
pub fn opsctl_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsctl"));
    cmd.current_dir(dir)
        .args(args)
        .env("OPSCTL_RUN_ID", next_run_id(dir))
        // Masters close with each command (a test may turn persistence on);
        // sockets live in the test's own directory.
        .env("OPSCTL_SSH_PERSIST", "0s")
        .env("OPSCTL_CONTROL_DIR", dir.join(".opsctl-ssh"))
        .env("OPSCTL_STATE_DIR", dir.join(".opsctl-state"))
        .env_remove("OPSCTL_INVENTORY")
        .env("NO_COLOR", "1");
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run opsctl");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmd: format!("(in {}) opsctl {}", dir.display(), args.join(" ")),
    }
}

pub fn opsctl(args: &[&str]) -> Output {
    opsctl_in(&root(), args)
}

/// A fresh directory for one test's files, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "opsctl-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs opsctl in this directory.
    pub fn opsctl(&self, args: &[&str]) -> Output {
        opsctl_in(&self.0, args)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compares `actual` with the snapshot file `tests/snapshots/NAME`; with
/// UPDATE_SNAPSHOTS=1 the file is rewritten instead (review the diff).
pub fn snapshot(name: &str, actual: &str) {
    let path = root().join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "snapshot {}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "snapshot {} differs from line {}:\n  expected: {:?}\n  actual:   {:?}\n(run with UPDATE_SNAPSHOTS=1 to accept, then review the diff)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// Sends SIGINT to a running opsctl (as Ctrl-C does) and waits for it to end.
pub fn interrupt(child: std::process::Child) -> std::process::Output {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -INT failed");
    child.wait_with_output().unwrap()
}

/// Starts `opsctl --run-id ID --yes recover-quorum` in `dir` and kills it
/// (SIGKILL, no chance to clean up) once the journal of run `journal`
/// (the run a later invocation continues, or `id` itself) records step
/// `after` done; returns that journal.
pub fn kill_recover_quorum_after(dir: &Path, id: &str, journal: &str, after: usize) -> String {
    let step = format!("{{\"event\":\"step\",\"number\":{after},");
    kill_when(
        dir,
        &["--run-id", id, "--yes", "recover-quorum"],
        &[],
        journal,
        &format!("step {after} done"),
        |text| text.lines().any(|l| l.starts_with(&step)),
    )
}

/// Two runs started at once on one site: the one refused ends at once, the
/// other holds the site (and stays, waiting in its drain). Returns the
/// one that ended, the one still running, and whether `a` is that one.
pub fn one_ends(
    mut a: std::process::Child,
    mut b: std::process::Child,
) -> (std::process::Child, std::process::Child, bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if a.try_wait().unwrap().is_some() {
            return (a, b, false);
        }
        if b.try_wait().unwrap().is_some() {
            return (b, a, true);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither run ended: both hold the site?"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether a journal records step `n` begun (`event` `step-start`) or
/// done (`step`).
pub fn journal_has(text: &str, event: &str, n: usize) -> bool {
    let line = format!("{{\"event\":\"{event}\",\"number\":{n},");
    text.lines().any(|l| l.starts_with(&line))
}

/// Starts opsctl with `args` in `dir`, its state and control directories
/// there, `env` added, its stderr into `said`.
fn spawn_watched(dir: &Path, args: &[&str], env: &[(&str, &str)], said: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_opsctl"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .env("OPSCTL_SSH_PERSIST", "0s")
        .env("OPSCTL_CONTROL_DIR", dir.join(".opsctl-ssh"))
        .env("OPSCTL_STATE_DIR", dir.join(".opsctl-state"))
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(said).unwrap())
        .spawn()
        .unwrap()
}

/// Starts opsctl as [`kill_when`] does, and once `when` holds of the
/// journal, interrupts it (SIGINT, as Ctrl-C) and waits for it to end
/// (60 s at most). Returns its exit status and what it printed on stderr.
pub fn interrupt_when(
    dir: &Path,
    args: &[&str],
    journal: &str,
    what: &str,
    when: impl Fn(&str) -> bool,
) -> (i32, String) {
    let said = dir.join("interrupted.stderr");
    let mut child = spawn_watched(dir, args, &[("OPSCTL_RUN_ID", journal)], &said);
    let journal = dir.join(".opsctl-state").join(format!("{journal}.jsonl"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !when(&std::fs::read_to_string(&journal).unwrap_or_default()) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "opsctl {} ended ({status}) before {what}:\n{}",
                args.join(" "),
                std::fs::read_to_string(&said).unwrap_or_default()
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("not within 90s: {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("opsctl did not end within 60s of SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&said).unwrap_or_default(),
    )
}

/// Starts opsctl with `args` in `dir` (its state and control directories
/// there, and `env`), and kills it (SIGKILL, no chance to clean up) once
/// `when` holds of the journal of run `journal`: `what` says when, for a
/// failure. Returns that journal as it was then.
pub fn kill_when(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    journal: &str,
    what: &str,
    when: impl Fn(&str) -> bool,
) -> String {
    // What it says, for a failure: it is killed before it could be read.
    let said = dir.join("killed.stderr");
    let mut child = spawn_watched(dir, args, env, &said);
    let journal = dir.join(".opsctl-state").join(format!("{journal}.jsonl"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if when(&text) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            // The first line is the whole plan: left out.
            let events: Vec<&str> = text.lines().skip(1).collect();
            panic!(
                "opsctl {} ended ({status}) before {what}:\n{}\n--- stderr\n{}",
                args.join(" "),
                events.join("\n"),
                std::fs::read_to_string(&said).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within 90s: {what}:\n{}",
            text.lines().skip(1).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::read_to_string(&journal).unwrap()
}

/// The number of the plan's step whose title starts with `title` on `node`.
pub fn plan_step(plan: &serde_json::Value, node: &str, title: &str) -> usize {
    plan["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap())
        .find(|s| s["node"] == node && s["title"].as_str().unwrap().starts_with(title))
        .and_then(|s| s["number"].as_u64())
        .unwrap_or_else(|| panic!("no step `{title}` on {node}")) as usize
}

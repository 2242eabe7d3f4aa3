//! Running commands on nodes: one wrapper over the `openssh` crate, and a
//! `local` transport that runs the same operations on this machine.
//!
//! Every node gets one SSH master connection per run (ControlMaster), reused
//! by every command sent to it. Every command's exit status is checked by the
//! caller's choice of [`Remote::run`] (must succeed) or [`Remote::probe`]
//! (the status is the answer), and every failure says which node, which
//! command, the exit code and the trimmed stderr. A connection that breaks is
//! told apart from a command that fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use openssh::{KnownHosts as SshKnownHosts, Session, SessionBuilder};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::command::{Access, Command, KnownHosts, Transport};

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Why a command did not run to a successful end.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No SSH connection could be made; nothing ran.
    #[error("cannot connect to `{node}` ({address}): {reason}{}", hint_suffix(.hint))]
    Connect {
        node: String,
        address: String,
        reason: String,
        hint: Option<String>,
    },
    /// The connection went away while the command ran: it may or may not have run.
    #[error("lost the connection to `{node}` while running `{command}`; it may or may not have run")]
    Disconnected { node: String, command: String },
    /// The command ran and exited with a failure status.
    #[error("`{command}` failed on `{node}` with exit status {code}{}", stderr_suffix(.stderr))]
    Failed {
        node: String,
        command: String,
        code: i32,
        stderr: String,
    },
    /// The command did not finish in time and was stopped.
    #[error("`{command}` on `{node}` did not finish within {after}; it was stopped")]
    Timeout {
        node: String,
        command: String,
        after: String,
    },
    /// A local command could not be started at all.
    #[error("cannot run `{command}` on `{node}`: {reason}")]
    Spawn {
        node: String,
        command: String,
        reason: String,
    },
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!("\nhelp: {h}")).unwrap_or_default()
}

/// The last lines of stderr, enough to see why without flooding the terminal.
fn stderr_suffix(stderr: &str) -> String {
    let trimmed = trim_output(stderr);
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

pub fn trim_output(text: &str) -> String {
    const KEEP: usize = 5;
    let lines: Vec<&str> = text.trim().lines().collect();
    let start = lines.len().saturating_sub(KEEP);
    let mut out = lines[start..].join("\n");
    if start > 0 {
        out = format!("...\n{out}");
    }
    if out.len() > 2000 {
        let cut = out
            .char_indices()
            .map(|(i, _)| i)
            .take_while(|i| *i < 2000)
            .last()
            .unwrap_or(0);
        out.truncate(cut);
        out.push_str(" ...");
    }
    out
}

/// A node as the remote layer needs it: its name and how to reach it.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub access: Access,
}

impl Node {
    /// This machine, for the commands a plan runs "here" (apply commands,
    /// advertise checks).
    pub fn here() -> Node {
        Node {
            name: "local".into(),
            access: Access::here(),
        }
    }
}

/// SSH sessions for one run, opened on first use and released together.
///
/// With `persist`, master connections outlive the run (ssh's ControlPersist,
/// idle for at most that long) and the next opsctl command reuses them, so it
/// starts warm: a record per connection, named by a hash of everything that
/// shapes the connection (user, host, port, key, host-key policy, jump host),
/// points at the master's socket in the private control directory.
pub struct Remote {
    control_dir: PathBuf,
    persist: Option<Duration>,
    sessions: Mutex<HashMap<String, (Arc<Session>, PathBuf)>>,
}

/// Even without `persist`, a master left behind by a crash exits on its own.
const ORPHAN_IDLE: Duration = Duration::from_secs(60);

impl Remote {
    /// `control_dir` holds the master sockets; it is created with mode 0700.
    pub fn new(control_dir: PathBuf) -> std::io::Result<Remote> {
        Remote::with_persist(control_dir, None)
    }

    pub fn with_persist(control_dir: PathBuf, persist: Option<Duration>) -> std::io::Result<Remote> {
        create_private_dir(&control_dir)?;
        create_private_dir(&control_dir.join("masters"))?;
        Ok(Remote {
            control_dir,
            persist: persist.filter(|d| !d.is_zero()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The record naming a reusable master for these connection settings.
    fn record(&self, a: &Access) -> PathBuf {
        use sha2::Digest;
        let s = &a.ssh;
        let key = format!(
            "{:?}|{}|{}|{:?}|{:?}|{:?}|{:?}",
            s.user, a.host, s.port, s.identity_file, s.known_hosts, s.known_hosts_file, s.jump_host
        );
        let hash: String = sha2::Sha256::digest(key.as_bytes())
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.control_dir.join("masters").join(hash)
    }

    /// A master kept from an earlier run, if it still answers.
    async fn resume(&self, record: &std::path::Path) -> Option<Session> {
        self.persist?;
        let ctl = PathBuf::from(std::fs::read_to_string(record).ok()?.trim());
        let session = Session::resume_mux(ctl.clone().into_boxed_path(), None);
        if session.check().await.is_ok() {
            return Some(session);
        }
        // Gone (idle timeout, host rebooted): forget it and its directory.
        let _ = std::fs::remove_file(record);
        if let Some(dir) = ctl.parent().filter(|d| d.starts_with(&self.control_dir)) {
            let _ = std::fs::remove_dir_all(dir);
        }
        None
    }

    /// Drops a session whose master is gone, and its record.
    pub async fn forget_node(&self, node: &str) {
        if let Some((_, record)) = self.sessions.lock().await.remove(node) {
            let _ = std::fs::remove_file(record);
        }
    }

    /// Runs a command that must succeed: a non-zero exit is an error.
    pub async fn run(&self, node: &Node, cmd: &Command, timeout: Duration) -> Result<Output, ExecError> {
        let out = self.probe(node, cmd, timeout, None).await?;
        if out.code != 0 {
            return Err(ExecError::Failed {
                node: node.name.clone(),
                command: cmd.line.clone(),
                code: out.code,
                stderr: out.stderr,
            });
        }
        Ok(out)
    }

    /// Runs a command whose exit status is part of the answer (`systemctl
    /// is-active` says "inactive" with status 3). Connection trouble and
    /// timeouts are still errors. `stdin` is fed to the command, never put on
    /// its command line.
    pub async fn probe(
        &self,
        node: &Node,
        cmd: &Command,
        timeout: Duration,
        stdin: Option<&[u8]>,
    ) -> Result<Output, ExecError> {
        let timed_out = || ExecError::Timeout {
            node: node.name.clone(),
            command: cmd.line.clone(),
            after: crate::duration::format(timeout),
        };
        // The line is what the plan shows; stdin (passwords, file content) is never logged.
        tracing::info!(node = %node.name, command = %cmd.line, "running");
        let started = std::time::Instant::now();
        let result = self.probe_inner(node, cmd, timeout, stdin, timed_out).await;
        match &result {
            Ok(out) => {
                tracing::debug!(node = %node.name, code = out.code, elapsed_ms = started.elapsed().as_millis() as u64, "finished")
            }
            Err(e) => tracing::debug!(node = %node.name, "failed: {e}"),
        }
        result
    }

    async fn probe_inner(
        &self,
        node: &Node,
        cmd: &Command,
        timeout: Duration,
        stdin: Option<&[u8]>,
        timed_out: impl Fn() -> ExecError,
    ) -> Result<Output, ExecError> {
        match node.access.transport {
            Transport::Local => tokio::time::timeout(timeout, run_local(&node.name, cmd, stdin))
                .await
                .map_err(|_| timed_out())?,
            Transport::Ssh => {
                let session = self.session(node).await?;
                match tokio::time::timeout(timeout, run_ssh(&session, cmd, stdin)).await {
                    Err(_) => Err(timed_out()),
                    Ok(Ok(out)) => Ok(out),
                    Ok(Err(e)) => {
                        // Exit status 255 is also what ssh reports for a broken
                        // connection: ask the master which one it was.
                        let alive = session.check().await.is_ok();
                        if alive {
                            if let openssh::Error::RemoteProcessTerminated = e {
                                return Ok(Output {
                                    code: 255,
                                    stdout: String::new(),
                                    stderr: String::new(),
                                });
                            }
                        } else {
                            self.forget_node(&node.name).await;
                        }
                        Err(ExecError::Disconnected {
                            node: node.name.clone(),
                            command: cmd.line.clone(),
                        })
                    }
                }
            }
        }
    }

    /// Runs `parts` on the node one after the other as one command line,
    /// over one session: what a read-only survey (`opsctl status`) needs of
    /// a node costs one round trip, not one per command. Each part's output
    /// and exit status come back as if it had run alone, told apart by a
    /// mark made for this batch (random, so no command prints it by chance).
    /// At most one part may be fed stdin; the others read nothing. A
    /// connection error or timeout is the whole batch's.
    ///
    /// Plans never batch: the commands a plan shows are the commands sent.
    pub async fn batch(&self, node: &Node, parts: &[Part<'_>]) -> Result<Vec<Output>, ExecError> {
        if node.access.transport == Transport::Local || parts.len() <= 1 {
            let mut outs = Vec::with_capacity(parts.len());
            for p in parts {
                outs.push(self.probe(node, p.command, p.timeout, p.stdin).await?);
            }
            return Ok(outs);
        }
        let fed: Vec<&Part> = parts.iter().filter(|p| p.stdin.is_some()).collect();
        if fed.len() > 1 {
            return Err(ExecError::Spawn {
                node: node.name.clone(),
                command: fed
                    .iter()
                    .map(|p| p.command.line.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                reason: "only one command of a batch can be fed stdin".into(),
            });
        }
        let mark = batch_mark();
        let line = batch_line(&mark, parts);
        for p in parts {
            tracing::info!(node = %node.name, command = %p.command.line, "running (batched)");
        }
        let started = std::time::Instant::now();
        let result = self
            .run_batch(node, &line, &mark, parts, fed.first().and_then(|p| p.stdin))
            .await;
        match &result {
            Ok(outs) => {
                let codes: Vec<i32> = outs.iter().map(|o| o.code).collect();
                tracing::debug!(node = %node.name, ?codes, elapsed_ms = started.elapsed().as_millis() as u64, "finished")
            }
            Err(e) => tracing::debug!(node = %node.name, "failed: {e}"),
        }
        result
    }

    /// The batch over SSH, its output read as it comes: each part has its
    /// own time limit from when the one before it ended, and a timeout or a
    /// lost connection names the part that was running.
    async fn run_batch(
        &self,
        node: &Node,
        line: &str,
        mark: &str,
        parts: &[Part<'_>],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<Output>, ExecError> {
        use tokio::io::AsyncReadExt;
        let session = self.session(node).await?;
        let running = |done: usize| &parts[done.min(parts.len() - 1)].command.line;
        let lost = |done: usize| ExecError::Disconnected {
            node: node.name.clone(),
            command: running(done).clone(),
        };
        let mut c = session.raw_command(line);
        c.stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped());
        c.stdin(if stdin.is_some() {
            openssh::Stdio::piped()
        } else {
            openssh::Stdio::null()
        });
        let Ok(mut child) = c.spawn().await else {
            if session.check().await.is_err() {
                self.forget_node(&node.name).await;
            }
            return Err(lost(0));
        };
        if let (Some(data), Some(mut w)) = (stdin, child.stdin().take())
            && (w.write_all(data).await.is_err() || w.shutdown().await.is_err())
        {
            return Err(lost(0));
        }
        let errors = child.stderr().take().map(|mut pipe| {
            tokio::spawn(async move {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text).await;
                text
            })
        });
        let mut stdout = Vec::new();
        let mut done = 0;
        if let Some(mut pipe) = child.stdout().take() {
            let mut scan = Marks::new(mark);
            let mut deadline = tokio::time::Instant::now() + parts[0].timeout;
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match tokio::time::timeout_at(deadline, pipe.read(&mut chunk)).await {
                    Err(_) => {
                        if let Some(t) = &errors {
                            t.abort();
                        }
                        return Err(ExecError::Timeout {
                            node: node.name.clone(),
                            command: running(done).clone(),
                            after: crate::duration::format(parts[done.min(parts.len() - 1)].timeout),
                        });
                    }
                    Ok(Ok(0) | Err(_)) => break,
                    Ok(Ok(n)) => {
                        stdout.extend_from_slice(&chunk[..n]);
                        let now = scan.done(&stdout);
                        if now > done && now < parts.len() {
                            deadline = tokio::time::Instant::now() + parts[now].timeout;
                        }
                        done = now;
                    }
                }
            }
        }
        let stderr = match errors {
            Some(t) => tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let ended = child.wait().await;
        let out = Output {
            code: ended.as_ref().ok().and_then(|s| s.code()).unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        match split_batch(mark, parts.len(), &out) {
            Some(outs) => Ok(outs),
            None => {
                if session.check().await.is_err() {
                    self.forget_node(&node.name).await;
                    return Err(lost(done));
                }
                Err(ExecError::Failed {
                    node: node.name.clone(),
                    command: running(done).clone(),
                    code: out.code,
                    stderr: format!(
                        "the commands after it did not run: the batch ended early\n{}",
                        out.stderr
                    ),
                })
            }
        }
    }

    /// Whether the node answers: a connection is made (or an open one still works).
    pub async fn reachable(&self, node: &Node) -> Result<(), ExecError> {
        match node.access.transport {
            Transport::Local => Ok(()),
            Transport::Ssh => {
                // A session opened (or resumed) now has just proven itself; one
                // opened earlier in this run is asked whether it still works.
                let cached = self.sessions.lock().await.get(&node.name).map(|(s, _)| s.clone());
                if let Some(s) = cached {
                    if s.check().await.is_ok() {
                        return Ok(());
                    }
                    self.forget_node(&node.name).await;
                }
                self.session(node).await.map(|_| ())
            }
        }
    }

    async fn session(&self, node: &Node) -> Result<Arc<Session>, ExecError> {
        if let Some((s, _)) = self.sessions.lock().await.get(&node.name) {
            return Ok(s.clone());
        }
        let a = &node.access;
        let record = self.record(a);
        if let Some(session) = self.resume(&record).await {
            tracing::debug!(node = %node.name, "reusing the ssh master kept from an earlier command");
            let session = Arc::new(session);
            self.sessions
                .lock()
                .await
                .insert(node.name.clone(), (session.clone(), record));
            return Ok(session);
        }
        let idle = usize::try_from(self.persist.unwrap_or(ORPHAN_IDLE).as_secs()).unwrap_or(usize::MAX);
        let mut b = SessionBuilder::default();
        b.control_directory(&self.control_dir)
            .control_persist(openssh::ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(idle).unwrap_or(std::num::NonZeroUsize::MIN),
            ))
            .known_hosts_check(match a.ssh.known_hosts {
                KnownHosts::Strict => SshKnownHosts::Strict,
                KnownHosts::AcceptNew => SshKnownHosts::Add,
            })
            .connect_timeout(a.ssh.connect_timeout.max(Duration::from_secs(1)))
            .server_alive_interval(Duration::from_secs(10))
            .port(a.ssh.port);
        if let Some(u) = &a.ssh.user {
            b.user(u.clone());
        }
        if let Some(k) = &a.ssh.identity_file {
            b.keyfile(k);
        }
        if let Some(f) = &a.ssh.known_hosts_file {
            b.user_known_hosts_file(f);
        }
        if let Some(j) = &a.ssh.jump_host {
            b.jump_hosts([j]);
        }
        let address = crate::command::Host::of(&node.name, a).address;
        let session = b
            .connect_mux(&a.host)
            .await
            .map_err(|e| connect_error(&node.name, &address, a, e))?;
        let session = Arc::new(session);
        self.sessions
            .lock()
            .await
            .insert(node.name.clone(), (session.clone(), record));
        Ok(session)
    }

    /// Ends the run's use of its sessions: with `persist` the masters stay up
    /// for the next command (recorded in the control directory); without, each
    /// is closed, so no connection outlives the run unseen.
    pub async fn close(self) {
        let sessions: Vec<(Arc<Session>, PathBuf)> = self.sessions.into_inner().into_values().collect();
        for (s, record) in sessions {
            let Ok(s) = Arc::try_unwrap(s) else { continue };
            if self.persist.is_some() {
                let (ctl, _log) = s.detach();
                let tmp = record.with_extension("tmp");
                if std::fs::write(&tmp, ctl.to_string_lossy().as_bytes()).is_ok() {
                    let _ = std::fs::rename(&tmp, &record);
                }
            } else if let Err(e) = s.close().await {
                tracing::debug!("closing an ssh session: {e}");
            }
        }
    }
}

/// One command of a [`Remote::batch`].
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub command: &'a Command,
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
}

/// A mark no command prints by chance: 16 random hex digits.
fn batch_mark() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // No /dev/urandom: the time and pid still make it unlike any output.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = ((t as u64) ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("@@opsctl-{hex}")
}

/// The line that runs each part in turn (POSIX sh, as each part's own line
/// is), each in a subshell of its own, so none ends the batch: after each, its exit status on stdout and a mark on stderr, each on
/// a line of its own. Only the part fed stdin reads it.
fn batch_line(mark: &str, parts: &[Part<'_>]) -> String {
    let mut line = String::new();
    for p in parts {
        let input = if p.stdin.is_some() { "" } else { " </dev/null" };
        line.push_str(&format!(
            "( {}\n){input}; printf '\\n%s %s\\n' {mark} \"$?\"; printf '\\n%s\\n' {mark} >&2\n",
            p.command.line
        ));
    }
    line
}

/// How many parts of a batch have ended, as its output arrives: the
/// complete status lines seen, scanning each byte once.
struct Marks {
    mark: Vec<u8>,
    scanned: usize,
    done: usize,
}

impl Marks {
    fn new(mark: &str) -> Marks {
        Marks {
            mark: format!("\n{mark} ").into_bytes(),
            scanned: 0,
            done: 0,
        }
    }

    fn done(&mut self, out: &[u8]) -> usize {
        while let Some(at) = out[self.scanned..]
            .windows(self.mark.len())
            .position(|w| w == self.mark)
        {
            let code = self.scanned + at + self.mark.len();
            let Some(end) = out[code..].iter().position(|b| *b == b'\n') else {
                // The status line is not whole yet: look here again.
                self.scanned += at;
                return self.done;
            };
            self.scanned = code + end + 1;
            self.done += 1;
        }
        // Keep the tail that may hold the start of a mark.
        self.scanned = self.scanned.max(out.len().saturating_sub(self.mark.len() - 1));
        self.done
    }
}

/// Each part's output out of a batch's; `None` when the batch stopped early.
fn split_batch(mark: &str, n: usize, out: &Output) -> Option<Vec<Output>> {
    let mut outs = Vec::with_capacity(n);
    let (mut stdout, mut stderr) = (out.stdout.as_str(), out.stderr.as_str());
    let (out_mark, err_mark) = (format!("\n{mark} "), format!("\n{mark}\n"));
    for _ in 0..n {
        let (text, rest) = stdout.split_once(&out_mark)?;
        let (code, rest) = rest.split_once('\n')?;
        let (err, err_rest) = stderr.split_once(&err_mark)?;
        outs.push(Output {
            code: code.parse().ok()?,
            stdout: text.to_owned(),
            stderr: err.to_owned(),
        });
        (stdout, stderr) = (rest, err_rest);
    }
    Some(outs)
}

async fn run_ssh(session: &Session, cmd: &Command, stdin: Option<&[u8]>) -> Result<Output, openssh::Error> {
    // The line shown in the plan is the line sent: the remote shell splits it
    // exactly as the quoting says.
    let mut c = session.raw_command(&cmd.line);
    c.stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped());
    c.stdin(if stdin.is_some() {
        openssh::Stdio::piped()
    } else {
        openssh::Stdio::null()
    });
    let mut child = c.spawn().await?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin().take()) {
        w.write_all(data).await.map_err(openssh::Error::ChildIo)?;
        w.shutdown().await.map_err(openssh::Error::ChildIo)?;
    }
    let out = child.wait_with_output().await?;
    Ok(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

async fn run_local(node: &str, cmd: &Command, stdin: Option<&[u8]>) -> Result<Output, ExecError> {
    let spawn_err = |e: std::io::Error| ExecError::Spawn {
        node: node.to_owned(),
        command: cmd.line.clone(),
        reason: e.to_string(),
    };
    let (program, args) = cmd
        .argv
        .split_first()
        .ok_or_else(|| spawn_err(std::io::Error::other("empty command")))?;
    let mut c = tokio::process::Command::new(program);
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        c.current_dir(dir);
    }
    let mut child = c.spawn().map_err(spawn_err)?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(data).await.map_err(spawn_err)?;
        drop(w);
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    Ok(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Names the cause of a failed connection in the operator's terms.
fn connect_error(node: &str, address: &str, a: &Access, e: openssh::Error) -> ExecError {
    let raw = match &e {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        other => other.to_string(),
    };
    let text = raw.to_lowercase();
    let (reason, hint) = if text.contains("host key verification failed")
        || text.contains("identification has changed")
    {
        (
            "its host key does not match the known_hosts entry (strict checking)".to_owned(),
            Some(format!(
                "if the host was really reinstalled, check the new key out of band and replace its entry (`ssh-keygen -R {}`)",
                a.host
            )),
        )
    } else if text.contains("connection refused") {
        (
            "connection refused".to_owned(),
            Some(format!(
                "is sshd running there, and listening on port {}?",
                a.ssh.port
            )),
        )
    } else if text.contains("timed out") {
        (
            format!(
                "no answer within {}",
                crate::duration::format(a.ssh.connect_timeout)
            ),
            Some("check the address and the network path, or raise `ssh.connect_timeout`".into()),
        )
    } else if text.contains("permission denied") {
        (
            "authentication failed".to_owned(),
            Some("run `ssh-add`, or set `ssh.identity_file` (and `ssh.user`) in the inventory".into()),
        )
    } else if text.contains("no route to host") || text.contains("network is unreachable") {
        ("no route to the host".to_owned(), None)
    } else if text.contains("could not resolve hostname") {
        (
            "the host name does not resolve".to_owned(),
            Some("check `host` in the inventory".into()),
        )
    } else {
        (trim_output(&raw), None)
    };
    ExecError::Connect {
        node: node.to_owned(),
        address: address.to_owned(),
        reason,
        hint,
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An existing directory keeps its mode: make sure nobody else can use our sockets.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Where master sockets live: `$XDG_RUNTIME_DIR/opsctl` or `~/.cache/opsctl/ssh`.
pub fn default_control_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("opsctl");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/opsctl/ssh")
}

/// The commands that put a file on a node atomically: write a temporary file
/// beside the target (content on stdin), check its SHA-256 there, keep the
/// current file, rename into place; `cleanup` removes the temporary file
/// when any of them fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadCommands {
    pub temp: String,
    pub write: Command,
    pub check: Command,
    /// Keeps the current file under the backup name, once per run: a name
    /// already taken holds this run's own backup (the id names one run),
    /// made before it was cut short, which is the original and is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Command>,
    pub rename: Command,
    pub cleanup: Command,
    /// Puts the backup back in place (a rollback's): copied beside the
    /// target and renamed over it, the backup kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Command>,
}

/// Keeps the file there is (none is fine) under the backup name, unless
/// that name holds one already: this run's own, made before it was cut
/// short (a run id names one run), which is the original.
const KEEP_BACKUP: &str = r#"if [ -e "$1" ] && [ ! -e "$2" ]; then cp -a -- "$1" "$2"; fi"#;

/// Puts backup `$2` back over `$1` through the temporary name `$3`. Run only
/// after the upload completed, so no backup means there was no file before:
/// the new one is removed.
const RESTORE: &str =
    r#"if [ -e "$2" ]; then cp -a -- "$2" "$3" && mv -T -- "$3" "$1"; else rm -f -- "$1"; fi"#;

/// Writes the content to the temporary name with a umask that keeps it
/// private from the first byte, syncs it, gives it the mode `$3` (`keep`:
/// the mode of the file it replaces, 0644 when there is none; `private`,
/// for a key: that mode without group write and any bit for others, 0600
/// when there is none) and the owner and group of that file. A target that
/// is a symbolic link is refused (renaming over it would replace the link).
/// Content arrives on stdin, never on a command line.
const WRITE_TEMP: &str = r#"if [ -L "$2" ]; then echo "opsctl: $2 is a symbolic link (to $(readlink "$2")); name the file it points to instead" >&2; exit 1; fi; umask 077 && cat > "$1" && sync "$1" && case "$3" in keep) if [ -e "$2" ]; then chmod --reference="$2" "$1"; else chmod 644 "$1"; fi;; private) if [ -e "$2" ]; then chmod --reference="$2" "$1" && chmod g-wx,o-rwx "$1"; else chmod 600 "$1"; fi;; *) chmod "$3" "$1";; esac && if [ -e "$2" ]; then chown --reference="$2" "$1"; fi"#;

impl UploadCommands {
    /// `mode`: octal like `600`, `private`, or `None` to keep the current file's mode.
    pub fn new(
        name: &str,
        a: &Access,
        to: &str,
        temp: &str,
        backup: Option<&str>,
        mode: Option<&str>,
    ) -> Self {
        let cmd = |argv: &[&str]| Command::remote_str(name, a, argv);
        UploadCommands {
            temp: temp.to_owned(),
            write: cmd(&[
                "sh",
                "-c",
                WRITE_TEMP,
                "opsctl-upload",
                temp,
                to,
                mode.unwrap_or("keep"),
            ]),
            check: cmd(&["sha256sum", "--", temp]),
            backup: backup.map(|b| cmd(&["sh", "-c", KEEP_BACKUP, "opsctl-backup", to, b])),
            rename: cmd(&["mv", "-T", "--", temp, to]),
            cleanup: cmd(&["rm", "-f", "--", temp]),
            restore: backup.map(|b| cmd(&["sh", "-c", RESTORE, "opsctl-restore", to, b, temp])),
        }
    }

    /// [`UploadCommands::new`] with a backup and no restore, the mode kept.
    pub fn keeping_backup(name: &str, a: &Access, to: &str, temp: &str, backup: &str) -> Self {
        UploadCommands {
            backup: Some(Command::remote_str(
                name,
                a,
                &["sh", "-c", KEEP_BACKUP, "opsctl-backup", to, backup],
            )),
            restore: None,
            ..UploadCommands::new(name, a, to, temp, None, None)
        }
    }

    /// Every command, in the order they may run.
    pub fn all(&self) -> Vec<&Command> {
        [
            Some(&self.write),
            Some(&self.check),
            self.backup.as_ref(),
            Some(&self.rename),
            Some(&self.cleanup),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Remote {
    /// Uploads `content` with the plan's commands. The temporary file is
    /// removed if any step fails; the target is never left half-written.
    pub async fn upload(&self, node: &Node, content: &[u8], up: &UploadCommands) -> anyhow::Result<()> {
        use sha2::Digest;
        let timeout = node.access.ssh.command_timeout;
        let want: String = sha2::Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let result = async {
            let out = self.probe(node, &up.write, timeout, Some(content)).await?;
            if out.code != 0 {
                return Err(ExecError::Failed {
                    node: node.name.clone(),
                    command: up.write.line.clone(),
                    code: out.code,
                    stderr: out.stderr,
                }
                .into());
            }
            let sum = self.run(node, &up.check, timeout).await?;
            let got = sum.stdout.split_whitespace().next().unwrap_or("");
            if got != want {
                anyhow::bail!(
                    "the copy {} on `{}` has SHA-256 {got}, not {want}: the upload was damaged; nothing was replaced",
                    up.temp,
                    node.name
                );
            }
            if let Some(keep) = &up.backup {
                self.run(node, keep, timeout).await?;
            }
            self.run(node, &up.rename, timeout).await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self.probe(node, &up.cleanup, timeout, None).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch run by a real `sh`, as a node's login shell runs it.
    #[test]
    fn a_batch_gives_each_command_its_own_output_status_stderr_and_stdin() {
        use std::io::Write;
        let c = |line: &str| Command {
            on: crate::command::Host::here(),
            argv: Vec::new(),
            line: line.into(),
            cwd: None,
        };
        let cmds = [
            c("printf 'no newline'"),
            c("cat; echo out; echo err >&2; exit 3"),
            c("read -r pw; printf '%s' \"[$pw]\""),
        ];
        let fed: &[u8] = b"secret\n";
        let parts: Vec<Part> = cmds
            .iter()
            .enumerate()
            .map(|(i, command)| Part {
                command,
                stdin: (i == 2).then_some(fed),
                timeout: Duration::from_secs(5),
            })
            .collect();
        let mark = batch_mark();
        assert_ne!(mark, batch_mark(), "each batch has a mark of its own");
        let mut sh = std::process::Command::new("sh")
            .arg("-c")
            .arg(batch_line(&mark, &parts))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        sh.stdin.take().unwrap().write_all(fed).unwrap();
        let out = sh.wait_with_output().unwrap();
        let out = Output {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        let outs = split_batch(&mark, 3, &out).expect("every part ran");
        let seen: Vec<(i32, &str, &str)> = outs
            .iter()
            .map(|o| (o.code, o.stdout.as_str(), o.stderr.as_str()))
            .collect();
        // The second part's `cat` read nothing: only the third is fed.
        assert_eq!(
            seen,
            [(0, "no newline", ""), (3, "out\n", "err\n"), (0, "[secret]", "")]
        );
        // Read as it arrives, a byte at a time: each part is seen to end
        // once its status line is whole, and only then.
        let mut marks = Marks::new(&mark);
        let bytes = out.stdout.as_bytes();
        let ends: Vec<usize> = (1..=bytes.len())
            .filter(|&n| {
                let before = marks.done;
                marks.done(&bytes[..n]) > before
            })
            .collect();
        let whole = |i: usize| {
            let from = out.stdout.match_indices(&format!("\n{mark} ")).nth(i).unwrap().0;
            from + out.stdout[from + 1..].find('\n').unwrap() + 2
        };
        assert_eq!(ends, [whole(0), whole(1), whole(2)]);
        // A batch cut short (the connection went) is no answer.
        let cut = Output {
            code: 255,
            stdout: out.stdout[..out.stdout.len() - 10].to_owned(),
            stderr: out.stderr.clone(),
        };
        assert!(split_batch(&mark, 3, &cut).is_none());
    }

    #[test]
    fn stderr_is_trimmed_to_its_last_lines() {
        let long: String = (1..=9).map(|i| format!("line {i}\n")).collect();
        assert_eq!(trim_output(&long), "...\nline 5\nline 6\nline 7\nline 8\nline 9");
        assert_eq!(trim_output("  one line \n"), "one line");
    }
}

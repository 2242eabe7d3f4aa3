//! The lock a run holds on the sites it works on, kept on the sites' own
//! nodes, where every operator's opsctl looks: a directory per site
//! (`<dir>/<site>`, made with `mkdir`, which only one can make) holding the
//! holder's record. A run holds a site when it holds a majority of the
//! site's nodes, taken in inventory order: two runs contend for the same
//! first node, and at most one can hold a majority, also when some nodes
//! are down. The plan carries every command; the record goes on stdin.
//!
//! A holder killed before it releases leaves its lock behind: the next run
//! names it, says whether it is stale (same machine, process gone), and
//! `--break-lock` takes it over once confirmed.

use serde::{Deserialize, Serialize};

use crate::command::{Access, Command};

/// The exit status of `take` when another run holds the lock; it prints the
/// holder's record.
pub const HELD: i32 = 75;

/// Makes the site's lock directory and writes the record (stdin) in it; the
/// same run taking it again (continuing) is fine. Held by another: prints
/// its record (given a second to appear, as a run that has just made the
/// directory writes it next), exits 75. A record that does not arrive whole
/// (it names the run; a run killed as it sent it sends less) is never
/// written: the lock it made is removed again and the take fails.
const TAKE: &str = r#"mkdir -p -- "${1%/*}" || exit 1; made=; if mkdir -- "$1" 2>/dev/null; then made=1; elif ! grep -qF "\"run\":\"$2\"" "$1/owner" 2>/dev/null; then for i in 1 2 3 4 5 6 7 8 9 10; do [ -s "$1/owner" ] && break; sleep 0.1; done; cat -- "$1/owner" 2>/dev/null; exit 75; fi
cat > "$1/owner.tmp" && grep -qF "\"run\":\"$2\"" "$1/owner.tmp" && mv -f -- "$1/owner.tmp" "$1/owner" && exit 0
rm -f -- "$1/owner.tmp"; [ -n "$made" ] && rm -rf -- "$1"; echo "the lock record did not arrive whole on stdin" >&2; exit 1"#;

/// Removes the lock if this run holds it.
const RELEASE: &str = r#"if grep -qF "\"run\":\"$2\"" "$1/owner" 2>/dev/null; then rm -rf -- "$1"; fi"#;

/// Removes the lock held by the run named on stdin (or with no record, or
/// an empty one, left by a run killed while taking it).
const BREAK: &str = r#"read -r holder; if [ -d "$1" ] && { [ ! -s "$1/owner" ] || grep -qF "\"run\":\"$holder\"" "$1/owner"; }; then rm -rf -- "$1"; fi"#;

/// etcd's lease-backed lock (args: etcdctl, endpoint, key, TTL, run; the
/// record on stdin): a lease is granted and the key put under it only if
/// it does not exist, in one transaction; the lease id is printed. Held by
/// another run: the lease is revoked, the holder's record printed, exit
/// 75. Held by this same run (a continued run, within the lease of the
/// invocation before): taken over under the new lease, as long as the
/// record is still the one read. A record that does not arrive whole is
/// refused before any lease is granted.
const TAKE_ETCD: &str = r#"ctl=$1 ep=$2 key=$3 ttl=$4 run=$5
e() { ETCDCTL_API=3 "$ctl" --endpoints="$ep" --command-timeout=5s "$@"; }
record=$(base64 -w0) || exit 1
printf '%s' "$record" | base64 -d | grep -qF "\"run\":\"$run\"" || { echo "the lock record did not arrive whole on stdin" >&2; exit 1; }
lease=$(e lease grant "$ttl") || exit 1
lease=${lease#lease }; lease=${lease%% *}
res=$(printf 'create("%s") = "0"\n\nput --lease=%s %s %s\n\nget %s\n\n' "$key" "$lease" "$key" "$record" "$key" | e txn) || { e lease revoke "$lease" >/dev/null 2>&1; exit 1; }
case $res in SUCCESS*) echo "$lease"; exit 0;; esac
held=$(printf '%s\n' "$res" | sed -n 4p)
if printf '%s' "$held" | base64 -d 2>/dev/null | grep -qF "\"run\":\"$run\""; then
    res=$(printf 'value("%s") = "%s"\n\nput --lease=%s %s %s\n\n\n' "$key" "$held" "$lease" "$key" "$record" | e txn) || { e lease revoke "$lease" >/dev/null 2>&1; exit 1; }
    case $res in SUCCESS*) echo "$lease"; exit 0;; esac
fi
e lease revoke "$lease" >/dev/null 2>&1
printf '%s' "$held" | base64 -d
exit 75"#;

/// Renews the lease whose id is on stdin (args: etcdctl, endpoint).
const KEEP_ETCD: &str = r#"read -r lease; ETCDCTL_API=3 "$1" --endpoints="$2" --command-timeout=5s lease keep-alive --once "$lease""#;

/// Revokes the lease whose id is on stdin, and the key with it (args:
/// etcdctl, endpoint); one already gone is released.
const RELEASE_ETCD: &str = r#"read -r lease; out=$(ETCDCTL_API=3 "$1" --endpoints="$2" --command-timeout=5s lease revoke "$lease" 2>&1) || case $out in *"lease not found"*) ;; *) printf '%s\n' "$out" >&2; exit 1;; esac"#;

/// Deletes the key if the run named on stdin holds it (args: etcdctl,
/// endpoint, key).
const BREAK_ETCD: &str = r#"read -r holder; ctl=$1 ep=$2 key=$3; v=$(ETCDCTL_API=3 "$ctl" --endpoints="$ep" --command-timeout=5s get "$key" --print-value-only) || exit 1; if printf '%s' "$v" | base64 -d 2>/dev/null | grep -qF "\"run\":\"$holder\""; then ETCDCTL_API=3 "$ctl" --endpoints="$ep" --command-timeout=5s del "$key" >/dev/null; fi"#;

/// How long an etcd lock outlives its holder's last renewal, by default.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A site's lock, as a plan holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteLock {
    pub site: String,
    /// The lock directory on each node, or the etcd key.
    pub path: String,
    /// How many of `on` must be held: a majority of nodes, or one etcd
    /// member (the cluster keeps the lock).
    pub need: usize,
    /// In the order they are taken (etcd: tried).
    pub on: Vec<LockOn>,
    #[serde(default, skip_serializing_if = "Backend::is_nodes")]
    pub backend: Backend,
    /// etcd: the lease's TTL; it is renewed six times as often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_secs: Option<u64>,
}

/// Where a lock lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A directory on each node.
    #[default]
    Nodes,
    /// A key under a lease in the site's etcd cluster: it dies with the
    /// lease when its holder stops renewing it.
    Etcd,
}

impl Backend {
    fn is_nodes(&self) -> bool {
        *self == Backend::Nodes
    }
}

/// Taking, releasing and breaking the lock on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockOn {
    pub node: String,
    /// The record on stdin; exit 75 with the holder's record when held.
    pub take: Command,
    pub release: Command,
    /// The holder's run id on stdin.
    #[serde(rename = "break")]
    pub break_: Command,
    /// etcd: renews the lease (its id on stdin); `release` revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Command>,
}

impl SiteLock {
    /// The lock of `site` on `nodes` (name and access, in inventory order).
    pub fn new(site: &str, dir: &str, run: &str, nodes: &[(&str, &Access)]) -> SiteLock {
        let path = format!("{}/{site}", dir.trim_end_matches('/'));
        let on = nodes
            .iter()
            .map(|(name, a)| LockOn {
                node: (*name).to_owned(),
                take: Command::remote_str(name, a, &["sh", "-c", TAKE, "opsctl-lock", &path, run]),
                release: Command::remote_str(name, a, &["sh", "-c", RELEASE, "opsctl-unlock", &path, run]),
                break_: Command::remote_str(name, a, &["sh", "-c", BREAK, "opsctl-break-lock", &path]),
                keep: None,
            })
            .collect();
        SiteLock {
            site: site.to_owned(),
            path,
            need: nodes.len() / 2 + 1,
            on,
            backend: Backend::Nodes,
            lease_secs: None,
        }
    }

    /// How often an etcd lock's lease is renewed: six times per TTL.
    pub fn renew_secs(&self) -> u64 {
        (self.lease_secs.unwrap_or(LEASE_TTL.as_secs()) / 6).max(1)
    }

    /// The lock of `site` as a key in its etcd cluster, taken through the
    /// first of `members` (name, access, etcdctl, client URL) whose etcd
    /// answers.
    pub fn etcd(
        site: &str,
        run: &str,
        lease: std::time::Duration,
        members: &[(&str, &Access, &str, &str)],
    ) -> SiteLock {
        let key = format!("/opsctl/locks/{site}");
        let ttl = lease.as_secs().max(2).to_string();
        let on = members
            .iter()
            .map(|(name, a, ctl, ep)| LockOn {
                node: (*name).to_owned(),
                take: Command::remote_str(
                    name,
                    a,
                    &["sh", "-c", TAKE_ETCD, "opsctl-lock", ctl, ep, &key, &ttl, run],
                ),
                release: Command::remote_str(name, a, &["sh", "-c", RELEASE_ETCD, "opsctl-unlock", ctl, ep]),
                break_: Command::remote_str(
                    name,
                    a,
                    &["sh", "-c", BREAK_ETCD, "opsctl-break-lock", ctl, ep, &key],
                ),
                keep: Some(Command::remote_str(
                    name,
                    a,
                    &["sh", "-c", KEEP_ETCD, "opsctl-keep-lock", ctl, ep],
                )),
            })
            .collect();
        SiteLock {
            site: site.to_owned(),
            path: key,
            need: 1,
            on,
            backend: Backend::Etcd,
            lease_secs: Some(lease.as_secs().max(2)),
        }
    }

    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.on
            .iter()
            .flat_map(|o| [Some(&o.take), o.keep.as_ref(), Some(&o.release), Some(&o.break_)])
            .flatten()
    }
}

/// Who holds a lock: what a second operator is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run: String,
    pub procedure: String,
    pub targets: Vec<String>,
    pub user: String,
    pub machine: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
}

impl Holder {
    /// This process, about to run `run`.
    pub fn here(run: &str, procedure: &str, targets: &[String]) -> Holder {
        Holder {
            run: run.to_owned(),
            procedure: procedure.to_owned(),
            targets: targets.to_vec(),
            user: user(),
            machine: machine(),
            pid: std::process::id(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// "run R (restart-no-downtime on relay-1), by alice on laptop-3, pid
    /// 42, since <date>".
    pub fn describe(&self) -> String {
        format!(
            "run {} ({} on {}), by {} on {}, pid {}, since {}",
            self.run,
            self.procedure,
            self.targets.join(", "),
            self.user,
            self.machine,
            self.pid,
            crate::cert::date(self.started as i64)
        )
    }

    /// Whether the holder is known to be gone: it ran on this machine and
    /// its process is no more. (Elsewhere, nothing here can tell.)
    pub fn gone(&self) -> bool {
        self.machine == machine() && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Who runs this process, as a holder record gives it.
pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// This machine's name, as a holder record gives it.
pub fn machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The take script run by a real `sh`, fed `record`: its exit status and
    /// what is left in `dir`.
    fn take(dir: &std::path::Path, run: &str, record: &str) -> (i32, Option<String>) {
        use std::io::Write;
        let lock = dir.join("locks/site");
        let mut sh = std::process::Command::new("sh")
            .args(["-c", TAKE, "opsctl-lock"])
            .arg(&lock)
            .arg(run)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        sh.stdin.take().unwrap().write_all(record.as_bytes()).unwrap();
        let code = sh.wait().unwrap().code().unwrap();
        (code, std::fs::read_to_string(lock.join("owner")).ok())
    }

    /// A run killed as it sent its record (nothing, or part of it, arrived)
    /// leaves no lock behind, and the lock stays free for the next run.
    #[test]
    fn a_record_that_does_not_arrive_whole_takes_no_lock() {
        let dir = std::env::temp_dir().join(format!("opsctl-lock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let whole = r#"{"run":"run-1","procedure":"x"}"#;
        assert_eq!(take(&dir, "run-1", ""), (1, None));
        assert_eq!(take(&dir, "run-1", r#"{"ru"#), (1, None));
        assert!(!dir.join("locks/site").exists(), "the half-taken lock is removed");
        assert_eq!(take(&dir, "run-1", whole), (0, Some(whole.into())));
        // Taken again by the same run with a cut record: the lock it holds stays as it was.
        assert_eq!(take(&dir, "run-1", ""), (1, Some(whole.into())));
        // Another run is told who holds it.
        assert_eq!(
            take(&dir, "run-2", r#"{"run":"run-2"}"#),
            (HELD, Some(whole.into()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_holder_record_names_who_where_and_since_when() {
        let h = Holder {
            run: "20261201T165802.000Z-abc123".into(),
            procedure: "restart-no-downtime".into(),
            targets: vec!["relay-1".into()],
            user: "alice".into(),
            machine: "laptop-3".into(),
            pid: 42,
            started: 1_796_144_282,
        };
        let d = h.describe();
        assert!(
            d.starts_with("run 20261201T165802.000Z-abc123 (restart-no-downtime on relay-1), by alice on laptop-3, pid 42, since "),
            "{d}"
        );
        assert!(d.contains("2026"), "{d}");
        let back: Holder = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        // Another machine's process cannot be seen from here: never called gone.
        assert!(!h.gone());
        let mine = Holder {
            machine: machine(),
            pid: std::process::id(),
            ..h.clone()
        };
        assert!(!mine.gone(), "this process is alive");
        let dead = Holder {
            machine: machine(),
            pid: u32::MAX - 1,
            ..h
        };
        assert!(dead.gone());
    }

    #[test]
    fn a_majority_of_the_site_s_nodes_is_needed() {
        let a = Access::here();
        let nodes =
            |n: usize| -> Vec<(String, Access)> { (1..=n).map(|i| (format!("r{i}"), a.clone())).collect() };
        for (n, need) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)] {
            let ns = nodes(n);
            let refs: Vec<(&str, &Access)> = ns.iter().map(|(n, a)| (n.as_str(), a)).collect();
            let l = SiteLock::new("s", "/var/lib/opsctl/locks/", "run-1", &refs);
            assert_eq!(l.need, need, "{n} nodes");
            assert_eq!(l.path, "/var/lib/opsctl/locks/s");
        }
    }
}

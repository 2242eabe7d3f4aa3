//! An rtpengine group's calls and redundancy, read on the nodes through SSH.
//!
//! The rtpengines of a site that write their calls to Redis form a group:
//! each should hold every peer's calls as foreign. One script per instance
//! ([`Report`]) prints what its CLI lists (own and foreign calls, the
//! subscribed keyspaces, the limit on new calls) and the keys of its own
//! Redis database; the relay crate parses it and finds the holes. The Redis
//! password goes in on stdin, never on a command line.
//!
//! The same module holds the commands that refuse new calls on an instance
//! (`set maxsessions 0`, its documented drain) and allow them again at the
//! limit it had, kept on the node so that a run cut short still knows it.

use std::time::Duration;

use anyhow::{Context, bail};
use relay::rtpengine::{self as rtp, Hole, Instance, Reading, Stale};
use serde::{Deserialize, Serialize};

use crate::command::{Command, SecretRef};
use crate::inventory::{Relay, Site};
use crate::remote::{Node, Remote};

/// How one instance's report is read: what the plan shows and the executor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub relay: String,
    /// Its Redis database: the keyspace its peers follow; `None` without
    /// Redis (it is then in no group, and its report has no Redis part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<u32>,
    /// `host:port/db`, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    pub command: Command,
    /// The Redis password, fed on stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<SecretRef>,
    /// Its interface names as the inventory lists them (the first binds
    /// its own calls); empty when the inventory does not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// The keyspaces the inventory says it follows (`subscribe`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<u32>,
}

/// The Redis part of the report: `$3`:`$4`, database `$5`; the password,
/// if any, is the first line of stdin. Every key of the database, one per
/// line, after `@@opsctl redis` (SCAN, so Redis is never blocked).
const REDIS_PART: &str = r#"[ $# -ge 5 ] || exit 0
IFS= read -r pw || pw=
printf '%s\n' '@@opsctl redis'
exec 3<>"/dev/tcp/$3/$4" || exit 74
say() { local a; { printf '*%d\r\n' $#; for a; do printf '$%d\r\n%s\r\n' ${#a} "$a"; done; } >&3; }
line() { IFS= read -r -t 5 l <&3 || exit 75; l=${l%$'\r'}; }
if [ -n "$pw" ]; then say AUTH "$pw"; line; [ "$l" = +OK ] || { printf '%s\n' "$l" >&2; exit 76; }; fi
say SELECT "$5"; line; [ "$l" = +OK ] || { printf '%s\n' "$l" >&2; exit 76; }
c=0
while :; do
  say SCAN "$c" COUNT 1000; line; [ "$l" = '*2' ] || { printf '%s\n' "$l" >&2; exit 76; }; line; line; c=$l; line; n=${l#\*}
  i=0; while [ "$i" -lt "$n" ]; do line; line; printf '%s\n' "$l"; i=$((i+1)); done
  [ "$c" = 0 ] && break
done"#;

/// The report script: each of the relay crate's CLI replies after its mark,
/// then the Redis keys.
fn script() -> String {
    let mut s = String::from("export LC_ALL=C\n");
    for (name, args) in rtp::REPORT {
        s.push_str(&format!(
            "printf '%s\\n' '{}{name}'; rtpengine-ctl -ip \"$1\" -port \"$2\" {} || exit 70\n",
            rtp::MARK,
            args.join(" ")
        ));
    }
    s.push_str(REDIS_PART);
    s
}

/// How `r`'s report is read; `None` for a relay that is not an rtpengine.
pub fn report(r: &Relay) -> Option<Report> {
    let e = r.rtpengine.as_ref()?;
    let s = script();
    let cli_port = e.cli.1.to_string();
    let db = e.redis.as_ref().map(|r| r.db.to_string()).unwrap_or_default();
    let mut argv = vec!["bash", "-c", &s, "opsctl-rtpengine", &e.cli.0, &cli_port];
    if let Some((host, port)) = e.redis.as_ref().and_then(|r| r.addr.rsplit_once(':')) {
        argv.extend([host.trim_matches(['[', ']']), port, &db]);
    }
    Some(Report {
        relay: r.name.clone(),
        keyspace: e.redis.as_ref().map(|r| r.db),
        redis: e.redis.as_ref().map(|r| format!("{}/{}", r.addr, r.db)),
        command: Command::remote_str(&r.name, &r.access, &argv),
        stdin: e.redis_password.clone(),
        interfaces: e.interfaces.iter().map(|(n, _)| n.clone()).collect(),
        subscribe: e.subscribe.clone(),
    })
}

/// The site's group: every rtpengine of it that writes its calls to Redis.
pub fn group(site: &Site) -> Vec<Report> {
    site.relays
        .iter()
        .filter_map(report)
        .filter(|r| r.keyspace.is_some())
        .collect()
}

/// Reads one instance's report.
pub async fn read(remote: &Remote, node: &Node, rep: &Report) -> anyhow::Result<Reading> {
    let stdin = stdin(rep)?;
    let out = remote
        .probe(node, &rep.command, timeout(node), stdin.as_deref())
        .await?;
    reading(rep, &out)
}

/// What the report's command is fed: the Redis password, never on its command line.
pub fn stdin(rep: &Report) -> anyhow::Result<Option<Vec<u8>>> {
    match &rep.stdin {
        Some(s) => Ok(Some(
            format!("{}\n", s.read("the Redis password", "redis_password_file")?).into_bytes(),
        )),
        None => Ok(None),
    }
}

/// How long the report may take on `node`.
pub fn timeout(node: &Node) -> Duration {
    Duration::from_secs(30).min(node.access.ssh.command_timeout)
}

/// The reading out of what the report's command printed and how it ended.
pub fn reading(rep: &Report, out: &crate::remote::Output) -> anyhow::Result<Reading> {
    let err = crate::remote::trim_output(&out.stderr);
    let relay = &rep.relay;
    let redis = rep.redis.as_deref().unwrap_or("?");
    match out.code {
        0 => rtp::parse_report(&out.stdout).with_context(|| format!("what rtpengine on {relay} reported")),
        70 => bail!("rtpengine-ctl on {relay} failed: {err}"),
        74 => bail!("Redis {redis} cannot be reached from {relay}: {err}"),
        75 => bail!("Redis {redis} did not answer {relay} within 5s"),
        76 => bail!(
            "Redis {} refused {relay}: {err}{}",
            redis,
            match &rep.stdin {
                Some(p) => format!(" (the password comes from {p})"),
                None => " (no `redis_password_env` or `redis_password_file` is set for it)".into(),
            }
        ),
        c => bail!("the rtpengine report on {relay} failed (exit status {c}): {err}"),
    }
}

/// Reads every instance of `group`, one after the other (a group is a
/// handful of instances); each result in its place.
pub async fn read_all(remote: &Remote, nodes: &[Node], group: &[Report]) -> Vec<Result<Reading, String>> {
    let mut out = Vec::new();
    for rep in group {
        let r = match nodes.iter().find(|n| n.name == rep.relay) {
            Some(node) => read(remote, node, rep).await.map_err(|e| format!("{e:#}")),
            None => Err(format!("no node `{}` to read it on", rep.relay)),
        };
        out.push(r);
    }
    out
}

/// What a group's readings say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub holes: Vec<Hole>,
    pub stale: Vec<Stale>,
    /// Instances whose report could not be read, with why.
    pub unread: Vec<(String, String)>,
}

impl Checked {
    /// The holes in `of`'s cover, and why it cannot be told if so.
    pub fn of(&self, of: &str) -> Result<Vec<&Hole>, String> {
        if !self.unread.is_empty() {
            return Err(self
                .unread
                .iter()
                .map(|(n, why)| format!("{n} cannot be read: {why}"))
                .collect::<Vec<_>>()
                .join("; "));
        }
        Ok(self.holes.iter().filter(|h| h.of() == of).collect())
    }
}

/// Holes and stale calls across the group, with the interfaces the
/// inventory lists: a peer that names none of an instance's first
/// interface cannot carry its calls.
pub fn check(group: &[Report], readings: &[Result<Reading, String>]) -> Checked {
    let mut c = Checked::default();
    let mut instances = Vec::new();
    for (rep, r) in group.iter().zip(readings) {
        let Some(keyspace) = rep.keyspace else { continue };
        match r {
            Ok(reading) => instances.push(Instance {
                name: &rep.relay,
                keyspace,
                reading,
            }),
            Err(why) => c.unread.push((rep.relay.clone(), why.clone())),
        }
    }
    c.holes = rtp::holes(&instances);
    let unsubscribed = |of: &str, peer: &str| {
        c.holes
            .iter()
            .any(|h| matches!(h, Hole::NotSubscribed { of: o, peer: p, .. } if o == of && p == peer))
    };
    let mut static_holes = Vec::new();
    for of in group {
        let Some(first) = of.interfaces.first() else {
            continue;
        };
        for peer in group
            .iter()
            .filter(|p| p.relay != of.relay && !p.interfaces.is_empty())
        {
            // One that does not follow it at all is that hole already.
            if !peer.interfaces.contains(first) && !unsubscribed(&of.relay, &peer.relay) {
                static_holes.push(Hole::NoInterface {
                    of: of.relay.clone(),
                    peer: peer.relay.clone(),
                    interface: first.clone(),
                });
            }
        }
    }
    c.holes.extend(static_holes);
    c.stale = rtp::stale(&instances);
    c
}

/// How a target rtpengine is restarted without dropping its calls, as
/// decided when the plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "path", rename_all = "kebab-case")]
pub enum Handover {
    /// Its peers hold every call it owns: it restarts while they do, and
    /// restores its calls from Redis.
    Held { peers: Vec<String>, calls: usize },
    /// They do not, or it cannot be told: its own calls must end first.
    Drain { why: String },
}

/// The path for `r`, from its group's readings.
pub fn handover(r: &Relay, group: &[Report], readings: &[Result<Reading, String>]) -> Handover {
    let drain = |why: String| Handover::Drain { why };
    if r.rtpengine.as_ref().and_then(|e| e.redis.as_ref()).is_none() {
        return drain("it has no `rtpengine.redis` in the inventory, so no peer holds its calls".into());
    }
    let peers: Vec<String> = group
        .iter()
        .filter(|g| g.relay != r.name)
        .map(|g| g.relay.clone())
        .collect();
    if peers.is_empty() {
        return drain(format!(
            "no other rtpengine of site {} writes its calls to Redis, so none holds {}'s",
            r.site, r.name
        ));
    }
    let checked = check(group, readings);
    match checked.of(&r.name) {
        Err(why) => drain(format!("whether its peers hold its calls cannot be told: {why}")),
        Ok(holes) if !holes.is_empty() => drain(format!(
            "a redundancy hole: {}",
            holes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Ok(_) => {
            let calls = group
                .iter()
                .zip(readings)
                .find(|(g, _)| g.relay == r.name)
                .and_then(|(_, rd)| rd.as_ref().ok())
                .map_or(0, |rd| rd.own.len());
            Handover::Held { peers, calls }
        }
    }
}

/// Where the limit on new calls an instance had before a run refused them
/// is kept on its node, until a run allows them again: `DIR/RUN` then this.
const KEPT_DIR: &str = "/run/opsctl";

/// Keeps the limit on new calls of the rtpengine whose CLI is `$1`:`$2` in
/// `$3/$4.rtpengine-$1-$2.maxsessions` (`$3` the directory, `$4` the run),
/// then sets it to 0. A limit this run kept already is kept (a step run
/// again must not keep its own 0); one another run kept (cut short before
/// it allowed calls again) is taken over; a limit of 0 with none kept is
/// refused: what it was before is unknown.
const REFUSE: &str = r#"s=".rtpengine-$1-$2.maxsessions"; f="$3/$4$s"; mkdir -p "$3" || exit 71
if [ ! -e "$f" ]; then
  for o in "$3"/*"$s"; do [ -e "$o" ] && { cp "$o" "$f.tmp" && mv "$f.tmp" "$f" || exit 71; echo "the limit run ${o##*/} kept is taken over"; break; }; done
fi
if [ ! -e "$f" ]; then rtpengine-ctl -ip "$1" -port "$2" list maxsessions > "$f.tmp" || exit 70
  n=$(sed -n 's/^Maximum sessions configured on rtpengine: *//p' "$f.tmp")
  [ -n "$n" ] || { cat "$f.tmp" >&2; rm -f "$f.tmp"; exit 72; }
  [ "$n" != 0 ] || { rm -f "$f.tmp"; echo "its limit on new calls is 0 already and no run kept the one it had: set it first (rtpengine-ctl -ip $1 -port $2 set maxsessions N, -1 for none)" >&2; exit 73; }
  mv "$f.tmp" "$f" || exit 71; fi
r=$(rtpengine-ctl -ip "$1" -port "$2" set maxsessions 0) || exit 70
case "$r" in "Success setting maxsessions to 0"*) ;; *) printf '%s\n' "$r" >&2; exit 72;; esac
printf 'new calls refused; the limit it had: %s\n' "$(sed 's/.*: //' "$f")""#;

/// Sets the limit [`REFUSE`] kept back, and forgets every limit kept for
/// this instance; with none kept (new calls were never refused) there is
/// nothing to do.
const ALLOW: &str = r#"s=".rtpengine-$1-$2.maxsessions"; f="$3/$4$s"
[ -e "$f" ] || { echo "no limit was kept: nothing to restore"; exit 0; }
n=$(sed -n 's/^Maximum sessions configured on rtpengine: *//p' "$f")
[ -n "$n" ] && [ "$n" != 0 ] || { cat "$f" >&2; exit 72; }
r=$(rtpengine-ctl -ip "$1" -port "$2" set maxsessions "$n") || exit 70
case "$r" in "Success setting maxsessions to $n"*) ;; *) printf '%s\n' "$r" >&2; exit 72;; esac
rm -f "$3"/*"$s"; printf 'new calls allowed again (maxsessions %s)\n' "$n""#;

/// The command that refuses (`refuse`) or allows again new calls on `r`.
pub fn new_sessions(r: &Relay, run: &str, refuse: bool) -> anyhow::Result<Command> {
    let e = r
        .rtpengine
        .as_ref()
        .with_context(|| format!("relay `{}` is not an rtpengine", r.name))?;
    let port = e.cli.1.to_string();
    Ok(Command::remote_str(
        &r.name,
        &r.access,
        &[
            "sh",
            "-c",
            if refuse { REFUSE } else { ALLOW },
            if refuse {
                "opsctl-refuse-calls"
            } else {
                "opsctl-allow-calls"
            },
            &e.cli.0,
            &port,
            KEPT_DIR,
            run,
        ],
    ))
}

/// Up to this many of an instance's own calls are checked for media.
pub const MEDIA_SAMPLE: usize = 5;

/// Prints `list sessions ID` for the first [`MEDIA_SAMPLE`] (by id) of
/// the calls of keyspace `$4` the instance lists as `$3` (`own` or
/// `foreign`), each after `@@opsctl ID`.
const MEDIA: &str = r#"set -f; ids=$(rtpengine-ctl -ip "$1" -port "$2" list sessions "$3") || exit 70
for id in $(printf '%s\n' "$ids" | grep -F "| redis_keyspace:$4 |" | sed -n 's/^callid: *\([^ |]*\).*/\1/p' | sort | head -n "$5"); do
  printf '@@opsctl %s\n' "$id"; rtpengine-ctl -ip "$1" -port "$2" list sessions "$id" || exit 70
done"#;

/// The commands that list the packet counters of `of`'s calls: on `of`
/// (its own) and on each peer of its group (those it holds as foreign).
/// Whichever instance relays a call's media counts its packets: its owner,
/// or a peer that took over its address.
pub fn media(of: &Relay, site: &Site) -> anyhow::Result<Vec<Command>> {
    let keyspace = of
        .rtpengine
        .as_ref()
        .and_then(|e| e.redis.as_ref())
        .map(|r| r.db)
        .with_context(|| format!("relay `{}` has no `rtpengine.redis`", of.name))?;
    let mut out = Vec::new();
    for r in site
        .relays
        .iter()
        .filter(|r| r.name == of.name || report(r).is_some_and(|rep| rep.keyspace.is_some()))
    {
        let Some(e) = &r.rtpengine else { continue };
        let whose = if r.name == of.name { "own" } else { "foreign" };
        let cmd = Command::remote_str(
            &r.name,
            &r.access,
            &[
                "sh",
                "-c",
                MEDIA,
                "opsctl-media",
                &e.cli.0,
                &e.cli.1.to_string(),
                whose,
                &keyspace.to_string(),
                &MEDIA_SAMPLE.to_string(),
            ],
        );
        // The owner's first.
        if r.name == of.name {
            out.insert(0, cmd);
        } else {
            out.push(cmd);
        }
    }
    Ok(out)
}

/// The packets each listed call has carried, from [`media`]'s output.
pub fn packets(text: &str) -> anyhow::Result<Vec<(String, u64)>> {
    if !text.trim().is_empty() && !text.starts_with(rtp::MARK) {
        bail!(
            "unexpected output before the first call: {}",
            text.lines().next().unwrap_or("")
        );
    }
    let mut out = Vec::new();
    for part in text.split(rtp::MARK).filter(|p| !p.trim().is_empty()) {
        let (id, detail) = part.split_once('\n').unwrap_or((part, ""));
        if let Some(n) = rtp::parse_packets(detail)? {
            out.push((id.trim().to_owned(), n));
        }
    }
    Ok(out)
}

/// The own-call ids `list sessions own` printed (a kept record).
pub fn own_ids(text: &str) -> anyhow::Result<Vec<String>> {
    Ok(rtp::parse_sessions(text)?.into_iter().map(|c| c.id).collect())
}

/// The command that lists `r`'s own calls.
pub fn own_calls(r: &Relay) -> anyhow::Result<Command> {
    let e = r
        .rtpengine
        .as_ref()
        .with_context(|| format!("relay `{}` is not an rtpengine", r.name))?;
    Ok(Command::remote(
        &r.name,
        &r.access,
        e.ctl(&["list", "sessions", "own"]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_output_gives_each_calls_packets() {
        let text = "@@opsctl callA\n\ncallid: callA\n-------- Port       127.0.9.2:31020 <>       127.0.0.1:40000, SSRC 4d2, 17 p, 2924 b, 0 e, 1 ts\n@@opsctl gone\n\nCall ID not found (gone).\n";
        assert_eq!(packets(text).unwrap(), [("callA".to_owned(), 17)]);
        assert!(packets("").unwrap().is_empty());
        assert!(packets("Cannot connect\n").is_err());
    }
}

//! rtpengine's call redundancy through Redis, as its CLI reports it.
//!
//! Each instance writes the calls it owns (created by offer/answer on it) to
//! its own Redis database, and holds as *foreign* the calls of every peer
//! whose database (keyspace) it subscribes to. A peer can only carry a call
//! it holds, so an instance's calls are covered while every peer that should
//! follow it subscribes to its keyspace and lists each of its own calls as
//! foreign. [`holes`] finds where that does not hold; [`stale`] finds
//! foreign calls whose owner no longer has them.
//!
//! The readings come from `rtpengine-ctl` (daemon/cli.c): `list sessions
//! own|foreign` prints one line per call, `kslist` the subscribed
//! keyspaces, `list maxsessions` the limit on new calls, and `list sessions
//! CALLID` a call's streams with their packet counters. [`parse_report`]
//! reads those four replies from one run of a script that prints each after
//! a `@@opsctl NAME` line ([`REPORT`]).

use std::collections::BTreeSet;
use std::fmt;

use crate::stats::ParseError;

/// The replies one report holds, each printed after `@@opsctl NAME` by
/// running `rtpengine-ctl` with these arguments.
pub const REPORT: [(&str, &[&str]); 4] = [
    ("own", &["list", "sessions", "own"]),
    ("foreign", &["list", "sessions", "foreign"]),
    ("kslist", &["kslist"]),
    ("maxsessions", &["list", "maxsessions"]),
];

/// The line that starts each reply in a report.
pub const MARK: &str = "@@opsctl ";

/// One call as `list sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Call {
    pub id: String,
    /// The Redis database it was learnt from (foreign) or is written to
    /// (own); `None` from an rtpengine that does not say.
    pub keyspace: Option<u32>,
    pub foreign: bool,
}

/// What one instance reports about its calls and its redundancy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reading {
    pub own: Vec<Call>,
    pub foreign: Vec<Call>,
    /// The keyspaces it follows, as `kslist` says.
    pub subscribed: Vec<u32>,
    /// `list maxsessions`: -1 is no limit; 0 refuses every new call.
    pub max_sessions: i64,
    /// The keys of its own Redis database, where the report read them (a
    /// `@@opsctl redis` part: one key per line): rtpengine keys each call
    /// by its id, and restores its own calls from them when it starts.
    pub redis_keys: Option<Vec<String>>,
}

impl Reading {
    /// The ids of its own calls.
    pub fn own_ids(&self) -> BTreeSet<&str> {
        self.own.iter().map(|c| c.id.as_str()).collect()
    }

    /// The ids of the foreign calls it holds from `keyspace`.
    pub fn foreign_from(&self, keyspace: u32) -> BTreeSet<&str> {
        self.foreign
            .iter()
            .filter(|c| c.keyspace == Some(keyspace))
            .map(|c| c.id.as_str())
            .collect()
    }
}

const SESSIONS: &str = "rtpengine `list sessions`";
const KSLIST: &str = "rtpengine `kslist`";
const MAXSESSIONS: &str = "rtpengine `list maxsessions`";
const DETAIL: &str = "rtpengine `list sessions CALLID`";
const REPORT_NAME: &str = "rtpengine report";

fn quote(line: &str) -> String {
    line.chars().take(120).collect()
}

/// Parses `list sessions own|foreign|all`: one `callid: ID | ... |
/// redis_keyspace:N | foreign:yes|no` line per call, or `No ... sessions on
/// this media relay.`
///
/// # Errors
///
/// A line that is neither.
pub fn parse_sessions(text: &str) -> Result<Vec<Call>, ParseError> {
    // rtpengine says when it has none: silence is no answer, not no calls.
    if text.trim().is_empty() {
        return Err(ParseError::Empty { reply: SESSIONS });
    }
    let mut calls = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("No ") && line.ends_with("sessions on this media relay.") {
            continue;
        }
        let mut fields = line.split('|').map(str::trim);
        let id = fields
            .next()
            .and_then(|f| f.strip_prefix("callid:"))
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ParseError::UnknownLine {
                reply: SESSIONS,
                line: quote(line),
            })?;
        let mut call = Call {
            id: id.to_owned(),
            keyspace: None,
            foreign: false,
        };
        for f in fields {
            if let Some(k) = f.strip_prefix("redis_keyspace:") {
                call.keyspace = Some(k.trim().parse().map_err(|_| ParseError::BadNumber {
                    reply: SESSIONS,
                    line: quote(line),
                })?);
            } else if let Some(v) = f.strip_prefix("foreign:") {
                call.foreign = v.trim() == "yes";
            }
        }
        calls.push(call);
    }
    Ok(calls)
}

/// Parses `kslist`: a `Subscribed-on keyspaces:` header, then the numbers.
///
/// # Errors
///
/// No header, or something other than numbers after it.
pub fn parse_kslist(text: &str) -> Result<Vec<u32>, ParseError> {
    let (_, after) = text
        .split_once("Subscribed-on keyspaces:")
        .ok_or(ParseError::Missing {
            reply: KSLIST,
            field: "Subscribed-on keyspaces",
        })?;
    after
        .split_whitespace()
        .map(|n| {
            n.parse().map_err(|_| ParseError::BadNumber {
                reply: KSLIST,
                line: quote(n),
            })
        })
        .collect()
}

/// Parses `list maxsessions`: `Maximum sessions configured on rtpengine: N`.
///
/// # Errors
///
/// Any other reply.
pub fn parse_max_sessions(text: &str) -> Result<i64, ParseError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or(ParseError::Empty { reply: MAXSESSIONS })?;
    let n = line
        .strip_prefix("Maximum sessions configured on rtpengine:")
        .ok_or_else(|| ParseError::UnknownLine {
            reply: MAXSESSIONS,
            line: quote(line),
        })?;
    n.trim().parse().map_err(|_| ParseError::BadNumber {
        reply: MAXSESSIONS,
        line: quote(line),
    })
}

/// The packets a call's streams have carried, summed over every `Port`
/// line of `list sessions CALLID` (`..., SSRC 0, 17 p, 2924 b, 0 e, ...`);
/// `None` when rtpengine does not know the call.
///
/// # Errors
///
/// A `Port` line without a packet count.
pub fn parse_packets(text: &str) -> Result<Option<u64>, ParseError> {
    if text.trim_start().starts_with("Call ID not found") {
        return Ok(None);
    }
    let mut sum = 0u64;
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("-------- Port"))
    {
        let n = line
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_suffix(" p"))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| ParseError::BadNumber {
                reply: DETAIL,
                line: quote(line),
            })?;
        sum = sum.saturating_add(n);
    }
    Ok(Some(sum))
}

/// Parses one run of the report script: each of [`REPORT`]'s replies after
/// its `@@opsctl NAME` line.
///
/// # Errors
///
/// A reply missing, or one its parser refuses.
pub fn parse_report(text: &str) -> Result<Reading, ParseError> {
    let mut parts: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            parts.push((name.trim(), String::new()));
        } else if let Some((_, body)) = parts.last_mut() {
            body.push_str(line);
            body.push('\n');
        } else if !line.trim().is_empty() {
            return Err(ParseError::UnknownLine {
                reply: REPORT_NAME,
                line: quote(line),
            });
        }
    }
    let part = |name: &'static str| {
        parts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.as_str())
            .ok_or(ParseError::Missing {
                reply: REPORT_NAME,
                field: name,
            })
    };
    Ok(Reading {
        own: parse_sessions(part("own")?)?,
        foreign: parse_sessions(part("foreign")?)?,
        subscribed: parse_kslist(part("kslist")?)?,
        max_sessions: parse_max_sessions(part("maxsessions")?)?,
        redis_keys: part("redis").ok().map(|b| {
            b.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        }),
    })
}

/// One instance of a redundancy group.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    pub name: &'a str,
    /// The Redis database it writes its own calls to.
    pub keyspace: u32,
    pub reading: &'a Reading,
}

/// Where an instance's calls are not covered by a peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "hole", rename_all = "kebab-case")]
pub enum Hole {
    /// `peer` does not subscribe to `of`'s keyspace: it holds none of its calls.
    NotSubscribed { of: String, peer: String, keyspace: u32 },
    /// `peer` subscribes, but does not hold these of `of`'s own calls.
    Missing {
        of: String,
        peer: String,
        calls: Vec<String>,
    },
    /// These of `of`'s own calls are not in its Redis database: a restart
    /// would not restore them, and no peer learns them.
    NotWritten { of: String, db: u32, calls: Vec<String> },
    /// `peer` lists no interface named `interface`, the one `of`'s calls
    /// bind: it cannot carry them.
    NoInterface {
        of: String,
        peer: String,
        interface: String,
    },
}

impl Hole {
    /// The instance whose calls are not covered.
    pub fn of(&self) -> &str {
        match self {
            Hole::NotSubscribed { of, .. }
            | Hole::Missing { of, .. }
            | Hole::NotWritten { of, .. }
            | Hole::NoInterface { of, .. } => of,
        }
    }
}

impl fmt::Display for Hole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hole::NotSubscribed { of, peer, keyspace } => write!(
                f,
                "{peer} does not subscribe to {of}'s keyspace {keyspace}, so it holds none of {of}'s calls"
            ),
            Hole::Missing { of, peer, calls } => write!(
                f,
                "{peer} does not hold {} of {of}'s calls: {}",
                calls.len(),
                shortlist(calls)
            ),
            Hole::NotWritten { of, db, calls } => write!(
                f,
                "{} of {of}'s calls are not in its Redis database {db}, so a restart would not restore them: {}",
                calls.len(),
                shortlist(calls)
            ),
            Hole::NoInterface { of, peer, interface } => write!(
                f,
                "{peer} lists no interface `{interface}`, the one {of}'s calls bind, so it cannot carry them"
            ),
        }
    }
}

/// A foreign call a peer holds that its owner does not own (any more).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stale {
    pub of: String,
    pub peer: String,
    pub calls: Vec<String>,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} holds {} call(s) of {} that {} does not own: {}",
            self.peer,
            self.calls.len(),
            self.of,
            self.of,
            shortlist(&self.calls)
        )
    }
}

/// At most five ids, then how many more.
pub fn shortlist(ids: &[String]) -> String {
    let mut s = ids.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > 5 {
        s.push_str(&format!(" and {} more", ids.len() - 5));
    }
    s
}

/// Every hole in the group: for each instance, each peer that does not
/// subscribe to its keyspace, or does and lacks some of its own calls.
pub fn holes(group: &[Instance]) -> Vec<Hole> {
    let mut out = Vec::new();
    for of in group {
        if let Some(keys) = &of.reading.redis_keys {
            let keys: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
            let calls: Vec<String> = of
                .reading
                .own_ids()
                .difference(&keys)
                .map(|s| (*s).to_owned())
                .collect();
            if !calls.is_empty() {
                out.push(Hole::NotWritten {
                    of: of.name.to_owned(),
                    db: of.keyspace,
                    calls,
                });
            }
        }
        for peer in group.iter().filter(|p| p.name != of.name) {
            if !peer.reading.subscribed.contains(&of.keyspace) {
                out.push(Hole::NotSubscribed {
                    of: of.name.to_owned(),
                    peer: peer.name.to_owned(),
                    keyspace: of.keyspace,
                });
                continue;
            }
            let held = peer.reading.foreign_from(of.keyspace);
            let missing: Vec<String> = of
                .reading
                .own_ids()
                .difference(&held)
                .map(|s| (*s).to_owned())
                .collect();
            if !missing.is_empty() {
                out.push(Hole::Missing {
                    of: of.name.to_owned(),
                    peer: peer.name.to_owned(),
                    calls: missing,
                });
            }
        }
    }
    out
}

/// Every foreign call a peer holds from an instance's keyspace that the
/// instance does not own.
pub fn stale(group: &[Instance]) -> Vec<Stale> {
    let mut out = Vec::new();
    for of in group {
        let own = of.reading.own_ids();
        for peer in group.iter().filter(|p| p.name != of.name) {
            let extra: Vec<String> = peer
                .reading
                .foreign_from(of.keyspace)
                .difference(&own)
                .map(|s| (*s).to_owned())
                .collect();
            if !extra.is_empty() {
                out.push(Stale {
                    of: of.name.to_owned(),
                    peer: peer.name.to_owned(),
                    calls: extra,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rtpengine 10.5 (Debian 12), two instances following each other, one
    /// call on each: what the first printed.
    const OWN: &str = "callid:                                                        callA | deletionmark:  no | created:  1796162543 | proxy:127.0.0.1:54146 | redis_keyspace:1 | foreign:no\n";
    const FOREIGN: &str = "callid:                                                        callB | deletionmark:  no | created:  1796162544 | proxy:127.0.0.1:48760 | redis_keyspace:2 | foreign:yes\n";
    const KS: &str = "\nSubscribed-on keyspaces:\n2 \n";
    const DETAIL_TEXT: &str = "\ncallid: callA\ndeletionmark: no\nforeign: yes\n\n--- Tag 'caller', type: UNKNOWN, label '', branch '', callduration 1.480223\n------ Media #1 (audio over RTP/AVP) using unknown codec\n-------- Port       127.0.9.2:31020 <>       127.0.0.1:40000, SSRC 4d2, 17 p, 2924 b, 0 e, 1796162704 ts\n-------- Port       127.0.9.2:31021 <>       127.0.0.1:40001 (RTCP), SSRC 0, 0 p, 0 b, 0 e, 1796162696 ts\n--- Tag 'callee', type: UNKNOWN, label '', branch '', callduration 1.480231\n-------- Port       127.0.9.2:31000 <>       127.0.0.1:40002, SSRC 0, 3 p, 0 b, 0 e, 1796162696 ts\n";

    fn report(own: &str, foreign: &str, ks: &str, max: i64) -> String {
        format!(
            "@@opsctl own\n{own}@@opsctl foreign\n{foreign}@@opsctl kslist\n{ks}@@opsctl maxsessions\nMaximum sessions configured on rtpengine: {max}\n"
        )
    }

    #[test]
    fn real_replies_parse() {
        let own = parse_sessions(OWN).unwrap();
        assert_eq!(
            own,
            [Call {
                id: "callA".into(),
                keyspace: Some(1),
                foreign: false
            }]
        );
        assert!(parse_sessions(FOREIGN).unwrap()[0].foreign);
        assert!(
            parse_sessions("No own sessions on this media relay.\n")
                .unwrap()
                .is_empty()
        );
        assert_eq!(parse_kslist(KS).unwrap(), [2]);
        assert_eq!(
            parse_kslist("\nSubscribed-on keyspaces:\n").unwrap(),
            Vec::<u32>::new()
        );
        assert_eq!(
            parse_max_sessions("Maximum sessions configured on rtpengine: -1\n").unwrap(),
            -1
        );
        assert_eq!(parse_packets(DETAIL_TEXT).unwrap(), Some(20));
        assert_eq!(parse_packets("\nCall ID not found (nosuch).\n\n").unwrap(), None);
        let r = parse_report(&report(OWN, FOREIGN, KS, 0)).unwrap();
        assert_eq!((r.own.len(), r.foreign.len(), r.max_sessions), (1, 1, 0));
        assert_eq!(r.redis_keys, None);
        let with_keys = format!("{}@@opsctl redis\ncallA\n", report(OWN, FOREIGN, KS, 0));
        assert_eq!(
            parse_report(&with_keys).unwrap().redis_keys,
            Some(vec!["callA".to_owned()])
        );
        assert_eq!(r.subscribed, [2]);
    }

    #[test]
    fn bad_replies_are_refused_quoting_them() {
        let e = |r: Result<Vec<Call>, ParseError>| r.unwrap_err().to_string();
        assert_eq!(
            e(parse_sessions(
                "Cannot connect to the rtpengine Connection refused"
            )),
            "unexpected line `Cannot connect to the rtpengine Connection refused` in rtpengine `list sessions` reply"
        );
        assert_eq!(
            parse_sessions("\n").unwrap_err().to_string(),
            "rtpengine `list sessions` reply is empty"
        );
        assert!(parse_kslist("x").is_err());
        assert!(parse_kslist("Subscribed-on keyspaces:\ntwo\n").is_err());
        assert!(parse_max_sessions("").is_err());
        assert!(parse_max_sessions("Maximum sessions configured on rtpengine: many").is_err());
        let no_ks = format!(
            "@@opsctl own\n{OWN}@@opsctl foreign\nNo foreign sessions on this media relay.\n@@opsctl maxsessions\nMaximum sessions configured on rtpengine: 1\n"
        );
        assert_eq!(
            parse_report(&no_ks).unwrap_err().to_string(),
            "rtpengine report reply has no `kslist` line"
        );
        assert!(parse_report("garbage\n@@opsctl own\n").is_err());
    }

    fn reading(own: &[&str], foreign: &[(&str, u32)], subscribed: &[u32]) -> Reading {
        let call = |id: &str, ks: u32, foreign: bool| Call {
            id: id.into(),
            keyspace: Some(ks),
            foreign,
        };
        Reading {
            own: own.iter().map(|id| call(id, 0, false)).collect(),
            foreign: foreign.iter().map(|(id, ks)| call(id, *ks, true)).collect(),
            subscribed: subscribed.to_vec(),
            max_sessions: -1,
            redis_keys: None,
        }
    }

    #[test]
    fn a_full_mesh_has_no_hole_and_a_missing_peer_or_call_is_one() {
        let a = reading(&["a1"], &[("b1", 2), ("c1", 3)], &[2, 3]);
        let b = reading(&["b1"], &[("a1", 1), ("c1", 3)], &[1, 3]);
        let c = reading(&["c1"], &[("a1", 1), ("b1", 2)], &[1, 2]);
        let group = |a, b, c| {
            vec![
                Instance {
                    name: "rtp-1",
                    keyspace: 1,
                    reading: a,
                },
                Instance {
                    name: "rtp-2",
                    keyspace: 2,
                    reading: b,
                },
                Instance {
                    name: "rtp-3",
                    keyspace: 3,
                    reading: c,
                },
            ]
        };
        assert!(holes(&group(&a, &b, &c)).is_empty());
        assert!(stale(&group(&a, &b, &c)).is_empty());

        // rtp-3 follows only rtp-2.
        let c_alone = reading(&["c1"], &[("b1", 2)], &[2]);
        let h = holes(&group(&a, &b, &c_alone));
        assert_eq!(
            h,
            [Hole::NotSubscribed {
                of: "rtp-1".into(),
                peer: "rtp-3".into(),
                keyspace: 1
            }]
        );
        assert_eq!(
            h[0].to_string(),
            "rtp-3 does not subscribe to rtp-1's keyspace 1, so it holds none of rtp-1's calls"
        );

        // rtp-2 has not learnt rtp-1's newest call; it still holds one rtp-3 ended.
        let a2 = reading(&["a1", "a2"], &[("b1", 2), ("c1", 3)], &[2, 3]);
        let b2 = reading(&["b1"], &[("a1", 1), ("c1", 3), ("c0", 3)], &[1, 3]);
        let c2 = reading(&["c1"], &[("a1", 1), ("a2", 1), ("b1", 2)], &[1, 2]);
        let g = group(&a2, &b2, &c2);
        assert_eq!(
            holes(&g),
            [Hole::Missing {
                of: "rtp-1".into(),
                peer: "rtp-2".into(),
                calls: vec!["a2".into()]
            }]
        );
        // rtp-1's newest call never reached its database.
        let mut a3 = a.clone();
        a3.redis_keys = Some(vec!["a0".into()]);
        assert_eq!(
            holes(&group(&a3, &b, &c))[0].to_string(),
            "1 of rtp-1's calls are not in its Redis database 1, so a restart would not restore them: a1"
        );
        let s = stale(&g);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].to_string(),
            "rtp-2 holds 1 call(s) of rtp-3 that rtp-3 does not own: c0"
        );
    }
}

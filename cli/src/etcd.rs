//! etcd's replies as `etcdctl -w json` prints them (3.4), and the decisions
//! a quorum recovery takes on them: pure functions, tested on real replies.
//!
//! Large ids (`member_id`, `leader`) are 64-bit and read as such.

use anyhow::{Context, bail};
use serde::Deserialize;

/// Whether etcd `version` restores a snapshot with `etcdutl` (3.5 and
/// later; 3.6 removed etcdctl's restore) rather than `etcdctl` (3.0 to 3.4);
/// `None` for what is not an etcd 3 version.
pub fn restores_with_etcdutl(version: &str) -> Option<bool> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts
        .next()?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    match major {
        3 => Some(minor >= 5),
        4.. => Some(true),
        _ => None,
    }
}

/// The restore a plan uses, in words.
pub fn restore_tool_words(etcdutl: bool) -> &'static str {
    if etcdutl {
        "`etcdutl snapshot restore`, etcd 3.5 and later's"
    } else {
        "`etcdctl snapshot restore`, etcd 3.4 and earlier's (3.5 moved it to etcdutl, 3.6 removed etcdctl's)"
    }
}

/// One member's `endpoint status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub member_id: u64,
    pub revision: i64,
    pub raft_index: u64,
    pub leader: u64,
    pub version: String,
}

/// Every entry of `endpoint status -w json`.
pub fn statuses(json: &str) -> anyhow::Result<Vec<(String, Status)>> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "Endpoint")]
        endpoint: String,
        #[serde(rename = "Status")]
        status: Raw,
    }
    #[derive(Deserialize)]
    struct Raw {
        header: Header,
        version: String,
        #[serde(default)]
        leader: u64,
        #[serde(rename = "raftIndex", default)]
        raft_index: u64,
    }
    let entries: Vec<Entry> = serde_json::from_str(json.trim()).context("not `endpoint status` JSON")?;
    Ok(entries
        .into_iter()
        .map(|e| {
            (
                e.endpoint,
                Status {
                    member_id: e.status.header.member_id,
                    revision: e.status.header.revision,
                    raft_index: e.status.raft_index,
                    leader: e.status.leader,
                    version: e.status.version,
                },
            )
        })
        .collect())
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    member_id: u64,
    #[serde(default)]
    revision: i64,
}

/// One entry of `member list`. A member added but not started has no name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

/// The members of `member list -w json`.
pub fn members(json: &str) -> anyhow::Result<Vec<Member>> {
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        members: Vec<Member>,
    }
    let l: List = serde_json::from_str(json.trim()).context("not `member list` JSON")?;
    Ok(l.members)
}

/// The key count and revision of `get "" --prefix --keys-only --limit=1 -w json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub count: u64,
    pub revision: i64,
}

pub fn keys(json: &str) -> anyhow::Result<Keys> {
    #[derive(Deserialize)]
    struct Get {
        header: Header,
        /// Left out by etcd when there are none.
        #[serde(default)]
        count: u64,
    }
    let g: Get = serde_json::from_str(json.trim()).context("not `get -w json` output")?;
    Ok(Keys {
        count: g.count,
        revision: g.header.revision,
    })
}

impl Keys {
    /// As a record kept between steps: `COUNT REVISION`.
    pub fn record(self) -> String {
        format!("{} {}", self.count, self.revision)
    }

    pub fn from_record(s: &str) -> anyhow::Result<Keys> {
        let (c, r) = s.split_once(' ').context("not a key count record")?;
        Ok(Keys {
            count: c.parse()?,
            revision: r.parse()?,
        })
    }
}

/// The seed must answer, and no answering member may be ahead of it (by
/// revision, then raft index); every answering member must run the release
/// line the plan restores for (`3.4`). `answers` is each member's status,
/// or why it did not answer.
pub fn judge_seed(
    seed: &str,
    answers: &[(String, Result<Status, String>)],
    etcdutl: bool,
) -> anyhow::Result<String> {
    for (m, a) in answers {
        if let Ok(s) = a
            && restores_with_etcdutl(&s.version) != Some(etcdutl)
        {
            bail!(
                "{m} runs etcd {}, but this plan restores with {}: the seed's etcd and this member's are of different lines\nhelp: bring {m} to the seed's line first, or, if the seed changed since the plan was made, run recover-quorum again (it plans for the version the seed reports then)",
                s.version,
                restore_tool_words(etcdutl)
            );
        }
    }
    let Some(own) = answers.iter().find(|(m, _)| m == seed).map(|(_, a)| a) else {
        bail!("the seed `{seed}` is not a member of the cluster");
    };
    let own = match own {
        Ok(s) => s,
        Err(why) => {
            let best = answers
                .iter()
                .filter_map(|(m, a)| a.as_ref().ok().map(|s| (m, s)))
                .max_by_key(|(_, s)| (s.revision, s.raft_index));
            // A member restarted without quorum cannot publish itself and
            // serves no client at all: starting the seed again does not help.
            bail!(
                "the seed `{seed}` does not answer ({why}), so its data cannot be snapshotted\nhelp: {}",
                match best {
                    Some((m, s)) => format!(
                        "make `{m}` the seed (`seed: {m}` for the cluster in the inventory): it answers, at revision {}",
                        s.revision
                    ),
                    None => "no member answers; a rebuild from a stopped member's data directory (its member/snap/db) is not built yet".to_owned(),
                }
            );
        }
    };
    let ahead = answers
        .iter()
        .filter(|(m, _)| m != seed)
        .filter_map(|(m, a)| a.as_ref().ok().map(|s| (m, s)))
        .filter(|(_, s)| (s.revision, s.raft_index) > (own.revision, own.raft_index))
        .max_by_key(|(_, s)| (s.revision, s.raft_index));
    if let Some((m, s)) = ahead {
        bail!(
            "`{m}` is ahead of the seed `{seed}` (revision {} and raft index {}, against {} and {}): rebuilding from {seed} would lose what only {m} has\nhelp: make `{m}` the seed: set `seed: {m}` for the cluster in the inventory",
            s.revision,
            s.raft_index,
            own.revision,
            own.raft_index
        );
    }
    let down: Vec<&str> = answers
        .iter()
        .filter(|(_, a)| a.is_err())
        .map(|(m, _)| m.as_str())
        .collect();
    Ok(format!(
        "{seed} is at revision {}, raft index {}, etcd {}{}",
        own.revision,
        own.raft_index,
        own.version,
        if down.is_empty() {
            String::new()
        } else {
            format!("; not answering: {}", down.join(", "))
        }
    ))
}

/// Whether the rebuilt cluster is whole: every expected member listed,
/// started (named) and no learner, nothing else listed, every one answering
/// its status, all with one leader who is a member. `Ok` says so in words;
/// `Err` says what is missing.
pub fn judge_cluster(
    expect: &[String],
    members: &[Member],
    statuses: &[(String, Status)],
) -> Result<String, String> {
    let mut missing = Vec::new();
    for name in expect {
        match members.iter().find(|m| &m.name == name) {
            None => missing.push(format!("{name} is not in the member list")),
            Some(m) if m.is_learner => missing.push(format!("{name} is still a learner")),
            Some(_) => {}
        }
    }
    for m in members {
        if m.name.is_empty() {
            missing.push(format!(
                "member {:x} ({}) was added but has not started",
                m.id,
                m.peer_urls.join(",")
            ));
        } else if !expect.contains(&m.name) {
            missing.push(format!("{} is listed but is not in the inventory", m.name));
        }
    }
    if statuses.len() < expect.len() {
        missing.push(format!(
            "{} of {} members answer their status",
            statuses.len(),
            expect.len()
        ));
    }
    let mut leaders: Vec<u64> = statuses.iter().map(|(_, s)| s.leader).collect();
    leaders.sort_unstable();
    leaders.dedup();
    match leaders.as_slice() {
        [l] if *l != 0 && members.iter().any(|m| m.id == *l) => {}
        [] => {}
        other => missing.push(format!(
            "the members do not agree on one leader ({} seen)",
            other.len()
        )),
    }
    if !missing.is_empty() {
        return Err(missing.join("; "));
    }
    let leader = members
        .iter()
        .find(|m| leaders.first() == Some(&m.id))
        .map_or("?", |m| m.name.as_str());
    Ok(format!("{} members, leader {leader}", members.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // As etcdctl 3.4.23 printed them in the lab.
    const STATUS: &str = r#"[{"Endpoint":"http://127.9.9.1:2379","Status":{"header":{"cluster_id":3136909557505662000,"member_id":7192890242978372734,"revision":3,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":7192890242978372734,"raftIndex":6,"raftTerm":2,"raftAppliedIndex":6,"dbSizeInUse":16384}}]"#;
    const MEMBERS: &str = r#"{"header":{"cluster_id":3136909557505662000,"member_id":7192890242978372734,"raft_term":2},"members":[{"ID":7192890242978372734,"name":"a","peerURLs":["http://127.9.9.1:2380"],"clientURLs":["http://127.9.9.1:2379"]},{"ID":12,"peerURLs":["http://127.9.9.2:2380"],"isLearner":true}]}"#;
    const GET: &str = r#"{"header":{"cluster_id":3136909557505662000,"member_id":7192890242978372734,"revision":3,"raft_term":2},"kvs":[{"key":"azE=","create_revision":2,"mod_revision":2,"version":1}],"more":true,"count":2}"#;

    #[test]
    fn reads_etcdctl_s_json() {
        let s = statuses(STATUS).unwrap();
        assert_eq!(s[0].0, "http://127.9.9.1:2379");
        assert_eq!(
            s[0].1,
            Status {
                member_id: 7192890242978372734,
                revision: 3,
                raft_index: 6,
                leader: 7192890242978372734,
                version: "3.4.23".into()
            }
        );
        let m = members(MEMBERS).unwrap();
        assert_eq!(m[0].name, "a");
        assert!(m[1].is_learner && m[1].name.is_empty());
        assert_eq!(
            keys(GET).unwrap(),
            Keys {
                count: 2,
                revision: 3
            }
        );
        // No key at all: etcd leaves `count` out.
        assert_eq!(
            keys(r#"{"header":{"revision":1}}"#).unwrap(),
            Keys {
                count: 0,
                revision: 1
            }
        );
        assert_eq!(
            Keys::from_record(
                &Keys {
                    count: 5,
                    revision: 9
                }
                .record()
            )
            .unwrap()
            .count,
            5
        );
    }

    fn st(rev: i64, idx: u64, v: &str) -> Result<Status, String> {
        Ok(Status {
            member_id: 1,
            revision: rev,
            raft_index: idx,
            leader: 0,
            version: v.into(),
        })
    }

    #[test]
    fn the_seed_must_answer_and_be_the_most_recent() {
        let a = |v: Vec<(&str, Result<Status, String>)>| -> Vec<(String, Result<Status, String>)> {
            v.into_iter().map(|(m, s)| (m.to_owned(), s)).collect()
        };
        let ok = a(vec![
            ("e1", st(10, 20, "3.4.23")),
            ("e2", st(10, 19, "3.4.23")),
            ("e3", Err("down".into())),
        ]);
        assert_eq!(
            judge_seed("e1", &ok, false).unwrap(),
            "e1 is at revision 10, raft index 20, etcd 3.4.23; not answering: e3"
        );
        let behind = a(vec![("e1", st(10, 20, "3.4.23")), ("e2", st(12, 25, "3.4.23"))]);
        let e = judge_seed("e1", &behind, false).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "`e2` is ahead of the seed `e1` (revision 12 and raft index 25, against 10 and 20)"
            ),
            "{e}"
        );
        assert!(
            e.ends_with("set `seed: e2` for the cluster in the inventory"),
            "{e}"
        );
        // Same revision, a longer log.
        assert!(
            judge_seed(
                "e1",
                &a(vec![("e1", st(10, 20, "3.4.1")), ("e2", st(10, 21, "3.4.1"))]),
                false
            )
            .is_err()
        );
        let down = a(vec![
            ("e1", Err("connection refused".into())),
            ("e2", st(10, 21, "3.4.1")),
        ]);
        let e = judge_seed("e1", &down, false).unwrap_err().to_string();
        assert!(e.contains("make `e2` the seed"), "{e}");
        let newer = a(vec![("e1", st(10, 20, "3.5.9"))]);
        assert!(
            judge_seed("e1", &newer, false)
                .unwrap_err()
                .to_string()
                .starts_with("e1 runs etcd 3.5.9")
        );
        // 3.40 is not 3.4.
        assert!(judge_seed("e1", &a(vec![("e1", st(1, 1, "3.40.0"))]), false).is_err());
        // Planned for etcdutl, 3.5 and 3.6 pass; 3.4 does not.
        assert!(
            judge_seed(
                "e1",
                &a(vec![("e1", st(1, 1, "3.5.17")), ("e2", st(1, 1, "3.6.4"))]),
                true
            )
            .is_ok()
        );
        assert!(judge_seed("e1", &a(vec![("e1", st(1, 1, "3.4.23"))]), true).is_err());
    }

    #[test]
    fn etcd_3_5_and_later_restore_with_etcdutl() {
        assert_eq!(restores_with_etcdutl("3.4.23"), Some(false));
        assert_eq!(restores_with_etcdutl("3.5.0"), Some(true));
        assert_eq!(restores_with_etcdutl("3.6.4"), Some(true));
        assert_eq!(restores_with_etcdutl("3.40.1"), Some(true));
        assert_eq!(restores_with_etcdutl("2.3.8"), None);
        assert_eq!(restores_with_etcdutl("junk"), None);
    }

    #[test]
    fn a_rebuilt_cluster_is_whole_only_with_every_member_started_and_one_leader() {
        let m = |id: u64, name: &str, learner: bool| Member {
            id,
            name: name.into(),
            peer_urls: vec![format!("http://h{id}:2380")],
            client_urls: vec![],
            is_learner: learner,
        };
        let s = |id: u64, leader: u64| {
            (
                format!("http://h{id}:2379"),
                Status {
                    member_id: id,
                    revision: 1,
                    raft_index: 1,
                    leader,
                    version: "3.4.23".into(),
                },
            )
        };
        let expect: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let all = [m(1, "a", false), m(2, "b", false), m(3, "c", false)];
        assert_eq!(
            judge_cluster(&expect, &all, &[s(1, 1), s(2, 1), s(3, 1)]).unwrap(),
            "3 members, leader a"
        );
        let learner = [m(1, "a", false), m(2, "b", false), m(3, "c", true)];
        assert_eq!(
            judge_cluster(&expect, &learner, &[s(1, 1), s(2, 1), s(3, 1)]).unwrap_err(),
            "c is still a learner"
        );
        let unstarted = [m(1, "a", false), m(2, "b", false), m(3, "", false)];
        assert_eq!(
            judge_cluster(&expect, &unstarted, &[s(1, 1), s(2, 1)]).unwrap_err(),
            "c is not in the member list; member 3 (http://h3:2380) was added but has not started; 2 of 3 members answer their status"
        );
        let zombie = [
            m(1, "a", false),
            m(2, "b", false),
            m(3, "c", false),
            m(4, "old", false),
        ];
        assert_eq!(
            judge_cluster(&expect, &zombie, &[s(1, 1), s(2, 1), s(3, 1)]).unwrap_err(),
            "old is listed but is not in the inventory"
        );
        assert_eq!(
            judge_cluster(&expect, &all, &[s(1, 1), s(2, 2), s(3, 1)]).unwrap_err(),
            "the members do not agree on one leader (2 seen)"
        );
    }
}

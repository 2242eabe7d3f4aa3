//! Project Clearwater's files and replies, as its tools print and read them,
//! and the decisions its quorum recovery takes on them: pure functions,
//! tested on real output.
//!
//! Clearwater drives etcd through its v2 API: `clearwater-etcdctl` is
//! `etcdctl -C http://IP:4000` with `ETCDCTL_API=2`, so `cluster-health` and
//! `member list` print etcdctl's v2 text. A member is named after its
//! management IP with dots as dashes, and peers on port 2380.

use std::fmt::Write as _;

/// What `clearwater-etcdctl cluster-health` concluded, from its last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every member healthy (etcdctl before 3.4 says so when any one is:
    /// [`judge_cluster`] reads each member's line).
    Healthy,
    /// Some members are healthy, not all (3.4): the cluster may have quorum.
    Degraded,
    /// None is: quorum is lost.
    Unavailable,
    /// The node's own etcd gave no member list (it is not running).
    NoMembers,
    /// A reply that is none of these: it says nothing about quorum.
    Unknown,
}

/// `cluster-health`'s reply: each member's line and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub verdict: Verdict,
    /// Member id and whether it said healthy.
    pub members: Vec<(String, bool)>,
}

pub fn health(out: &str) -> Health {
    let mut members = Vec::new();
    let mut verdict = Verdict::Unknown;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("member ") {
            let Some((id, what)) = rest.split_once(' ') else {
                continue;
            };
            if what.starts_with("is healthy") {
                members.push((id.to_owned(), true));
            } else if what.starts_with("is unhealthy") || what.starts_with("is unreachable") {
                members.push((id.to_owned(), false));
            }
        } else if line == "cluster is healthy" {
            verdict = Verdict::Healthy;
        } else if line == "cluster is degraded" {
            verdict = Verdict::Degraded;
        } else if line == "cluster is unavailable" || line == "cluster is unhealthy" {
            verdict = Verdict::Unavailable;
        } else if line.starts_with("cluster may be unhealthy: failed to list members") {
            verdict = Verdict::NoMembers;
        }
    }
    Health { verdict, members }
}

/// One entry of `clearwater-etcdctl member list` (etcdctl v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Added but never started (`ID[unstarted]:`).
    pub unstarted: bool,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub leader: bool,
}

/// Every entry of `member list`; a line that is not one is an error.
pub fn members(out: &str) -> Result<Vec<Member>, String> {
    let mut list = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (head, fields) = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|h| (h, "")))
            .ok_or_else(|| format!("not a member list line: {line}"))?;
        let (id, unstarted) = match head.strip_suffix("[unstarted]") {
            Some(id) => (id, true),
            None => (head, false),
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("not a member list line: {line}"));
        }
        let mut m = Member {
            id: id.to_owned(),
            unstarted,
            name: String::new(),
            peer_urls: Vec::new(),
            leader: false,
        };
        for field in fields.split_whitespace() {
            match field.split_once('=') {
                Some(("name", v)) => m.name = v.to_owned(),
                Some(("peerURLs", v)) => m.peer_urls = v.split(',').map(str::to_owned).collect(),
                Some(("isLeader", v)) => m.leader = v == "true",
                _ => {}
            }
        }
        list.push(m);
    }
    if list.is_empty() {
        return Err("the member list is empty".into());
    }
    Ok(list)
}

/// The etcd member name Clearwater gives a node: its management IP with
/// dashes for dots (and colons).
pub fn member_name(ip: &str) -> String {
    ip.replace(['.', ':'], "-")
}

/// The peer URL Clearwater's etcd advertises.
pub fn peer_url(ip: &str) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:2380")
    } else {
        format!("http://{ip}:2380")
    }
}

/// The cluster the masters formed, as one node sees it: every member
/// healthy, exactly the masters listed (none unstarted, none unknown), one
/// leader. What holds, or why not.
pub fn judge_cluster(masters: &[String], health_out: &str, list_out: &str) -> Result<String, String> {
    let h = health(health_out);
    let list = members(list_out)?;
    let mut problems = Vec::new();
    for ip in masters {
        let url = peer_url(ip);
        match list.iter().find(|m| m.peer_urls.contains(&url)) {
            None => problems.push(format!("master {ip} is not in the member list")),
            Some(m) if m.unstarted => problems.push(format!("master {ip} is added but not started")),
            Some(_) => {}
        }
    }
    for m in &list {
        if !masters.iter().any(|ip| m.peer_urls.contains(&peer_url(ip))) {
            problems.push(format!(
                "unknown member {} ({}) is in the list",
                if m.name.is_empty() { &m.id } else { &m.name },
                m.peer_urls.join(",")
            ));
        }
    }
    // Each member's own line, not the last one: etcdctl before 3.4 calls a
    // cluster healthy when any one member is.
    for m in &list {
        if !h.members.iter().any(|(id, ok)| *ok && *id == m.id) {
            problems.push(format!(
                "member {} is not healthy",
                if m.name.is_empty() { &m.id } else { &m.name }
            ));
        }
    }
    let leaders = list.iter().filter(|m| m.leader).count();
    if leaders != 1 {
        problems.push(format!("{leaders} members say they lead"));
    }
    if h.verdict != Verdict::Healthy && problems.is_empty() {
        problems.push("cluster-health does not say the cluster is healthy".into());
    }
    if problems.is_empty() {
        Ok(format!(
            "{} members, all healthy, one leader: {}",
            list.len(),
            list.iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(problems.join("; "))
    }
}

/// `monit summary`'s services and their status, in monit 5.26's table form
/// (`│ name │ status │ type │`) or the older `Process 'name'  Running`.
pub fn monit_summary(out: &str) -> Vec<(String, String)> {
    const KINDS: [&str; 9] = [
        "Process",
        "Program",
        "System",
        "File",
        "Filesystem",
        "Directory",
        "Host",
        "Fifo",
        "Network",
    ];
    let mut services = Vec::new();
    for line in out.lines() {
        if line.contains(['│', '|']) {
            // A table, drawn in box characters or in ASCII.
            let cells: Vec<&str> = line
                .split(['│', '|'])
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            if let [name, status, _kind] = cells[..]
                && name != "Service Name"
            {
                services.push((name.to_owned(), status.to_owned()));
            }
        } else if let Some((kind, rest)) = line.trim().split_once(" '")
            && KINDS.contains(&kind)
            && let Some((name, status)) = rest.split_once('\'')
        {
            // Before 5.18: `Process 'name'   Running`.
            services.push((name.to_owned(), status.trim().to_owned()));
        } else {
            // Columns without rules (batch mode, `-B`): name, status, type.
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() >= 3 && KINDS.contains(&words[words.len() - 1]) && words[0] != "Service" {
                services.push((words[0].to_owned(), words[1..words.len() - 1].join(" ")));
            }
        }
    }
    services
}

/// Every one of `wanted` runs (`running`), or is stopped (not monitored),
/// by `monit summary`: what holds, or why not.
pub fn judge_monit(wanted: &[String], summary: &str, running: bool) -> Result<String, String> {
    let seen = monit_summary(summary);
    let mut problems = Vec::new();
    for w in wanted {
        match seen.iter().find(|(n, _)| n == w) {
            None => problems.push(format!("{w} is not in monit's summary")),
            Some((_, s)) if running && (s == "OK" || s == "Running") => {}
            Some((_, s)) if !running && s == "Not monitored" => {}
            Some((_, s)) => problems.push(format!("{w}: {s}")),
        }
    }
    match (problems.is_empty(), running) {
        (true, true) => Ok(format!("{} running", wanted.join(", "))),
        (true, false) => Ok(format!("{} stopped", wanted.join(", "))),
        _ => Err(problems.join("; ")),
    }
}

/// The nodes of `nodetool status`: the two-letter state (`UN`: up, normal)
/// and the address.
pub fn nodetool(out: &str) -> Result<Vec<(String, String)>, String> {
    let mut nodes = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let (Some(state), Some(addr)) = (words.next(), words.next()) else {
            continue;
        };
        let b = state.as_bytes();
        if b.len() == 2 && b"UD".contains(&b[0]) && b"NLJM".contains(&b[1]) {
            nodes.push((state.to_owned(), addr.to_owned()));
        }
    }
    if nodes.is_empty() {
        return Err("no node in `nodetool status`'s reply".into());
    }
    Ok(nodes)
}

/// Cassandra is healthy when every node is up and normal.
pub fn judge_cassandra(out: &str) -> Result<String, String> {
    let nodes = nodetool(out)?;
    let bad: Vec<String> = nodes
        .iter()
        .filter(|(s, _)| s != "UN")
        .map(|(s, a)| format!("{a} is {s} ({})", state_words(s)))
        .collect();
    if bad.is_empty() {
        Ok(format!(
            "{} Cassandra node{} up and normal",
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        ))
    } else {
        Err(bad.join(", "))
    }
}

fn state_words(s: &str) -> String {
    let b = s.as_bytes();
    let up = if b[0] == b'U' { "up" } else { "down" };
    let state = match b[1] {
        b'N' => "normal",
        b'L' => "leaving",
        b'J' => "joining",
        _ => "moving",
    };
    format!("{up}, {state}")
}

/// The address of an entry (`ip`, `ip:port`, `[v6]:port`) if it is an IP.
fn entry_ip(entry: &str) -> Option<std::net::IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse() {
        return Some(ip);
    }
    if let Ok(sa) = e.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    let (host, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// Checks `/etc/chronos/chronos_cluster.conf`: a `[cluster]` section with
/// `localhost` and at least one `node`/`joining`/`leaving`, every value an
/// address. The nodes it lists, or what is wrong (with the line).
pub fn chronos_cluster(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut section = None::<String>;
    let mut localhost = false;
    let mut nodes = Vec::new();
    let mut saw_cluster = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {n}: a section header without `]`: {line}"))?;
            saw_cluster |= name.trim() == "cluster";
            section = Some(name.trim().to_owned());
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: not `key = value`: {line}"))?;
        let (k, v) = (k.trim(), v.trim());
        match section.as_deref() {
            None => return Err(format!("line {n}: `{k}` outside any section")),
            Some("cluster") => {}
            Some(_) => continue,
        }
        if entry_ip(v).is_none() {
            return Err(format!("line {n}: `{k}` is `{v}`, not an address"));
        }
        match k {
            "localhost" => localhost = true,
            "node" | "joining" | "leaving" => nodes.push((k.to_owned(), v.to_owned())),
            other => return Err(format!("line {n}: unknown key `{other}` in [cluster]")),
        }
    }
    if !saw_cluster {
        return Err("no [cluster] section".into());
    }
    if !localhost {
        return Err("[cluster] has no `localhost`".into());
    }
    if nodes.is_empty() {
        return Err("[cluster] lists no node".into());
    }
    Ok(nodes)
}

/// Checks `/etc/clearwater/cluster_settings`: a `servers=` line (and at
/// most one `new_servers=`), each a comma-separated list of addresses.
pub fn cluster_settings(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: not `servers=...` or `new_servers=...`: {line}"))?;
        if k != k.trim_end() {
            // Clearwater's loader splits on `=` and matches the key exactly.
            return Err(format!("line {n}: a space before `=`: write `{}=...`", k.trim()));
        }
        let k = k.trim();
        if k != "servers" && k != "new_servers" {
            return Err(format!("line {n}: unknown key `{k}`"));
        }
        if seen.contains(&k) {
            return Err(format!("line {n}: a second `{k}` line"));
        }
        seen.push(k);
        for e in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry_ip(e).is_none() {
                return Err(format!("line {n}: `{e}` is not an address"));
            }
            out.push((k.to_owned(), e.to_owned()));
        }
    }
    if !out.iter().any(|(k, _)| k == "servers") {
        return Err("no `servers` line with an address".into());
    }
    Ok(out)
}

/// The chronos_cluster.conf the runbook writes when a node's is missing or
/// invalid: every Vellum node of the site as a node.
pub fn chronos_default(own_ip: &str, vellum: &[String]) -> String {
    let mut s = format!(
        "# Written by opsctl recover-quorum: every Vellum node of the site.\n[cluster]\nlocalhost = {own_ip}\n"
    );
    for ip in vellum {
        let _ = writeln!(s, "node = {ip}");
    }
    s
}

/// The cluster_settings the runbook writes: every Vellum node on `servers`.
pub fn cluster_settings_default(vellum: &[String]) -> String {
    // With Memcached's port, as Clearwater writes the file itself.
    let servers: Vec<String> = vellum
        .iter()
        .map(|ip| {
            if ip.contains(':') {
                format!("[{ip}]:11211")
            } else {
                format!("{ip}:11211")
            }
        })
        .collect();
    format!(
        "# Written by opsctl recover-quorum: every Vellum node of the site.\nservers={}\n",
        servers.join(",")
    )
}

/// The value of `key` in a shell-style `local_config` (the last line that
/// sets it; empty is none).
fn config_value(local_config: &str, key: &str) -> Option<String> {
    local_config
        .lines()
        .rev()
        .find_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches(['"', '\'']).to_owned())
        })
        .filter(|v| !v.is_empty())
}

/// The IP a node's etcd uses, from its `local_config`:
/// `management_local_ip`, else `local_ip` (as Clearwater's scripts read them).
pub fn management_ip(local_config: &str) -> Option<String> {
    config_value(local_config, "management_local_ip").or_else(|| config_value(local_config, "local_ip"))
}

/// The node's signalling IP (`local_ip`), on which its data stores cluster.
pub fn signaling_ip(local_config: &str) -> Option<String> {
    config_value(local_config, "local_ip")
}

/// A unified diff of two texts (every line compared; small files, such as
/// shared_config), empty when they are the same.
pub fn diff(a_label: &str, b_label: &str, a: &str, b: &str) -> String {
    let x: Vec<&str> = a.lines().collect();
    let y: Vec<&str> = b.lines().collect();
    if x == y {
        return String::new();
    }
    let mut out = format!("--- {a_label}\n+++ {b_label}\n");
    if x.len() * y.len() > 4_000_000 {
        let _ = writeln!(
            out,
            "(too long to compare line by line: {} and {} lines)",
            x.len(),
            y.len()
        );
        return out;
    }
    // Longest common subsequence, then the edit script from it.
    let (n, m) = (x.len(), y.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if x[i] == y[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            let _ = writeln!(out, " {}", x[i]);
            i += 1;
            j += 1;
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            let _ = writeln!(out, "-{}", x[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+{}", y[j]);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // As etcdctl 3.4.23 prints them with ETCDCTL_API=2, seen in the lab.
    const HEALTHY: &str = "member 51bb0c3a6881b0af is healthy: got healthy result from http://127.9.0.2:4000\nmember 9a7dc34e312295d6 is healthy: got healthy result from http://127.9.0.3:4000\nmember f114c6c9ec80d6f4 is healthy: got healthy result from http://127.9.0.1:4000\ncluster is healthy\n";
    const LOST: &str = "failed to check the health of member 51bb0c3a6881b0af on http://127.9.0.2:4000: Get \"http://127.9.0.2:4000/health\": dial tcp 127.9.0.2:4000: connect: connection refused\nmember 51bb0c3a6881b0af is unreachable: [http://127.9.0.2:4000] are all unreachable\nmember f114c6c9ec80d6f4 is unhealthy: got unhealthy result from http://127.9.0.1:4000\ncluster is unavailable\n";
    const LIST: &str = "51bb0c3a6881b0af: name=127-9-0-2 peerURLs=http://127.9.0.2:2380 clientURLs=http://127.9.0.2:4000 isLeader=false\n9a7dc34e312295d6: name=127-9-0-3 peerURLs=http://127.9.0.3:2380 clientURLs=http://127.9.0.3:4000 isLeader=false\nf114c6c9ec80d6f4: name=127-9-0-1 peerURLs=http://127.9.0.1:2380 clientURLs=http://127.9.0.1:4000 isLeader=true\n";

    fn ips(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("127.9.0.{i}")).collect()
    }

    #[test]
    fn reads_cluster_health() {
        assert_eq!(health(HEALTHY).verdict, Verdict::Healthy);
        assert_eq!(health(HEALTHY).members.len(), 3);
        let lost = health(LOST);
        assert_eq!(lost.verdict, Verdict::Unavailable);
        assert_eq!(
            lost.members,
            [
                ("51bb0c3a6881b0af".to_owned(), false),
                ("f114c6c9ec80d6f4".to_owned(), false)
            ]
        );
        assert_eq!(
            health("cluster may be unhealthy: failed to list members\n").verdict,
            Verdict::NoMembers
        );
        assert_eq!(
            health("bash: clearwater-etcdctl: command not found\n").verdict,
            Verdict::Unknown
        );
        assert_eq!(
            health("member a is healthy: x\nmember b is unhealthy: y\ncluster is degraded\n").verdict,
            Verdict::Degraded
        );
    }

    #[test]
    fn reads_the_v2_member_list() {
        let list = members(LIST).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[2].name, "127-9-0-1");
        assert!(list[2].leader && !list[0].leader);
        assert_eq!(list[0].peer_urls, ["http://127.9.0.2:2380"]);
        let unstarted = members("8e9e05c52164694d[unstarted]: peerURLs=http://10.0.0.4:2380\n").unwrap();
        assert!(unstarted[0].unstarted);
        assert!(members("").is_err());
        assert!(members("Error: client: etcd cluster is unavailable\n").is_err());
    }

    #[test]
    fn a_formed_cluster_holds_exactly_the_masters_with_one_leader() {
        assert_eq!(
            judge_cluster(&ips(3), HEALTHY, LIST).unwrap(),
            "3 members, all healthy, one leader: 127-9-0-2, 127-9-0-3, 127-9-0-1"
        );
        let why = judge_cluster(&ips(4), HEALTHY, LIST).unwrap_err();
        assert!(
            why.contains("master 127.9.0.4 is not in the member list"),
            "{why}"
        );
        let why = judge_cluster(&ips(2), HEALTHY, LIST).unwrap_err();
        assert!(why.contains("unknown member 127-9-0-3"), "{why}");
        let why = judge_cluster(&ips(3), LOST, &LIST.replace("isLeader=true", "isLeader=false")).unwrap_err();
        assert!(why.contains("0 members say they lead"), "{why}");
        assert!(why.contains("member 127-9-0-2 is not healthy"), "{why}");
        assert!(why.contains("member 127-9-0-1 is not healthy"), "{why}");
        // etcdctl 3.2 (Clearwater's own) says healthy with one member
        // unreachable: the member's own line is what counts.
        let old = "member 51bb0c3a6881b0af is unreachable: no available published client urls\nmember 9a7dc34e312295d6 is healthy: got healthy result from http://127.9.0.3:4000\nmember f114c6c9ec80d6f4 is healthy: got healthy result from http://127.9.0.1:4000\ncluster is healthy\n";
        assert_eq!(
            judge_cluster(&ips(3), old, LIST).unwrap_err(),
            "member 127-9-0-2 is not healthy"
        );
    }

    #[test]
    fn reads_both_forms_of_monit_summary() {
        let table = "Monit 5.26.0 uptime: 1h 3m\n┌───────┬───────┬───────┐\n│ Service Name                    │ Status                     │ Type          │\n├──┤\n│ node-1                          │ OK                         │ System        │\n│ etcd_process                    │ OK                         │ Process       │\n│ clearwater_queue_manager_process │ Not monitored             │ Process       │\n└──┘\n";
        assert_eq!(
            monit_summary(table),
            [
                ("node-1".to_owned(), "OK".to_owned()),
                ("etcd_process".to_owned(), "OK".to_owned()),
                (
                    "clearwater_queue_manager_process".to_owned(),
                    "Not monitored".to_owned()
                )
            ]
        );
        let batch = "Monit 5.33.0 uptime: 2d 1h\n Service Name                     Status                      Type\n etcd_process                     Not monitored               Process\n";
        assert_eq!(
            monit_summary(batch),
            [("etcd_process".to_owned(), "Not monitored".to_owned())]
        );
        let ascii = "| etcd_process | OK | Process |\n";
        assert_eq!(
            monit_summary(ascii),
            [("etcd_process".to_owned(), "OK".to_owned())]
        );
        let old = "The Monit daemon 5.18 uptime: 3h 2m\n\nProcess 'etcd_process'              Running\nProgram 'poll_etcd'                 Status ok\nSystem 'vellum-1'                   Running\n";
        assert_eq!(
            monit_summary(old)[0],
            ("etcd_process".to_owned(), "Running".to_owned())
        );
        let want = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(judge_monit(&want(&["etcd_process"]), table, true).is_ok());
        assert!(judge_monit(&want(&["etcd_process"]), old, true).is_ok());
        assert!(judge_monit(&want(&["clearwater_queue_manager_process"]), table, false).is_ok());
        assert_eq!(
            judge_monit(&want(&["etcd_process"]), table, false).unwrap_err(),
            "etcd_process: OK"
        );
        assert_eq!(
            judge_monit(
                &want(&["clearwater_queue_manager_process", "x_process"]),
                table,
                true
            )
            .unwrap_err(),
            "clearwater_queue_manager_process: Not monitored; x_process is not in monit's summary"
        );
    }

    #[test]
    fn cassandra_is_healthy_only_when_every_node_is_up_and_normal() {
        let status = "Datacenter: datacenter1\n=======================\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n--  Address    Load       Tokens  Owns    Host ID                               Rack\nUN  10.0.0.21  1.2 MiB    256     ?       0d2c6a2e-0000-0000-0000-000000000001  rack1\nUN  10.0.0.22  1.1 MiB    256     ?       0d2c6a2e-0000-0000-0000-000000000002  rack1\n";
        assert_eq!(
            judge_cassandra(status).unwrap(),
            "2 Cassandra nodes up and normal"
        );
        let down = status.replace("UN  10.0.0.22", "DN  10.0.0.22");
        assert_eq!(
            judge_cassandra(&down).unwrap_err(),
            "10.0.0.22 is DN (down, normal)"
        );
        assert!(judge_cassandra("nodetool: Failed to connect to '127.0.0.1:7199'\n").is_err());
    }

    #[test]
    fn chronos_cluster_conf_is_checked_line_by_line() {
        let ok = "[cluster]\nlocalhost = 10.0.0.21\nnode = 10.0.0.21\nnode = 10.0.0.22:7253\nleaving = 10.0.0.23\n";
        assert_eq!(chronos_cluster(ok).unwrap().len(), 3);
        assert_eq!(
            chronos_cluster("[cluster]\nlocalhost = 10.0.0.21\nnode = vellum-2\n").unwrap_err(),
            "line 3: `node` is `vellum-2`, not an address"
        );
        assert_eq!(
            chronos_cluster("[cluster]\nlocalhost = 10.0.0.1\n").unwrap_err(),
            "[cluster] lists no node"
        );
        assert_eq!(chronos_cluster("").unwrap_err(), "no [cluster] section");
        assert!(chronos_cluster("[cluster\n").is_err());
        let written = chronos_default("10.0.0.21", &["10.0.0.21".into(), "10.0.0.22".into()]);
        assert_eq!(chronos_cluster(&written).unwrap().len(), 2);
    }

    #[test]
    fn cluster_settings_needs_a_servers_line_of_addresses() {
        assert_eq!(
            cluster_settings("servers=10.0.0.21:11211,10.0.0.22:11211\nnew_servers=10.0.0.23:11211\n")
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            cluster_settings("new_servers=10.0.0.1\n").unwrap_err(),
            "no `servers` line with an address"
        );
        assert_eq!(
            cluster_settings("servers=a,b\n").unwrap_err(),
            "line 1: `a` is not an address"
        );
        assert_eq!(
            cluster_settings("hosts=10.0.0.1\n").unwrap_err(),
            "line 1: unknown key `hosts`"
        );
        assert_eq!(
            cluster_settings("servers = 10.0.0.1\n").unwrap_err(),
            "line 1: a space before `=`: write `servers=...`"
        );
        let written = cluster_settings_default(&["10.0.0.21".into(), "10.0.0.22".into()]);
        assert_eq!(cluster_settings(&written).unwrap().len(), 2);
    }

    #[test]
    fn the_node_ip_is_management_local_ip_else_local_ip() {
        let split = "local_ip=10.0.0.1\nmanagement_local_ip=10.1.0.1\n";
        assert_eq!(management_ip(split).as_deref(), Some("10.1.0.1"));
        assert_eq!(signaling_ip(split).as_deref(), Some("10.0.0.1"));
        assert_eq!(
            management_ip("local_ip=\"10.0.0.1\"\nmanagement_local_ip=\n").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(management_ip("etcd_cluster=10.0.0.1\n"), None);
    }

    #[test]
    fn diff_shows_what_differs() {
        assert_eq!(diff("a", "b", "x=1\ny=2\n", "x=1\ny=2\n"), "");
        assert_eq!(
            diff(
                "vellum-1",
                "vellum-2",
                "home_domain=a\nsprout=s\n",
                "home_domain=b\nsprout=s\n"
            ),
            "--- vellum-1\n+++ vellum-2\n-home_domain=a\n+home_domain=b\n sprout=s\n"
        );
    }
}

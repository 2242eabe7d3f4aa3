//! Debian's rtpengine in userspace (`--table=-1`, no kernel module) with
//! Redis (`notify-keyspace-events KEA`), on lab nodes: instances that share
//! their calls through Redis, as rtpengine's redundancy setup does. Each
//! writes its own calls to its own database and subscribes to the others'.

use crate::lab::Lab;

/// Three rtpengine instances and one Redis, on the lab's nodes.
struct RtpLab {
    lab: Lab,
    /// `subscribed[k]`: the instances whose databases instance `k` follows.
    subscribed: Vec<Vec<usize>>,
}

impl RtpLab {
    /// `subscribed[k]`: the instances whose databases instance `k` follows.
    fn start(subscribed: &[&[usize]]) -> RtpLab {
        for (bin, pkg) in [
            ("/usr/bin/rtpengine", "rtpengine-daemon"),
            ("/usr/bin/redis-server", "redis-server"),
        ] {
            assert!(
                std::path::Path::new(bin).exists(),
                "Debian's {pkg} is missing: scripts/test.sh installs it"
            );
        }
        let n = subscribed.len();
        let lab = Lab::start(n).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
        let redis = lab.nodes[0].ip;
        lab.service(
            0,
            "redis",
            &format!(
                "/usr/bin/redis-server --bind {redis} --port 6379 --save '' --appendonly no --protected-mode no --notify-keyspace-events KEA"
            ),
        );
        assert!(lab.systemctl(0, "start redis").status.success());
        lab.wait_tcp(0, 6379).unwrap();
        for (k, follows) in subscribed.iter().enumerate() {
            let ip = lab.nodes[k].ip;
            // Its own calls on its first interface; those it holds for a
            // peer on the peer's address, under the peer's interface name.
            let mut interfaces = vec![format!("--interface=pub{}/{ip}", k + 1)];
            let mut subscribe = Vec::new();
            for j in follows.iter() {
                interfaces.push(format!("--interface=pub{}/{}", j + 1, lab.nodes[*j].ip));
                subscribe.push(format!("--subscribe-keyspace={}", j + 1));
            }
            let ports = 30_000 + 1_000 * k;
            lab.service(
                k,
                "rtpengine",
                &format!(
                    "/usr/bin/rtpengine --config-file=none --foreground --log-stderr --table=-1 --timeout=600 {} --listen-ng={ip}:2223 --listen-cli={ip}:9900 --redis={redis}:6379/{} {} --port-min={ports} --port-max={}",
                    interfaces.join(" "),
                    k + 1,
                    subscribe.join(" "),
                    ports + 999
                ),
            );
            assert!(lab.systemctl(k, "start rtpengine").status.success());
        }
        let r = RtpLab {
            lab,
            subscribed: subscribed.iter().map(|s| s.to_vec()).collect(),
        };
        for k in 0..n {
            r.until(&format!("rtpengine {} answers its CLI", k + 1), || {
                r.sessions(k).is_some()
            });
        }
        r
    }

    /// The inventory: every instance with its CLI, ng socket, Redis
    /// database, the keyspaces it follows and its interfaces, as started.
    fn inventory(&self, extra: &str) -> String {
        let redis = self.lab.nodes[0].ip;
        let mut inv = self.lab.inventory("rtpengine", "");
        for (k, n) in self.lab.nodes.iter().enumerate() {
            let ip = n.ip;
            let follows = &self.subscribed[k];
            let mut interfaces = vec![format!("pub{}/{ip}", k + 1)];
            interfaces.extend(
                follows
                    .iter()
                    .map(|j| format!("pub{}/{}", j + 1, self.lab.nodes[*j].ip)),
            );
            let subscribe: Vec<String> = follows.iter().map(|j| (j + 1).to_string()).collect();
            inv = inv.replace(
                &format!("host: {ip}}}"),
                &format!(
                    "host: {ip}, service: {{unit: rtpengine}}, rtpengine: {{cli: '{ip}:9900', ng: '{ip}:2223', redis: '{redis}:6379/{}', subscribe: [{}], interfaces: [{}]}}{extra}}}",
                    k + 1,
                    subscribe.join(", "),
                    interfaces.join(", ")
                ),
            );
        }
        inv
    }

    fn until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}: not within 20s");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// (own, foreign) sessions, as `rtpengine-ctl list numsessions` on the
    /// node says; `None` while it does not answer.
    fn sessions(&self, k: usize) -> Option<(u64, u64)> {
        let out = self.lab.ssh(
            k,
            &format!(
                "rtpengine-ctl -ip {} -port 9900 list numsessions",
                self.lab.nodes[k].ip
            ),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let count = |what: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("Current sessions {what}: ")))
                .and_then(|n| n.trim().parse::<u64>().ok())
        };
        Some((count("own")?, count("foreign")?))
    }

    /// A call through instance `k`: offer and answer over ng.
    fn call(&self, k: usize, id: &str) {
        let ng = std::net::SocketAddr::new(self.lab.nodes[k].ip.into(), 2223);
        let mut c = relay::ng::Client::new(
            ng,
            "0.0.0.0:0".parse().unwrap(),
            std::time::Duration::from_secs(3),
        )
        .unwrap();
        let caller = relay::ng::audio_sdp("127.0.0.1:40000".parse().unwrap());
        let offered = c.offer(id, "caller", &caller).unwrap();
        assert!(relay::ng::sdp_audio(&offered).is_some(), "{offered}");
        let callee = relay::ng::audio_sdp("127.0.0.1:40002".parse().unwrap());
        let answered = c.answer(id, "caller", "callee", &callee).unwrap();
        let at = relay::ng::sdp_audio(&answered).unwrap();
        assert_eq!(
            at.ip(),
            std::net::IpAddr::from(self.lab.nodes[k].ip),
            "{answered}"
        );
    }
}

#[test]
fn three_instances_with_redis_each_hold_their_own_call_and_their_peers() {
    let r = RtpLab::start(&[&[1, 2], &[0, 2], &[0, 1]]);
    for k in 0..3 {
        r.call(k, &format!("call-{}", k + 1));
    }
    for k in 0..3 {
        r.until(
            &format!("rtpengine {} holds 1 own call and 2 foreign", k + 1),
            || r.sessions(k) == Some((1, 2)),
        );
    }
    // `opsctl status` reads each instance's sessions by whose they are.
    let s = crate::util::Scratch::new();
    s.write("inventory.yaml", &r.inventory(""));
    let status = s.opsctl(&["status"]);
    status.success();
    for n in &r.lab.nodes {
        let row = status
            .stdout
            .lines()
            .find(|l| l.starts_with(&n.name))
            .unwrap_or_default();
        assert!(row.contains(" 3 (1 own, 2 foreign) "), "{row}\n{}", status.dump());
    }
    let json = s.opsctl(&["status", "-o", "json"]);
    json.success();
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let sessions: Vec<&serde_json::Value> = rows.as_array().unwrap().iter().map(|r| &r["sessions"]).collect();
    assert!(
        sessions.len() == 3 && sessions.iter().all(|s| s["own"] == 1 && s["foreign"] == 2),
        "{}",
        json.dump()
    );
}

#[test]
fn a_peer_that_does_not_subscribe_is_reported_as_a_redundancy_hole() {
    // Instance 3 follows instance 2 only: instance 1's calls have one
    // holder, not two.
    let r = RtpLab::start(&[&[1, 2], &[0, 2], &[1]]);
    for k in 0..3 {
        r.call(k, &format!("call-{}", k + 1));
    }
    r.until("instance 3 holds instance 2's call", || {
        r.sessions(2) == Some((1, 1))
    });
    let s = crate::util::Scratch::new();
    s.write("inventory.yaml", &r.inventory(""));
    let status = s.opsctl(&["status"]);
    assert_eq!(status.code, 1, "{}", status.dump());
    let (n1, n3) = (&r.lab.nodes[0].name, &r.lab.nodes[2].name);
    assert!(
        status.stdout.contains(&format!(
            "{n1}: redundancy hole: {n3} does not subscribe to {n1}'s keyspace 1, so it holds none of {n1}'s calls"
        )),
        "{}",
        status.dump()
    );
    // Only instance 1's cover has a hole.
    assert_eq!(
        status.stdout.matches("redundancy hole").count(),
        1,
        "{}",
        status.dump()
    );
    let json = s.opsctl(&["status", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let holes = &rows[0]["redundancy_holes"];
    assert_eq!(holes[0]["hole"], "not-subscribed", "{}", json.dump());
    assert_eq!(holes[0]["peer"], n3.as_str(), "{}", json.dump());
    assert_eq!(rows[1]["max_sessions"], -1, "{}", json.dump());
    assert!(rows[1].get("redundancy_holes").is_none(), "{}", json.dump());
}

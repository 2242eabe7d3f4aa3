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
        RtpLab::start_with(subscribed, None)
    }

    /// With `password`, Redis requires it, and each rtpengine gets it as
    /// rtpengine reads it: from `RTPENGINE_REDIS_AUTH_PW`.
    fn start_with(subscribed: &[&[usize]], password: Option<&str>) -> RtpLab {
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
                "/usr/bin/redis-server --bind {redis} --port 6379 --save '' --appendonly no --protected-mode no --notify-keyspace-events KEA{}",
                password.map(|p| format!(" --requirepass {p}")).unwrap_or_default()
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
                    "{}/usr/bin/rtpengine --config-file=none --foreground --log-stderr --table=-1 --timeout=600 {} --listen-ng={ip}:2223 --listen-cli={ip}:9900 --redis={redis}:6379/{} {} --port-min={ports} --port-max={}",
                    password.map(|p| format!("env RTPENGINE_REDIS_AUTH_PW={p} ")).unwrap_or_default(),
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

    /// `rtpengine-ctl ARGS` on instance `k`'s node, its stdout.
    fn ctl(&self, k: usize, args: &str) -> String {
        let out = self.lab.ssh(
            k,
            &format!("rtpengine-ctl -ip {} -port 9900 {args}", self.lab.nodes[k].ip),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Instance `k`'s limit on new calls.
    fn max_sessions(&self, k: usize) -> String {
        self.ctl(k, "list maxsessions").trim().to_owned()
    }

    /// The ids of the calls instance `k` owns.
    fn own_calls(&self, k: usize) -> Vec<String> {
        relay::rtpengine::parse_sessions(&self.ctl(k, "list sessions own"))
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// The pid of instance `k`'s process.
    fn pid(&self, k: usize) -> String {
        let out = self.lab.systemctl(k, "show-pid rtpengine");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn ng(&self, k: usize) -> relay::ng::Client {
        let ng = std::net::SocketAddr::new(self.lab.nodes[k].ip.into(), 2223);
        relay::ng::Client::new(
            ng,
            "0.0.0.0:0".parse().unwrap(),
            std::time::Duration::from_secs(3),
        )
        .unwrap()
    }

    /// A call through instance `k`: offer and answer over ng, between two
    /// sockets of this test's own on loopback.
    fn call(&self, k: usize, id: &str) -> Call {
        let caller = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let callee = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = self.ng(k);
        let offered = c
            .offer(id, "caller", &relay::ng::audio_sdp(caller.local_addr().unwrap()))
            .unwrap();
        assert!(relay::ng::sdp_audio(&offered).is_some(), "{offered}");
        let answered = c
            .answer(
                id,
                "caller",
                "callee",
                &relay::ng::audio_sdp(callee.local_addr().unwrap()),
            )
            .unwrap();
        let to = relay::ng::sdp_audio(&answered).unwrap();
        assert_eq!(
            to.ip(),
            std::net::IpAddr::from(self.lab.nodes[k].ip),
            "{answered}"
        );
        Call { caller, callee, to }
    }

    /// Ends call `id` on instance `k`.
    fn hang_up(&self, k: usize, id: &str) {
        self.ng(k).delete(id).unwrap();
    }
}

/// A call's two ends: the caller sends to `to` (the relay's port for it),
/// the relay forwards to the callee.
struct Call {
    caller: std::net::UdpSocket,
    callee: std::net::UdpSocket,
    to: std::net::SocketAddr,
}

/// RTP from a call's caller, 50 packets a second, and what reaches its
/// callee; bounded (2 minutes at most), stopped by `stop`.
struct Media {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Heard>,
}

#[derive(Debug)]
struct Heard {
    sent: u64,
    /// When each packet reached the callee, since the stream began.
    arrivals: Vec<std::time::Duration>,
}

impl Heard {
    /// The longest time without a packet.
    fn longest_gap(&self) -> std::time::Duration {
        self.arrivals
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

impl Media {
    fn start(call: &Call) -> Media {
        let (caller, callee, to) = (
            call.caller.try_clone().unwrap(),
            call.callee.try_clone().unwrap(),
            call.to,
        );
        callee.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let began = std::time::Instant::now();
            let (mut sent, mut arrivals) = (0u64, Vec::new());
            let mut buf = [0u8; 2048];
            while !flag.load(std::sync::atomic::Ordering::Relaxed)
                && began.elapsed() < std::time::Duration::from_secs(120)
            {
                let mut rtp = vec![0x80, 0, (sent >> 8) as u8, sent as u8];
                rtp.extend_from_slice(&((sent as u32) * 160).to_be_bytes());
                rtp.extend_from_slice(&0x1234u32.to_be_bytes());
                rtp.extend_from_slice(&[0xff; 160]);
                let _ = caller.send_to(&rtp, to);
                sent += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
                while callee.recv(&mut buf).is_ok() {
                    arrivals.push(began.elapsed());
                }
            }
            Heard { sent, arrivals }
        });
        Media { stop, thread }
    }

    fn stop(self) -> Heard {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The inventory's `advertise` block: a stand-in for a SIP proxy's
/// dispatcher, which records each take-out and put-back in `dispatcher.log`.
const DISPATCHER: &str = "advertise:\n  backend: command\n  remove: [sh, -c, 'echo \"remove $0\" >> dispatcher.log', '{node}']\n  restore: [sh, -c, 'echo \"restore $0\" >> dispatcher.log', '{node}']\n";

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

#[test]
fn a_no_downtime_restart_hands_its_calls_to_the_peers_and_takes_them_back() {
    let r = RtpLab::start(&[&[1, 2], &[0, 2], &[0, 1]]);
    let calls: Vec<Call> = (0..3).map(|k| r.call(k, &format!("call-{}", k + 1))).collect();
    for k in 0..3 {
        r.until(&format!("rtpengine {} holds 1 own and 2 foreign", k + 1), || {
            r.sessions(k) == Some((1, 2))
        });
    }
    let media = Media::start(&calls[0]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = r.pid(0);
    let s = crate::util::Scratch::new();
    s.write("inventory.yaml", &format!("{DISPATCHER}{}", r.inventory("")));
    let (n1, n2, n3) = (&r.lab.nodes[0].name, &r.lab.nodes[1].name, &r.lab.nodes[2].name);
    let plan = s.opsctl(&["restart", "--no-downtime", n1, "--dry-run"]);
    plan.success();
    assert!(
        plan.stdout.contains(&format!(
            "{n1}: restarted while {n2} and {n3} hold the 1 call(s) it owns (through Redis)"
        )),
        "{}",
        plan.dump()
    );
    for gate in [
        "calls-held",
        "calls-restored",
        "calls-consistent",
        "media-flows",
        "ng-ping",
    ] {
        assert!(
            plan.stdout.contains(&format!("wait: {gate}")),
            "{gate}\n{}",
            plan.dump()
        );
    }
    assert!(!plan.stdout.contains("wait: drained"), "{}", plan.dump());

    let out = s.opsctl(&["restart", "--no-downtime", n1]);
    out.success();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let heard = media.stop();
    eprintln!(
        "media through the restart: {} sent, {} heard, longest gap {:?}",
        heard.sent,
        heard.arrivals.len(),
        heard.longest_gap()
    );
    assert_ne!(r.pid(0), before, "rtpengine 1 was not restarted\n{}", out.dump());
    assert!(
        out.stderr
            .contains("1 of the 1 call(s) it owned are its own again"),
        "{}",
        out.dump()
    );
    // Media was checked on the call that carried it, not skipped.
    assert!(
        out.stderr
            .contains("1 of the 1 call(s) that carried media before the restart carry it again"),
        "{}",
        out.dump()
    );
    // Its call is its own again, every peer holds it, nothing was dropped.
    assert_eq!(r.own_calls(0), ["call-1"], "{}", out.dump());
    for k in 0..3 {
        assert_eq!(r.sessions(k), Some((1, 2)), "rtpengine {}\n{}", k + 1, out.dump());
    }
    // RTP sent to it still reaches the callee after the restart: in the
    // lab its peers forward it meanwhile, so next to nothing is lost.
    assert!(
        heard.arrivals.len() as u64 * 100 >= heard.sent * 98,
        "{} of {} packets arrived: {heard:?}",
        heard.arrivals.len(),
        heard.sent
    );
    assert!(
        heard.longest_gap() < std::time::Duration::from_secs(1),
        "{heard:?}"
    );
    let last = *heard.arrivals.last().expect("no RTP reached the callee");
    let ended = std::time::Duration::from_millis(20 * heard.sent);
    assert!(
        ended.saturating_sub(last) < std::time::Duration::from_millis(500),
        "the last packet arrived at {last:?} of {ended:?}: {heard:?}"
    );
    assert_eq!(r.max_sessions(0), "Maximum sessions configured on rtpengine: -1");
    assert_eq!(
        std::fs::read_to_string(s.0.join("dispatcher.log")).unwrap(),
        format!("remove {n1}\nrestore {n1}\n")
    );
}

#[test]
fn with_a_redundancy_hole_the_restart_waits_for_its_own_calls_and_new_calls_are_allowed_again_when_it_stops()
{
    // Instance 3 does not follow instance 1.
    let r = RtpLab::start(&[&[1, 2], &[0, 2], &[1]]);
    let _calls: Vec<Call> = (0..3).map(|k| r.call(k, &format!("call-{}", k + 1))).collect();
    r.until("instance 3 holds instance 2's call", || {
        r.sessions(2) == Some((1, 1))
    });
    let before = r.pid(0);
    let s = crate::util::Scratch::new();
    s.write("inventory.yaml", &r.inventory(", drain: {timeout: 4s, poll: 1s}"));
    let (n1, n3) = (&r.lab.nodes[0].name, &r.lab.nodes[2].name);
    let plan = s.opsctl(&["restart", "--no-downtime", n1, "--dry-run"]);
    plan.success();
    assert!(
        plan.stdout.contains(&format!(
            "{n1}: new calls are refused and its own calls must end before the restart: a redundancy hole: {n3} does not subscribe to {n1}'s keyspace 1"
        )),
        "{}",
        plan.dump()
    );
    assert!(plan.stdout.contains("wait: drained") && !plan.stdout.contains("wait: calls-held"));

    // Its call does not end: the drain times out, it is not restarted, and
    // it takes new calls again.
    let watcher = std::thread::scope(|scope| {
        let seen = scope.spawn(|| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if r.max_sessions(0).ends_with(": 0") {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            false
        });
        let out = s.opsctl(&["restart", "--no-downtime", n1]);
        (seen.join().unwrap(), out)
    });
    let (refused, out) = watcher;
    assert_ne!(out.code, 0, "{}", out.dump());
    assert!(
        refused,
        "new calls were never refused during the drain\n{}",
        out.dump()
    );
    assert!(out.stderr.contains("own calls on"), "{}", out.dump());
    assert!(out.stderr.contains("Undoing"), "{}", out.dump());
    assert_eq!(r.pid(0), before, "{}", out.dump());
    assert_eq!(r.max_sessions(0), "Maximum sessions configured on rtpengine: -1");
    assert_eq!(r.own_calls(0), ["call-1"]);

    // Once its call ends, the same restart goes through.
    r.hang_up(0, "call-1");
    r.until("rtpengine 1 owns no call", || r.own_calls(0).is_empty());
    let again = s.opsctl(&["restart", "--no-downtime", n1]);
    again.success();
    assert_ne!(r.pid(0), before, "{}", again.dump());
    assert_eq!(r.max_sessions(0), "Maximum sessions configured on rtpengine: -1");
}

#[test]
fn new_calls_are_allowed_again_when_the_run_is_interrupted_and_refused_again_on_resume() {
    let r = RtpLab::start(&[&[1], &[0]]);
    let _calls: Vec<Call> = (0..2).map(|k| r.call(k, &format!("call-{}", k + 1))).collect();
    let s = crate::util::Scratch::new();
    // No Redis for instance 1 in the inventory: its calls are drained.
    let inv = r
        .inventory("")
        .replacen(&format!(", redis: '{}:6379/1'", r.lab.nodes[0].ip), "", 1);
    s.write("inventory.yaml", &inv);
    let n1 = &r.lab.nodes[0].name;
    let (code, said) = crate::util::interrupt_when(
        &s.0,
        &["restart", "--no-downtime", n1],
        "test",
        "the drain wait began",
        |j| j.contains("\"verdict\":\"not-yet\""),
    );
    assert_ne!(code, 0, "{said}");
    assert!(said.contains("Undoing"), "{said}");
    assert_eq!(
        r.max_sessions(0),
        "Maximum sessions configured on rtpengine: -1",
        "{said}"
    );
    let shown = s.opsctl(&["runs", "show", "test"]);
    assert!(shown.stdout.contains("undone"), "{}", shown.dump());

    // Resumed, it refuses new calls again before it waits.
    r.hang_up(0, "call-1");
    let resumed = s.opsctl(&["resume", "test"]);
    resumed.success();
    assert!(
        resumed.stderr.contains("refuse new calls (maxsessions 0)"),
        "{}",
        resumed.dump()
    );
    assert_eq!(r.max_sessions(0), "Maximum sessions configured on rtpengine: -1");

    // Killed outright, it cannot allow them again: `status` says so, with
    // the fix, and a resume does.
    let _held = r.call(0, "call-3");
    crate::util::kill_when(
        &s.0,
        &["--run-id", "killed", "restart", "--no-downtime", n1],
        &[],
        "killed",
        "the drain wait began",
        |j| j.contains("\"verdict\":\"not-yet\""),
    );
    assert!(r.max_sessions(0).ends_with(": 0"));
    let status = s.opsctl(&["status"]);
    assert_eq!(status.code, 1, "{}", status.dump());
    assert!(
        status.stdout.contains(&format!(
            "{n1}: its limit on new calls (`maxsessions`) is 0 while it is in service"
        )),
        "{}",
        status.dump()
    );
    r.hang_up(0, "call-3");
    // A new run (not the killed one resumed) takes over the limit it kept,
    // rather than keeping the 0 it left.
    let fresh = s.opsctl(&["--yes", "--break-lock", "restart", "--no-downtime", n1]);
    fresh.success();
    assert!(
        fresh.stderr.contains("the limit run killed.rtpengine-"),
        "{}",
        fresh.dump()
    );
    assert_eq!(r.max_sessions(0), "Maximum sessions configured on rtpengine: -1");
}

#[test]
fn the_redis_password_comes_from_the_environment_and_never_reaches_a_command_line() {
    let password = "s3cret-redis-pw";
    let r = RtpLab::start_with(&[&[1], &[0]], Some(password));
    let _calls: Vec<Call> = (0..2).map(|k| r.call(k, &format!("call-{}", k + 1))).collect();
    for k in 0..2 {
        r.until("each holds its peer's call", || r.sessions(k) == Some((1, 1)));
        r.lab.commands_run(k);
    }
    let s = crate::util::Scratch::new();
    s.write(
        "inventory.yaml",
        &r.inventory("")
            .replace("interfaces: [", "redis_password_env: LAB_REDIS_PW, interfaces: ["),
    );
    // Without the variable: said, naming it.
    let unset = s.opsctl(&["status"]);
    assert_eq!(unset.code, 1, "{}", unset.dump());
    assert!(unset.stdout.contains("LAB_REDIS_PW"), "{}", unset.dump());
    // A wrong one: Redis's refusal, and where the password came from.
    let wrong = crate::util::opsctl_env(&s.0, &["status"], &[("LAB_REDIS_PW", "nope")]);
    assert_eq!(wrong.code, 1, "{}", wrong.dump());
    assert!(
        wrong.stdout.contains("refused") && wrong.stdout.contains("(the password comes from $LAB_REDIS_PW)"),
        "{}",
        wrong.dump()
    );
    // The right one: the report reads Redis, and no hole is found.
    let right = crate::util::opsctl_env(&s.0, &["status"], &[("LAB_REDIS_PW", password)]);
    right.success();
    assert!(!right.stdout.contains("redundancy"), "{}", right.dump());
    let restart = crate::util::opsctl_env(
        &s.0,
        &["restart", "--no-downtime", &r.lab.nodes[0].name],
        &[("LAB_REDIS_PW", password)],
    );
    restart.success();
    assert!(restart.stderr.contains("restarted while"), "{}", restart.dump());
    // Its calls carried no RTP: silence before is not a failure after.
    assert!(
        restart
            .stderr
            .contains("none of its calls carried media before the restart"),
        "{}",
        restart.dump()
    );
    for k in 0..2 {
        let ran = r.lab.commands_run(k);
        assert!(ran.iter().any(|c| c.contains("opsctl-rtpengine")), "{ran:?}");
        assert!(!ran.iter().any(|c| c.contains(password)), "{ran:?}");
    }
}

#[test]
fn every_command_a_handover_restart_sends_is_in_its_dry_run() {
    let r = RtpLab::start(&[&[1], &[0]]);
    let calls: Vec<Call> = (0..2).map(|k| r.call(k, &format!("call-{}", k + 1))).collect();
    r.until("each holds its peer's call", || {
        r.sessions(0) == Some((1, 1)) && r.sessions(1) == Some((1, 1))
    });
    let media = Media::start(&calls[0]);
    let s = crate::util::Scratch::new();
    s.write("inventory.yaml", &format!("{DISPATCHER}{}", r.inventory("")));
    let sent = crate::contract::holds(&r.lab, &s, &["restart", "--no-downtime", &r.lab.nodes[0].name]);
    media.stop();
    assert!(sent > 20, "{sent} commands");
}

#[test]
fn a_drain_done_before_the_run_stopped_is_done_again_on_resume() {
    let r = RtpLab::start(&[&[1], &[0]]);
    let s = crate::util::Scratch::new();
    // No Redis for instance 1 in the inventory: its own calls are drained.
    let inv = r.inventory(", drain: {timeout: 4s, poll: 1s}").replacen(
        &format!(", redis: '{}:6379/1'", r.lab.nodes[0].ip),
        "",
        1,
    );
    s.write("inventory.yaml", &inv);
    let n1 = &r.lab.nodes[0].name;
    let plan = s.opsctl(&["--dry-run", "-o", "json", "restart", "--no-downtime", n1]);
    plan.success();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let steps = plan["sections"][0]["steps"].as_array().unwrap();
    let number = |key: &str, value: &str| {
        steps
            .iter()
            .find(|st| st[key] == value)
            .and_then(|st| st["number"].as_u64())
            .unwrap_or_else(|| panic!("no step with {key} {value}"))
    };
    let refuse = number("title", "refuse new calls (maxsessions 0)");
    let drained = number("gate", "drained");
    // Interrupted (as by Ctrl-C) once its drain is done, before its restart.
    let hook = format!(
        "e=$(cat); if printf '%s' \"$e\" | grep -q '\"step-end\"' && printf '%s' \"$e\" | grep -q '\"number\":{drained}[,}}]' && printf '%s' \"$e\" | grep -q '\"ok\":true'; then kill -INT $PPID; sleep 1; fi; exit 0"
    );
    let before = r.pid(0);
    let out = s.opsctl(&["--notify", &hook, "restart", "--no-downtime", n1]);
    assert_ne!(out.code, 0, "{}", out.dump());
    assert!(
        out.stderr
            .contains(&format!("a resumed run does steps {refuse}, {drained} again")),
        "{}",
        out.dump()
    );
    assert_eq!(r.pid(0), before, "restarted after the stop\n{}", out.dump());
    assert_eq!(r.max_sessions(0), "Maximum sessions configured on rtpengine: -1");
    // A call comes in meanwhile: the resumed run waits for it again, and
    // does not restart under it.
    let _late = r.call(0, "late");
    // The first run of a test's directory has the id `test`.
    let run = "test";
    let waited = s.opsctl(&["resume", run]);
    assert_ne!(waited.code, 0, "{}", waited.dump());
    assert!(waited.stderr.contains("own calls on"), "{}", waited.dump());
    assert_eq!(r.pid(0), before, "{}", waited.dump());
    assert_eq!(r.own_calls(0), ["late"]);
    r.hang_up(0, "late");
    r.until("rtpengine 1 owns no call", || r.own_calls(0).is_empty());
    s.opsctl(&["resume", run]).success();
    assert_ne!(r.pid(0), before);
    assert_eq!(r.max_sessions(0), "Maximum sessions configured on rtpengine: -1");
}

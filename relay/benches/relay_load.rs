//! A bounded load generator for relay benchmarks: it drives any STUN/TURN
//! server on loopback (relayd and coturn alike) and prints one `key=value`
//! line, which `scripts/bench/relay-throughput.sh` turns into a table.
//!
//! ```text
//! relay_load binding --server ADDR [--seconds 5] [--sockets 4] [--window 64]
//! relay_load channel --server ADDR --user U --password P [--seconds 5] [--pairs 4] [--window 64] [--size 100]
//! relay_load soak    --server ADDR --user U --password P [--seconds 60]   # channel load + allocation churn
//! relay_load latency --server ADDR --user U --password P [--count 20000] [--size 100]
//! relay_load hold    --server ADDR --user U --password P [--count 10000] [--seconds 10] [--ready FILE]
//! relay_load free-port                                                   # a loopback port free for TCP and UDP
//! ```
//!
//! `binding` keeps `--window` Binding requests in flight on each of
//! `--sockets` sockets and counts the answers. `channel` allocates `--pairs`
//! pairs of allocations (long-term credentials, the 401 challenge answered),
//! binds a channel each way, then keeps `--window` ChannelData messages in
//! flight from one side of each pair to the other side's relayed address; a
//! message counts once the other side has received it, so each one crossed
//! the relay twice (client to relayed socket, relayed socket to client).
//! `soak` runs `channel` while `relay::client` allocates, relays and
//! releases allocations one after another, for a memory-over-time reading.
//! `latency` sends `--count` ChannelData messages one at a time through a
//! pair of allocations, each timed from its send to its arrival, beside the
//! same between two plain loopback sockets: what the relay adds, at the
//! median and the 99th percentile. `hold` makes `--count` allocations (a
//! client socket each), writes `--ready FILE` once all are held, keeps them
//! for `--seconds`, then releases them: memory per held allocation.
//!
//! The hot loops busy-poll non-blocking sockets with pre-encoded messages, so
//! the generator (on its own core) is not the limit: its CPU always reads
//! near 100%, and the server's CPU use, measured by the script, tells whether
//! the server was saturated. Every mode stops at its deadline; a window that
//! goes quiet for 100 ms is counted lost and refilled.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use relay::client::{Client, Error};
use relay::stun::{
    Attribute, Builder, ChannelData, Class, Datagram, Key, Message, Method, TRANSPORT_UDP, TransactionId,
    classify,
};

/// Channel numbers start here, one per pair.
const FIRST_CHANNEL: u16 = 0x4000;
/// Linux's USER_HZ, the unit of utime and stime in /proc/self/stat.
const CLOCK_TICKS: f64 = 100.0;
/// How long a window may stay silent before its messages count as lost.
const QUIET: Duration = Duration::from_millis(100);
/// How long a setup request waits for its answer, and how often it is sent.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);
const RETRANSMIT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
struct Opts {
    server: SocketAddr,
    seconds: f64,
    sockets: usize,
    pairs: u16,
    window: u32,
    size: usize,
    count: usize,
    ready: Option<std::path::PathBuf>,
    user: String,
    password: String,
}

fn usage(why: &str) -> ExitCode {
    eprintln!("relay_load: error: {why}");
    eprintln!("usage: relay_load binding|channel|soak|free-port --server ADDR [--seconds S] ...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some((mode, flags)) = args.split_first() else {
        // A bare `cargo bench` lands here: it needs a server, so say where to start.
        eprintln!("relay_load: a load generator; run scripts/bench/relay-throughput.sh, or:");
        eprintln!("  relay_load binding|channel|soak --server ADDR [--seconds S] ... (see the file's docs)");
        return ExitCode::SUCCESS;
    };
    if mode == "free-port" {
        return match free_port() {
            Some(port) => {
                println!("{port}");
                ExitCode::SUCCESS
            }
            None => usage("no loopback port is free for both TCP and UDP"),
        };
    }
    let opts = match parse(flags) {
        Ok(o) => o,
        Err(why) => return usage(&why),
    };
    let cpu = cpu_seconds();
    let result = match mode.as_str() {
        "binding" => binding(&opts),
        "channel" => channel(&opts),
        "soak" => soak(&opts),
        "latency" => latency(&opts),
        "hold" => hold(&opts),
        other => return usage(&format!("unknown mode `{other}`")),
    };
    match result {
        Ok((line, elapsed)) => {
            let used = cpu_seconds() - cpu;
            println!(
                "mode={mode} server={} {line} client_cpu={:.0}%",
                opts.server,
                100.0 * used / elapsed.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("relay_load: error: {why}");
            ExitCode::FAILURE
        }
    }
}

fn parse(flags: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        server: SocketAddr::from(([127, 0, 0, 1], 3478)),
        seconds: 5.0,
        sockets: 4,
        pairs: 4,
        window: 64,
        size: 100,
        count: 0,
        ready: None,
        user: String::new(),
        password: String::new(),
    };
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v.to_owned()),
            None => (
                flag.as_str(),
                it.next().cloned().ok_or(format!("`{flag}` needs a value"))?,
            ),
        };
        let bad = |e: &dyn std::fmt::Display| format!("`{name} {value}`: {e}");
        match name {
            "--server" => o.server = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => o.seconds = value.parse().map_err(|e| bad(&e))?,
            "--sockets" => o.sockets = value.parse().map_err(|e| bad(&e))?,
            "--pairs" => o.pairs = value.parse().map_err(|e| bad(&e))?,
            "--window" => o.window = value.parse().map_err(|e| bad(&e))?,
            "--size" => o.size = value.parse().map_err(|e| bad(&e))?,
            "--count" => o.count = value.parse().map_err(|e| bad(&e))?,
            "--ready" => o.ready = Some(value.into()),
            "--user" => o.user = value,
            "--password" => o.password = value,
            _ => return Err(format!("unknown flag `{name}`")),
        }
    }
    if !(o.seconds > 0.0 && o.seconds <= 3600.0) {
        return Err("--seconds must be more than 0 and at most 3600".into());
    }
    if o.sockets == 0 || o.pairs == 0 || o.pairs > 0x3FFF || o.window == 0 {
        return Err("--sockets, --pairs and --window must be at least 1 (--pairs at most 16383)".into());
    }
    Ok(o)
}

/// A socket with a window of messages in flight.
struct Lane {
    /// Sends the messages.
    tx: UdpSocket,
    /// Receives what comes back (the same socket for Binding).
    rx: UdpSocket,
    /// Sent in turn, encoded before the clock starts.
    messages: Vec<Vec<u8>>,
    next: usize,
    in_flight: u32,
}

/// Totals of a busy-poll run.
#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    received: u64,
    lost: u64,
}

/// Keeps `window` messages in flight on every lane until `deadline`;
/// `answer` says whether a received datagram is one of the replies.
fn busy_poll(
    lanes: &mut [Lane],
    window: u32,
    deadline: Instant,
    answer: impl Fn(&[u8]) -> Result<bool, String>,
) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut buf = vec![0; 65_536];
    let mut heard = Instant::now();
    let mut spins = 0u32;
    loop {
        spins += 1;
        if spins.is_multiple_of(64) {
            let now = Instant::now();
            if now >= deadline {
                return Ok(counts);
            }
            if now.duration_since(heard) > QUIET {
                for lane in lanes.iter_mut() {
                    counts.lost += u64::from(lane.in_flight);
                    lane.in_flight = 0;
                }
                heard = now;
            }
        }
        for lane in lanes.iter_mut() {
            while lane.in_flight < window {
                match lane.tx.send(&lane.messages[lane.next]) {
                    Ok(_) => {
                        lane.next = (lane.next + 1) % lane.messages.len();
                        lane.in_flight += 1;
                        counts.sent += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("send: {e}")),
                }
            }
            loop {
                match lane.rx.recv(&mut buf) {
                    Ok(n) => {
                        if answer(&buf[..n])? {
                            counts.received += 1;
                            lane.in_flight = lane.in_flight.saturating_sub(1);
                            heard = Instant::now();
                        }
                    }
                    // Loopback reports an earlier ICMP error here: keep going.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("receive: {e}")),
                }
            }
        }
    }
}

fn connected(server: SocketAddr) -> Result<UdpSocket, String> {
    let io = |e: std::io::Error| format!("{server}: {e}");
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(io)?;
    socket.connect(server).map_err(io)?;
    Ok(socket)
}

/// Binding requests answered per second.
fn binding(o: &Opts) -> Result<(String, Duration), String> {
    // Distinct transaction ids, more than a window's worth.
    let requests: Vec<Vec<u8>> = (0..u64::from(o.window) * 2)
        .map(|n| {
            let mut tid = [0; 12];
            tid[4..].copy_from_slice(&n.to_be_bytes());
            Builder::new(Method::BINDING, Class::Request, TransactionId(tid)).finish()
        })
        .collect();
    let mut lanes = Vec::new();
    for _ in 0..o.sockets {
        let socket = connected(o.server)?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let rx = socket.try_clone().map_err(|e| e.to_string())?;
        lanes.push(Lane {
            tx: socket,
            rx,
            messages: requests.clone(),
            next: 0,
            in_flight: 0,
        });
    }
    let checked = std::cell::Cell::new(0u64);
    let answer = |bytes: &[u8]| {
        // Decode every 256th answer fully; the others only by their type.
        let n = checked.get();
        checked.set(n + 1);
        if n.is_multiple_of(256) {
            let m = relay::stun::decode(bytes).map_err(|e| format!("a bad answer: {e}"))?;
            if m.class != Class::Success || m.xor_mapped_address().is_none() {
                return Err(format!("not a binding success: {m:?}"));
            }
        }
        Ok(classify(bytes) == Datagram::Stun && bytes[..2] == [0x01, 0x01])
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let counts = busy_poll(&mut lanes, o.window, deadline, answer)?;
    let elapsed = start.elapsed();
    let line = format!(
        "seconds={:.2} sent={} answered={} lost={} rate={:.0}",
        elapsed.as_secs_f64(),
        counts.sent,
        counts.received,
        counts.lost,
        counts.received as f64 / elapsed.as_secs_f64()
    );
    Ok((line, elapsed))
}

/// A TURN client over a plain socket, for setup: long-term credentials,
/// challenges answered, requests sent again until answered.
struct Session {
    socket: UdpSocket,
    server: SocketAddr,
    user: String,
    password: String,
    /// REALM, NONCE and the key, once challenged.
    auth: Option<(String, String, Key)>,
    next_tid: u32,
}

impl Session {
    fn new(o: &Opts) -> Result<Session, String> {
        let socket = connected(o.server)?;
        socket
            .set_read_timeout(Some(RETRANSMIT))
            .map_err(|e| e.to_string())?;
        Ok(Session {
            socket,
            server: o.server,
            user: o.user.clone(),
            password: o.password.clone(),
            auth: None,
            next_tid: 0,
        })
    }

    fn request(&mut self, method: Method, attrs: &[Attribute]) -> Result<Message, String> {
        let fail = |what: &dyn std::fmt::Display| format!("{method} to {}: {what}", self.server);
        for _ in 0..3 {
            self.next_tid += 1;
            let mut tid = [0x7e; 12];
            tid[..4].copy_from_slice(&self.next_tid.to_be_bytes());
            let tid = TransactionId(tid);
            let mut b = Builder::new(method, Class::Request, tid);
            for a in attrs {
                b.add(a).map_err(|e| fail(&e))?;
            }
            if let Some((realm, nonce, key)) = &self.auth {
                b.add(&Attribute::Username(self.user.clone()))
                    .map_err(|e| fail(&e))?;
                b.add(&Attribute::Realm(realm.clone())).map_err(|e| fail(&e))?;
                b.add(&Attribute::Nonce(nonce.clone())).map_err(|e| fail(&e))?;
                b.message_integrity(key).map_err(|e| fail(&e))?;
            }
            let bytes = b.fingerprint().map_err(|e| fail(&e))?;
            let reply = self.exchange(&bytes, tid).map_err(|e| fail(&e))?;
            if reply.class == Class::Success {
                return Ok(reply);
            }
            let code = reply.error_code().map(|e| e.code);
            let signed = self.auth.is_some();
            let nonce = match (code, reply.nonce()) {
                (Some(401), Some(nonce)) if !signed => nonce.to_owned(),
                (Some(438), Some(nonce)) => nonce.to_owned(),
                _ => return Err(fail(&format!("refused: {:?}", reply.error_code()))),
            };
            let realm = match (reply.realm(), &self.auth) {
                (Some(r), _) => r.to_owned(),
                (None, Some((r, _, _))) => r.clone(),
                (None, None) => return Err(fail(&"a challenge without REALM")),
            };
            let key = Key::long_term(&self.user, &realm, &self.password);
            self.auth = Some((realm, nonce, key));
        }
        Err(fail(&"challenged again and again"))
    }

    /// Sends `bytes` every [`RETRANSMIT`] until the response to `tid`
    /// arrives, skipping relayed data still arriving.
    fn exchange(&self, bytes: &[u8], tid: TransactionId) -> Result<Message, String> {
        let mut buf = vec![0; 65_536];
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while Instant::now() < deadline {
            self.socket.send(bytes).map_err(|e| e.to_string())?;
            let resend = Instant::now() + RETRANSMIT;
            while Instant::now() < resend {
                let n = match self.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                    Err(e) => return Err(e.to_string()),
                };
                if let Ok(m) = relay::stun::decode(&buf[..n])
                    && m.transaction_id == tid
                {
                    return Ok(m);
                }
            }
        }
        Err(format!("no answer within {SETUP_TIMEOUT:?}"))
    }

    /// Allocates; the relayed address.
    fn allocate(&mut self) -> Result<SocketAddr, String> {
        let reply = self.request(Method::ALLOCATE, &[Attribute::RequestedTransport(TRANSPORT_UDP)])?;
        reply
            .xor_relayed_address()
            .ok_or_else(|| format!("{} answered Allocate without XOR-RELAYED-ADDRESS", self.server))
    }

    fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), String> {
        let attrs = [Attribute::ChannelNumber(channel), Attribute::XorPeerAddress(peer)];
        self.request(Method::CHANNEL_BIND, &attrs).map(|_| ())
    }

    fn release(&mut self) -> Result<(), String> {
        self.socket.set_nonblocking(false).map_err(|e| e.to_string())?;
        self.request(Method::REFRESH, &[Attribute::Lifetime(0)])
            .map(|_| ())
    }
}

/// ChannelData messages relayed per second over `--pairs` pairs, for
/// `seconds` from now.
fn channel_for(o: &Opts, seconds: f64) -> Result<(String, Duration), String> {
    let payload = vec![0x5a; o.size];
    let mut sessions = Vec::new();
    let mut lanes = Vec::new();
    for i in 0..o.pairs {
        let channel = FIRST_CHANNEL + i;
        let mut from = Session::new(o)?;
        let mut to = Session::new(o)?;
        let from_relayed = from.allocate()?;
        let to_relayed = to.allocate()?;
        from.channel_bind(channel, to_relayed)?;
        to.channel_bind(channel, from_relayed)?;
        let nonblocking = |s: &Session| {
            let socket = s.socket.try_clone().map_err(|e| e.to_string())?;
            socket.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok::<_, String>(socket)
        };
        let frame = ChannelData {
            channel,
            data: &payload,
        };
        lanes.push(Lane {
            tx: nonblocking(&from)?,
            rx: nonblocking(&to)?,
            messages: vec![frame.encode(false).map_err(|e| e.to_string())?],
            next: 0,
            in_flight: 0,
        });
        sessions.push((from, to));
    }
    let answer = |bytes: &[u8]| Ok(classify(bytes) == Datagram::ChannelData && bytes.len() >= 4 + o.size);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let counts = busy_poll(&mut lanes, o.window, deadline, answer)?;
    let elapsed = start.elapsed();
    // A release that goes unanswered under load leaves an allocation to
    // expire; the measurement stands.
    for (from, to) in &mut sessions {
        for session in [from, to] {
            if let Err(e) = session.release() {
                eprintln!("relay_load: warning: {e}");
            }
        }
    }
    let line = format!(
        "seconds={:.2} sent={} received={} lost={} rate={:.0} size={}",
        elapsed.as_secs_f64(),
        counts.sent,
        counts.received,
        counts.lost,
        counts.received as f64 / elapsed.as_secs_f64(),
        o.size
    );
    Ok((line, elapsed))
}

fn channel(o: &Opts) -> Result<(String, Duration), String> {
    channel_for(o, o.seconds)
}

/// `channel` load in a thread while `relay::client` churns allocations.
fn soak(o: &Opts) -> Result<(String, Duration), String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let load = {
        let o = o.clone();
        std::thread::spawn(move || channel_for(&o, o.seconds))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let churned = runtime.block_on(churn(o, deadline))?;
    let (line, _) = load.join().map_err(|_| "the load thread panicked".to_owned())??;
    let elapsed = start.elapsed();
    let Churned {
        allocations,
        stale,
        timeouts,
    } = churned;
    Ok((
        format!("{line} churned_allocations={allocations} stale_allocate={stale} churn_timeouts={timeouts}"),
        elapsed,
    ))
}

/// What [`churn`] did.
#[derive(Debug, Default)]
struct Churned {
    /// Allocations made, used and released.
    allocations: u64,
    /// Allocates refused with 437: the port's previous owner's allocation.
    stale: u64,
    /// Rounds given up after a request went unanswered for 5 s.
    timeouts: u64,
}

/// Allocations made, used and released one after another until `deadline`.
///
/// Released clients are kept open a while so the kernel does not hand their
/// ports straight to the next clients: under overload a retransmitted
/// Allocate can arrive after its allocation was released and make a new
/// one, which the next client on that port would run into.
async fn churn(o: &Opts, deadline: Instant) -> Result<Churned, String> {
    const KEEP_OPEN: usize = 1024;
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut recent = std::collections::VecDeque::new();
    let mut churned = Churned::default();
    while Instant::now() < deadline {
        let mut a = Client::udp_from(local, o.server)
            .await
            .map_err(|e| e.to_string())?;
        let mut b = Client::udp_from(local, o.server)
            .await
            .map_err(|e| e.to_string())?;
        let round = async {
            let ra = a.allocate(&o.user, &o.password, None).await?.relayed;
            let rb = b.allocate(&o.user, &o.password, None).await?.relayed;
            a.channel_bind(FIRST_CHANNEL, rb).await?;
            b.create_permission(&[ra]).await?;
            a.send(rb, b"churn").await?;
            b.recv().await?;
            a.release().await?;
            b.release().await
        };
        match round.await {
            Ok(()) => churned.allocations += 2,
            Err(Error::Rejected { code: 437, .. }) => churned.stale += 1,
            Err(Error::Timeout { .. }) => churned.timeouts += 1,
            Err(e) => return Err(e.to_string()),
        }
        recent.extend([a, b]);
        while recent.len() > KEEP_OPEN {
            recent.pop_front();
        }
    }
    Ok(churned)
}

/// Waits on a non-blocking socket until a datagram arrives or `QUIET`
/// passes; its length, or `None`.
fn spin_recv(socket: &UdpSocket, buf: &mut [u8]) -> Result<Option<usize>, String> {
    let give_up = Instant::now() + QUIET;
    loop {
        match socket.recv(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() > give_up {
                    return Ok(None);
                }
                std::hint::spin_loop();
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Times `count` datagrams one at a time, `send` then a spin on `rx`;
/// sorted nanoseconds, and how many never came.
fn one_at_a_time(
    count: usize,
    rx: &UdpSocket,
    send: impl Fn() -> std::io::Result<usize>,
) -> Result<(Vec<u64>, u64), String> {
    let mut buf = vec![0; 65_536];
    let mut times = Vec::with_capacity(count);
    let mut lost = 0;
    for _ in 0..count {
        let sent = Instant::now();
        send().map_err(|e| e.to_string())?;
        match spin_recv(rx, &mut buf)? {
            Some(_) => times.push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX)),
            None => lost += 1,
        }
    }
    times.sort_unstable();
    Ok((times, lost))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// What the relay adds to one ChannelData message's trip, at p50 and p99.
fn latency(o: &Opts) -> Result<(String, Duration), String> {
    let count = if o.count == 0 { 20_000 } else { o.count };
    let start = Instant::now();
    let payload = vec![0x5a; o.size];
    // Plain loopback: the floor.
    let a = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let b = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    a.connect(b.local_addr().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    b.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (direct, _) = one_at_a_time(count, &b, || a.send(&payload))?;
    // Through the relay: a pair of allocations with a channel each way.
    let mut from = Session::new(o)?;
    let mut to = Session::new(o)?;
    let from_relayed = from.allocate()?;
    let to_relayed = to.allocate()?;
    from.channel_bind(FIRST_CHANNEL, to_relayed)?;
    to.channel_bind(FIRST_CHANNEL, from_relayed)?;
    let frame = ChannelData {
        channel: FIRST_CHANNEL,
        data: &payload,
    }
    .encode(false)
    .map_err(|e| e.to_string())?;
    let rx = to.socket.try_clone().map_err(|e| e.to_string())?;
    rx.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (relayed, lost) = one_at_a_time(count, &rx, || from.socket.send(&frame))?;
    for session in [&mut from, &mut to] {
        if let Err(e) = session.release() {
            eprintln!("relay_load: warning: {e}");
        }
    }
    let line = format!(
        "count={count} size={} lost={lost} direct_p50_us={:.1} direct_p99_us={:.1} relayed_p50_us={:.1} relayed_p99_us={:.1} added_p50_us={:.1} added_p99_us={:.1}",
        o.size,
        percentile(&direct, 0.5),
        percentile(&direct, 0.99),
        percentile(&relayed, 0.5),
        percentile(&relayed, 0.99),
        percentile(&relayed, 0.5) - percentile(&direct, 0.5),
        percentile(&relayed, 0.99) - percentile(&direct, 0.99),
    );
    Ok((line, start.elapsed()))
}

/// Holds `--count` allocations for `--seconds`, then releases them.
fn hold(o: &Opts) -> Result<(String, Duration), String> {
    let count = if o.count == 0 { 10_000 } else { o.count };
    let start = Instant::now();
    let mut sessions = Vec::with_capacity(count);
    // A port whose earlier owner left an allocation behind (another
    // client's, not released) is answered 437; its socket is kept aside so
    // the next one gets another port.
    let mut stale = Vec::new();
    while sessions.len() < count {
        let mut s = Session::new(o)?;
        match s.allocate() {
            Ok(_) => sessions.push(s),
            Err(e) if e.contains("code: 437") && stale.len() < count / 10 => stale.push(s),
            Err(e) => return Err(format!("allocation {} of {count}: {e}", sessions.len() + 1)),
        }
    }
    let made = start.elapsed();
    if let Some(path) = &o.ready {
        std::fs::write(path, format!("{count}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::thread::sleep(Duration::from_secs_f64(o.seconds));
    let mut unreleased = 0;
    for s in &mut sessions {
        if s.release().is_err() {
            unreleased += 1;
        }
    }
    let line = format!(
        "held={count} made_in_seconds={:.2} allocations_per_second={:.0} stale_ports={} unreleased={unreleased}",
        made.as_secs_f64(),
        count as f64 / made.as_secs_f64(),
        stale.len()
    );
    Ok((line, start.elapsed()))
}

/// User plus system CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after `(comm)` start at field 3 (state); utime is 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / CLOCK_TICKS
}

/// A loopback port free for both TCP and UDP just now.
fn free_port() -> Option<u16> {
    (0..100).find_map(|_| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        UdpSocket::bind(("127.0.0.1", port)).ok().map(|_| port)
    })
}

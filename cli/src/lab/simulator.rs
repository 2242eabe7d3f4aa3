//! The call simulator: calls that come and go, each a real TURN allocation
//! on a relay chosen from the list clients receive (the lab's values file,
//! read when the call starts), with media relayed both ways for a few
//! seconds, then released.
//!
//! A call is *completed* when it ran its whole length with media flowing and
//! was released, *dropped* when anything failed once it had started (its
//! allocation refused a refresh or vanished, media stopped for two seconds,
//! its relay went away), and *not started* when no advertised relay would
//! give it an allocation. The counts are written to `calls.json` twice a
//! second; the simulator stops itself after `max_runtime`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay::client::Client;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

/// The simulator's counters, as `calls.json` holds them.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub started: u64,
    pub completed: u64,
    pub dropped: u64,
    pub not_started: u64,
    pub active: u64,
    /// Why calls were dropped, the last few.
    pub drops: Vec<String>,
}

/// Calls the lab keeps going at once, and how long each lasts, unless told.
pub const CONCURRENT: usize = 6;
pub const CALL_LENGTH: Duration = Duration::from_secs(3);

pub struct Settings {
    pub dir: PathBuf,
    /// Calls kept going at once.
    pub concurrent: usize,
    pub call_length: Duration,
    pub max_runtime: Duration,
    pub user: String,
    pub password: String,
}

/// The TURN addresses clients receive now: the values file's listed `turn:`
/// entries over UDP, read the way opsctl reads the advertised list.
pub fn advertised(values: &Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(values).unwrap_or_default();
    crate::advertise::listed(&text, crate::inventory::DEFAULT_LIST)
        .iter()
        .filter_map(|url| url.strip_prefix("turn:"))
        .filter(|v| !v.contains("transport=tcp"))
        .filter_map(|v| v.split('?').next()?.parse().ok())
        .collect()
}

pub fn read_counts(dir: &Path) -> Option<Counts> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("calls.json")).ok()?).ok()
}

/// Runs until `max_runtime` passes or `stop` appears in the lab directory.
pub async fn run(s: Settings) -> anyhow::Result<()> {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let deadline = Instant::now() + s.max_runtime;
    let stop_file = s.dir.join("run/simulator.stop");
    let values = s.dir.join("values.yaml");
    let mut calls = tokio::task::JoinSet::new();
    let mut n: u64 = 0;
    loop {
        let stopping = Instant::now() >= deadline || stop_file.exists();
        while !stopping && calls.len() < s.concurrent {
            n += 1;
            let (counts, values, length) = (counts.clone(), values.clone(), s.call_length);
            let (user, password) = (s.user.clone(), s.password.clone());
            // Calls of different lengths, so they end at different times.
            let length = length + Duration::from_millis((n % 5) * 400);
            calls.spawn(async move { call(n, &values, length, &counts, &user, &password).await });
            // Stagger starts so relays see a steady trickle, not a burst.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        if stopping && calls.is_empty() {
            write(&s.dir, &counts)?;
            return Ok(());
        }
        tokio::select! {
            _ = calls.join_next(), if !calls.is_empty() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        write(&s.dir, &counts)?;
    }
}

fn write(dir: &Path, counts: &Arc<Mutex<Counts>>) -> anyhow::Result<()> {
    let c = counts
        .lock()
        .map_err(|_| anyhow::anyhow!("counters poisoned"))?
        .clone();
    let tmp = dir.join("calls.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&c)?)?;
    std::fs::rename(tmp, dir.join("calls.json"))?;
    Ok(())
}

async fn call(n: u64, values: &Path, length: Duration, counts: &Mutex<Counts>, user: &str, password: &str) {
    let bump = |f: &dyn Fn(&mut Counts)| {
        if let Ok(mut c) = counts.lock() {
            f(&mut c);
        }
    };
    let relays = advertised(values);
    if relays.is_empty() {
        bump(&|c| c.not_started += 1);
        return;
    }
    let server = relays[(n as usize) % relays.len()];
    let Ok((mut client, peer, relayed)) = setup(server, user, password).await else {
        bump(&|c| c.not_started += 1);
        return;
    };
    bump(&|c| {
        c.started += 1;
        c.active += 1;
    });
    let result = media(&mut client, &peer, relayed, length).await;
    let result = match result {
        Ok(()) => client.release().await.map_err(|e| format!("release: {e}")),
        Err(e) => Err(e),
    };
    bump(&|c| {
        c.active -= 1;
        match &result {
            Ok(()) => c.completed += 1,
            Err(why) => {
                c.dropped += 1;
                c.drops.push(format!("call {n} on {server}: {why}"));
                let excess = c.drops.len().saturating_sub(10);
                c.drops.drain(..excess);
            }
        }
    });
}

/// An allocation, a permission and a channel for a peer socket of our own.
async fn setup(
    server: SocketAddr,
    user: &str,
    password: &str,
) -> anyhow::Result<(Client, UdpSocket, SocketAddr)> {
    let mut client = Client::udp(server).await?.with_timeout(Duration::from_secs(2));
    let allocation = client.allocate(user, password, Some(60)).await?;
    let peer = UdpSocket::bind("127.0.0.1:0").await?;
    let peer_addr = peer.local_addr()?;
    client.create_permission(&[peer_addr]).await?;
    client.channel_bind(0x4000, peer_addr).await?;
    Ok((client, peer, allocation.relayed))
}

/// Media both ways every 100 ms: client -> relay -> peer, echoed back.
async fn media(
    client: &mut Client,
    peer: &UdpSocket,
    relayed: SocketAddr,
    length: Duration,
) -> Result<(), String> {
    let peer_addr = peer.local_addr().map_err(|e| e.to_string())?;
    let end = Instant::now() + length;
    let mut last_echo = Instant::now();
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        client
            .send(peer_addr, b"media")
            .await
            .map_err(|e| format!("send: {e}"))?;
        let heard = tokio::time::timeout(Duration::from_millis(100), peer.recv_from(&mut buf)).await;
        if let Ok(Ok((len, from))) = heard
            && from == relayed
        {
            peer.send_to(&buf[..len], relayed)
                .await
                .map_err(|e| format!("peer send: {e}"))?;
        }
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), client.recv()).await {
            last_echo = Instant::now();
        }
        if last_echo.elapsed() > Duration::from_secs(2) {
            return Err("no media for 2s".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uncommented_udp_turn_entries_are_advertised() {
        let dir = std::env::temp_dir().join(format!("opsctl-sim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("values.yaml");
        std::fs::write(
            &f,
            "brig:\n  turnStatic:\n    v2:\n      - turn:127.78.0.1:3478 # node-1\n      - \"turn:127.78.0.1:3478?transport=tcp\"\n      # - turn:127.78.0.2:3478\n      - \"turn:127.78.0.3:3478\"\n",
        )
        .unwrap();
        let got: Vec<String> = advertised(&f).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["127.78.0.1:3478", "127.78.0.3:3478"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

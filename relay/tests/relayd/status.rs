//! The status port over a real socket, read with opsctl's own parsers.

use std::time::SystemTime;

use relay::stats::{parse_drain_reply, parse_turnstats, parse_turnstats_datagrams};

use crate::harness::Relayd;

#[tokio::test]
async fn turnstats_and_drain_replies_parse_with_the_stats_parsers() {
    let relayd = Relayd::start(|_| {}).await;
    let mut alice = relayd.client().await;
    alice.allocate("alice", "alice-pw", None).await.unwrap();

    let datagrams = relayd.status_datagrams(b"turnstats\n").await;
    let stats = parse_turnstats_datagrams(&datagrams, SystemTime::now()).unwrap();
    assert_eq!(
        (stats.allocations, stats.total, stats.channels),
        (1, Some(1), Some(0))
    );
    assert_eq!(stats.draining, Some(false));

    // An empty datagram repeats the previous command.
    let again = relayd.status_datagrams(b"").await;
    assert_eq!(
        parse_turnstats_datagrams(&again, SystemTime::now())
            .unwrap()
            .allocations,
        1
    );

    assert!(parse_drain_reply(&relayd.status("drain").await).unwrap());
    assert!(parse_drain_reply(&relayd.status("drain_state").await).unwrap());
    let text = relayd.status("turnstats").await;
    assert_eq!(
        parse_turnstats(&text, SystemTime::now()).unwrap().draining,
        Some(true)
    );
    assert!(!parse_drain_reply(&relayd.status("undrain").await).unwrap());

    assert_eq!(relayd.status("uptime").await, "uptime: command not found\n");
    let listing = relayd.status("turn").await;
    assert!(listing.starts_with("TURN allocations: 1\n- udp/"), "{listing}");
    // The expiry counts down from 600 s while the test runs.
    assert!(
        listing.contains("\"alice\" 59") || listing.contains("\"alice\" 600s"),
        "{listing}"
    );
    assert!(listing.ends_with("s (perms 0, chans 0)\n"), "{listing}");
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn long_replies_arrive_in_1024_byte_datagrams() {
    let relayd = Relayd::start(|_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = relayd.client().await;
        c.allocate("alice", "alice-pw", None).await.unwrap();
        clients.push(c);
    }
    let datagrams = relayd.status_datagrams(b"turn").await;
    assert!(datagrams.len() >= 2, "{} datagrams", datagrams.len());
    assert!(datagrams.iter().all(|d| d.len() <= 1024));
    assert!(datagrams[..datagrams.len() - 1].iter().all(|d| d.len() == 1024));
    let text = String::from_utf8(datagrams.concat()).unwrap();
    assert_eq!(text.lines().count(), 21);
    relayd.stop().await.unwrap();
}

//! Data relayed between two clients and to plain peers, through
//! permissions and through channels, and a drain that refuses newcomers
//! while existing allocations keep relaying.

use relay::client::{Client, Error};
use relay::stats::parse_drain_reply;

use crate::harness::{Peer, Relayd};

async fn allocated(relayd: &Relayd, user: &str) -> (Client, std::net::SocketAddr) {
    let mut c = relayd.client().await;
    let a = c.allocate(user, &format!("{user}-pw"), None).await.unwrap();
    (c, a.relayed)
}

#[tokio::test]
async fn two_clients_through_permissions_both_ways() {
    let relayd = Relayd::start(|_| {}).await;
    let (mut alice, alice_relay) = allocated(&relayd, "alice").await;
    let (mut bob, bob_relay) = allocated(&relayd, "bob").await;
    alice.create_permission(&[bob_relay]).await.unwrap();
    bob.create_permission(&[alice_relay]).await.unwrap();

    alice.send(bob_relay, b"hello bob").await.unwrap();
    let got = bob.recv().await.unwrap();
    assert_eq!(
        (got.peer, got.data.as_slice(), got.channel),
        (alice_relay, &b"hello bob"[..], None)
    );
    bob.send(alice_relay, b"hello alice").await.unwrap();
    let got = alice.recv().await.unwrap();
    assert_eq!((got.peer, got.data.as_slice()), (bob_relay, &b"hello alice"[..]));

    let stats = relayd.status("turnstats").await;
    assert!(
        stats.contains("bytes_tx 20\nbytes_rx 20\nbytes_tot 40\n"),
        "{stats}"
    );
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn two_clients_through_channels_both_ways_udp_and_tcp() {
    let relayd = Relayd::start(|_| {}).await;
    let (mut alice, alice_relay) = allocated(&relayd, "alice").await;
    let mut bob = Client::tcp(relayd.tcp).await.unwrap();
    let bob_relay = bob.allocate("bob", "bob-pw", None).await.unwrap().relayed;
    alice.channel_bind(0x4000, bob_relay).await.unwrap();
    bob.channel_bind(0x4abc, alice_relay).await.unwrap();

    for round in 0..5u8 {
        let data = vec![round; 100 + usize::from(round)];
        alice.send(bob_relay, &data).await.unwrap();
        let got = bob.recv().await.unwrap();
        assert_eq!(
            (got.peer, got.channel, &got.data),
            (alice_relay, Some(0x4abc), &data)
        );
        bob.send(alice_relay, &data).await.unwrap();
        let got = alice.recv().await.unwrap();
        assert_eq!(
            (got.peer, got.channel, &got.data),
            (bob_relay, Some(0x4000), &data)
        );
    }
    assert!(relayd.status("turnstats").await.contains("chan_cur 2\n"));
    relayd.stop().await.unwrap();
}

/// Clients and peers send bursts without waiting for any answer, so the
/// relay reads and sends many datagrams per system call: every one arrives,
/// whole, from the right sender, in the order it was sent.
#[tokio::test]
async fn bursts_from_many_clients_arrive_whole_and_in_order_both_ways() {
    const CLIENTS: usize = 8;
    // What each peer and client queues before it reads fits the kernel's
    // default receive buffer (208 KiB), so none is lost on the test's side.
    const BURST: usize = 100;
    let relayd = Relayd::start(|_| {}).await;
    let mut pairs = Vec::new();
    for i in 0..CLIENTS {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let (mut client, relayed) = allocated(&relayd, user).await;
        let peer = Peer::new().await;
        client.channel_bind(0x4000 + i as u16, peer.addr).await.unwrap();
        pairs.push((client, relayed, peer));
    }
    // Each datagram says whose it is and its place; lengths vary too.
    let datagram = |who: usize, n: usize| {
        let mut d = format!("{who}:{n}:").into_bytes();
        d.resize(20 + (n * 7 + who) % 200, b'x');
        d
    };

    // Every client's burst, all at once, then every peer reads its own.
    for n in 0..BURST {
        for (who, (client, _, peer)) in pairs.iter_mut().enumerate() {
            client.send(peer.addr, &datagram(who, n)).await.unwrap();
        }
    }
    for (who, (_, relayed, peer)) in pairs.iter().enumerate() {
        for n in 0..BURST {
            assert_eq!(
                peer.recv().await,
                (datagram(who, n), *relayed),
                "client {who}'s datagram {n}"
            );
        }
    }

    // And back: every peer's burst, then every client reads its own.
    for n in 0..BURST {
        for (who, (_, relayed, peer)) in pairs.iter().enumerate() {
            peer.socket.send_to(&datagram(who, n), relayed).await.unwrap();
        }
    }
    for (who, (client, _, peer)) in pairs.iter_mut().enumerate() {
        for n in 0..BURST {
            let got = client.recv().await.unwrap();
            assert_eq!(
                (got.peer, got.channel, got.data),
                (peer.addr, Some(0x4000 + who as u16), datagram(who, n)),
                "peer {who}'s datagram {n}"
            );
        }
    }
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn plain_peers_need_a_permission() {
    let relayd = Relayd::start(|_| {}).await;
    let (mut alice, relayed) = allocated(&relayd, "alice").await;
    let peer = Peer::new().await;
    // Permissions are per IP address: a stranger needs another one.
    let stranger = Peer::on([127, 0, 0, 2]).await;

    alice.create_permission(&[peer.addr]).await.unwrap();
    // A stranger's datagram is dropped; the permitted peer's arrives.
    stranger.socket.send_to(b"let me in", relayed).await.unwrap();
    peer.socket.send_to(b"media", relayed).await.unwrap();
    let got = alice.recv().await.unwrap();
    assert_eq!((got.peer, got.data.as_slice()), (peer.addr, &b"media"[..]));

    alice.send(peer.addr, b"answer").await.unwrap();
    assert_eq!(peer.recv().await, (b"answer".to_vec(), relayed));
    alice.channel_bind(0x4001, peer.addr).await.unwrap();
    alice.send(peer.addr, b"over the channel").await.unwrap();
    assert_eq!(peer.recv().await, (b"over the channel".to_vec(), relayed));
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn drain_refuses_new_allocations_while_old_ones_keep_relaying() {
    let relayd = Relayd::start(|_| {}).await;
    let (mut alice, relayed) = allocated(&relayd, "alice").await;
    let peer = Peer::new().await;
    alice.channel_bind(0x4000, peer.addr).await.unwrap();

    assert!(parse_drain_reply(&relayd.status("drain_enable").await).unwrap());
    let mut bob = relayd.client().await;
    let err = bob.allocate("bob", "bob-pw", None).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { code: 486, .. }), "{err}");

    // The old allocation refreshes and relays both ways.
    alice.refresh(600).await.unwrap();
    alice.channel_bind(0x4000, peer.addr).await.unwrap();
    alice.send(peer.addr, b"still talking").await.unwrap();
    assert_eq!(peer.recv().await, (b"still talking".to_vec(), relayed));
    peer.socket.send_to(b"me too", relayed).await.unwrap();
    assert_eq!(alice.recv().await.unwrap().data, b"me too");
    let stats = relayd.status("turnstats").await;
    assert!(
        stats.starts_with("allocs_cur 1\n") && stats.ends_with("is_draining: 1\n"),
        "{stats}"
    );

    assert!(!parse_drain_reply(&relayd.status("drain_disable").await).unwrap());
    bob.allocate("bob", "bob-pw", None).await.unwrap();
    alice.release().await.unwrap();
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn a_draining_relay_names_its_alternate() {
    let alternate: std::net::SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let relayd = Relayd::start(|c| {
        c.turn.alternate_server = Some(alternate);
        c.draining = true;
    })
    .await;
    assert!(parse_drain_reply(&relayd.status("drain_state").await).unwrap());
    let mut c = relayd.client().await;
    let err = c.allocate("alice", "alice-pw", None).await.unwrap_err();
    assert!(
        matches!(err, Error::Rejected { code: 300, alternate: Some(a), .. } if a == alternate),
        "{err}"
    );
    relayd.stop().await.unwrap();
}

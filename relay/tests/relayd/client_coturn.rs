//! `relay::client` against a real coturn 4.6.1: binding, allocation with a
//! static user and with coturn's time-limited credentials, permissions,
//! channels, data both ways between two clients (UDP and TCP) and to a
//! plain peer, refresh and release, with coturn's own CLI counting sessions.

use std::time::Duration;

use relay::client::{Client, Error};
use relay::turn::{coturn_password, coturn_username};

use crate::coturn::{Auth, Coturn};
use crate::harness::{Peer, loopback, unix_now};

async fn udp_client(coturn: &Coturn) -> Client {
    Client::udp_from(loopback(), coturn.addr)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn static_users_relay_both_ways_over_udp_and_tcp() {
    let coturn = Coturn::start(Auth::Users(&[("alice", "alice-pw"), ("bob", "bob-pw")])).await;
    let mut alice = udp_client(&coturn).await;
    assert_eq!(alice.binding().await.unwrap(), alice.local_addr().unwrap());
    let a = alice.allocate("alice", "alice-pw", None).await.unwrap();
    assert_eq!(a.mapped, alice.local_addr().unwrap());
    assert!(a.relayed.ip().is_loopback(), "{a:?}");
    assert_eq!(a.lifetime, Duration::from_secs(600));

    let mut bob = Client::tcp(coturn.addr)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    assert_eq!(bob.binding().await.unwrap(), bob.local_addr().unwrap());
    let b = bob.allocate("bob", "bob-pw", Some(900)).await.unwrap();
    assert_eq!(b.lifetime, Duration::from_secs(900));
    assert_eq!(coturn.sessions().await, 2);

    // Send and Data indications, after permissions both ways.
    alice.create_permission(&[b.relayed]).await.unwrap();
    bob.create_permission(&[a.relayed]).await.unwrap();
    alice.send(b.relayed, b"hello bob").await.unwrap();
    let got = bob.recv().await.unwrap();
    assert_eq!(
        (got.peer, got.data.as_slice(), got.channel),
        (a.relayed, &b"hello bob"[..], None)
    );
    bob.send(a.relayed, b"hello alice").await.unwrap();
    let got = alice.recv().await.unwrap();
    assert_eq!((got.peer, got.data.as_slice()), (b.relayed, &b"hello alice"[..]));

    // ChannelData both ways; odd lengths need padding on bob's TCP stream.
    alice.channel_bind(0x4000, b.relayed).await.unwrap();
    bob.channel_bind(0x4abc, a.relayed).await.unwrap();
    for round in 0..5u8 {
        let data = vec![round; 97 + usize::from(round)];
        alice.send(b.relayed, &data).await.unwrap();
        let got = bob.recv().await.unwrap();
        assert_eq!(
            (got.peer, got.channel, &got.data),
            (a.relayed, Some(0x4abc), &data)
        );
        bob.send(a.relayed, &data).await.unwrap();
        let got = alice.recv().await.unwrap();
        assert_eq!(
            (got.peer, got.channel, &got.data),
            (b.relayed, Some(0x4000), &data)
        );
    }

    // A plain UDP peer on another loopback address needs its own permission.
    let peer = Peer::on([127, 0, 0, 3]).await;
    alice.create_permission(&[peer.addr]).await.unwrap();
    peer.socket.send_to(b"media", a.relayed).await.unwrap();
    let got = alice.recv().await.unwrap();
    assert_eq!((got.peer, got.data.as_slice()), (peer.addr, &b"media"[..]));
    alice.send(peer.addr, b"answer").await.unwrap();
    assert_eq!(peer.recv().await, (b"answer".to_vec(), a.relayed));

    // coturn grants at least its default 600 s, as restund does.
    assert_eq!(alice.refresh(300).await.unwrap(), Duration::from_secs(600));
    assert_eq!(alice.refresh(1200).await.unwrap(), Duration::from_secs(1200));
    let ps = coturn.cli("ps").await;
    for want in ["user <alice>", "user <bob>", "client protocol TCP", "127.0.0.3"] {
        assert!(ps.contains(want), "no {want:?} in coturn's `ps`:\n{ps}");
    }

    let mut mallory = udp_client(&coturn).await;
    let err = mallory.allocate("alice", "guess", None).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { code: 401, .. }), "{err}");

    alice.release().await.unwrap();
    coturn.wait_sessions(1).await;
    bob.release().await.unwrap();
    coturn.wait_sessions(0).await;
    let err = alice.refresh(60).await.unwrap_err();
    assert!(matches!(err, Error::NoAllocation { .. }), "{err}");
}

#[tokio::test]
async fn time_limited_credentials_from_either_secret() {
    let coturn = Coturn::start(Auth::Secrets(&["old-secret", "new-secret"])).await;
    let expiry = unix_now() + 3600;
    let peer = Peer::new().await;
    let mut clients = Vec::new();
    for (user, secret, channel) in [
        (Some("carol"), "old-secret", 0x4000),
        (None, "new-secret", 0x4001),
    ] {
        let username = coturn_username(expiry, user);
        let mut c = udp_client(&coturn).await;
        let a = c
            .allocate(&username, &coturn_password(secret, &username), None)
            .await
            .unwrap_or_else(|e| panic!("{username}: {e}\ncoturn's log:\n{}", coturn.log()));
        c.channel_bind(channel, peer.addr).await.unwrap();
        c.send(peer.addr, username.as_bytes()).await.unwrap();
        assert_eq!(peer.recv().await, (username.clone().into_bytes(), a.relayed));
        peer.socket.send_to(b"back", a.relayed).await.unwrap();
        let got = c.recv().await.unwrap();
        assert_eq!((got.channel, got.data.as_slice()), (Some(channel), &b"back"[..]));
        clients.push(c);
    }
    assert_eq!(coturn.sessions().await, 2);

    let expired = coturn_username(unix_now() - 60, Some("carol"));
    let unknown_secret = coturn_username(expiry, Some("carol"));
    for (username, password) in [
        (expired.clone(), coturn_password("new-secret", &expired)),
        (
            unknown_secret.clone(),
            coturn_password("other-secret", &unknown_secret),
        ),
    ] {
        let mut c = udp_client(&coturn).await;
        let err = c.allocate(&username, &password, None).await.unwrap_err();
        assert!(
            matches!(err, Error::Rejected { code: 401, .. }),
            "{username}: {err}"
        );
    }

    for c in &mut clients {
        c.release().await.unwrap();
    }
    coturn.wait_sessions(0).await;
}

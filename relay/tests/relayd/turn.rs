//! Binding, allocation with each kind of credential over UDP and TCP,
//! expiry, and packets that must be dropped without harm.

use std::time::Duration;

use relay::client::{Client, Error};
use relay::stun::{Attribute, Builder, Class, Key, Message, Method, TRANSPORT_UDP, TransactionId};
use relay::turn::{coturn_password, coturn_username, wire_password, wire_username};
use tokio::net::UdpSocket;

use crate::harness::{Relayd, loopback, unix_now};

#[tokio::test]
async fn binding_over_udp_and_tcp() {
    let relayd = Relayd::start(|_| {}).await;
    let mut udp = relayd.client().await;
    assert_eq!(udp.binding().await.unwrap(), udp.local_addr().unwrap());
    let mut tcp = Client::tcp(relayd.tcp).await.unwrap();
    assert_eq!(tcp.binding().await.unwrap(), tcp.local_addr().unwrap());
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn allocate_with_each_kind_of_credential() {
    let relayd = Relayd::start(|_| {}).await;
    let expiry = unix_now() + 3600;
    let coturn = coturn_username(expiry, Some("carol"));
    let coturn_bare = coturn_username(expiry, None);
    let wire = wire_username(expiry, 1, "abcdefghijklmnop");
    let logins = [
        ("alice".to_owned(), "alice-pw".to_owned()),
        (coturn.clone(), coturn_password("old-secret", &coturn)),
        (coturn_bare.clone(), coturn_password("new-secret", &coturn_bare)),
        (wire.clone(), wire_password("new-secret", &wire)),
    ];
    let mut clients = Vec::new();
    for (username, password) in &logins {
        let mut c = relayd.client().await;
        let a = c.allocate(username, password, None).await.unwrap();
        assert_eq!(a.mapped, c.local_addr().unwrap(), "{username}");
        assert_eq!(a.lifetime, Duration::from_secs(600));
        assert!(a.relayed.ip().is_loopback());
        clients.push(c);
    }
    // Over TCP too.
    let mut tcp = Client::tcp(relayd.tcp).await.unwrap();
    let a = tcp.allocate("bob", "bob-pw", Some(120)).await.unwrap();
    assert_eq!(a.lifetime, Duration::from_secs(120));

    // Wrong password, expired and wrongly keyed time-limited credentials.
    let expired = wire_username(unix_now() - 10, 0, "x");
    let wrong_key = wire_username(expiry, 0, "x");
    for (username, password) in [
        ("alice".to_owned(), "guess".to_owned()),
        (expired.clone(), wire_password("old-secret", &expired)),
        (wrong_key.clone(), wire_password("new-secret", &wrong_key)),
    ] {
        let mut c = relayd.client().await;
        let err = c.allocate(&username, &password, None).await.unwrap_err();
        assert!(
            matches!(err, Error::Rejected { code: 401, .. }),
            "{username}: {err}"
        );
    }
    let stats = relayd.status("turnstats").await;
    assert!(stats.starts_with("allocs_cur 5\nallocs_tot 5\n"), "{stats}");
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn short_lifetimes_expire_and_refresh_keeps_alive() {
    // 2 s lifetimes refreshed every 0.5 s: a slow machine has 1.5 s to spare.
    let relayd = Relayd::start(|c| {
        c.turn.default_lifetime = Duration::from_secs(2);
        c.turn.max_lifetime = Duration::from_secs(2);
    })
    .await;
    let mut kept = relayd.client().await;
    let mut lapsed = relayd.client().await;
    assert_eq!(
        kept.allocate("alice", "alice-pw", None).await.unwrap().lifetime,
        Duration::from_secs(2)
    );
    lapsed.allocate("bob", "bob-pw", Some(3600)).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(kept.refresh(600).await.unwrap(), Duration::from_secs(2));
    }
    let stats = relayd.status("turnstats").await;
    assert!(stats.starts_with("allocs_cur 1\nallocs_tot 2\n"), "{stats}");
    let err = lapsed.refresh(60).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { code: 437, .. }), "{err}");
    kept.release().await.unwrap();
    assert!(relayd.status("turnstats").await.starts_with("allocs_cur 0\n"));
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn junk_is_dropped_and_counted_and_the_server_keeps_serving() {
    let relayd = Relayd::start(|c| c.turn.max_packet = 1200).await;
    let junk = UdpSocket::bind(loopback()).await.unwrap();
    let mut truncated_stun = vec![0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42];
    truncated_stun.extend([7; 12]);
    for datagram in [
        &b"\x16\xfe\xfd junk"[..],
        &[],
        &truncated_stun,
        &[0x40, 0, 0, 200, 1],
        &[0; 1500],
    ] {
        junk.send_to(datagram, relayd.udp).await.unwrap();
    }
    // Over TCP, a stream that is neither STUN nor ChannelData is hung up on.
    let mut tcp = tokio::net::TcpStream::connect(relayd.tcp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"\x80 not a frame")
        .await
        .unwrap();
    let mut buf = [0; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    );
    assert_eq!(read.await.expect("closed within 2 s").unwrap_or(0), 0);

    let mut c = relayd.client().await;
    c.binding().await.unwrap();
    let status = relayd.status("status").await;
    assert!(status.contains("dropped: 5 malformed, 1 oversized"), "{status}");
    relayd.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_connections_and_returns() {
    let relayd = Relayd::start(|_| {}).await;
    let mut tcp = Client::tcp(relayd.tcp).await.unwrap();
    tcp.allocate("alice", "alice-pw", None).await.unwrap();
    let tcp_addr = relayd.tcp;
    relayd.stop().await.unwrap();
    let err = tcp.binding().await.unwrap_err();
    assert!(matches!(err, Error::Closed { .. } | Error::Io { .. }), "{err}");
    // The listener is gone with it.
    assert!(tokio::net::TcpStream::connect(tcp_addr).await.is_err());
}

/// One signed Allocate over a raw socket (relay::client never sends
/// EVEN-PORT): the response after the 401 challenge.
async fn allocate_raw(relayd: &Relayd, socket: &UdpSocket, extra: &[Attribute]) -> Message {
    let mut nonce = None;
    for tid in 1..=2u8 {
        let mut b = Builder::new(Method::ALLOCATE, Class::Request, TransactionId([tid; 12]));
        b.add(&Attribute::RequestedTransport(TRANSPORT_UDP)).unwrap();
        for a in extra {
            b.add(a).unwrap();
        }
        if let Some(nonce) = nonce.take() {
            b.add(&Attribute::Username("alice".into())).unwrap();
            b.add(&Attribute::Realm(crate::harness::REALM.into())).unwrap();
            b.add(&Attribute::Nonce(nonce)).unwrap();
            b.message_integrity(&Key::long_term("alice", crate::harness::REALM, "alice-pw"))
                .unwrap();
        }
        socket
            .send_to(&b.fingerprint().unwrap(), relayd.udp)
            .await
            .unwrap();
        let mut buf = [0; 1500];
        let recv = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf));
        let n = recv.await.expect("an answer within 2 s").unwrap();
        let reply = relay::stun::decode(&buf[..n]).unwrap();
        match reply.nonce() {
            Some(n) if tid == 1 => nonce = Some(n.to_owned()),
            _ => return reply,
        }
    }
    unreachable!("the signed request was answered")
}

/// coturn's turnutils_uclient sends EVEN-PORT on about half of its
/// Allocates; relayd answered 420 until it learnt the attribute. With the R
/// bit (an RTP and RTCP pair) the port above is bound and kept for the
/// Allocate that brings the token.
#[tokio::test]
async fn even_port_is_granted_and_the_port_above_is_reserved_for_its_token() {
    let relayd = Relayd::start(|_| {}).await;
    for _ in 0..8 {
        let socket = UdpSocket::bind(loopback()).await.unwrap();
        let reply = allocate_raw(&relayd, &socket, &[Attribute::EvenPort { reserve: false }]).await;
        assert_eq!(reply.class, Class::Success, "{reply:?}");
        let relayed = reply.xor_relayed_address();
        assert_eq!(relayed.map(|r| r.port() % 2), Some(0), "{reply:?}");
    }
    let rtp = UdpSocket::bind(loopback()).await.unwrap();
    let reply = allocate_raw(&relayd, &rtp, &[Attribute::EvenPort { reserve: true }]).await;
    assert_eq!(reply.class, Class::Success, "{reply:?}");
    let even = reply.xor_relayed_address().unwrap();
    assert_eq!(even.port() % 2, 0, "{reply:?}");
    let Some(&Attribute::ReservationToken(token)) = reply.get(relay::stun::kind::RESERVATION_TOKEN) else {
        panic!("no RESERVATION-TOKEN in {reply:?}");
    };
    // The port above is bound already: nobody else gets it meanwhile.
    let above = std::net::SocketAddr::new(even.ip(), even.port() + 1);
    assert!(std::net::UdpSocket::bind(above).is_err(), "{above} is free");
    let rtcp = UdpSocket::bind(loopback()).await.unwrap();
    let claim = [Attribute::ReservationToken(token)];
    let reply = allocate_raw(&relayd, &rtcp, &claim).await;
    assert_eq!(reply.class, Class::Success, "{reply:?}");
    assert_eq!(reply.xor_relayed_address(), Some(above), "{reply:?}");
    // Claimed once; a token never given cannot be met.
    let other = UdpSocket::bind(loopback()).await.unwrap();
    let reply = allocate_raw(&relayd, &other, &claim).await;
    assert_eq!(reply.error_code().map(|e| e.code), Some(508), "{reply:?}");
    let reply = allocate_raw(&relayd, &other, &[Attribute::ReservationToken([7; 8])]).await;
    assert_eq!(reply.error_code().map(|e| e.code), Some(508), "{reply:?}");
    relayd.stop().await.unwrap();
}

//! Data between clients and peers: permissions, channels, TCP framing, and
//! what is dropped and counted.

use super::*;

#[test]
fn permissions_gate_data_both_ways() {
    let mut cfg = config();
    cfg.allow_loopback_peers = false;
    let mut h = Harness::new(cfg);
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let relayed = alice.relayed(&mut h);

    // Nothing passes before a permission.
    assert!(
        h.client(alice.tuple, &send_indication(peer(1), b"early"))
            .is_empty()
    );
    assert!(h.peer_sends(relayed, peer(1), b"early").is_empty());
    assert_eq!(h.server.counters().forbidden, 2);

    let perm = [Attribute::XorPeerAddress(peer(1))];
    assert_eq!(
        alice.call(&mut h, Method::CREATE_PERMISSION, &perm).class,
        Class::Success
    );
    h.server
        .handle_client(h.now, alice.tuple, &send_indication(peer(1), b"hello"));
    assert_eq!(
        h.transmits(),
        vec![Transmit::ToPeer {
            relayed,
            peer: peer(1),
            bytes: b"hello".to_vec()
        }]
    );
    // Any port of a permitted address may answer; a Data indication carries it.
    let from = SocketAddr::new(peer(1).ip(), 1234);
    let out = h.peer_sends(relayed, from, b"hi back");
    let [Transmit::ToClient { tuple, bytes }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*tuple, alice.tuple);
    let data = crate::stun::decode(bytes).unwrap();
    assert_eq!((data.method, data.class), (Method::DATA, Class::Indication));
    assert_eq!(data.xor_peer_addresses(), vec![from]);
    assert_eq!(
        data.get(crate::stun::kind::DATA),
        Some(&Attribute::Data(b"hi back".to_vec()))
    );
    let c = h.server.counters();
    assert_eq!((c.bytes_tx, c.bytes_rx, c.bytes_tot()), (5, 7, 12));

    // Permissions last 300 s unless refreshed; the allocation outlives them.
    h.advance(299);
    assert_eq!(h.peer_sends(relayed, peer(1), b"x").len(), 1);
    h.advance(1);
    assert!(h.peer_sends(relayed, peer(1), b"x").is_empty());
    assert_eq!(alice.call(&mut h, Method::REFRESH, &[]).class, Class::Success);
}

#[test]
fn forbidden_and_malformed_permissions() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    alice.relayed(&mut h);
    let call = |a: &mut Client, h: &mut Harness, peers: &[SocketAddr]| {
        let attrs: Vec<_> = peers.iter().map(|p| Attribute::XorPeerAddress(*p)).collect();
        code(&a.call(h, Method::CREATE_PERMISSION, &attrs))
    };
    assert_eq!(call(&mut alice, &mut h, &[]), Some(400));
    assert_eq!(
        call(&mut alice, &mut h, &["127.0.0.1:5000".parse().unwrap()]),
        Some(403)
    );
    assert_eq!(
        call(&mut alice, &mut h, &["0.0.0.0:5000".parse().unwrap()]),
        Some(403)
    );
    assert_eq!(
        call(&mut alice, &mut h, &["224.0.0.1:5000".parse().unwrap()]),
        Some(403)
    );
    assert_eq!(
        call(&mut alice, &mut h, &["[2001:db8::1]:5000".parse().unwrap()]),
        Some(443)
    );
    // One forbidden peer refuses the whole request.
    assert_eq!(
        call(&mut alice, &mut h, &[peer(1), "127.0.0.1:5000".parse().unwrap()]),
        Some(403)
    );
    assert_eq!(call(&mut alice, &mut h, &[peer(1), peer(2)]), None);
}

#[test]
fn channels_carry_data_both_ways_and_expire() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let relayed = alice.relayed(&mut h);
    let bind = |ch: u16, p: SocketAddr| [Attribute::ChannelNumber(ch), Attribute::XorPeerAddress(p)];
    assert_eq!(
        alice
            .call(&mut h, Method::CHANNEL_BIND, &bind(0x4000, peer(1)))
            .class,
        Class::Success
    );
    assert_eq!(h.server.counters().chan_cur, 1);

    let cd = ChannelData {
        channel: 0x4000,
        data: b"media",
    };
    h.server
        .handle_client(h.now, alice.tuple, &cd.encode(false).unwrap());
    assert_eq!(
        h.transmits(),
        vec![Transmit::ToPeer {
            relayed,
            peer: peer(1),
            bytes: b"media".to_vec()
        }]
    );
    // The bound peer answers over the channel; another port of the same host
    // only has the permission and gets a Data indication.
    let out = h.peer_sends(relayed, peer(1), b"reply");
    assert_eq!(
        out,
        vec![Transmit::ToClient {
            tuple: alice.tuple,
            bytes: b"\x40\x00\x00\x05reply".to_vec()
        }]
    );
    let other_port = SocketAddr::new(peer(1).ip(), 1);
    let out = h.peer_sends(relayed, other_port, b"x");
    let [Transmit::ToClient { bytes, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(crate::stun::decode(bytes).unwrap().method, Method::DATA);

    // Conflicts and bad numbers.
    assert_eq!(
        code(&alice.call(&mut h, Method::CHANNEL_BIND, &bind(0x4000, peer(2)))),
        Some(400)
    );
    assert_eq!(
        code(&alice.call(&mut h, Method::CHANNEL_BIND, &bind(0x4001, peer(1)))),
        Some(400)
    );
    assert_eq!(
        code(&alice.call(&mut h, Method::CHANNEL_BIND, &bind(0x3fff, peer(2)))),
        Some(400)
    );
    let only_number = [Attribute::ChannelNumber(0x4002)];
    assert_eq!(
        code(&alice.call(&mut h, Method::CHANNEL_BIND, &only_number)),
        Some(400)
    );
    // An unbound channel is dropped.
    let stray = ChannelData {
        channel: 0x4fff,
        data: b"?",
    };
    h.server
        .handle_client(h.now, alice.tuple, &stray.encode(false).unwrap());
    assert!(h.transmits().is_empty());
    assert_eq!(h.server.counters().unroutable, 1);

    // Channels last 600 s; the permission they installed 300 s.
    h.advance(300);
    assert!(h.peer_sends(relayed, peer(1), b"x").is_empty());
    assert_eq!(alice.call(&mut h, Method::REFRESH, &[]).class, Class::Success);
    h.advance(300);
    assert_eq!(h.server.counters().chan_cur, 0);
    assert_eq!(h.server.counters().allocs_cur, 1);
}

#[test]
fn tcp_channel_data_is_padded_and_the_allocation_dies_with_the_connection() {
    let mut h = Harness::new(config());
    let tuple = FiveTuple {
        transport: Transport::Tcp,
        ..udp(4000)
    };
    let mut alice = Client::new(tuple, "alice", "alice-pw");
    let relayed = alice.relayed(&mut h);
    let bind = [
        Attribute::ChannelNumber(0x4001),
        Attribute::XorPeerAddress(peer(1)),
    ];
    assert_eq!(
        alice.call(&mut h, Method::CHANNEL_BIND, &bind).class,
        Class::Success
    );
    let out = h.peer_sends(relayed, peer(1), b"abcde");
    assert_eq!(
        out,
        vec![Transmit::ToClient {
            tuple,
            bytes: b"\x40\x01\x00\x05abcde\0\0\0".to_vec()
        }]
    );
    h.server.connection_closed(tuple);
    h.events();
    assert_eq!(h.released, vec![relayed]);
    assert_eq!(h.server.counters().allocs_cur, 0);
}

#[test]
fn malformed_truncated_and_oversized_packets_are_counted() {
    let mut cfg = config();
    cfg.max_packet = 1000;
    let mut h = Harness::new(cfg);
    let tuple = udp(4000);
    let good = Builder::new(Method::BINDING, Class::Request, TransactionId([1; 12])).finish();
    for junk in [
        &b""[..],
        b"\x16\xfe\xfd",
        &good[..19],
        b"\x40\x00\x00\x09abc",
        b"\xff\xff\xff\xff",
    ] {
        assert!(h.client(tuple, junk).is_empty());
    }
    let mut bad_len = good.clone();
    bad_len[3] = 4;
    assert!(h.client(tuple, &bad_len).is_empty());
    assert!(h.client(tuple, &vec![0; 1001]).is_empty());
    h.server
        .handle_peer(h.now, "192.0.2.1:1".parse().unwrap(), peer(1), &[0; 1001]);
    h.server
        .handle_peer(h.now, "192.0.2.1:1".parse().unwrap(), peer(1), b"no allocation");
    // A response sent to the server is ignored.
    let response = Builder::new(Method::BINDING, Class::Success, TransactionId([1; 12])).finish();
    assert!(h.client(tuple, &response).is_empty());
    let c = h.server.counters();
    assert_eq!((c.malformed, c.oversized, c.unroutable), (6, 2, 2));
    assert_eq!(h.one(tuple, &good).class, Class::Success);
}

#[test]
fn random_and_mutated_packets_never_panic() {
    // xorshift64: reproducible without a dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let relayed = alice.relayed(&mut h);
    let seeds = [
        alice.request(Method::REFRESH, &[Attribute::Lifetime(600)]),
        alice.request(
            Method::CHANNEL_BIND,
            &[
                Attribute::ChannelNumber(0x4000),
                Attribute::XorPeerAddress(peer(1)),
            ],
        ),
        alice.request(Method::CREATE_PERMISSION, &[Attribute::XorPeerAddress(peer(2))]),
        send_indication(peer(1), b"data"),
        ChannelData {
            channel: 0x4000,
            data: b"data",
        }
        .encode(false)
        .unwrap(),
    ];
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        match next() % 3 {
            0 => {
                let i = (next() as usize) % bytes.len();
                bytes[i] ^= 1 << (next() % 8);
            }
            1 => bytes.truncate((next() as usize) % (bytes.len() + 1)),
            _ => bytes = (0..next() % 64).map(|_| next() as u8).collect(),
        }
        let tuple = udp(4000 + (round % 3) as u16);
        h.server.handle_client(h.now, tuple, &bytes);
        h.server.handle_peer(h.now, relayed, peer(1), &bytes);
        h.events();
        h.transmits();
        if round % 1000 == 0 {
            h.advance(7);
        }
    }
    let c = h.server.counters();
    assert!(c.malformed > 0 && c.allocs_tot >= 1, "{c:?}");
}

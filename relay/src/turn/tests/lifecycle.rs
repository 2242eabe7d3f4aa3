//! Allocations from Allocate to expiry or release: lifetimes, retransmissions,
//! mismatches, refusals, quotas and drain.

use super::*;

#[test]
fn binding_answers_the_reflexive_address() {
    let mut h = Harness::new(config());
    let tuple = udp(4000);
    let req = Builder::new(Method::BINDING, Class::Request, TransactionId([1; 12])).finish();
    let reply = h.one(tuple, &req);
    assert_eq!((reply.method, reply.class), (Method::BINDING, Class::Success));
    assert_eq!(reply.xor_mapped_address(), Some(tuple.client));
    assert!(!reply.has_fingerprint());
}

#[test]
fn allocations_expire_unless_refreshed_and_refresh_zero_deletes() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let relayed = alice.relayed(&mut h);
    assert_eq!(h.server.poll_timeout(), Some(h.now + Duration::from_secs(600)));
    h.advance(599);
    assert_eq!(h.server.counters().allocs_cur, 1);
    let reply = alice.call(&mut h, Method::REFRESH, &[Attribute::Lifetime(120)]);
    assert_eq!(reply.lifetime(), Some(120));
    h.advance(119);
    assert_eq!(h.server.counters().allocs_cur, 1);
    h.advance(1);
    assert_eq!(h.server.counters().allocs_cur, 0);
    assert_eq!(h.released, vec![relayed]);
    assert_eq!(code(&alice.call(&mut h, Method::REFRESH, &[])), Some(437));

    // A new allocation asks for more than the maximum, then releases it.
    let reply = alice.call(
        &mut h,
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(17), Attribute::Lifetime(100_000)],
    );
    assert_eq!(reply.lifetime(), Some(3600));
    let reply = alice.call(&mut h, Method::REFRESH, &[Attribute::Lifetime(0)]);
    assert_eq!((reply.class, reply.lifetime()), (Class::Success, Some(0)));
    assert_eq!(h.released.len(), 2);
    let c = h.server.counters();
    assert_eq!((c.allocs_cur, c.allocs_tot), (0, 2));
    assert_eq!(h.server.poll_timeout().map(|t| t > h.now), Some(true));
    h.advance(4000);
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn allocate_retransmission_mismatch_and_wrong_credentials() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let first = alice.allocate(&mut h);
    // The same transaction again (a lost response): the same answer.
    let again = alice.request_with(
        Method::ALLOCATE,
        first.transaction_id,
        &[Attribute::RequestedTransport(17)],
    );
    let reply = h.one(alice.tuple, &again);
    assert_eq!(
        (reply.class, relayed_of(&reply)),
        (Class::Success, relayed_of(&first))
    );
    // A new Allocate on the same 5-tuple: 437.
    assert_eq!(code(&alice.allocate(&mut h)), Some(437));
    // Someone else's credentials on alice's 5-tuple: 441.
    let mut bob = Client::new(alice.tuple, "bob", "bob-pw");
    bob.nonce = alice.nonce.clone();
    assert_eq!(code(&bob.call(&mut h, Method::REFRESH, &[])), Some(441));
    // Requests other than Allocate without an allocation: 437.
    let mut carol = Client::new(udp(4001), "bob", "bob-pw");
    let peers = [Attribute::XorPeerAddress(peer(1))];
    assert_eq!(
        code(&carol.call(&mut h, Method::CREATE_PERMISSION, &peers)),
        Some(437)
    );
    assert_eq!(h.server.counters().allocs_tot, 1);
}

#[test]
fn bad_allocate_requests() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    assert_eq!(code(&alice.call(&mut h, Method::ALLOCATE, &[])), Some(400));
    let tcp = [Attribute::RequestedTransport(6)];
    assert_eq!(code(&alice.call(&mut h, Method::ALLOCATE, &tcp)), Some(442));
    let unknown = [
        Attribute::RequestedTransport(17),
        Attribute::Other {
            kind: 0x7777,
            value: vec![],
        },
        Attribute::EvenPort { reserve: false },
    ];
    let reply = alice.call(&mut h, Method::ALLOCATE, &unknown);
    assert_eq!(code(&reply), Some(420));
    assert_eq!(
        reply.get(crate::stun::kind::UNKNOWN_ATTRIBUTES),
        Some(&Attribute::UnknownAttributes(vec![0x7777]))
    );
    // A token no Allocate was answered with cannot be met (508); EVEN-PORT
    // and a token at once, or a token with a family, is malformed (400).
    let udp17 = Attribute::RequestedTransport(17);
    let token = Attribute::ReservationToken([1; 8]);
    let reserve = Attribute::EvenPort { reserve: true };
    let v4 = Attribute::Other {
        kind: REQUESTED_ADDRESS_FAMILY,
        value: vec![1, 0, 0, 0],
    };
    for (attrs, want) in [
        (vec![udp17.clone(), token.clone()], 508),
        (vec![udp17.clone(), reserve, token.clone()], 400),
        (vec![udp17.clone(), token, v4], 400),
    ] {
        assert_eq!(
            code(&alice.call(&mut h, Method::ALLOCATE, &attrs)),
            Some(want),
            "{attrs:?}"
        );
    }
    assert!(h.even_ports.is_empty());
    let family = |f: u8| Attribute::Other {
        kind: REQUESTED_ADDRESS_FAMILY,
        value: vec![f, 0, 0, 0],
    };
    let bad_family = [Attribute::RequestedTransport(17), family(3)];
    assert_eq!(
        code(&alice.call(&mut h, Method::ALLOCATE, &bad_family)),
        Some(440)
    );
    // The I/O layer has no IPv6 relay address, or no free port.
    h.bind_result = Some(BindFailure::FamilyUnsupported);
    let v6 = [Attribute::RequestedTransport(17), family(2)];
    assert_eq!(code(&alice.call(&mut h, Method::ALLOCATE, &v6)), Some(440));
    h.bind_result = Some(BindFailure::NoCapacity);
    assert_eq!(code(&alice.allocate(&mut h)), Some(508));
    h.bind_result = None;
    let even = [
        Attribute::RequestedTransport(17),
        Attribute::EvenPort { reserve: false },
    ];
    assert_eq!(alice.call(&mut h, Method::ALLOCATE, &even).class, Class::Success);
    assert_eq!(h.even_ports, [false, false, true]);
    // An unknown method: 400.
    let other = Method::new(0x0ff).unwrap();
    let req = Builder::new(other, Class::Request, TransactionId([7; 12])).finish();
    assert_eq!(code(&h.one(udp(4001), &req)), Some(400));
}

/// An RTP and RTCP pair (EVEN-PORT with the R bit, then RESERVATION-TOKEN):
/// an even port, the next one kept for 30 seconds under the token the first
/// Allocate is answered with, claimed once by a second Allocate.
#[test]
fn an_even_port_s_neighbour_is_reserved_and_claimed_once_by_its_token() {
    let mut h = Harness::new(config());
    let udp17 = Attribute::RequestedTransport(17);
    let reserve = [udp17.clone(), Attribute::EvenPort { reserve: true }];
    let mut rtp = Client::new(udp(4000), "alice", "alice-pw");
    let reply = rtp.call(&mut h, Method::ALLOCATE, &reserve);
    assert_eq!(reply.class, Class::Success, "{reply:?}");
    let even = relayed_of(&reply);
    assert_eq!(even.port() % 2, 0);
    let Some(&Attribute::ReservationToken(token)) = reply.get(crate::stun::kind::RESERVATION_TOKEN) else {
        panic!("no RESERVATION-TOKEN in {reply:?}");
    };
    let claim = [udp17.clone(), Attribute::ReservationToken(token)];
    let mut rtcp = Client::new(udp(4001), "alice", "alice-pw");
    let reply = rtcp.call(&mut h, Method::ALLOCATE, &claim);
    assert_eq!(reply.class, Class::Success, "{reply:?}");
    assert_eq!(relayed_of(&reply).port(), even.port() + 1);
    assert!(reply.get(crate::stun::kind::RESERVATION_TOKEN).is_none());
    // Claimed once: another Allocate with it cannot be met.
    let mut late = Client::new(udp(4002), "alice", "alice-pw");
    assert_eq!(code(&late.call(&mut h, Method::ALLOCATE, &claim)), Some(508));

    // A reservation nobody claims lapses after 30 seconds; its port is let go.
    let mut lone = Client::new(udp(4003), "alice", "alice-pw");
    let reply = lone.call(&mut h, Method::ALLOCATE, &reserve);
    let Some(&Attribute::ReservationToken(lapsing)) = reply.get(crate::stun::kind::RESERVATION_TOKEN) else {
        panic!("no RESERVATION-TOKEN in {reply:?}");
    };
    assert_ne!(lapsing, token, "each reservation has a token of its own");
    h.advance(29);
    assert!(h.unreserved.is_empty());
    h.advance(2);
    assert_eq!(h.unreserved, [lapsing]);
    let mut after = Client::new(udp(4004), "alice", "alice-pw");
    let claim = [udp17, Attribute::ReservationToken(lapsing)];
    assert_eq!(code(&after.call(&mut h, Method::ALLOCATE, &claim)), Some(508));
    assert_eq!(h.server.counters().allocs_cur, 3);
}

#[test]
fn quotas_per_user_and_in_total() {
    let mut cfg = config();
    cfg.user_quota = Some(1);
    cfg.total_quota = Some(2);
    let mut h = Harness::new(cfg);
    let mut a1 = Client::new(udp(4000), "alice", "alice-pw");
    let mut a2 = Client::new(udp(4001), "alice", "alice-pw");
    let mut b1 = Client::new(udp(4002), "bob", "bob-pw");
    let username = coturn_username(h.unix() + 60, None);
    let mut c1 = Client::new(udp(4003), &username, &coturn_password("old-secret", &username));
    assert_eq!(a1.allocate(&mut h).class, Class::Success);
    let over = a2.allocate(&mut h);
    assert_eq!(
        (code(&over), over.error_code().map(|e| e.reason.as_str())),
        (Some(486), Some("Allocation Quota Reached"))
    );
    assert_eq!(b1.allocate(&mut h).class, Class::Success);
    assert_eq!(code(&c1.allocate(&mut h)), Some(486));
    // Releasing one frees both quotas.
    a1.call(&mut h, Method::REFRESH, &[Attribute::Lifetime(0)]);
    assert_eq!(a2.allocate(&mut h).class, Class::Success);
}

#[test]
fn drain_refuses_new_allocations_while_old_ones_refresh_and_relay() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let relayed = alice.relayed(&mut h);
    let perm = [Attribute::XorPeerAddress(peer(1))];
    assert_eq!(
        alice.call(&mut h, Method::CREATE_PERMISSION, &perm).class,
        Class::Success
    );

    h.server.set_draining(true);
    assert!(h.server.is_draining());
    let mut bob = Client::new(udp(4001), "bob", "bob-pw");
    let refused = bob.allocate(&mut h);
    assert_eq!(code(&refused), Some(486));
    assert!(refused.has_integrity());

    // The old allocation refreshes, renews permissions and relays both ways.
    h.advance(500);
    assert_eq!(alice.call(&mut h, Method::REFRESH, &[]).lifetime(), Some(600));
    assert_eq!(
        alice.call(&mut h, Method::CREATE_PERMISSION, &perm).class,
        Class::Success
    );
    h.server
        .handle_client(h.now, alice.tuple, &send_indication(peer(1), b"still here"));
    assert_eq!(h.transmits().len(), 1);
    assert_eq!(h.peer_sends(relayed, peer(1), b"me too").len(), 1);

    // With an alternate configured, 300 names it.
    let alt: SocketAddr = "192.0.2.99:3478".parse().unwrap();
    h.server.config.alternate_server = Some(alt);
    let redirected = bob.allocate(&mut h);
    assert_eq!(code(&redirected), Some(300));
    assert_eq!(
        redirected.get(crate::stun::kind::ALTERNATE_SERVER),
        Some(&Attribute::AlternateServer(alt))
    );

    h.server.set_draining(false);
    assert_eq!(bob.allocate(&mut h).class, Class::Success);
    assert_eq!(h.server.counters().allocs_cur, 2);
}

#[test]
fn allocations_are_listed_for_the_status_port() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let relayed = alice.relayed(&mut h);
    h.advance(10);
    let list = h.server.allocations(h.now);
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].relayed, list[0].username.as_str(), list[0].expires_in),
        (relayed, "alice", Duration::from_secs(590))
    );
}

#[test]
fn released_allocations_leave_no_wake_ups_behind() {
    // A relay making and releasing allocations all day holds wake-ups for
    // the allocations it has, not for every one made in the last lifetime.
    let mut h = Harness::new(config());
    let mut held = Client::new(udp(3999), "alice", "alice-pw");
    held.relayed(&mut h);
    for port in 0..2000 {
        let mut c = Client::new(udp(4000 + port), "alice", "alice-pw");
        c.relayed(&mut h);
        c.call(&mut h, Method::REFRESH, &[Attribute::Lifetime(0)]);
        // At most twice the live ones (2 while the new one is held) plus 64.
        assert!(
            h.server.queued_timers() <= 2 * 2 + 64,
            "{}",
            h.server.queued_timers()
        );
    }
    assert_eq!(h.server.counters().allocs_cur, 1);
    // The one still held still expires on time.
    h.advance(600);
    assert_eq!(h.server.counters().allocs_cur, 0);
}

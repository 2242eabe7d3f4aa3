//! Long-term authentication: the 401 challenge, each kind of credential,
//! wrong ones, and nonces that go stale.

use super::*;

#[test]
fn unauthenticated_allocate_gets_401_then_succeeds() {
    let mut h = Harness::new(config());
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    let first = h.one(
        alice.tuple,
        &alice.request(Method::ALLOCATE, &[Attribute::RequestedTransport(17)]),
    );
    assert_eq!(code(&first), Some(401));
    assert_eq!(first.realm(), Some(REALM));
    assert!(first.nonce().is_some());
    assert!(!first.has_integrity());

    alice.nonce = first.nonce().map(str::to_owned);
    let reply = alice.allocate(&mut h);
    assert_eq!(reply.class, Class::Success);
    assert!(reply.has_integrity() && reply.has_fingerprint());
    assert_eq!(reply.lifetime(), Some(600));
    assert_eq!(reply.xor_mapped_address(), Some(alice.tuple.client));
    assert_eq!(relayed_of(&reply), "192.0.2.1:50001".parse().unwrap());
    let c = h.server.counters();
    assert_eq!((c.allocs_cur, c.allocs_tot), (1, 1));
}

#[test]
fn wrong_password_realm_or_missing_username_is_refused() {
    let mut h = Harness::new(config());
    let mut mallory = Client::new(udp(4000), "alice", "guess");
    assert_eq!(code(&mallory.allocate(&mut h)), Some(401));
    let mut nobody = Client::new(udp(4001), "nobody", "x");
    assert_eq!(code(&nobody.allocate(&mut h)), Some(401));

    // Signed, but with no USERNAME: 400.
    let mut b = Builder::new(Method::ALLOCATE, Class::Request, TransactionId([5; 12]));
    b.add(&Attribute::RequestedTransport(17)).unwrap();
    b.message_integrity(&Key::short_term("x")).unwrap();
    assert_eq!(code(&h.one(udp(4002), &b.finish())), Some(400));

    // Another realm's key: 401 that names ours.
    let nonce = nobody.nonce.clone().unwrap();
    let mut b = Builder::new(Method::ALLOCATE, Class::Request, TransactionId([6; 12]));
    for a in [
        Attribute::RequestedTransport(17),
        Attribute::Username("alice".into()),
        Attribute::Realm("elsewhere".into()),
        Attribute::Nonce(nonce),
    ] {
        b.add(&a).unwrap();
    }
    b.message_integrity(&Key::long_term("alice", "elsewhere", "alice-pw"))
        .unwrap();
    let reply = h.one(udp(4001), &b.finish());
    assert_eq!((code(&reply), reply.realm()), (Some(401), Some(REALM)));
    assert_eq!(h.server.counters().allocs_cur, 0);
}

#[test]
fn coturn_shared_secret_credentials_in_both_forms_and_every_secret() {
    let mut h = Harness::new(config());
    let expiry = h.unix() + 3600;
    let mut port = 5000;
    for (username, secret) in [
        (coturn_username(expiry, Some("carol")), "old-secret"),
        (coturn_username(expiry, None), "new-secret"),
    ] {
        port += 1;
        let mut c = Client::new(udp(port), &username, &coturn_password(secret, &username));
        assert_eq!(c.allocate(&mut h).class, Class::Success, "{username}");
    }
    // Expired, and signed with a secret the server does not have.
    let stale = coturn_username(h.unix() - 1, Some("carol"));
    let mut c = Client::new(udp(5100), &stale, &coturn_password("old-secret", &stale));
    assert_eq!(code(&c.allocate(&mut h)), Some(401));
    let fresh = coturn_username(expiry, Some("carol"));
    let mut c = Client::new(udp(5101), &fresh, &coturn_password("other", &fresh));
    assert_eq!(code(&c.allocate(&mut h)), Some(401));
    assert_eq!(h.server.counters().allocs_cur, 2);
}

#[test]
fn wire_credentials_pick_their_secret_by_key_index() {
    let mut h = Harness::new(config());
    let expiry = h.unix() + 86_400;
    for (port, index, secret) in [(6001, 0, "old-secret"), (6002, 1, "new-secret")] {
        let username = wire_username(expiry, index, "abcdefghijklmnop");
        let mut c = Client::new(udp(port), &username, &wire_password(secret, &username));
        assert_eq!(c.allocate(&mut h).class, Class::Success, "k={index}");
    }
    // Index 1's name with index 0's secret, an unknown index, an expired name.
    let username = wire_username(expiry, 1, "x");
    let mut c = Client::new(udp(6003), &username, &wire_password("old-secret", &username));
    assert_eq!(code(&c.allocate(&mut h)), Some(401));
    let username = wire_username(expiry, 9, "x");
    let mut c = Client::new(udp(6004), &username, &wire_password("old-secret", &username));
    assert_eq!(code(&c.allocate(&mut h)), Some(401));
    let username = wire_username(h.unix() - 1, 0, "x");
    let mut c = Client::new(udp(6005), &username, &wire_password("old-secret", &username));
    assert_eq!(code(&c.allocate(&mut h)), Some(401));
}

#[test]
fn time_limited_credentials_expire_by_the_wall_clock() {
    let mut h = Harness::new(config());
    let username = coturn_username(h.unix() + 100, Some("dave"));
    let mut c = Client::new(udp(7000), &username, &coturn_password("old-secret", &username));
    assert_eq!(c.allocate(&mut h).class, Class::Success);
    h.advance(50);
    assert_eq!(c.call(&mut h, Method::REFRESH, &[]).class, Class::Success);
    // The system clock is stepped forward past the expiry.
    h.server.set_wall_clock(h.now, UNIX0 + 1000);
    assert_eq!(code(&c.call(&mut h, Method::REFRESH, &[])), Some(401));
}

#[test]
fn stale_nonce_gets_438_with_a_new_nonce() {
    let mut cfg = config();
    cfg.nonce_lifetime = Duration::from_secs(60);
    let mut h = Harness::new(cfg);
    let mut alice = Client::new(udp(4000), "alice", "alice-pw");
    alice.relayed(&mut h);
    let old = alice.nonce.clone().unwrap();
    h.advance(61);
    let reply = h.one(alice.tuple, &alice.request(Method::REFRESH, &[]));
    assert_eq!(code(&reply), Some(438));
    assert_eq!(reply.realm(), Some(REALM));
    assert_ne!(reply.nonce(), Some(old.as_str()));
    // A nonce is also bound to the address it was issued to.
    let mut thief = Client::new(udp(4001), "alice", "alice-pw");
    thief.nonce = reply.nonce().map(str::to_owned);
    let stolen = h.one(
        thief.tuple,
        &thief.request(Method::ALLOCATE, &[Attribute::RequestedTransport(17)]),
    );
    assert_eq!(code(&stolen), Some(438));
    // The real client retries with the new nonce and succeeds.
    assert_eq!(alice.call(&mut h, Method::REFRESH, &[]).class, Class::Success);
}

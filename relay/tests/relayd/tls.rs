//! TURN over TLS (`turns:`) and certificate reload: a new certificate is
//! served to new connections while every allocation keeps relaying, and a
//! bad new file is refused with the old certificate still served.

use std::path::PathBuf;

use relay::client::Client;
use relay::pem::Source;
use relay::server::Tls;
use rustls_pki_types::ServerName;

use crate::certs::{CURRENT, Ca, EXPIRED, Leaf, SERVER_NAME, install};
use crate::harness::{Peer, Relayd, fresh_dir};

struct Lab {
    ca: Ca,
    first: Leaf,
    bundle: PathBuf,
    relayd: Relayd,
}

async fn lab(test: &str) -> Lab {
    let ca = Ca::new("Lab CA");
    let first = ca.leaf(CURRENT);
    let bundle = fresh_dir(test).join("relayd.pem");
    install(&bundle, &first.bundle(&ca));
    let tls = Tls::load(Source::Bundle(bundle.clone()), None).unwrap();
    let relayd = Relayd::start(|c| c.tls = Some(tls)).await;
    Lab {
        ca,
        first,
        bundle,
        relayd,
    }
}

impl Lab {
    async fn client(&self) -> Client {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        Client::tls(self.relayd.tls.unwrap(), name, self.ca.client_config())
            .await
            .unwrap()
    }

    /// The fingerprint a new TLS connection is served.
    async fn served(&self) -> String {
        let client = self.client().await;
        relay::pem::fingerprint(client.server_certificate().unwrap())
    }
}

/// An allocation over TLS with a channel to `peer`, checked both ways.
async fn relaying(client: &mut Client, peer: &Peer) {
    let relayed = client.allocate("alice", "alice-pw", None).await.unwrap().relayed;
    client.channel_bind(0x4000, peer.addr).await.unwrap();
    exchange(client, peer, relayed, b"before").await;
}

async fn exchange(client: &mut Client, peer: &Peer, relayed: std::net::SocketAddr, data: &[u8]) {
    client.send(peer.addr, data).await.unwrap();
    let (got, from) = peer.recv().await;
    assert_eq!((got.as_slice(), from), (data, relayed));
    peer.socket.send_to(data, relayed).await.unwrap();
    let got = client.recv().await.unwrap();
    assert_eq!((got.data.as_slice(), got.channel), (data, Some(0x4000)));
}

#[tokio::test]
async fn allocations_over_tls_relay_and_survive_a_certificate_reload() {
    let lab = lab("tls-reload").await;
    let peer = Peer::new().await;
    let mut old = lab.client().await;
    assert_eq!(
        relay::pem::fingerprint(old.server_certificate().unwrap()),
        lab.first.fingerprint()
    );
    relaying(&mut old, &peer).await;
    let relayed = old.allocation().unwrap().relayed;

    let second = lab.ca.leaf(CURRENT);
    install(&lab.bundle, &second.bundle(&lab.ca));
    let reply = lab.relayd.status("reload_cert").await;
    assert_eq!(
        reply,
        format!(
            "reload_cert: ok, serving CN={SERVER_NAME}, issued by CN=Lab CA, valid until Jan  1 00:00:00 2090 +00:00, chain of 2, sha256 {}\n",
            second.fingerprint()
        )
    );

    // The connection made before the reload keeps its allocation and relays.
    exchange(&mut old, &peer, relayed, b"after").await;
    assert_eq!(lab.served().await, second.fingerprint());
    let mut new = lab.client().await;
    relaying(&mut new, &Peer::new().await).await;
    let stats = lab.relayd.status("turnstats").await;
    assert!(stats.starts_with("allocs_cur 2\nallocs_tot 2\n"), "{stats}");
    let status = lab.relayd.status("status").await;
    assert!(
        status.ends_with(&format!("certificate: CN={SERVER_NAME}, issued by CN=Lab CA, valid until Jan  1 00:00:00 2090 +00:00, chain of 2, sha256 {}\n", second.fingerprint())),
        "{status}"
    );
    lab.relayd.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_new_certificate_is_refused_and_the_old_one_keeps_serving() {
    let lab = lab("tls-bad-reload").await;
    let peer = Peer::new().await;
    let mut client = lab.client().await;
    relaying(&mut client, &peer).await;
    let relayed = client.allocation().unwrap().relayed;
    let still = format!(
        "; still serving CN={SERVER_NAME}, issued by CN=Lab CA, valid until Jan  1 00:00:00 2090 +00:00, chain of 2, sha256 {}\n",
        lab.first.fingerprint()
    );
    let path = lab.bundle.display();

    let expired = lab.ca.leaf(EXPIRED);
    let other = lab.ca.leaf(CURRENT);
    let bad = [
        (
            expired.bundle(&lab.ca),
            format!("{path}: the certificate (CN={SERVER_NAME}) expired on Jan  1 00:00:00 2020 +00:00"),
        ),
        (
            format!("{}{}{}", other.pem, lab.ca.pem, lab.first.key_pem),
            format!(
                "the private key in {path} does not belong to the first certificate (CN={SERVER_NAME}); \
                 the server's own certificate comes first, then its issuers"
            ),
        ),
        (
            format!("{}{}", other.pem, lab.ca.pem),
            format!(
                "{path} holds no private key; a bundle ends with the server's `-----BEGIN PRIVATE KEY-----` section"
            ),
        ),
    ];
    for (text, why) in bad {
        install(&lab.bundle, &text);
        let reply = lab.relayd.status("reload_cert").await;
        assert_eq!(reply, format!("reload_cert: refused: {why}{still}"));
        assert_eq!(lab.served().await, lab.first.fingerprint());
        exchange(&mut client, &peer, relayed, why.as_bytes()).await;
    }
    std::fs::remove_file(&lab.bundle).unwrap();
    let reply = lab.relayd.status("reload").await;
    assert!(reply.starts_with("reload_cert: refused: cannot read "), "{reply}");
    assert_eq!(lab.served().await, lab.first.fingerprint());
    lab.relayd.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused_at_the_handshake() {
    let lab = lab("tls-untrusted").await;
    let stranger = Ca::new("Other CA");
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let err = Client::tls(lab.relayd.tls.unwrap(), name, stranger.client_config())
        .await
        .unwrap_err();
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source());
    let text: Vec<String> = chain.map(ToString::to_string).collect();
    assert!(text.join(": ").contains("UnknownIssuer"), "{text:?}");
    // The relay still serves a client that trusts it.
    let mut ok = lab.client().await;
    ok.binding().await.unwrap();
    lab.relayd.stop().await.unwrap();
}

#[tokio::test]
async fn the_status_port_says_when_there_is_nothing_to_reload() {
    let relayd = Relayd::start(|_| {}).await;
    assert_eq!(
        relayd.status("reload_cert").await,
        "reload_cert: no TLS listener, no certificate to reload\n"
    );
    relayd.stop().await.unwrap();
}

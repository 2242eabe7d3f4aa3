//! `relay::pem`: what a bundle must be before it is served, and what an
//! operator is told when it is not.

use std::path::Path;

use relay::pem::{self, Source};

use crate::certs::{CURRENT, Ca, EXPIRED, SERVER_NAME};
use crate::harness::fresh_dir;

/// 2026-11-23, a time inside [`CURRENT`].
const NOW: i64 = 1_795_392_000;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn refused(source: &Source) -> String {
    pem::load(source, NOW).unwrap_err().to_string()
}

#[test]
fn a_bundle_and_a_split_pair_load_with_their_summary() {
    let dir = fresh_dir("pem-good");
    let ca = Ca::new("Lab CA");
    let leaf = ca.leaf(CURRENT);
    let bundle = write(&dir, "relayd.pem", &leaf.bundle(&ca));
    let cert = pem::load(&Source::Bundle(bundle), NOW).unwrap();
    let s = cert.summary();
    assert_eq!(
        (s.subject.as_str(), s.issuer.as_str(), s.chain_len),
        ("CN=turn.lab.example", "CN=Lab CA", 2)
    );
    assert_eq!(s.fingerprint, leaf.fingerprint());
    assert_eq!(s.fingerprint.len(), 32 * 3 - 1);
    // 2090-01-01 is 23,050 days after 2026-11-23.
    assert_eq!(s.days_left(NOW), 23_050);
    assert_eq!(cert.certified_key().cert.len(), 2);

    let chain = write(&dir, "chain.pem", &format!("{}{}", leaf.pem, ca.pem));
    let key = write(&dir, "key.pem", &leaf.key_pem);
    let split = pem::load(&Source::Pair { chain, key }, NOW).unwrap();
    assert_eq!(split.summary(), s);
}

#[test]
fn each_bad_bundle_is_refused_with_what_to_change() {
    let dir = fresh_dir("pem-bad");
    let ca = Ca::new("Lab CA");
    let leaf = ca.leaf(CURRENT);
    let other = ca.leaf(CURRENT);
    let at = |name: &str, text: &str| Source::Bundle(write(&dir, name, text));
    let path = |name: &str| dir.join(name).display().to_string();

    assert_eq!(
        refused(&at("no-key.pem", &format!("{}{}", leaf.pem, ca.pem))),
        format!(
            "{} holds no private key; a bundle ends with the server's `-----BEGIN PRIVATE KEY-----` section",
            path("no-key.pem")
        )
    );
    assert_eq!(
        refused(&at("empty.pem", "")),
        format!(
            "{} holds no certificate; expected `-----BEGIN CERTIFICATE-----` sections, the server's certificate first",
            path("empty.pem")
        )
    );
    assert_eq!(
        refused(&at(
            "wrong-key.pem",
            &format!("{}{}{}", leaf.pem, ca.pem, other.key_pem)
        )),
        format!(
            "the private key in {} does not belong to the first certificate (CN={SERVER_NAME}); \
             the server's own certificate comes first, then its issuers",
            path("wrong-key.pem")
        )
    );
    assert_eq!(
        refused(&at(
            "reversed.pem",
            &format!("{}{}{}", ca.pem, leaf.pem, leaf.key_pem)
        )),
        format!(
            "{}: certificate 1 (CN=Lab CA) is issued by CN=Lab CA, but certificate 2 is CN={SERVER_NAME}; \
             order the chain: the server's certificate, then each issuer",
            path("reversed.pem")
        )
    );
    assert_eq!(
        refused(&at(
            "two-keys.pem",
            &format!("{}{}", leaf.bundle(&ca), leaf.key_pem)
        )),
        format!(
            "{} holds 2 private keys; keep only the server certificate's own",
            path("two-keys.pem")
        )
    );
    let expired = ca.leaf(EXPIRED);
    assert_eq!(
        refused(&at("expired.pem", &expired.bundle(&ca))),
        format!(
            "{}: the certificate (CN={SERVER_NAME}) expired on Jan  1 00:00:00 2020 +00:00",
            path("expired.pem")
        )
    );
    let cut = leaf.bundle(&ca);
    let cut = &cut[..cut.len() / 2];
    let lines = cut.lines().count();
    let first = leaf.pem.lines().count() + 1;
    assert!(lines > first, "the cut falls inside the second certificate");
    assert_eq!(
        refused(&at("truncated.pem", cut)),
        format!(
            "{}:{first}: the `CERTIFICATE` block never ends (no `-----END CERTIFICATE-----`): the file is truncated",
            path("truncated.pem")
        )
    );
    assert_eq!(
        refused(&at(
            "between.pem",
            &format!("{}issued for turn\n{}{}", leaf.pem, ca.pem, leaf.key_pem)
        )),
        format!(
            "{}:{first}: `issued for turn` stands outside any PEM block; a bundle holds only `-----BEGIN ...-----` blocks (the chain, then the key) with nothing else between them",
            path("between.pem")
        )
    );
    assert_eq!(
        refused(&at("hostname.pem", "relay-1\n")),
        format!(
            "{}:1: `relay-1` stands outside any PEM block; a bundle holds only `-----BEGIN ...-----` blocks (the chain, then the key) with nothing else between them",
            path("hostname.pem")
        )
    );
    let binary = dir.join("random.pem");
    std::fs::write(&binary, [0x30u8, 0x82, 0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        refused(&Source::Bundle(binary)),
        format!(
            "{}:1: not text: a PEM file is plain ASCII (is this a DER or binary file? `openssl x509 -inform der` converts a DER certificate)",
            path("random.pem")
        )
    );
    let big = dir.join("big.pem");
    std::fs::File::create(&big).unwrap().set_len(300 << 20).unwrap();
    assert_eq!(
        refused(&Source::Bundle(big)),
        format!(
            "{} is 314572800 bytes; a certificate bundle is a few kilobytes (at most 1048576): is this the right file?",
            path("big.pem")
        )
    );
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(
        refused(&at(
            "encrypted.pem",
            &format!("{}{}{encrypted}", leaf.pem, ca.pem)
        )),
        format!(
            "{}:{}: the private key is encrypted, and a relay cannot ask for its passphrase; decrypt it (`openssl pkey -in KEY -out KEY.plain`) and keep the file mode 0600",
            path("encrypted.pem"),
            first + ca.pem.lines().count()
        )
    );
    // Another CA of the same name: the names chain, the signature does not.
    let impostor = Ca::new("Lab CA");
    assert_eq!(
        refused(&at(
            "impostor.pem",
            &format!("{}{}{}", leaf.pem, impostor.pem, leaf.key_pem)
        )),
        format!(
            "{}: certificate 1 (CN={SERVER_NAME}) names CN=Lab CA as its issuer, but its signature does not verify with certificate 2's key; \
             put the certificate that really issued it after it",
            path("impostor.pem")
        )
    );
    assert_eq!(
        refused(&Source::Bundle(dir.join("missing.pem"))),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            path("missing.pem")
        )
    );
}

#[test]
fn a_split_pair_names_the_key_file_when_the_key_is_wrong() {
    let dir = fresh_dir("pem-split");
    let ca = Ca::new("Lab CA");
    let leaf = ca.leaf(CURRENT);
    let chain = write(&dir, "chain.pem", &format!("{}{}", leaf.pem, ca.pem));
    let key = write(&dir, "key.pem", &ca.leaf(CURRENT).key_pem);
    let err = refused(&Source::Pair {
        chain,
        key: key.clone(),
    });
    assert!(
        err.starts_with(&format!("the private key in {} does not belong", key.display())),
        "{err}"
    );
}

/// Told the names clients connect to, relayd serves only a certificate they
/// would accept: for each name, with a chain to a root they trust.
#[test]
fn with_the_names_clients_use_a_certificate_they_would_refuse_is_not_served() {
    use relay::server::{Expect, Tls};
    use relay::trust::Trust;
    use std::sync::Arc;
    let dir = fresh_dir("tls-expect");
    let ca = Ca::new("Lab CA");
    let leaf = ca.leaf(CURRENT);
    let root = write(&dir, "ca.pem", &ca.pem);
    let trusted = Arc::new(Trust::load(&[root]).unwrap());
    let expect = |names: &[&str], trust: &Arc<Trust>| {
        Some(Expect {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            trust: trust.clone(),
        })
    };
    let bundle = write(&dir, "relayd.pem", &leaf.bundle(&ca));
    let alone = write(&dir, "alone.pem", &format!("{}{}", leaf.pem, leaf.key_pem));
    Tls::load(Source::Bundle(bundle.clone()), expect(&[SERVER_NAME], &trusted)).unwrap();
    let refused = |source: Source, names: &[&str], trust: &Arc<Trust>| {
        Tls::load(source, expect(names, trust)).unwrap_err().to_string()
    };
    assert_eq!(
        refused(Source::Bundle(bundle.clone()), &["turn.other.example"], &trusted),
        format!(
            "{}: clients connecting to turn.other.example would refuse the certificate (CN={SERVER_NAME}): name mismatch; \
             fix the certificate (its names, or the intermediates after it), or the names given with --tls-name",
            bundle.display()
        )
    );
    // The root clients trust is not in the system's store.
    let system = Arc::new(Trust::load(&[]).unwrap());
    assert!(
        refused(Source::Bundle(bundle), &[SERVER_NAME], &system).contains(": untrusted; "),
        "a root nobody trusts"
    );
    assert!(
        refused(Source::Bundle(alone), &[SERVER_NAME], &system).contains(": chain incomplete; "),
        "the issuer left out"
    );
}

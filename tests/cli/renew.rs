//! `renew-cert`: every way a new certificate is refused before anything is
//! touched, and rollouts on real relays (relayd reloading, Debian's coturn
//! with its two files and SIGUSR2, a restund-kind relay drained and
//! restarted), with calls going, and a rollback.

use std::time::Duration;

use crate::certs::{CURRENT, Ca, EXPIRED, Leaf, SHORTER};
use crate::lab::Lab;
use crate::run::Simulator;
use crate::util::{Output, Scratch, opsctl_env};

/// An inventory of one relayd relay whose `turns:` host is `localhost`
/// (port 1: nothing serves there, so what it serves now cannot be read).
fn one_relay() -> Scratch {
    let s = Scratch::new();
    s.write(
        "inventory.yaml",
        "defaults: {relay: {kind: relayd}}\nsites:\n  - name: s\n    relays:\n      - {name: relay-1, host: 127.0.0.1, urls: ['turn:localhost:3478', 'turns:localhost:1?transport=tcp']}\n",
    );
    s
}

fn dry(s: &Scratch, bundle: &str, extra: &[&str]) -> Output {
    let mut args = vec!["-n", "renew-cert", "--bundle", bundle];
    args.extend_from_slice(extra);
    args.push("relay-1");
    s.opsctl(&args)
}

struct Pki {
    root: Ca,
    inter: Ca,
}

fn pki() -> Pki {
    let root = Ca::root("Lab Root");
    let inter = root.intermediate("Lab Issuing CA");
    Pki { root, inter }
}

#[test]
fn every_bad_bundle_is_refused_with_the_file_the_certificate_and_what_to_change() {
    let s = one_relay();
    let p = pki();
    s.write("root.pem", &p.root.pem);
    let leaf = p.inter.leaf(&["localhost"], CURRENT);
    let other = p.inter.leaf(&["localhost"], CURRENT);
    let ca = ["--ca", "root.pem"];
    let refused = |name: &str, text: &str, extra: &[&str], message: &str| {
        s.write(name, text);
        dry(&s, name, extra).fails_with(2, &format!("opsctl: error: {message}\n"));
    };
    let good = leaf.bundle(&[&p.inter]);
    refused(
        "wrong-key.pem",
        &format!("{}{}{}", leaf.pem, p.inter.pem, other.key_pem),
        &ca,
        "the private key in wrong-key.pem does not belong to the first certificate (CN=localhost); the server's own certificate comes first, then its issuers",
    );
    refused(
        "reversed.pem",
        &format!("{}{}{}", p.inter.pem, leaf.pem, leaf.key_pem),
        &ca,
        "reversed.pem: certificate 1 (CN=Lab Issuing CA) is issued by CN=Lab Root, but certificate 2 is CN=localhost; order the chain: the server's certificate, then each issuer",
    );
    refused(
        "two-keys.pem",
        &format!("{good}{}", other.key_pem),
        &ca,
        "two-keys.pem holds 2 private keys; keep only the server certificate's own",
    );
    refused(
        "no-key.pem",
        &format!("{}{}", leaf.pem, p.inter.pem),
        &ca,
        "no-key.pem holds no private key; a bundle ends with the server's `-----BEGIN PRIVATE KEY-----` section",
    );
    refused(
        "no-cert.pem",
        &leaf.key_pem,
        &ca,
        "no-cert.pem holds no certificate; expected `-----BEGIN CERTIFICATE-----` sections, the server's certificate first",
    );
    let expired = p.inter.leaf(&["localhost"], EXPIRED);
    refused(
        "expired.pem",
        &expired.bundle(&[&p.inter]),
        &ca,
        "expired.pem: the certificate (CN=localhost) expired on Jan  1 00:00:00 2020 +00:00",
    );
    let early = p.inter.leaf(&["localhost"], (2080, 2090));
    refused(
        "not-yet.pem",
        &early.bundle(&[&p.inter]),
        &ca,
        "not-yet.pem: the certificate (CN=localhost) is not valid before Jan  1 00:00:00 2080 +00:00",
    );
    let cut = &good[..leaf.pem.len() + p.inter.pem.len() / 2];
    let line = leaf.pem.lines().count() + 1;
    assert!(cut.lines().count() > line, "the cut falls in the second block");
    refused(
        "truncated.pem",
        cut,
        &ca,
        &format!(
            "truncated.pem:{line}: the `CERTIFICATE` block never ends (no `-----END CERTIFICATE-----`): the file is truncated"
        ),
    );
    refused(
        "hostname.pem",
        "relay-1\n",
        &ca,
        "hostname.pem:1: `relay-1` stands outside any PEM block; a bundle holds only `-----BEGIN ...-----` blocks (the chain, then the key) with nothing else between them",
    );
    let big = s.0.join("random.pem");
    std::fs::File::create(&big).unwrap().set_len(300 << 20).unwrap();
    dry(&s, "random.pem", &ca).fails_with(
        2,
        "opsctl: error: random.pem is 314572800 bytes; a certificate bundle is a few kilobytes (at most 1048576): is this the right file?\n",
    );
    // The missing-intermediate case: the leaf alone, its issuer nowhere.
    refused(
        "no-intermediate.pem",
        &leaf.bundle(&[]),
        &ca,
        "no-intermediate.pem: the chain is incomplete: certificate 1 (CN=localhost) is issued by CN=Lab Issuing CA, which is neither in no-intermediate.pem nor in the system's trust store and root.pem; clients would fail with \"unable to get local issuer certificate\"\nhelp: append the certificate of CN=Lab Issuing CA (the intermediate the CA sent with the certificate) after certificate 1; for a private CA, give its root with `--ca FILE`",
    );
    // A root clients do not trust (no --ca).
    refused(
        "untrusted.pem",
        &leaf.bundle(&[&p.inter, &p.root]),
        &[],
        "untrusted.pem: the chain ends at the root CN=Lab Root (certificate 3), which is not in the system's trust store: clients will not trust it\nhelp: if clients trust this root, give it with `--ca FILE` (or `cert.ca` in the inventory); otherwise get the certificate from a CA they trust",
    );
    let elsewhere = p.inter.leaf(&["turn.other.example", "*.lab.example"], CURRENT);
    refused(
        "other-name.pem",
        &elsewhere.bundle(&[&p.inter]),
        &ca,
        "other-name.pem: the certificate (CN=turn.other.example) is valid for turn.other.example, *.lab.example, which does not cover `localhost`, the `turns:` host of relay `relay-1`\nhelp: get a certificate that names localhost (a wildcard such as `*.example.com` covers exactly one label), or leave relay-1 out",
    );
    // An RSA key of 1024 bits (openssl: rcgen's ring cannot make one).
    let made = std::process::Command::new("openssl")
        .current_dir(&s.0)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost", "-days", "30"])
        .args(["-keyout", "weak.key", "-out", "weak.crt"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let weak = std::fs::read_to_string(s.0.join("weak.crt")).unwrap()
        + &std::fs::read_to_string(s.0.join("weak.key")).unwrap();
    refused(
        "weak.pem",
        &weak,
        &["--ca", "weak.crt"],
        "weak.pem: the certificate (CN=localhost) has a 1024-bit RSA key; relays and clients need at least 2048 bits: issue a new certificate with a longer key",
    );
    // And the one that is right plans, naming what it is.
    s.write("good.pem", &good);
    let out = dry(&s, "good.pem", &ca);
    out.success();
    assert!(
        out.stdout.contains(
            "  bundle-valid    good.pem: CN=localhost, names localhost, key EC P-256\n                  issued by CN=Lab Issuing CA\n                  valid from Jan  1 00:00:00 2020 +00:00 until Jan  1 00:00:00 2090 +00:00 ("
        ) && out.stdout.contains(&format!("                  sha256 {}\n", leaf.fingerprint())),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains("relay-1 serves now: cannot be read from here (cannot connect to localhost:1: Connection refused (os error 111)); the expiry is compared in the run, before relay-1 is touched"),
        "{}",
        out.dump()
    );
}

#[test]
fn a_key_in_its_own_file_is_checked_with_the_chain() {
    let s = one_relay();
    let p = pki();
    s.write("root.pem", &p.root.pem);
    let leaf = p.inter.leaf(&["localhost"], CURRENT);
    s.write("chain.pem", &format!("{}{}", leaf.pem, p.inter.pem));
    s.write("other.key", &p.inter.leaf(&["localhost"], CURRENT).key_pem);
    s.write("leaf.key", &leaf.key_pem);
    dry(&s, "chain.pem", &["--key", "other.key", "--ca", "root.pem"]).fails_with(
        2,
        "opsctl: error: the private key in other.key does not belong to the first certificate (CN=localhost); the server's own certificate comes first, then its issuers\n",
    );
    dry(&s, "chain.pem", &["--key", "leaf.key", "--ca", "root.pem"]).success();
}

// ---- the lab: relays that serve TLS, with calls going ----

/// A lab whose relays serve TLS on 5349 with `first` (each node's own leaf,
/// made by `leaf` for its address), a values file that advertises them, and
/// an inventory; `relay` adds settings to every relay (`{ip}`, `{dir}`).
struct TlsLab {
    lab: Lab,
    s: Scratch,
    pki: Pki,
}

impl TlsLab {
    fn served(&self, i: usize) -> String {
        let target = format!("{}:5349", self.lab.nodes[i].ip);
        opsctl::served_cert::read(&target, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("{target}: {e:#}"))
            .fingerprint
    }

    fn run(&self, args: &[&str]) -> Output {
        opsctl_env(&self.s.0, args, &[("LAB_CLI_PW", "lab-cli-pw")])
    }

    /// A new certificate for every node's address, chained to the lab's root.
    fn new_bundle(&self, years: (i32, i32)) -> Leaf {
        let ips: Vec<String> = self.lab.nodes.iter().map(|n| n.ip.to_string()).collect();
        let names: Vec<&str> = ips.iter().map(String::as_str).collect();
        let leaf = self.pki.inter.leaf(&names, years);
        self.s.write("new.pem", &leaf.bundle(&[&self.pki.inter]));
        leaf
    }
}

/// `kind` is relayd, coturn or restund (relayd run as a restund-kind relay).
fn tls_lab(n: usize, kind: &str, relay: &str) -> TlsLab {
    let lab = Lab::start(n).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let pki = pki();
    let s = Scratch::new();
    s.write("root.pem", &pki.root.pem);
    let mut values = String::from("brig:\n  turnStatic:\n    v2:\n");
    let mut inv = lab.inventory(if kind == "restund" { "restund" } else { kind }, "");
    for i in 0..n {
        let node = &lab.nodes[i];
        let ip = node.ip.to_string();
        let leaf = pki.inter.leaf(&[&ip], SHORTER);
        let dir = node.dir.display().to_string();
        let (unit, settings) = match kind {
            "coturn" => {
                lab.coturn(i, "lab-cli-pw");
                lab.coturn_tls(i, &format!("{}{}", leaf.pem, pki.inter.pem), &leaf.key_pem);
                (
                    "coturn",
                    format!(
                        "stats: {{via: coturn-cli, addr: '{ip}:5766', password_env: LAB_CLI_PW}}, cert: {{cert: '{dir}/turn-cert.pem', key: '{dir}/turn-key.pem'}}"
                    ),
                )
            }
            _ => {
                std::fs::write(node.dir.join("relayd.pem"), leaf.bundle(&[&pki.inter])).unwrap();
                lab.relayd_with(i, "relayd", "--listen-tls {ip}:5349 --cert {dir}/relayd.pem");
                let service = if kind == "restund" && !relay.contains("service:") {
                    ", service: {unit: relayd}"
                } else {
                    ""
                };
                (
                    "relayd",
                    format!(
                        "stats: {{addr: '{ip}:33000'}}, cert: {{bundle: '{dir}/relayd.pem'}}, drain: {{poll: 1s}}{service}"
                    ),
                )
            }
        };
        let started = lab.systemctl(i, &format!("start {unit}"));
        assert!(started.status.success(), "{started:?}");
        lab.wait_tcp(i, 5349).unwrap();
        values.push_str(&format!(
            "      - turn:{ip}:3478\n      - turns:{ip}:5349?transport=tcp\n"
        ));
        let relay = relay.replace("{ip}", &ip).replace("{dir}", &dir);
        inv = inv.replace(
            &format!("host: {ip}}}"),
            &format!(
                "host: {ip}, urls: ['turn:{ip}:3478', 'turns:{ip}:5349?transport=tcp'], {settings}{relay}}}"
            ),
        );
    }
    s.write("values.yaml", &values);
    let check = s.write(
        "calls-config.sh",
        "#!/bin/sh\nurls=$(grep -E '^ *- ' values.yaml | sed -E 's/^ *- ([^ ]*).*/\"\\1\"/' | paste -sd, -)\nprintf '{\"ice_servers\":[{\"urls\":[%s]}]}\\n' \"$urls\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.write(
        "inventory.yaml",
        &format!(
            "cert: {{ca: root.pem}}\nadvertise: {{backend: values-file, file: values.yaml, apply: [sh, -c, 'exit 0'], check: {{command: [./calls-config.sh]}}}}\n{inv}"
        ),
    );
    TlsLab { lab, s, pki }
}

fn pids(t: &TlsLab, unit: &str) -> Vec<String> {
    (0..t.lab.nodes.len())
        .map(|i| {
            String::from_utf8_lossy(&t.lab.systemctl(i, &format!("show-pid {unit}")).stdout)
                .trim()
                .to_owned()
        })
        .collect()
}

/// relayd relays reload: the new certificate is served by every one, from
/// the very same process, and no call is dropped.
#[test]
fn renew_cert_on_relayd_relays_reloads_each_and_drops_no_call() {
    let t = tls_lab(3, "relayd", "");
    let before = pids(&t, "relayd");
    use std::os::unix::fs::PermissionsExt;
    let file_mode = |i: usize| {
        std::fs::metadata(t.lab.nodes[i].dir.join("relayd.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    let old_mode = file_mode(0);
    let old = t.served(0);
    // A certificate ending earlier than the one served is refused, from the plan on.
    let shorter = t.pki.inter.leaf(&[&t.lab.nodes[0].ip.to_string()], (2020, 2070));
    t.s.write("shorter.pem", &shorter.bundle(&[&t.pki.inter]));
    let out = t.run(&["-n", "renew-cert", "--bundle", "shorter.pem", "node-1"]);
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(
        out.stderr
            .contains("earlier than the one relay `node-1` serves now")
            && out
                .stderr
                .contains("help: pass `--allow-earlier-expiry` if that is intended"),
        "{}",
        out.dump()
    );
    let leaf = t.new_bundle(CURRENT);
    let sim = Simulator::start_as(&t.s, "caller", "pw");
    sim.counts_once_busy();
    let out = t.run(&["-v", "renew-cert", "--bundle", "new.pem", "--all"]);
    out.success();
    let counts = sim.stop();
    for i in 0..3 {
        assert_eq!(
            t.served(i),
            leaf.fingerprint(),
            "node-{} serves the new leaf",
            i + 1
        );
    }
    assert_ne!(old, leaf.fingerprint());
    assert_eq!(
        pids(&t, "relayd"),
        before,
        "reloaded, not restarted\n{}",
        out.dump()
    );
    assert_eq!(counts.dropped, 0, "{counts:?}");
    assert!(counts.completed > 0, "{counts:?}");
    // The old file is kept beside the new one, which has its mode without
    // group write or anything for others: it holds a key.
    let dir = &t.lab.nodes[0].dir;
    let kept = std::fs::read_to_string(dir.join("relayd.pem.opsctl-test")).unwrap();
    assert!(kept.contains("PRIVATE KEY"));
    assert_eq!(file_mode(0), old_mode & !0o037, "from {old_mode:o}");
    assert_eq!(file_mode(0) & 0o007, 0);
    // No relay was taken out of the list.
    assert!(!out.stderr.contains("take node-"), "{}", out.dump());
}

/// Debian's coturn takes the chain and the key cut from the bundle into its
/// two files and re-reads them on SIGUSR2: the same process, its
/// allocations kept.
#[test]
fn renew_cert_on_coturn_writes_its_two_files_and_reloads_with_sigusr2() {
    let t = tls_lab(2, "coturn", "");
    let before = pids(&t, "coturn");
    let leaf = t.new_bundle(CURRENT);
    let sim = Simulator::start_as(&t.s, "alice", "secret");
    sim.counts_once_busy();
    let out = t.run(&["-v", "renew-cert", "--bundle", "new.pem", "--all"]);
    out.success();
    let counts = sim.stop();
    for i in 0..2 {
        assert_eq!(
            t.served(i),
            leaf.fingerprint(),
            "node-{} serves the new leaf\n{}",
            i + 1,
            out.dump()
        );
        let dir = &t.lab.nodes[i].dir;
        let chain = std::fs::read_to_string(dir.join("turn-cert.pem")).unwrap();
        let key = std::fs::read_to_string(dir.join("turn-key.pem")).unwrap();
        assert_eq!(chain, format!("{}{}", leaf.pem, t.pki.inter.pem));
        assert_eq!(key, leaf.key_pem);
    }
    assert_eq!(
        pids(&t, "coturn"),
        before,
        "reloaded, not restarted\n{}",
        out.dump()
    );
    assert_eq!(counts.dropped, 0, "{counts:?}");
    assert!(counts.completed > 0, "{counts:?}");
}

/// A restund-kind relay has no reload: it is taken out of the list,
/// drained, given the file, restarted, checked and put back.
#[test]
fn renew_cert_on_a_restund_kind_relay_drains_and_restarts_it() {
    let t = tls_lab(2, "restund", "");
    let before = pids(&t, "relayd");
    let values = std::fs::read_to_string(t.s.0.join("values.yaml")).unwrap();
    let leaf = t.new_bundle(CURRENT);
    let sim = Simulator::start_as(&t.s, "caller", "pw");
    sim.counts_once_busy();
    let out = t.run(&["-v", "renew-cert", "--bundle", "new.pem", "--all"]);
    out.success();
    let counts = sim.stop();
    let after = pids(&t, "relayd");
    for i in 0..2 {
        assert_eq!(t.served(i), leaf.fingerprint());
        assert_ne!(after[i], before[i], "node-{} was restarted", i + 1);
    }
    assert!(
        out.stderr.contains("take node-1 out of the advertised list") && out.stderr.contains("wait: drained"),
        "{}",
        out.dump()
    );
    assert_eq!(
        std::fs::read_to_string(t.s.0.join("values.yaml")).unwrap(),
        values
    );
    assert_eq!(counts.dropped, 0, "{counts:?}");
}

/// A relay that does not serve the new certificate (here: its reload does
/// nothing) gets its old file back and serves the old certificate again;
/// the rollout stops there, the next relay untouched.
#[test]
fn a_relay_that_does_not_serve_the_new_certificate_is_rolled_back() {
    let t = tls_lab(
        2,
        "relayd",
        ", service: {unit: relayd, reload: [sh, -c, 'exit 0']}",
    );
    let old: Vec<String> = (0..2).map(|i| t.served(i)).collect();
    let files: Vec<String> = (0..2)
        .map(|i| std::fs::read_to_string(t.lab.nodes[i].dir.join("relayd.pem")).unwrap())
        .collect();
    let leaf = t.new_bundle(CURRENT);
    let out = t.run(&["renew-cert", "--bundle", "new.pem", "--all"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains(
            "\nopsctl: error: node-1 was rolled back: its old certificate files are back in place and it serves its old certificate again; the rollout stops here: step 5 (node-1: wait: served-cert) failed: "
        ),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr.contains(&format!(
            "timed out after 30s waiting until TLS on {}:5349 serves the new leaf (sha256 {})",
            t.lab.nodes[0].ip,
            leaf.fingerprint()
        )),
        "{}",
        out.dump()
    );
    for i in 0..2 {
        assert_eq!(t.served(i), old[i]);
        assert_eq!(
            std::fs::read_to_string(t.lab.nodes[i].dir.join("relayd.pem")).unwrap(),
            files[i],
            "node-{}'s file is the old one",
            i + 1
        );
    }
    assert!(
        !t.lab.nodes[1].dir.join("relayd.pem.opsctl-test").exists(),
        "node-2 was not touched"
    );
}

/// On the drained-restart path, a rollback also puts the relay back in the
/// advertised list; the JSON event stream says what it did.
#[test]
fn a_rollback_after_a_drained_restart_puts_the_relay_back_in_the_list() {
    // A restart that restarts nothing: the old certificate stays served.
    let t = tls_lab(
        2,
        "restund",
        ", service: {unit: relayd, restart: [sh, -c, 'exit 0']}",
    );
    let values = std::fs::read_to_string(t.s.0.join("values.yaml")).unwrap();
    let old = t.served(0);
    t.new_bundle(CURRENT);
    let out = t.run(&["-o", "json", "renew-cert", "--bundle", "new.pem", "--all"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event"] == "rollback-step")
        .map(|e| {
            (
                e["title"].as_str().unwrap().to_owned(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let file = t.lab.nodes[0].dir.join("relayd.pem").display().to_string();
    assert_eq!(
        steps,
        [
            (format!("put the backup of {file} back"), "done".to_owned()),
            ("restart the service".to_owned(), "done".to_owned()),
            ("wait: service-up".to_owned(), "done".to_owned()),
            ("wait: served-cert (the old one)".to_owned(), "done".to_owned()),
            (
                "put node-1 back in the advertised list".to_owned(),
                "done".to_owned()
            ),
            ("wait: advertised".to_owned(), "done".to_owned()),
        ],
        "{}",
        out.dump()
    );
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["nodes"][0]["advertised"], true, "{}", out.dump());
    assert_eq!(
        std::fs::read_to_string(t.s.0.join("values.yaml")).unwrap(),
        values
    );
    assert_eq!(t.served(0), old);
    assert!(
        out.stderr.contains("node-1 was rolled back: its old certificate files are back in place and it serves its old certificate again, and is back in the advertised list; the rollout stops here"),
        "{}",
        out.dump()
    );
}

/// A real run refuses a bad bundle before it connects anywhere: the node's
/// file is unchanged and its sshd received no command.
#[test]
fn a_real_run_refuses_a_bad_bundle_before_touching_a_node() {
    let t = tls_lab(1, "relayd", "");
    let file = std::fs::read_to_string(t.lab.nodes[0].dir.join("relayd.pem")).unwrap();
    t.lab.commands_run(0);
    let ip = t.lab.nodes[0].ip.to_string();
    let leaf = t.pki.inter.leaf(&[&ip], CURRENT);
    let other = t.pki.inter.leaf(&[&ip], CURRENT);
    let elsewhere = t.pki.inter.leaf(&["turn.other.example"], CURRENT);
    let expired = t.pki.inter.leaf(&[&ip], EXPIRED);
    for (name, text, message) in [
        (
            "no-intermediate.pem",
            leaf.bundle(&[]),
            "no-intermediate.pem: the chain is incomplete: certificate 1",
        ),
        (
            "wrong-key.pem",
            format!("{}{}{}", leaf.pem, t.pki.inter.pem, other.key_pem),
            "the private key in wrong-key.pem does not belong to the first certificate",
        ),
        (
            "other-name.pem",
            elsewhere.bundle(&[&t.pki.inter]),
            "other-name.pem: the certificate (CN=turn.other.example) is valid for turn.other.example, which does not cover",
        ),
        (
            "expired.pem",
            expired.bundle(&[&t.pki.inter]),
            "expired.pem: the certificate",
        ),
    ] {
        t.s.write(name, &text);
        let out = t.run(&["renew-cert", "--bundle", name, "--all"]);
        assert_eq!(out.code, 2, "{}", out.dump());
        assert!(
            out.stderr.starts_with(&format!("opsctl: error: {message}")),
            "{}",
            out.dump()
        );
        assert_eq!(
            std::fs::read_to_string(t.lab.nodes[0].dir.join("relayd.pem")).unwrap(),
            file
        );
        assert_eq!(t.lab.commands_run(0), Vec::<String>::new(), "{name}");
    }
}

/// A certificate with under 30 days left is rolled out, with a warning.
#[test]
fn a_certificate_near_its_end_is_planned_with_a_warning() {
    let s = one_relay();
    let p = pki();
    s.write("root.pem", &p.root.pem);
    s.write(
        "soon.pem",
        &p.inter.leaf_for_days(&["localhost"], 10).bundle(&[&p.inter]),
    );
    let out = dry(&s, "soon.pem", &["--ca", "root.pem"]);
    out.success();
    let warned = out.stdout.lines().any(|l| {
        l.starts_with("  - warning: the new certificate (CN=localhost) has only ")
            && l.contains(" days left, until ")
    });
    assert!(warned, "{}", out.dump());
}

/// What `--dry-run` prints is what runs, for both ways a certificate goes
/// into service: a reload (relayd) and a drained restart (restund-kind).
#[test]
fn every_command_renew_cert_sends_is_in_its_dry_run() {
    for kind in ["relayd", "restund"] {
        let t = tls_lab(2, kind, "");
        t.new_bundle(CURRENT);
        let sent = crate::contract::holds(&t.lab, &t.s, &["renew-cert", "--bundle", "new.pem", "--all"]);
        assert!(sent > 10, "{kind}: {sent} commands");
    }
}

/// The coturn CLI password and the new private key, with every procedure
/// that uses them run with -vv, a plan in JSON and a --notify hook: none
/// shows in the journal, the plan, the logs, the hook's input, or the
/// process list of this machine (where the lab's nodes run) while it runs.
#[test]
fn secrets_show_nowhere_an_operator_or_another_user_could_read() {
    let t = tls_lab(2, "coturn", "");
    let leaf = t.new_bundle(CURRENT);
    // The key's base64 lines: any one of them found is a leak.
    let key_lines: Vec<String> = leaf
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(str::to_owned)
        .collect();
    assert!(!key_lines.is_empty());
    let pw = "lab-cli-pw";
    let leaks = |what: &str, text: &str| {
        assert!(!text.contains(pw), "the CLI password is in {what}:\n{text}");
        for l in &key_lines {
            assert!(
                !text.contains(l.as_str()),
                "the private key is in {what}:\n{text}"
            );
        }
    };
    // Every process's command line, read all along the runs.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let ps = std::process::Command::new("ps")
                    .args(["-eo", "args"])
                    .output()
                    .unwrap();
                for l in String::from_utf8_lossy(&ps.stdout).lines() {
                    seen.insert(l.to_owned());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            seen.into_iter().collect::<Vec<_>>().join("\n")
        })
    };
    let notify = t.s.0.join("notify.jsonl");
    let hook = format!("cat >> {}", notify.display());
    let runs: [&[&str]; 3] = [
        &[
            "-vv",
            "--notify",
            &hook,
            "renew-cert",
            "--bundle",
            "new.pem",
            "--all",
        ],
        &[
            "-vv",
            "--notify",
            &hook,
            "--yes",
            "restart",
            "--no-downtime",
            "--all",
        ],
        &["-o", "json", "-n", "renew-cert", "--bundle", "new.pem", "--all"],
    ];
    // The hook is part of what runs: the dry run says so.
    let shown = t.run(&[
        "-n",
        "--notify",
        &hook,
        "renew-cert",
        "--bundle",
        "new.pem",
        "--all",
    ]);
    shown.success();
    assert!(
        shown.stdout.contains("--notify: `sh -c 'cat >> ")
            && shown
                .stdout
                .contains("` runs here at each step's end and at the run's end"),
        "{}",
        shown.dump()
    );
    let mut said = String::new();
    for args in runs {
        let out = t.run(args);
        out.success();
        said.push_str(&out.stdout);
        said.push_str(&out.stderr);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let processes = watcher.join().unwrap();
    assert!(
        processes.contains("opsctl-stats"),
        "the process list was read while the stats were: {processes}"
    );
    leaks("the process list", &processes);
    leaks("what opsctl printed (-vv, JSON)", &said);
    let hooked = std::fs::read_to_string(&notify).unwrap();
    // One JSON event per change: each step's end, and each run's.
    let events: Vec<serde_json::Value> = hooked.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ended = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    assert!(ended("step-end") > 10 && ended("summary") == 2, "{hooked}");
    assert!(
        events
            .iter()
            .all(|e| e["run"].as_str().is_some_and(|r| !r.is_empty()) && e["procedure"].is_string()),
        "{hooked}"
    );
    leaks("the --notify input", &hooked);
    for e in std::fs::read_dir(t.s.0.join(".opsctl-state")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        leaks("a journal", &text);
    }
}

/// A rollout killed just after node-1's new file is written, resumed, and
/// killed again in node-2's upload, resumed again: both serve the new leaf,
/// and each backup still holds the certificate the node had before (a run
/// continued never replaces its own backup with the new file).
#[test]
fn a_rollout_killed_and_resumed_keeps_the_original_certificate_as_the_backup() {
    let t = tls_lab(2, "relayd", "");
    let original: Vec<String> = (0..2)
        .map(|i| std::fs::read_to_string(t.lab.nodes[i].dir.join("relayd.pem")).unwrap())
        .collect();
    let leaf = t.new_bundle(CURRENT);
    let dry = t.run(&["-n", "-o", "json", "renew-cert", "--bundle", "new.pem", "--all"]);
    dry.success();
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let up1 = crate::util::plan_step(&plan, "node-1", "upload");
    let up2 = crate::util::plan_step(&plan, "node-2", "upload");
    let run = "renew-resumed";
    let env = [("LAB_CLI_PW", "lab-cli-pw")];
    crate::util::kill_when(
        &t.s.0,
        &[
            "--run-id",
            run,
            "--yes",
            "renew-cert",
            "--bundle",
            "new.pem",
            "--all",
        ],
        &env,
        run,
        "node-1's new file written",
        |j| crate::util::journal_has(j, "step", up1),
    );
    crate::util::kill_when(
        &t.s.0,
        &["--yes", "resume", run],
        &env,
        run,
        "node-2's upload begun",
        |j| crate::util::journal_has(j, "step-start", up2),
    );
    let out = t.run(&["--yes", "resume", run]);
    out.success();
    for (i, before) in original.iter().enumerate() {
        assert_eq!(
            t.served(i),
            leaf.fingerprint(),
            "node-{} serves the new leaf",
            i + 1
        );
        let dir = &t.lab.nodes[i].dir;
        assert_eq!(
            &std::fs::read_to_string(dir.join(format!("relayd.pem.opsctl-{run}"))).unwrap(),
            before,
            "node-{}'s backup is the certificate it had",
            i + 1
        );
    }
}

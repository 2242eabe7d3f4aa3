//! relayd's manual page: the flags as `--help` gives them, then what a
//! deployment needs beside them: its files, its signals, its exit status.

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};

use super::Args;

/// The page, in roff (`relayd --man | man -l -`).
pub fn page() -> std::io::Result<String> {
    let man = clap_mangen::Man::new(Args::command()).source(format!("relayd {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render(&mut out)?;
    let mut more = Roff::new();
    section(
        &mut more,
        "FILES",
        &[
            (
                "/etc/relayd/relayd.yaml",
                "The configuration. The systemd unit hands it to relayd as a credential, so it can stay mode 0600, owned by root, though it holds secrets. Every field is documented in /usr/share/doc/relayd/examples/relayd.yaml. A change takes a restart.",
            ),
            (
                "/etc/relayd/relayd.pem",
                "The TLS certificate (tls.cert): the server certificate, its issuers, then the private key. Keep it mode 0640, group ssl-cert: the unit runs relayd in that group, and relayd reads the file again on SIGHUP.",
            ),
            (
                "/usr/share/doc/relayd/examples/low-ports.conf",
                "A drop-in for the unit when relayd listens on a port below 1024: the one capability that allows it (CAP_NET_BIND_SERVICE), and no other.",
            ),
        ],
    );
    section(
        &mut more,
        "SIGNALS",
        &[
            (
                "SIGHUP",
                "Read the TLS certificate again (systemctl reload relayd). Every allocation is kept. A new certificate that is bad (unreadable, expired, not for the names given) is refused, and the old one keeps serving; both are logged.",
            ),
            ("SIGTERM, SIGINT", "Stop."),
        ],
    );
    section(
        &mut more,
        "EXIT STATUS",
        &[
            ("0", "Stopped by a signal, or --check-config found nothing wrong."),
            ("1", "A runtime error, such as an address that cannot be bound."),
            (
                "2",
                "A mistake in the config file or the flags, named with its file and line.",
            ),
        ],
    );
    more.control("SH", ["SEE ALSO"]);
    more.text([roman("opsctl(1), turnserver(1)")]);
    let mut text = String::from_utf8(out).map_err(std::io::Error::other)?;
    text.push_str(&more.to_roff());
    Ok(text)
}

/// A section of tagged paragraphs: each term in bold, then its meaning.
fn section(roff: &mut Roff, title: &str, items: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for (term, meaning) in items {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*meaning)]);
    }
}

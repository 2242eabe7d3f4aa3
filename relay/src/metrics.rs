//! relayd's Prometheus page: the text exposition format (version 0.0.4),
//! made from a snapshot of the TURN core and its certificate. Allocations
//! now are the gauge `turn_total_allocations`, by transport, as coturn
//! names it, so dashboards made for coturn and opsctl's Prometheus stats
//! reader work unchanged; the rest are relayd's own (`relayd_...`).

use std::fmt::Write;

use crate::turn::Counters;

/// What one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The core's counters.
    pub counters: Counters,
    /// Allocations now, by the client's transport: UDP, TCP, TLS.
    pub allocations: [u64; 3],
    /// Allocate requests answered with an error: code, reason, how many.
    pub refused: Vec<(u16, &'static str, u64)>,
    /// Whether new allocations are refused.
    pub draining: bool,
    /// When the served certificate expires (Unix seconds), if TLS is served.
    pub certificate_expiry: Option<i64>,
}

/// One metric: its help line and type, then its samples (labels, as
/// written after the name, and value).
fn metric<L: std::fmt::Display, V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The page for `s`.
#[must_use]
pub fn render(s: &Snapshot) -> String {
    let c = &s.counters;
    let mut out = String::new();
    metric(
        &mut out,
        "turn_total_allocations",
        "gauge",
        "Allocations now, by the client's transport.",
        [
            ("{type=\"UDP\"}", s.allocations[0]),
            ("{type=\"TCP\"}", s.allocations[1]),
            ("{type=\"TLS\"}", s.allocations[2]),
        ],
    );
    metric(
        &mut out,
        "relayd_allocations_made_total",
        "counter",
        "Allocations made since start.",
        [("", c.allocs_tot)],
    );
    metric(
        &mut out,
        "relayd_allocations_refused_total",
        "counter",
        "Allocate requests answered with an error, by code (401 is mostly the first round of authentication).",
        s.refused.iter().map(|(code, reason, n)| {
            let reason = reason.replace(['"', '\\'], "");
            (format!("{{code=\"{code}\",reason=\"{reason}\"}}"), *n)
        }),
    );
    metric(
        &mut out,
        "relayd_channels",
        "gauge",
        "Channels bound now.",
        [("", c.chan_cur)],
    );
    metric(
        &mut out,
        "relayd_relayed_bytes_total",
        "counter",
        "Application bytes relayed, to peers and from peers.",
        [
            ("{direction=\"to_peer\"}", c.bytes_tx),
            ("{direction=\"from_peer\"}", c.bytes_rx),
        ],
    );
    metric(
        &mut out,
        "relayd_relayed_packets_total",
        "counter",
        "Datagrams and frames relayed, to peers and from peers.",
        [
            ("{direction=\"to_peer\"}", c.packets_tx),
            ("{direction=\"from_peer\"}", c.packets_rx),
        ],
    );
    metric(
        &mut out,
        "relayd_stun_bindings_total",
        "counter",
        "STUN Binding requests answered.",
        [("", c.bindings)],
    );
    metric(
        &mut out,
        "relayd_dropped_packets_total",
        "counter",
        "Packets dropped, by why.",
        [
            ("{reason=\"malformed\"}", c.malformed),
            ("{reason=\"oversized\"}", c.oversized),
            ("{reason=\"unroutable\"}", c.unroutable),
            ("{reason=\"no_permission\"}", c.forbidden),
        ],
    );
    metric(
        &mut out,
        "relayd_draining",
        "gauge",
        "1 while new allocations are refused (drain mode), else 0.",
        [("", u64::from(s.draining))],
    );
    if let Some(expiry) = s.certificate_expiry {
        metric(
            &mut out,
            "relayd_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the served TLS certificate expires, in Unix seconds.",
            [("", expiry)],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::parse_prometheus;

    #[test]
    fn the_page_is_read_by_opsctl_s_prometheus_reader_and_names_every_figure() {
        let s = Snapshot {
            counters: Counters {
                allocs_tot: 9,
                bytes_tx: 100,
                packets_tx: 2,
                bindings: 4,
                ..Counters::default()
            },
            allocations: [3, 1, 2],
            refused: vec![(401, "Unauthorized", 9), (486, "Allocation Quota Reached", 1)],
            draining: true,
            certificate_expiry: Some(1_800_000_000),
        };
        let page = render(&s);
        let read = parse_prometheus(&page, std::time::SystemTime::now()).unwrap();
        assert_eq!(read.allocations, 6);
        for line in [
            "turn_total_allocations{type=\"UDP\"} 3\n",
            "relayd_allocations_made_total 9\n",
            "relayd_allocations_refused_total{code=\"486\",reason=\"Allocation Quota Reached\"} 1\n",
            "relayd_relayed_bytes_total{direction=\"to_peer\"} 100\n",
            "relayd_relayed_packets_total{direction=\"to_peer\"} 2\n",
            "relayd_stun_bindings_total 4\n",
            "relayd_draining 1\n",
            "relayd_certificate_expiry_timestamp_seconds 1800000000\n",
        ] {
            assert!(page.contains(line), "no `{}` in\n{page}", line.trim_end());
        }
        // Every sample follows its metric's HELP and TYPE.
        for sample in page.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(page.contains(&format!("# TYPE {name} ")), "{name} has no TYPE");
        }
        assert!(!render(&Snapshot::default()).contains("certificate"));
    }
}

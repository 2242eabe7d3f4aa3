//! `opsctl inventory check`: the inventory and the advertised list it names,
//! validated without touching any node.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::advertise::{self, State, ValuesFile};
use crate::args::Output;
use crate::config::Config;
use crate::error::{self, Kind};
use crate::inventory::MemberRole;

#[derive(Serialize)]
struct Summary<'a> {
    inventory: &'a str,
    sites: Vec<SiteSummary<'a>>,
}

#[derive(Serialize)]
struct SiteSummary<'a> {
    name: &'a str,
    relays: Vec<RelaySummary<'a>>,
    min_healthy_relays: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterSummary<'a>>,
}

#[derive(Serialize)]
struct RelaySummary<'a> {
    name: &'a str,
    kind: &'static str,
    host: &'a str,
    /// `advertised`, `unadvertised`, `partial`, or `unknown` without a values file.
    advertised: &'static str,
}

#[derive(Serialize)]
struct ClusterSummary<'a> {
    flavor: &'static str,
    members: Vec<MemberSummary<'a>>,
}

#[derive(Serialize)]
struct MemberSummary<'a> {
    name: &'a str,
    host: &'a str,
    /// The Clearwater role (clearwater clusters only).
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

pub fn check(cfg: &Config) -> anyhow::Result<()> {
    let inv = cfg.inventory()?;
    let values = ValuesFile::load(inv).map_err(|e| error::mark(Kind::Input, e))?;
    let entries = match &values {
        Some(v) => v
            .relay_entries(inv, inv.relays())
            .map_err(|e| error::mark(Kind::Input, e))?,
        None => BTreeMap::new(),
    };
    let summary = Summary {
        inventory: &inv.file,
        sites: inv
            .sites
            .iter()
            .map(|s| SiteSummary {
                name: &s.name,
                min_healthy_relays: s.min_healthy_relays,
                relays: s
                    .relays
                    .iter()
                    .map(|r| RelaySummary {
                        name: &r.name,
                        kind: r.kind.name(),
                        host: &r.access.host,
                        advertised: match entries.get(&r.name).map(|e| advertise::state(e)) {
                            Some(State::Advertised) => "advertised",
                            Some(State::Unadvertised) => "unadvertised",
                            Some(State::Partial) => "partial",
                            None => "unknown",
                        },
                    })
                    .collect(),
                cluster: s.cluster.as_ref().map(|c| ClusterSummary {
                    flavor: c.flavor.name(),
                    members: c
                        .members
                        .iter()
                        .map(|m| MemberSummary {
                            name: &m.name,
                            host: &m.access.host,
                            role: match &m.role {
                                MemberRole::Clearwater { role, .. } => Some(role.name()),
                                MemberRole::Etcd { .. } => None,
                            },
                        })
                        .collect(),
                }),
            })
            .collect(),
    };
    match cfg.output {
        Output::Json => cfg.printer.document(&summary)?,
        Output::Text => {
            use std::fmt::Write as _;
            let mut o = String::new();
            let relays: usize = summary.sites.iter().map(|s| s.relays.len()).sum();
            let members: usize = summary
                .sites
                .iter()
                .filter_map(|s| s.cluster.as_ref())
                .map(|c| c.members.len())
                .sum();
            let _ = writeln!(
                o,
                "{}: ok: {} site{}, {relays} relays, {members} cluster members",
                inv.file,
                summary.sites.len(),
                if summary.sites.len() == 1 { "" } else { "s" }
            );
            for s in &summary.sites {
                let _ = writeln!(
                    o,
                    "  {} (keeps at least {} relay{} in service)",
                    s.name,
                    s.min_healthy_relays,
                    if s.min_healthy_relays == 1 { "" } else { "s" }
                );
                for r in &s.relays {
                    let _ = writeln!(
                        o,
                        "    {:<16} {:<10} {:<20} {}",
                        r.name, r.kind, r.host, r.advertised
                    );
                }
                if let Some(c) = &s.cluster {
                    let members: Vec<String> = c
                        .members
                        .iter()
                        .map(|m| match m.role {
                            Some(role) => format!("{} ({role})", m.name),
                            None => m.name.to_owned(),
                        })
                        .collect();
                    let _ = writeln!(o, "    cluster ({}): {}", c.flavor, members.join(", "));
                }
            }
            if let Some(v) = &values {
                let _ = writeln!(o, "advertised list: {} matches every relay's urls", v.label);
            }
            cfg.printer.text(&o);
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Drafted {
    inventory: String,
    values: String,
    list: String,
    relays: usize,
    /// How many values are left as `FILL-IN`.
    to_fill_in: usize,
}

/// `opsctl inventory init --from-values FILE`: drafts an inventory at `out`
/// from the values file's list; refuses to overwrite anything.
pub fn init(cfg: &Config, values: &std::path::Path, list: &str, out: &std::path::Path) -> anyhow::Result<()> {
    use crate::onboard;
    let text = crate::reader::read_text(values).map_err(|e| {
        error::new(
            Kind::Input,
            format!(
                "cannot read the values file {}: {e}; name the Helm values file whose list clients are handed (wire-server's values.yaml) with --from-values",
                values.display()
            ),
        )
    })?;
    // The inventory reads relative paths from its own directory.
    let beside = out.parent().is_none_or(|p| p.as_os_str().is_empty());
    let named = if values.is_absolute() || beside {
        values.display().to_string()
    } else {
        std::fs::canonicalize(values)
            .map_or_else(|_| values.display().to_string(), |p| p.display().to_string())
    };
    let draft = onboard::draft(&text, &named, list).map_err(|e| e.located(&values.display().to_string()))?;
    let (relays, to_fill_in) = (draft.relays, draft.blanks);
    crate::files::write_new(out, draft.text.as_bytes())?;
    let done = Drafted {
        inventory: out.display().to_string(),
        values: values.display().to_string(),
        list: list.to_owned(),
        relays,
        to_fill_in,
    };
    match cfg.output {
        Output::Json => cfg.printer.document(&done)?,
        Output::Text => cfg.printer.text(&format!(
            "{}: drafted {relays} relays from `{list}` in {}; fill in its {to_fill_in} {}s, then run\n  opsctl --inventory {} inventory check\n",
            done.inventory,
            done.values,
            crate::inventory::PLACEHOLDER,
            done.inventory
        )),
    }
    Ok(())
}

//! The safety checks of a relay plan: the ones run before anything changes,
//! and the re-check each relay gets just before it goes out of service.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use super::request::Builder;
use super::*;
use crate::advertise::{self as adv, Entry, State};
use crate::inventory::{Backend, Relay};
use crate::playbook::Preflight;

impl Builder<'_> {
    pub(super) fn relay_preflight(
        &mut self,
        relays: &[&Relay],
        entries: &BTreeMap<String, Vec<Entry>>,
        cert: Option<&super::renew::CertPlan>,
    ) -> anyhow::Result<Vec<Check>> {
        let inv = self.inv;
        let names = |rs: &[&Relay]| rs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
        let mut checks = Vec::new();
        for p in &self.pb.preflight {
            let (description, kind) = match p {
                Preflight::Reachable => (
                    format!(
                        "every target answers: {}",
                        relays
                            .iter()
                            .map(|r| format!("{} ({})", r.name, Host::of(&r.name, &r.access).address))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    CheckKind::Reachable {
                        nodes: relays.iter().map(|r| Host::of(&r.name, &r.access)).collect(),
                    },
                ),
                Preflight::StatsReadable => {
                    let reads = relays
                        .iter()
                        .map(|r| crate::stats::plan(r))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    (
                        format!(
                            "every target's stats answer: {}",
                            reads
                                .iter()
                                .map(|s| format!("{}: {}", s.relay, s.described))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        CheckKind::StatsReadable { reads },
                    )
                }
                Preflight::PeersHealthy => {
                    let mut parts = Vec::new();
                    let mut probes = Vec::new();
                    for site in self.sites_of(relays) {
                        let peers: Vec<&Relay> = site
                            .relays
                            .iter()
                            .filter(|r| !relays.iter().any(|t| t.name == r.name))
                            .collect();
                        if peers.is_empty() {
                            parts.push(format!(
                                "{}: every relay is a target; each is checked before it goes out",
                                site.name
                            ));
                        } else {
                            parts.push(format!("{}: {}", site.name, names(&peers)));
                        }
                        for p in peers {
                            probes.push(Probe::of(p)?);
                        }
                    }
                    (
                        format!(
                            "the advertised relays that stay in service are healthy: up, their stats answer, their own drain mode off, and those with `stun_check` answer a STUN binding from here ({})",
                            parts.join("; ")
                        ),
                        CheckKind::PeersHealthy {
                            peers: probes,
                            values: self.values_ref(),
                        },
                    )
                }
                Preflight::MinHealthy => {
                    let mut parts = Vec::new();
                    // A relay that reloads its certificate never leaves service.
                    let going_out: Vec<&Relay> = relays
                        .iter()
                        .copied()
                        .filter(|r| cert.is_none_or(|c| c.restarts(r)))
                        .collect();
                    let relays = going_out.as_slice();
                    let each = relays
                        .iter()
                        .map(|r| self.safety(r))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    if relays.is_empty() {
                        parts.push(
                            "no target goes out of service: each takes the certificate by a reload"
                                .to_owned(),
                        );
                    }
                    for site in self.sites_of(relays) {
                        // A target the run being continued left out is back
                        // in the list before the next target goes out (its
                        // own section comes first), so it counts.
                        let advertised: Vec<&Relay> = site
                            .relays
                            .iter()
                            .filter(|r| {
                                entries
                                    .get(&r.name)
                                    .is_none_or(|e| adv::state(e) == State::Advertised)
                                    || (self.req.left_out.contains_key(&r.name)
                                        && self.req.targets.contains(&r.name))
                            })
                            .collect();
                        // While a target is out, the other advertised relays carry
                        // the calls; a target already out (continued) is not one.
                        let left = relays
                            .iter()
                            .filter(|t| t.site == site.name)
                            .map(|t| advertised.iter().filter(|r| r.name != t.name).count())
                            .min()
                            .unwrap_or(advertised.len());
                        if left < site.min_healthy_relays {
                            let others: Vec<&Relay> = advertised
                                .iter()
                                .copied()
                                .filter(|r| !relays.iter().any(|t| t.name == r.name))
                                .collect();
                            return Err(crate::error::refused(format!(
                                "refusing: taking one relay out of site `{}` would leave {left} advertised relay{} ({}), below its minimum of {} (`min_healthy_relays`)\nhelp: put the missing relays back in service first, or lower `min_healthy_relays` in {}",
                                site.name,
                                if left == 1 { "" } else { "s" },
                                if others.is_empty() {
                                    "none besides the target".into()
                                } else {
                                    names(&others)
                                },
                                site.min_healthy_relays,
                                inv.file
                            )));
                        }
                        parts.push(format!(
                            "{} keeps at least {} healthy advertised relay{} while one is out ({} advertised now)",
                            site.name,
                            site.min_healthy_relays,
                            if site.min_healthy_relays == 1 { "" } else { "s" },
                            advertised.len()
                        ));
                    }
                    (parts.join("; "), CheckKind::MinHealthy { each })
                }
                Preflight::Advertised => {
                    let mut parts = Vec::new();
                    for r in relays {
                        let Some(e) = entries.get(&r.name) else {
                            parts.push(format!("{}: not checked (advertise backend has no file)", r.name));
                            continue;
                        };
                        let lines = e
                            .iter()
                            .map(|x| (x.line + 1).to_string())
                            .collect::<Vec<_>>()
                            .join(", ");
                        match adv::state(e) {
                            State::Advertised => parts.push(format!("{} (lines {lines})", r.name)),
                            State::Unadvertised if self.req.left_out.contains_key(&r.name) => {
                                let run = &self.req.left_out[&r.name];
                                self.continues.insert(r.name.clone(), run.clone());
                                parts.push(format!(
                                    "{} (lines {lines}, out since run {run}, which this run continues)",
                                    r.name
                                ));
                            }
                            State::Unadvertised => {
                                return Err(crate::error::refused(format!(
                                    "refusing: relay `{}` is not in the advertised list now: its entries on lines {lines} of {} are commented out\nhelp: uncomment them if it should be in service, or leave `{}` out of this run",
                                    r.name,
                                    self.values_label(),
                                    r.name
                                )));
                            }
                            State::Partial => {
                                return Err(crate::error::refused(format!(
                                    "refusing: relay `{}` is half advertised: some of its entries on lines {lines} of {} are commented out and some are not\nhelp: make them all commented or all uncommented first",
                                    r.name,
                                    self.values_label()
                                )));
                            }
                        }
                    }
                    (
                        format!("every target is in the advertised list now: {}", parts.join(", ")),
                        CheckKind::Advertised {
                            values: self.values_ref(),
                            relays: relays.iter().map(|r| (r.name.clone(), r.urls.clone())).collect(),
                        },
                    )
                }
                Preflight::BundleValid => {
                    self.bundle_check(cert.context("the bundle-valid check needs `--bundle`")?)
                }
                other => bail!(
                    "playbook {}: preflight check `{}` applies to clusters, not relays",
                    self.pb_file(),
                    other.name()
                ),
            };
            checks.push(Check { description, kind });
        }
        Ok(checks)
    }

    pub(super) fn values_ref(&self) -> Option<ValuesRef> {
        match &self.inv.advertise.backend {
            Backend::ValuesFile { file, list, .. } => Some(ValuesRef {
                path: file.display().to_string(),
                list: list.clone(),
            }),
            _ => None,
        }
    }

    /// The re-check before `r` goes out: every other relay of its site.
    pub(super) fn safety(&self, r: &Relay) -> anyhow::Result<Safety> {
        let site = self
            .inv
            .site(&r.site)
            .with_context(|| format!("relay `{}` names no site", r.name))?;
        Ok(Safety {
            site: site.name.clone(),
            out: r.name.clone(),
            min: site.min_healthy_relays,
            others: site
                .relays
                .iter()
                .filter(|x| x.name != r.name)
                .map(Probe::of)
                .collect::<anyhow::Result<_>>()?,
            values: self.values_ref(),
        })
    }
}

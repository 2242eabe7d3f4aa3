//! The parts of a plan that roll out a certificate: the bundle checked up
//! front, what each relay serves read before it is touched, the files
//! written in the relay's layout, the served certificate checked over TLS,
//! and the rollback that puts the old one back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use relay::CertLayout;

use super::request::Builder;
use super::*;
use crate::cert::{self, ServedNow, Trust};
use crate::inventory::Relay;

/// The checked certificate and how the operator wants it rolled out.
#[derive(Debug, Clone)]
pub struct CertPlan {
    pub bundle: PathBuf,
    pub key: Option<PathBuf>,
    /// CA files trusted besides the system's: `--ca` and the inventory's `cert.ca`.
    pub ca: Vec<PathBuf>,
    pub hosts: BTreeMap<String, String>,
    pub leaf: CertInfo,
    pub allow_earlier: bool,
    /// `--restart`: every relay gets the drained restart.
    pub restart: bool,
    pub served: BTreeMap<String, String>,
}

/// Under this name a `read-served` step keeps the fingerprint served before.
const SERVED_BEFORE: &str = "served_before";

impl CertPlan {
    /// Whether relay `r` takes the certificate by a drained restart.
    pub fn restarts(&self, r: &Relay) -> bool {
        self.restart || r.service.reload.is_none()
    }

    fn ca_strings(&self) -> Vec<String> {
        self.ca.iter().map(|c| c.display().to_string()).collect()
    }
}

impl Builder<'_> {
    /// Checks the new certificate for `relays` before anything else is
    /// planned: a bundle that would fail on any of them stops here.
    pub(super) fn cert_plan(&mut self, relays: &[&Relay]) -> anyhow::Result<Option<CertPlan>> {
        let Procedure::RenewCert {
            bundle,
            key,
            restart,
            ca,
            allow_earlier,
            served,
        } = &self.req.procedure
        else {
            return Ok(None);
        };
        let mut ca = ca.clone();
        ca.extend(self.inv.cert_ca.clone());
        let mut hosts = BTreeMap::new();
        for r in relays {
            let target = turns_target(r)?;
            hosts.insert(r.name.clone(), cert::host_of(&target).to_owned());
        }
        let trust = Trust::load(&ca)?;
        let now = cert::now();
        let files = cert::Files::read(bundle, key.as_deref())?;
        let b = cert::check_bundle(&files, &trust, &hosts, now)?;
        let leaf = b.info;
        let mut shown = BTreeMap::new();
        for r in relays {
            let line = match served.get(&r.name) {
                Some(Ok(s)) => {
                    if s.not_after > leaf.not_after && !allow_earlier {
                        bail!(
                            "{}: the new certificate ends on {}, earlier than the one relay `{}` serves now ({}, until {}): refusing to shorten it\nhelp: pass `--allow-earlier-expiry` if that is intended",
                            bundle.display(),
                            cert::date(leaf.not_after),
                            r.name,
                            s.subject,
                            cert::date(s.not_after)
                        );
                    }
                    let same = if s.fingerprint == leaf.fingerprint {
                        " (the new certificate already)"
                    } else {
                        ""
                    };
                    format!(
                        "{}, valid until {}, sha256 {}{same}",
                        s.subject,
                        cert::date(s.not_after),
                        s.fingerprint
                    )
                }
                Some(Err(why)) => format!(
                    "cannot be read from here ({why}); the expiry is compared in the run, before {} is touched",
                    r.name
                ),
                None => "not read".to_owned(),
            };
            shown.insert(r.name.clone(), line);
        }
        let left = (leaf.not_after - now).div_euclid(86_400);
        if left < cert::WARN_DAYS {
            self.note(format!(
                "warning: the new certificate ({}) has only {left} days left, until {}",
                leaf.subject,
                cert::date(leaf.not_after)
            ));
        }
        Ok(Some(CertPlan {
            bundle: bundle.clone(),
            key: key.clone(),
            ca,
            hosts,
            leaf,
            allow_earlier: *allow_earlier,
            restart: *restart,
            served: shown,
        }))
    }

    /// The `bundle-valid` check: what was found, for the run to find again.
    pub(super) fn bundle_check(&self, cp: &CertPlan) -> (String, CheckKind) {
        let l = &cp.leaf;
        let days = (l.not_after - cert::now()).div_euclid(86_400);
        let mut d = format!(
            "{}{}: {}, names {}, key {}",
            cp.bundle.display(),
            cp.key
                .as_ref()
                .map(|k| format!(" with key {}", k.display()))
                .unwrap_or_default(),
            l.subject,
            l.names.join(", "),
            l.key
        );
        d.push_str(&format!(
            "\n  issued by {}\n  valid from {} until {} ({days} days left)\n  sha256 {}\n  checked: strict PEM, one private key and it is the leaf's, each certificate signed by the next and valid now, the chain ends at an anchor of {}, the names cover every target's `turns:` host, RSA keys of 2048 bits or more",
            if l.issuers.is_empty() {
                "itself".to_owned()
            } else {
                l.issuers.join(" <- ")
            },
            cert::date(l.not_before),
            cert::date(l.not_after),
            l.fingerprint,
            if cp.ca.is_empty() {
                "the system's trust store".to_owned()
            } else {
                format!("the system's trust store and {}", cp.ca_strings().join(", "))
            }
        ));
        for (relay, now) in &cp.served {
            d.push_str(&format!("\n  {relay} serves now: {now}"));
        }
        (
            d,
            CheckKind::BundleValid {
                bundle: cp.bundle.display().to_string(),
                key: cp.key.as_ref().map(|k| k.display().to_string()),
                ca: cp.ca_strings(),
                hosts: cp.hosts.clone(),
                leaf: cp.leaf.clone(),
                served: cp.served.clone(),
            },
        )
    }

    pub(super) fn read_served(&self, r: &Relay, cp: &CertPlan) -> anyhow::Result<Action> {
        let target = turns_target(r)?;
        Ok(Action::ReadServed {
            name: cert::host_of(&target).to_owned(),
            target,
            record: SERVED_BEFORE.into(),
            new_not_after: cp.leaf.not_after,
            allow_earlier: cp.allow_earlier,
        })
    }

    /// The served-certificate gate: the new leaf, verified as clients will.
    pub(super) fn served_cert(&self, r: &Relay, cp: Option<&CertPlan>) -> anyhow::Result<(String, Gate)> {
        let cp = cp.context("the served-cert gate needs `--bundle`")?;
        let target = turns_target(r)?;
        Ok((
            format!(
                "TLS on {target} serves the new leaf (sha256 {}) and its chain verifies for {}",
                cp.leaf.fingerprint,
                cert::host_of(&target)
            ),
            Gate::ServedCert {
                name: cert::host_of(&target).to_owned(),
                target,
                expect: Expect::New {
                    fingerprint: cp.leaf.fingerprint.clone(),
                },
                verify: true,
                ca: cp.ca_strings(),
            },
        ))
    }

    pub(super) fn upload_cert(&mut self, r: &Relay, cp: Option<&CertPlan>) -> anyhow::Result<Vec<Action>> {
        let cp = cp.context("upload-cert needs `--bundle`")?;
        let layout = r.cert.clone().with_context(|| {
            format!(
                "relay `{}` ({}) has no `cert` in {}\nhelp: add `cert: {{cert: PATH, key: PATH}}` (or `bundle: PATH`) to it",
                r.name, r.kind, self.inv.file
            )
        })?;
        let b = cp.bundle.display().to_string();
        let key_from = cp
            .key
            .as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| b.clone());
        let run = &self.req.run;
        let upload =
            |content: String, from: Vec<String>, cut: Option<&'static str>, to: &str, mode: Option<&str>| {
                Action::Upload {
                    on: Host::of(&r.name, &r.access),
                    content,
                    from,
                    cut: cut.map(str::to_owned),
                    to: to.to_owned(),
                    mode: match mode {
                        None => "as the file it replaces".to_owned(),
                        Some("private") => "as the file it replaces, none for others, 0600 if new".to_owned(),
                        Some(m) => format!("0{m}"),
                    },
                    commands: UploadCommands::new(
                        &r.name,
                        &r.access,
                        to,
                        &format!("{to}.opsctl-{run}.tmp"),
                        Some(&format!("{to}.opsctl-{run}")),
                        mode,
                    ),
                }
            };
        Ok(match layout {
            CertLayout::Bundle { path } => {
                let content = match cp.key {
                    Some(_) => format!("certificate chain from {b}, then the private key from {key_from}"),
                    None => format!("certificate chain and private key from {b}"),
                };
                let from = std::iter::once(b.clone())
                    .chain(cp.key.as_ref().map(|_| key_from.clone()))
                    .collect();
                vec![upload(content, from, None, &path, Some("private"))]
            }
            CertLayout::Split { cert, key: key_path } => {
                // Without `--key` both parts are cut out of the one bundle file.
                let (chain, private) = if cp.key.is_none() {
                    (Some("chain"), Some("key"))
                } else {
                    (None, None)
                };
                vec![
                    upload(
                        format!("certificate chain from {b}"),
                        vec![b.clone()],
                        chain,
                        &cert,
                        None,
                    ),
                    upload(
                        format!("private key from {key_from}"),
                        vec![key_from.clone()],
                        private,
                        &key_path,
                        Some("private"),
                    ),
                ]
            }
        })
    }

    /// What undoes a relay's section once a file has been written: the
    /// backups put back, the relay reloaded or restarted, the old leaf
    /// served again, and the relay put back in service as the section
    /// would have.
    pub(super) fn rollback(&self, r: &Relay, section: &Section, cp: &CertPlan) -> Option<Rollback> {
        let uploads: Vec<&Step> = section
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::Upload { .. }))
            .collect();
        let from = uploads.first()?.number;
        let to = section
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.action,
                    Action::Gate {
                        gate: Gate::ServedCert { .. },
                        ..
                    }
                )
            })
            .map(|s| s.number)
            .next_back()
            .unwrap_or(from);
        let mut actions: Vec<(String, Action)> = Vec::new();
        for u in &uploads {
            let Action::Upload { to, commands, .. } = &u.action else {
                continue;
            };
            if let Some(restore) = &commands.restore {
                actions.push((
                    format!("put the backup of {to} back"),
                    Action::Restore {
                        upload: u.number,
                        path: to.clone(),
                        command: restore.clone(),
                    },
                ));
            }
        }
        let (verb, argv) = if cp.restarts(r) {
            ("restart", r.service.restart.clone())
        } else {
            ("reload", r.service.reload.clone().unwrap_or_default())
        };
        actions.push((
            format!("{verb} the service"),
            Action::Run {
                command: Command::remote(&r.name, &r.access, argv),
            },
        ));
        let after = |pick: &dyn Fn(&Action) -> bool| {
            section
                .steps
                .iter()
                .filter(|s| s.number > from && pick(&s.action))
                .map(|s| (s.title.clone(), s.action.clone()))
                .collect::<Vec<_>>()
        };
        actions.extend(after(&|a| {
            matches!(
                a,
                Action::Gate {
                    gate: Gate::ServiceUp { .. },
                    ..
                }
            )
        }));
        for (title, a) in after(&|a| {
            matches!(
                a,
                Action::Gate {
                    gate: Gate::ServedCert { .. },
                    ..
                }
            )
        }) {
            let Action::Gate {
                gate: Gate::ServedCert { target, name, .. },
                poll,
                timeout,
                ..
            } = a
            else {
                continue;
            };
            actions.push((
                title.replace("served-cert", "served-cert (the old one)"),
                Action::Gate {
                    fact: format!("TLS on {target} serves the certificate it served before the run"),
                    gate: Gate::ServedCert {
                        target,
                        name,
                        expect: Expect::Recorded {
                            record: SERVED_BEFORE.into(),
                        },
                        // The old certificate is whatever it was: expired
                        // or not, it is the one to have back.
                        verify: false,
                        ca: Vec::new(),
                    },
                    poll,
                    timeout,
                    on_timeout: OnTimeout::Stop,
                },
            ));
        }
        // Back in service as the section would have put it.
        actions.extend(after(&|a| {
            matches!(
                a,
                Action::StatusCommand { .. }
                    | Action::Advertise { out: false, .. }
                    | Action::Gate {
                        gate: Gate::Advertised { .. },
                        ..
                    }
            )
        }));
        Some(Rollback {
            from,
            to,
            steps: actions
                .into_iter()
                .enumerate()
                .map(|(i, (title, action))| Step {
                    number: i + 1,
                    node: r.name.clone(),
                    title,
                    source: "rollback".into(),
                    takes_out: false,
                    done_if: None,
                    undoes: None,
                    action,
                })
                .collect(),
        })
    }
}

/// The `host:port` of the relay's `turns:` URL, or why a certificate
/// cannot be rolled out to it.
fn turns_target(r: &Relay) -> anyhow::Result<String> {
    r.turns_target().with_context(|| {
        format!(
            "relay `{}` has no `turns:` URL, so the certificate it serves cannot be checked\nhelp: add its `turns:host:port?transport=tcp` URL to `urls`",
            r.name
        )
    })
}

/// What each relay serves now, read from here with a short timeout each,
/// all at once: what the plan shows, never a reason to fail.
pub fn read_served_now(relays: &[&Relay]) -> BTreeMap<String, Result<ServedNow, String>> {
    std::thread::scope(|s| {
        let reads: Vec<_> = relays
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.turns_target()?)))
            .map(|(name, target)| {
                (
                    name,
                    s.spawn(move || {
                        crate::served_cert::read(&target, std::time::Duration::from_secs(3))
                            .map(|c| ServedNow {
                                subject: c.subject,
                                not_after: c.not_after,
                                fingerprint: c.fingerprint,
                            })
                            .map_err(|e| format!("{e:#}"))
                    }),
                )
            })
            .collect();
        reads
            .into_iter()
            .map(|(n, h)| (n, h.join().unwrap_or_else(|_| Err("the read panicked".into()))))
            .collect()
    })
}

//! The rtpengine parts of a relay plan: new calls refused and allowed
//! again, the calls kept before a restart, and the gates that prove its
//! peers held them and it restored them.

use anyhow::Context;

use super::request::Builder;
use super::*;
use crate::inventory::Relay;
use crate::playbook::Gate as PbGate;
use crate::rtpengine::{self as rtp, Handover};

/// The name the own-call ids are kept under before a restart.
pub(super) const OWN_CALLS: &str = "own_calls";
/// The name the ids of the calls that carried media then are kept under.
pub(super) const MEDIA_BEFORE: &str = "media_before";

impl Builder<'_> {
    /// Says which path a target rtpengine's restart takes, and why.
    pub(super) fn handover_note(&mut self, r: &Relay) {
        if r.kind != relay::Kind::Rtpengine || !matches!(self.req.procedure, Procedure::RestartNoDowntime) {
            return;
        }
        let note = match self.req.handover.get(&r.name) {
            Some(Handover::Held { peers, calls }) => format!(
                "{}: restarted while {} hold{} the {calls} call(s) it owns (through Redis): new calls are refused, its calls are not waited for, and after the restart it must own them again and media must flow",
                r.name,
                peers.join(" and "),
                if peers.len() == 1 { "s" } else { "" }
            ),
            Some(Handover::Drain { why }) => format!(
                "{}: new calls are refused and its own calls must end before the restart: {why}",
                r.name
            ),
            None => format!(
                "{}: new calls are refused and its own calls must end before the restart: whether its peers hold them was not read",
                r.name
            ),
        };
        self.note(note);
    }

    pub(super) fn new_sessions(&self, r: &Relay, refuse: bool) -> anyhow::Result<Action> {
        Ok(Action::Run {
            command: rtp::new_sessions(r, &self.req.run, refuse)?,
        })
    }

    pub(super) fn record_calls(&self, r: &Relay) -> anyhow::Result<Action> {
        let site = self
            .inv
            .site(&r.site)
            .with_context(|| format!("no site `{}`", r.site))?;
        Ok(Action::RecordCalls {
            own: rtp::own_calls(r)?,
            record: OWN_CALLS.into(),
            media: rtp::media(r, site)?,
            media_record: MEDIA_BEFORE.into(),
        })
    }

    /// The rtpengine gates: the fact in words and how it is read.
    pub(super) fn rtpengine_gate(&self, r: &Relay, g: PbGate) -> anyhow::Result<(String, Gate)> {
        let site = self
            .inv
            .site(&r.site)
            .with_context(|| format!("no site `{}`", r.site))?;
        let group = rtp::group(site);
        let needs_group = || {
            if group.iter().any(|g| g.relay == r.name) {
                Ok(())
            } else {
                anyhow::bail!(
                    "relay `{}`: gate `{}` needs its calls in Redis\nhelp: set `rtpengine.redis` for it, or give the step `when: handover`",
                    r.name,
                    g.name()
                )
            }
        };
        Ok(match g {
            PbGate::CallsHeld => {
                needs_group()?;
                let peers: Vec<&str> = group
                    .iter()
                    .filter(|g| g.relay != r.name)
                    .map(|g| g.relay.as_str())
                    .collect();
                (
                    format!(
                        "every peer of {} ({}) follows its keyspace and holds each call it owns",
                        r.name,
                        peers.join(", ")
                    ),
                    Gate::CallsHeld {
                        of: r.name.clone(),
                        group,
                    },
                )
            }
            PbGate::CallsRestored => {
                needs_group()?;
                (
                    format!(
                        "{} owns again each call it owned before the restart that a peer still holds",
                        r.name
                    ),
                    Gate::CallsRestored {
                        of: r.name.clone(),
                        record: OWN_CALLS.into(),
                        group,
                    },
                )
            }
            PbGate::CallsConsistent => {
                needs_group()?;
                (
                    format!(
                        "every rtpengine of site {} holds each peer's calls, and none that its owner does not have",
                        r.site
                    ),
                    Gate::CallsConsistent { group },
                )
            }
            PbGate::MediaFlows => {
                needs_group()?;
                (
                    format!(
                        "the packet counters of {}'s calls advance (up to {} calls checked, on it and its peers)",
                        r.name,
                        rtp::MEDIA_SAMPLE
                    ),
                    Gate::MediaFlows {
                        of: r.name.clone(),
                        reads: rtp::media(r, site)?,
                        record: MEDIA_BEFORE.into(),
                    },
                )
            }
            PbGate::NgPing => {
                let target = r
                    .rtpengine
                    .as_ref()
                    .and_then(|e| e.ng.clone())
                    .with_context(|| {
                        format!(
                            "relay `{}` has no `rtpengine.ng` to ping\nhelp: set it, or give the step `when: ng-check`",
                            r.name
                        )
                    })?;
                (
                    format!("{target} (udp, from here) answers an ng `ping` with `pong`"),
                    Gate::NgPing { target },
                )
            }
            other => anyhow::bail!("gate `{}` is not an rtpengine gate", other.name()),
        })
    }
}

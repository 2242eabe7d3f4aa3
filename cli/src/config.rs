//! The command line resolved against the inventory: what to do, to which
//! nodes, and how to report it. Commands read this, never the clap types.

use std::sync::Arc;

use crate::args::{self, Cli, Command, Output};
use crate::inventory::{self, Inventory, NodeRef};
use crate::plan::{Procedure, Request};
use crate::printer::Printer;

pub struct Config {
    /// Loaded for every command but `lab`, which makes its own.
    inventory: Option<Inventory>,
    /// Everything the command prints goes through it.
    pub printer: Arc<Printer>,
    pub dry_run: bool,
    pub yes: bool,
    pub break_lock: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub output: Output,
    pub forks: usize,
    /// Where run journals are written and read.
    pub state_dir: std::path::PathBuf,
    /// The inventory as journals name it (its canonical path).
    pub inventory_id: String,
    /// `None`: close SSH masters at the end of the command.
    pub ssh_persist: Option<std::time::Duration>,
    pub control_dir: std::path::PathBuf,
    /// `--notify CMD`: told every change of a run's state.
    pub notify: Option<String>,
    pub action: Action,
}

pub enum Action {
    Plan(Request),
    Status {
        /// `--watch INTERVAL`: read again every interval until Ctrl-C.
        watch: Option<std::time::Duration>,
    },
    InventoryCheck,
    /// `opsctl runs [show RUN]`: reads journals, no inventory.
    Runs(Option<String>),
    /// `opsctl resume RUN`: that run, as its journal tells it.
    Resume(Box<crate::journal::Previous>),
    Lab(args::LabCmd),
    /// `opsctl inventory init`: drafts an inventory at `out`; reads none.
    InventoryInit {
        values: std::path::PathBuf,
        list: String,
        out: std::path::PathBuf,
    },
    /// `opsctl completions SHELL`: no inventory.
    Completions(clap_complete::Shell),
    /// `opsctl man --dir DIR`: no inventory.
    Man(std::path::PathBuf),
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    crate::error::usage(msg)
}

impl Config {
    /// The inventory this command works on.
    pub fn inventory(&self) -> anyhow::Result<&Inventory> {
        self.inventory
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("`opsctl lab` reads no inventory"))
    }

    pub fn resolve(cli: Cli, printer: Arc<Printer>) -> anyhow::Result<Config> {
        let g = cli.global;
        let state_dir = g.state_dir.clone().unwrap_or_else(crate::journal::default_dir);
        let (inventory, inventory_id, action) = match cli.command {
            Command::Lab(cmd) => (None, String::new(), Action::Lab(cmd)),
            Command::Completions { shell } => (None, String::new(), Action::Completions(shell)),
            Command::Inventory(args::InventoryCmd::Init { from_values, list }) => (
                None,
                String::new(),
                Action::InventoryInit {
                    values: from_values,
                    list,
                    out: g.inventory.clone().unwrap_or_else(|| "inventory.yaml".into()),
                },
            ),
            Command::Man { dir } => (None, String::new(), Action::Man(dir)),
            Command::Runs(r) => (
                None,
                String::new(),
                Action::Runs(r.show.map(|args::RunsCmd::Show { run }| run)),
            ),
            command => {
                let (inv, id, action) = against_inventory(command, &g, &state_dir)?;
                (Some(inv), id, action)
            }
        };
        Ok(Config {
            inventory,
            printer,
            dry_run: g.dry_run,
            yes: g.yes,
            break_lock: g.break_lock,
            quiet: g.quiet,
            verbose: g.verbose > 0,
            forks: usize::from(g.forks),
            state_dir,
            inventory_id,
            ssh_persist: Some(g.ssh_persist).filter(|d| !d.is_zero()),
            control_dir: g.control_dir.unwrap_or_else(crate::remote::default_control_dir),
            output: g.output,
            notify: g.notify.clone().filter(|c| !c.trim().is_empty()),
            action,
        })
    }
}

/// The inventory, its id in journals, and what to do with it.
fn against_inventory(
    command: Command,
    g: &args::Global,
    state_dir: &std::path::Path,
) -> anyhow::Result<(Inventory, String, Action)> {
    let resumed = match &command {
        Command::Resume(r) => Some(resumed_run(state_dir, &r.run)?),
        _ => None,
    };
    // A resumed run reads the inventory it was made against, unless told,
    // named as it was then: its plan names files relative to it.
    let path = match (&g.inventory, &resumed) {
        (Some(p), _) => p.clone(),
        (None, Some(prev)) => {
            let named = std::path::PathBuf::from(&prev.plan.inventory);
            if inventory_id(&named) != prev.inventory && named.is_relative() {
                return Err(usage(format!(
                    "run {} was started where its inventory was `{}` ({}): resume it from that directory, as its plan names files relative to it",
                    prev.run, prev.plan.inventory, prev.inventory
                )));
            }
            named
        }
        (None, None) => std::path::PathBuf::from("inventory.yaml"),
    };
    let inventory = inventory::load(&path)?;
    let inventory_id = inventory_id(&path);
    if let Some(prev) = resumed {
        if prev.inventory != inventory_id {
            return Err(usage(format!(
                "run {} was made against the inventory {}, not {inventory_id}\nhelp: leave out --inventory (and OPSCTL_INVENTORY), or give that file",
                prev.run, prev.inventory
            )));
        }
        return Ok((inventory, inventory_id, Action::Resume(prev)));
    }
    let run = match g.run_id.clone() {
        Some(id) => check_run_id(id)?,
        None => new_run_id(std::time::SystemTime::now()),
    };
    // Journals are read only for the procedures, which plan against them.
    let procedure = matches!(
        command,
        Command::Restart(_) | Command::Reboot(_) | Command::RenewCert(_) | Command::RecoverQuorum(_)
    );
    let left_out = if procedure {
        crate::journal::left_out(state_dir, &inventory_id)
    } else {
        Default::default()
    };
    let force = match &command {
        Command::Restart(r) => r.force,
        Command::RecoverQuorum(r) => r.force,
        _ => false,
    };
    let plan = |procedure, targets| {
        Action::Plan(Request {
            procedure,
            targets,
            run: run.clone(),
            left_out: left_out.clone(),
            force,
            handover: Default::default(),
            handover_reads: Vec::new(),
            versions: Default::default(),
        })
    };
    let action = match command {
        Command::Restart(r) => {
            let targets = select_relays(&inventory, &r.targets)?;
            let p = if r.no_downtime {
                Procedure::RestartNoDowntime
            } else {
                Procedure::Restart
            };
            plan(p, targets)
        }
        Command::Reboot(args::Reboot::Node(r)) => plan(
            Procedure::RebootNode { drain: !r.no_drain },
            select_relays(&inventory, &r.targets)?,
        ),
        Command::RenewCert(r) => {
            let mut targets = select_relays(&inventory, &r.targets)?;
            if r.targets.nodes.is_empty() {
                // --all / --site mean every relay that serves TLS.
                targets.retain(|n| inventory.relays().any(|x| &x.name == n && x.kind.serves_tls()));
                if targets.is_empty() {
                    return Err(usage("none of the selected relays serves TLS"));
                }
            } else if let Some(r) = inventory
                .relays()
                .find(|x| r.targets.nodes.contains(&x.name) && !x.kind.serves_tls())
            {
                return Err(usage(format!(
                    "relay `{}` ({}) serves no TLS, so it has no certificate to renew\nhelp: leave it out",
                    r.name, r.kind
                )));
            }
            plan(
                Procedure::RenewCert {
                    bundle: r.bundle,
                    key: r.key,
                    restart: r.restart,
                    ca: r.ca,
                    allow_earlier: r.allow_earlier_expiry,
                    // Read when the plan is made (commands::procedure).
                    served: Default::default(),
                },
                targets,
            )
        }
        Command::RecoverQuorum(r) => plan(
            Procedure::RecoverQuorum(crate::plan::Quorum {
                // The rest is read when the plan is made (commands::procedure).
                shared_from: r.shared_config_from,
                lost: r.lost,
                ..Default::default()
            }),
            vec![select_cluster_site(&inventory, r.site)?],
        ),
        Command::Status(s) => Action::Status { watch: s.watch },
        Command::Lab(_) => return Err(usage("`opsctl lab` reads no inventory")),
        Command::Runs(_) => return Err(usage("`opsctl runs` reads no inventory")),
        Command::Completions { .. } | Command::Man { .. } => {
            return Err(usage("`opsctl completions` and `opsctl man` read no inventory"));
        }
        Command::Resume(_) => unreachable!("handled above"),
        Command::Inventory(args::InventoryCmd::Check) => Action::InventoryCheck,
        Command::Inventory(args::InventoryCmd::Init { .. }) => {
            return Err(usage("`opsctl inventory init` reads no inventory"));
        }
    };
    Ok((inventory, inventory_id, action))
}

/// The run `opsctl resume RUN` names, from its journal.
fn resumed_run(state_dir: &std::path::Path, run: &str) -> anyhow::Result<Box<crate::journal::Previous>> {
    let run = check_run_id(run.to_owned())?;
    let path = state_dir.join(format!("{run}.jsonl"));
    if !path.exists() {
        return Err(usage(format!(
            "no run `{run}`: there is no journal {}\nhelp: `opsctl runs` lists the runs of this state directory (--state-dir)",
            path.display()
        )));
    }
    crate::journal::read(&path).map(Box::new).ok_or_else(|| {
        usage(format!(
            "the journal {} holds no plan that can be resumed (it was written by an opsctl older than `resume`, or its first line is damaged)",
            path.display()
        ))
    })
}

/// Relay names in the order they will be worked on. Selecting nothing is an error.
fn select_relays(inv: &Inventory, t: &args::Targets) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = if t.all {
        inv.relays().map(|r| r.name.clone()).collect()
    } else if let Some(site) = &t.site {
        let s = inv.site(site).ok_or_else(|| {
            usage(format!(
                "no site `{site}` in {}\nhelp: {}",
                inv.file,
                inv.suggest_site(site)
            ))
        })?;
        if s.relays.is_empty() {
            return Err(usage(format!("site `{site}` has no relays")));
        }
        s.relays.iter().map(|r| r.name.clone()).collect()
    } else {
        let mut out: Vec<String> = Vec::new();
        for n in &t.nodes {
            match inv.node(n) {
                Some(NodeRef::Relay) => {
                    if out.contains(n) {
                        return Err(usage(format!("relay `{n}` is named twice")));
                    }
                    out.push(n.clone());
                }
                Some(NodeRef::Member { site }) => {
                    return Err(usage(format!(
                        "`{n}` is a member of {}'s config cluster, not a relay\nhelp: name relays here; `recover-quorum --site {}` works on the cluster",
                        site.name, site.name
                    )));
                }
                None => {
                    return Err(usage(format!(
                        "no node `{n}` in {}\nhelp: {}",
                        inv.file,
                        inv.suggest_node(n)
                    )));
                }
            }
        }
        out
    };
    if names.is_empty() {
        return Err(usage(
            "no relays selected\nhelp: name them (`opsctl restart relay-1 relay-2`), or use `--all` or `--site SITE`",
        ));
    }
    Ok(names)
}

fn select_cluster_site(inv: &Inventory, site: Option<String>) -> anyhow::Result<String> {
    let with_cluster: Vec<&str> = inv
        .sites
        .iter()
        .filter(|s| s.cluster.is_some())
        .map(|s| s.name.as_str())
        .collect();
    match site {
        Some(name) => {
            let s = inv.site(&name).ok_or_else(|| {
                usage(format!(
                    "no site `{name}` in {}\nhelp: {}",
                    inv.file,
                    inv.suggest_site(&name)
                ))
            })?;
            if s.cluster.is_none() {
                return Err(usage(format!(
                    "site `{name}` has no `cluster` in {}\nhelp: sites with a cluster: {}",
                    inv.file,
                    if with_cluster.is_empty() {
                        "none".into()
                    } else {
                        with_cluster.join(", ")
                    }
                )));
            }
            Ok(name)
        }
        None => match with_cluster.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(usage(format!("no site in {} has a `cluster`", inv.file))),
            many => Err(usage(format!(
                "several sites have a cluster ({})\nhelp: choose one with `--site SITE`",
                many.join(", ")
            ))),
        },
    }
}

/// The inventory's canonical path: the same file however it was named.
fn inventory_id(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn check_run_id(id: String) -> anyhow::Result<String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(id)
    } else {
        Err(usage(format!(
            "run id `{id}` may only hold letters, digits, `-`, `_` and `.` (it becomes part of backup file names)"
        )))
    }
}

/// A run id no other run has: the time to the millisecond and a random
/// suffix (two runs started in the same millisecond still differ), e.g.
/// `20261123T064100.123Z-9f3a1c`. Sortable, and safe in file names.
fn new_run_id(t: std::time::SystemTime) -> String {
    use std::hash::{BuildHasher, Hasher};
    // Seeded from the OS's randomness, fresh for each hasher.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{}-{:06x}", utc_stamp(t), h.finish() & 0xff_ffff)
}

/// `20261123T064100.123Z`: UTC, to the millisecond.
fn utc_stamp(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (secs, millis) = (since.as_secs(), since.subsec_millis());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_civil_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_416_060);
        assert_eq!(utc_stamp(t), "20261123T064100.000Z");
        assert_eq!(utc_stamp(std::time::UNIX_EPOCH), "19700101T000000.000Z");
        let t = t + std::time::Duration::from_micros(123_456);
        assert_eq!(utc_stamp(t), "20261123T064100.123Z");
    }

    #[test]
    fn run_ids_made_at_the_same_instant_differ() {
        let t = std::time::SystemTime::now();
        let ids: std::collections::BTreeSet<String> = (0..100).map(|_| new_run_id(t)).collect();
        assert!(ids.len() >= 99, "{ids:?}");
        let id = ids.first().unwrap();
        assert!(check_run_id(id.clone()).is_ok(), "{id}");
        assert_eq!(id.len(), "20261123T064100.123Z-9f3a1c".len(), "{id}");
    }

    #[test]
    fn run_ids_must_be_safe_in_file_names() {
        assert!(check_run_id("test-1".into()).is_ok());
        assert!(check_run_id("../x".into()).is_err());
        assert!(check_run_id("a b".into()).is_err());
    }
}

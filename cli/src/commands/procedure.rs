//! restart, reboot node, renew-cert, recover-quorum: build the plan, then
//! print it (`--dry-run`) or run it.

use anyhow::bail;

use crate::args::Output;
use crate::config::{Config, UsageError};
use crate::plan::{self, Refused, Request};

pub fn run(cfg: &Config, req: &Request) -> anyhow::Result<()> {
    let plan = plan::build(&cfg.inventory, req).map_err(|e| {
        if e.is::<Refused>() {
            e
        } else {
            UsageError(format!("{e:#}")).into()
        }
    })?;
    if cfg.dry_run {
        match cfg.output {
            Output::Text => print!("{}", plan::text(&plan)),
            Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        }
        return Ok(());
    }
    // The executor (SSH sessions, gates, journal) is the next piece of work;
    // until it lands, a real run must not pretend.
    bail!(
        "running plans is not built yet in this version of opsctl: nothing was changed\nhelp: `--dry-run` prints the plan ({} steps) that a run will execute",
        plan.steps().count()
    )
}

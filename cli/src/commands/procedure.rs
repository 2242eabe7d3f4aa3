//! restart, reboot node, renew-cert, recover-quorum: build the plan, then
//! print it (`--dry-run`) or run it.

use crate::args::Output;
use crate::config::Config;
use crate::error::{self, Kind};
use crate::executor;
use crate::plan::{self, Request};

pub fn run(cfg: &Config, req: &Request) -> anyhow::Result<()> {
    // What the plan cannot be built from is a mistake in the input, unless
    // the deployment's state refused it.
    let inv = cfg.inventory()?;
    let mut req = req.clone();
    if let plan::Procedure::RenewCert { served, .. } = &mut req.procedure {
        // What each target serves now, for the plan to show and compare.
        let relays: Vec<_> = inv.relays().filter(|r| req.targets.contains(&r.name)).collect();
        *served = plan::read_served_now(&relays);
    }
    let plan = plan::build(inv, &req).map_err(|e| error::mark(Kind::Usage, e))?;
    if cfg.dry_run {
        match cfg.output {
            Output::Text => cfg.printer.text(&plan::text(&plan)),
            Output::Json => cfg.printer.document(&plan)?,
        }
        // The plan is shown either way; whether it could run is the exit status.
        if !plan.not_built.is_empty() {
            return Err(error::refused(format!(
                "this plan cannot run yet: it needs parts of opsctl that are not built:\n  - {}",
                plan.not_built.join("\n  - ")
            )));
        }
        return Ok(());
    }
    let opts = executor::Options {
        forks: cfg.forks,
        state_dir: cfg.state_dir.clone(),
        inventory_id: cfg.inventory_id.clone(),
        yes: cfg.yes,
        printer: cfg.printer.clone(),
        control_dir: cfg.control_dir.clone(),
        ssh_persist: cfg.ssh_persist,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = executor::Stop::default();
        stop.on_ctrl_c(cfg.printer.clone());
        executor::run(&plan, opts, stop).await
    })
}

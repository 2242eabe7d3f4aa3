//! restart, reboot node, renew-cert, recover-quorum: build the plan, then
//! print it (`--dry-run`) or run it.

use crate::args::Output;
use crate::config::{Config, UsageError};
use crate::executor;
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
        // The plan is shown either way; whether it could run is the exit status.
        if !plan.not_built.is_empty() {
            return Err(Refused(format!(
                "this plan cannot run yet: it needs parts of opsctl that are not built:\n  - {}",
                plan.not_built.join("\n  - ")
            ))
            .into());
        }
        return Ok(());
    }
    let opts = executor::Options {
        forks: cfg.forks,
        state_dir: cfg.state_dir.clone(),
        inventory_id: cfg.inventory_id.clone(),
        yes: cfg.yes,
        quiet: cfg.quiet,
        progress: !cfg.verbose,

        control_dir: cfg.control_dir.clone(),
        ssh_persist: cfg.ssh_persist,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = executor::Stop::default();
        stop.on_ctrl_c();
        executor::run(&plan, opts, stop).await
    })
}

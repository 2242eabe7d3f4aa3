//! opsctl: safe, observable runbooks for TURN relays, media relays and etcd
//! configuration clusters.

use std::process::ExitCode;

use clap::Parser;

use std::sync::Arc;

use opsctl::config::{Action, Config};
use opsctl::printer::Printer;
use opsctl::{args, commands};

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_output(&cli.global);
    let json = matches!(cli.global.output, args::Output::Json);
    let printer = Arc::new(
        Printer::new(cli.global.quiet, cli.global.verbose == 0, json)
            .with_progress_every(cli.global.progress_every),
    );
    match Config::resolve(cli, printer.clone()).and_then(|cfg| run(&cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(printer.error(&e).kind.exit_code()),
    }
}

fn run(cfg: &Config) -> anyhow::Result<()> {
    match &cfg.action {
        Action::Plan(req) => commands::procedure::run(cfg, req),
        Action::Status { watch } => commands::status::run(cfg, *watch),
        Action::InventoryCheck => commands::inventory::check(cfg),
        Action::InventoryInit { values, list, out } => commands::inventory::init(cfg, values, list, out),
        Action::Lab(cmd) => commands::lab::run(cfg, cmd),
        Action::Runs(None) => commands::runs::list(cfg),
        Action::Runs(Some(run)) => commands::runs::show(cfg, run),
        Action::Resume(prev) => commands::procedure::resume(cfg, prev),
        Action::Completions(shell) => commands::docs::completions(cfg, *shell),
        Action::Man(dir) => commands::docs::man(cfg, dir),
    }
}

fn init_output(g: &args::Global) {
    if g.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(console::colors_enabled_stderr())
        .without_time()
        .init();
}

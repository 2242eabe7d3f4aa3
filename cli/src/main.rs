//! opsctl: safe, observable runbooks for TURN relays, media relays and etcd
//! configuration clusters.

use std::process::ExitCode;

use clap::Parser;

use opsctl::config::{Action, Config, UsageError};
use opsctl::reader::InputError;
use opsctl::{args, commands};

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_output(&cli.global);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("opsctl: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    if let args::Command::Lab(cmd) = cli.command {
        return commands::lab::run(cmd, &cli.global);
    }
    let cfg = Config::resolve(cli)?;
    match &cfg.action {
        Action::Plan(req) => commands::procedure::run(&cfg, req),
        Action::Status => commands::status::run(&cfg),
        Action::InventoryCheck => commands::inventory::check(&cfg),
    }
}

/// 2 for a mistake in what was typed or in an input file; 1 for a procedure
/// that failed or was refused.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<InputError>() || c.is::<UsageError>()) {
        2
    } else {
        1
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

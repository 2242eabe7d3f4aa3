//! relayd as a program: its flags and settings file, the sockets they name,
//! TURN served until SIGTERM or Ctrl-C, then a graceful shutdown. SIGHUP
//! reads the TLS certificate again (a bad new one is refused and logged,
//! the old one keeps serving).
//!
//! The `relayd` binary is [`main`]; opsctl's lab starts the same daemon from
//! its own binary through [`main_from`], so a checkout needs one build.

mod args;
mod man;
mod settings;

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::server::{self, Listeners};
use anyhow::Context;
use clap::Parser;
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

pub use args::Args;
use settings::{File, Settings};

/// Runs relayd with the process's own command line.
#[must_use]
pub fn main() -> ExitCode {
    main_from(Args::parse())
}

/// Runs relayd with already-parsed flags; returns the process exit status
/// (2 for a settings error, 1 for a runtime error).
#[must_use]
pub fn main_from(args: Args) -> ExitCode {
    if args.man {
        return match man::page() {
            Ok(page) => {
                print!("{page}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("relayd: error: cannot write the manual page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let colour = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    // opsctl's lab runs this daemon in its own binary, whose logging may be set up already.
    let _ = logs.with_writer(std::io::stderr).try_init();

    let settings = args
        .config
        .as_deref()
        .map(File::load)
        .transpose()
        .and_then(|file| settings::resolve(file.unwrap_or_default(), &args));
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("relayd: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        let source = args
            .config
            .as_ref()
            .map_or_else(|| "the flags".to_owned(), |p| p.display().to_string());
        println!("relayd: {source}: ok");
        print!("{}", settings.describe());
        return ExitCode::SUCCESS;
    }
    // One thread: the TURN core is one task, and readers on other threads
    // would wake it across threads for every packet, which costs more than
    // the reads they take off it (measured on one core: 44k ChannelData
    // relayed/s on a multi-threaded runtime, over 100k on this one). Served
    // from a spawned task: the scheduler's own queue runs it faster than
    // `block_on`'s future.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = runtime.context("cannot start the runtime").and_then(|rt| {
        rt.block_on(async { tokio::spawn(serve(settings)).await })
            .context("the server task failed")?
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relayd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why `addr` cannot be bound; for a port below 1024 refused for want of
/// the capability, with how to grant it under relayd's systemd unit.
fn bind_failed(what: &str, addr: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    let help = if e.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 {
        "\nhelp: a port below 1024 needs CAP_NET_BIND_SERVICE; under relayd's systemd unit, add the drop-in /usr/share/doc/relayd/examples/low-ports.conf (it says how)"
    } else {
        ""
    };
    anyhow::anyhow!("cannot {what} {addr}: {e}{help}")
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let mut listeners = Listeners::default();
    for addr in &settings.udp {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_failed("listen on udp", *addr, e))?;
        listeners.udp.push(socket);
    }
    for addr in &settings.tcp {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_failed("listen on tcp", *addr, e))?;
        listeners.tcp.push(listener);
    }
    for addr in &settings.tls {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_failed("listen on tls", *addr, e))?;
        listeners.tls.push(listener);
    }
    if let Some(addr) = settings.status {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_failed("open the status port on udp", addr, e))?;
        listeners.status = Some(socket);
    }
    if let Some(addr) = settings.metrics {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_failed("serve metrics on tcp", addr, e))?;
        listeners.metrics = Some(listener);
    }
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
    let tls = settings.server.tls.clone();
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = term.recv() => return tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => return tracing::info!("interrupted: shutting down"),
                _ = hup.recv() => match &tls {
                    // Reading two small files: brief enough for this task.
                    // Success and refusal are both logged by `reload`.
                    Some(tls) => { let _ = tls.reload(); }
                    None => tracing::info!("SIGHUP: no TLS certificate to reload"),
                },
            }
        }
    };
    server::run(settings.server, listeners, shutdown).await?;
    Ok(())
}

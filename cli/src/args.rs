//! The command line, as typed. Only clap types live here; they are resolved
//! once into a [`crate::config::Config`] and never read by the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Safe, observable runbooks for TURN relays, media relays and etcd clusters.
///
/// opsctl reads an inventory of relay nodes and config-cluster nodes and runs
/// the dangerous procedures over SSH: no-downtime restarts, reboots,
/// certificate renewal and etcd quorum recovery. Every procedure is a plan
/// first: `--dry-run` prints it, and a real run executes exactly that plan.
#[derive(Debug, Parser)]
#[command(name = "opsctl", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The inventory file.
    #[arg(
        long,
        short = 'i',
        global = true,
        env = "OPSCTL_INVENTORY",
        value_name = "FILE"
    )]
    /// [default: inventory.yaml; `resume`: the one its run was made against]
    pub inventory: Option<PathBuf>,

    /// Print the exact plan (steps, commands, gates, file diffs) and touch nothing.
    #[arg(long, short = 'n', global = true)]
    pub dry_run: bool,

    /// Answer yes to every confirmation (for automation).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,

    /// Take over a site lock another run holds (it is shown, and confirmed
    /// first): for a run that is gone and left its lock behind.
    #[arg(long, global = true)]
    pub break_lock: bool,

    /// How results are printed on stdout.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Name of this run (backups and the journal carry it); default: the UTC
    /// time to the millisecond and a random suffix. An id names one run.
    #[arg(long, global = true, value_name = "ID", env = "OPSCTL_RUN_ID")]
    pub run_id: Option<String>,

    /// How many nodes read-only work (status, preflight) talks to at once.
    #[arg(long, global = true, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,

    /// Keep SSH master connections open this long after a command (idle), so
    /// the next one starts warm; `0s` closes them at the end of each command.
    #[arg(long, global = true, value_name = "DURATION", env = "OPSCTL_SSH_PERSIST", default_value = "5m", value_parser = parse_duration)]
    pub ssh_persist: std::time::Duration,

    /// Where SSH master sockets live (created with mode 0700); default
    /// `$XDG_RUNTIME_DIR/opsctl`, else `~/.cache/opsctl/ssh`.
    #[arg(long, global = true, value_name = "DIR", env = "OPSCTL_CONTROL_DIR")]
    pub control_dir: Option<PathBuf>,

    /// Where run journals live; default `$XDG_STATE_HOME/opsctl/runs`, else
    /// `~/.local/state/opsctl/runs`.
    #[arg(long, global = true, value_name = "DIR", env = "OPSCTL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Run CMD (with `sh -c`) on every change of a run's state (a step done
    /// or failed, a gate timed out, the run ended), the event as one JSON
    /// line on its stdin: for a chat or paging hook. It may take 10 s.
    #[arg(long, global = true, value_name = "CMD", env = "OPSCTL_NOTIFY")]
    pub notify: Option<String>,

    /// With no terminal (or -v), a wait prints a line when it starts, when
    /// its reading changes, and at least this often (count, rate, time left).
    #[arg(long, global = true, value_name = "DURATION", env = "OPSCTL_PROGRESS_EVERY", default_value = "1m", value_parser = parse_duration)]
    pub progress_every: std::time::Duration,

    /// More diagnostics on stderr (-v, -vv).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// No colours on stderr (also when NO_COLOR is set).
    #[arg(long, global = true)]
    pub no_color: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Restart relays: with --no-downtime, drain each one first; without, at once.
    Restart(Restart),
    /// Reboot hosts.
    #[command(subcommand)]
    Reboot(Reboot),
    /// Validate a certificate and roll it out to relays, checking what they serve.
    RenewCert(RenewCert),
    /// Rebuild a site's etcd cluster that has lost quorum, losing no keys.
    RecoverQuorum(RecoverQuorum),
    /// Show every node: reachable, service up, allocations, advertised, cert expiry.
    ///
    /// SSH master connections stay open in opsctl's control directory
    /// (`$XDG_RUNTIME_DIR/opsctl`, or `~/.cache/opsctl/ssh`, mode 0700) for
    /// `--ssh-persist` (5 minutes idle by default), so the next command starts
    /// without new key exchanges. Host keys are checked as the inventory says
    /// (strict by default) whether a connection is new or reused.
    Status(StatusArgs),
    /// Work with the inventory file.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// List the runs this machine's journals tell of (`--state-dir`), the
    /// latest first: id, procedure, targets, who and where from, started,
    /// state (running, done, stopped, failed, refused, killed) and steps done.
    Runs(Runs),
    /// Continue a run that did not finish (stopped, failed or killed) from
    /// its first step not done, with the plan its journal holds: the plan
    /// is made again from the inventory and must come out the same, and the
    /// safety checks that still mean something mid-change are read again.
    Resume(Resume),
    /// A small deployment on this machine: relays, calls, and the demo.
    #[command(subcommand)]
    Lab(LabCmd),
    /// Print the completion script for a shell, e.g. `opsctl completions
    /// bash > /etc/bash_completion.d/opsctl`; for zsh, put `_opsctl` in a
    /// directory of `$fpath`; for fish, `~/.config/fish/completions/opsctl.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (opsctl.1 and one per subcommand, such as
    /// opsctl-restart.1) into a directory, e.g. /usr/local/share/man/man1.
    Man {
        /// Where to write the pages; made if missing.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Read and show the table again every INTERVAL (default 2s) until
    /// Ctrl-C, over the same kept connections: allocations with their
    /// change since the last refresh, each relay's drain mode, advertised,
    /// certificate days. Redrawn in place on a terminal; otherwise one
    /// table per interval (with --output json, one line per refresh).
    #[arg(
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        default_missing_value = "2s",
        value_parser = parse_duration
    )]
    pub watch: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct LabDir {
    /// The lab's directory (inventory, values file, logs, pids).
    #[arg(long, default_value = "lab", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct LabUp {
    #[command(flatten)]
    pub dir: LabDir,
    /// How many relays (node-1 .. node-N).
    #[arg(long, default_value_t = crate::lab::relays::RELAYS, value_name = "N")]
    pub relays: usize,
    /// How many calls the simulator keeps going at once.
    #[arg(long, default_value_t = crate::lab::simulator::CONCURRENT, value_name = "N")]
    pub calls: usize,
    /// How long each simulated call lasts.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub call_length: std::time::Duration,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LabCmd {
    /// Start relays on loopback addresses (three unless --relays) and calls
    /// that come and go; writes DIR/inventory.yaml.
    Up(LabUp),
    /// Stop everything `lab up` started.
    Down(LabDir),
    /// `opsctl status` on the lab.
    Status(LabDir),
    /// Up, a no-downtime rolling restart of every relay with calls going on,
    /// the proof that none was dropped, then down.
    Demo(LabDir),
    /// Run relayd (the lab's relays are this binary).
    #[command(hide = true)]
    Relayd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A lab relay's service control, as systemctl is for a real one.
    #[command(hide = true)]
    Service {
        #[command(flatten)]
        dir: LabDir,
        node: String,
        action: String,
    },
    /// The call simulator.
    #[command(hide = true)]
    Simulate {
        #[command(flatten)]
        dir: LabDir,
        #[arg(long, default_value_t = 6)]
        concurrent: usize,
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        call_length: std::time::Duration,
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        max_runtime: std::time::Duration,
        /// TURN credentials (default: the lab relays' own).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        password: Option<String>,
    },
    /// The lab's `apply`: clients read the values file, so this only says what they get.
    #[command(hide = true)]
    Apply(LabDir),
    /// What brig's /calls/config/v2 would answer for the lab.
    #[command(hide = true)]
    CallsConfig(LabDir),
}

/// Which relays a command works on.
#[derive(Debug, Clone, Args)]
pub struct Targets {
    /// Relays by name, worked on in the order given.
    #[arg(value_name = "NODE", conflicts_with_all = ["all", "site"])]
    pub nodes: Vec<String>,

    /// Every relay of the inventory, site by site.
    #[arg(long, conflicts_with = "site")]
    pub all: bool,

    /// Every relay of one site.
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct Restart {
    #[command(flatten)]
    pub targets: Targets,

    /// Take each relay out of the advertised list and wait for its calls to end first.
    #[arg(long)]
    pub no_downtime: bool,

    /// With --no-downtime: if a drain times out, restart the relay anyway
    /// once its remaining allocations are confirmed (dropping those calls).
    #[arg(long, requires = "no_downtime")]
    pub force: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Reboot {
    /// Drain a relay host, reboot it, wait for the new boot, verify, put it back.
    Node(RebootNode),
}

#[derive(Debug, Clone, Args)]
pub struct RebootNode {
    #[command(flatten)]
    pub targets: Targets,

    /// Reboot without waiting for the relay's calls to end: they are dropped.
    /// Asks first, showing the allocations (`--yes` answers in automation).
    #[arg(long)]
    pub no_drain: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RenewCert {
    /// The new certificate: the whole chain, followed by the private key unless --key is given.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,

    /// The private key, when it is not in the bundle.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Put the certificate into service by a drained restart on every relay,
    /// also on those that can reload it (relayd, coturn): un-advertise,
    /// drain, write, restart, verify, re-advertise.
    #[arg(long)]
    pub restart: bool,

    /// A file of CA certificates clients trust besides the system's store
    /// (repeatable; adds to the inventory's `cert.ca`).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,

    /// Roll out a certificate that ends earlier than the one a relay serves now.
    #[arg(long)]
    pub allow_earlier_expiry: bool,

    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Debug, Clone, Args)]
pub struct RecoverQuorum {
    /// The site whose cluster to rebuild (needed when several sites have one).
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,

    /// Rebuild the cluster from the seed even though it has quorum.
    #[arg(long)]
    pub force: bool,

    /// Clearwater: copy this master's /etc/clearwater/shared_config onto
    /// the other masters (the runbook's "copy this file onto every other
    /// master"); without it, masters whose copies differ are refused.
    #[arg(long, value_name = "MASTER")]
    pub shared_config_from: Option<String>,

    /// Clearwater: a node lost for good (repeat, or separate with commas).
    /// Every node that does not answer SSH must be named: one only cut off
    /// from here may still be in a cluster with quorum.
    #[arg(long, value_name = "NODE", value_delimiter = ',')]
    pub lost: Vec<String>,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Runs {
    #[command(subcommand)]
    pub show: Option<RunsCmd>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RunsCmd {
    /// One run: each step's start, end and result, and what its gates read.
    Show {
        /// The run id (`opsctl runs` lists them).
        run: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Resume {
    /// The run id (`opsctl runs` lists them).
    pub run: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum InventoryCmd {
    /// Validate the inventory (and the advertised list it points at); report every problem.
    Check,
    /// Draft a new inventory (at --inventory, default inventory.yaml) from
    /// the advertised list of a Helm values file: one relay per host, its
    /// URLs grouped, and FILL-IN where only you know the value. Never
    /// overwrites a file.
    Init {
        /// The values file whose list clients are handed (Wire's wire-server values).
        #[arg(long, value_name = "FILE")]
        from_values: PathBuf,
        /// The keys down to that list, joined by dots.
        #[arg(long, value_name = "KEYS", default_value = crate::inventory::DEFAULT_LIST)]
        list: String,
    },
}

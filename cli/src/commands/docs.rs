//! `opsctl completions SHELL` and `opsctl man --dir DIR`: completion scripts
//! and man pages, made from the same definitions as `--help`, so they name
//! every subcommand and flag opsctl has and no other.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use serde::Serialize;

use crate::args::Cli;
use crate::config::Config;
use crate::files::write_atomically;

/// The completion script for `shell`, on stdout.
pub fn completions(cfg: &Config, shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "opsctl", &mut script);
    cfg.printer
        .text(&String::from_utf8(script).context("the completion script is not UTF-8")?);
    Ok(())
}

#[derive(Serialize)]
struct Written {
    dir: String,
    pages: Vec<String>,
}

/// Writes `opsctl.1` and one page per subcommand (`opsctl-restart.1`,
/// `opsctl-reboot-node.1`, ...) into `dir`, each whole or not at all.
pub fn man(cfg: &Config, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let mut written = Written {
        dir: dir.display().to_string(),
        pages: Vec::new(),
    };
    for (name, page) in pages(Cli::command())? {
        let path = dir.join(name);
        write_atomically(&path, &page)?;
        if !cfg.printer.json() {
            cfg.printer.status("Wrote", &path.display().to_string());
        }
        written.pages.push(path.display().to_string());
    }
    if cfg.printer.json() {
        cfg.printer.document(&written)?;
    }
    Ok(())
}

/// Each page's file name and text: the command's, then each subcommand's
/// that `--help` lists (hidden ones are the lab's own plumbing), depth
/// first. Built first, so each subcommand's page shows the global flags and
/// its full name (`opsctl-reboot-node`, used as `opsctl reboot node`).
pub fn pages(cmd: clap::Command) -> anyhow::Result<Vec<(String, String)>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    collect(&cmd, &mut out)?;
    Ok(out)
}

fn collect(cmd: &clap::Command, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    // Every page says which opsctl it documents, not only the top one.
    let man = clap_mangen::Man::new(cmd.clone()).source(format!("opsctl {}", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render(&mut page)
        .with_context(|| format!("cannot render the man page of {}", cmd.get_name()))?;
    out.push((
        man.get_filename(),
        String::from_utf8(page).context("a man page is not UTF-8")?,
    ));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out)?;
    }
    Ok(())
}
